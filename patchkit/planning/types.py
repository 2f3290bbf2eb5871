"""The planner's output: a plan of batches for one window occurrence, and everything left out.

Every value here is frozen and made of plain data, so a plan serialises to the same bytes for
the same inputs (see ``patchkit.planning.plan.plan_body``).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from enum import StrEnum

from patchkit.model import Severity


@dataclass(frozen=True)
class SelectedUpdate:
    """A pending update the plan will install."""

    package: str
    installed: str | None
    candidate: str
    origin: str
    security: bool
    severity: Severity
    reboot: bool  # installing it needs a reboot (policy's reboot_packages)
    first_seen: datetime
    note: str | None = None  # e.g. why it skips staged promotion (an exemption)


@dataclass(frozen=True)
class HeldUpdate:
    """A pending update the plan will not install this time, and why."""

    package: str
    candidate: str
    reason: str


@dataclass(frozen=True)
class HostPlan:
    """One host in the plan: what it gets, how urgent it is, what it risks."""

    host: str
    env: str | None
    tier: str | None
    cluster: str | None
    criticality: int
    criticality_label: str
    severity: Severity  # the most severe selected update
    priority: int  # severity rank x criticality: higher goes first
    updates: tuple[SelectedUpdate, ...]
    held: tuple[HeldUpdate, ...]
    reboot: bool  # a reboot is expected under the policy's reboot setting
    reboot_needs_approval: bool
    reboot_pending: bool  # it was already waiting for a reboot when assessed
    assessed_at: datetime
    estimate: timedelta  # expected time for this host alone
    contact: str | None = None
    estimate_basis: str = "policy estimate (no history)"  # or the history it comes from


@dataclass(frozen=True)
class Batch:
    """Hosts patched together; the next batch starts when this one is done and judged."""

    number: int  # 1-based
    canary: bool
    hosts: tuple[HostPlan, ...]
    concurrency: int  # hosts patched at the same time inside the batch
    start: datetime  # estimated
    duration: timedelta  # estimated
    next_window: bool  # it would not start before the window's cutoff

    @property
    def end(self) -> datetime:
        """Real elapsed time after the start (not wall-clock: right across DST changes)."""
        return (self.start.astimezone(UTC) + self.duration).astimezone(self.start.tzinfo)


class SkipKind(StrEnum):
    """Why a host of the inventory is not in any batch (the order is the order of the checks)."""

    OUT_OF_SCOPE = "out-of-scope"  # not matched by scope.include
    EXCLUDED = "excluded"  # matched by scope.exclude
    OTHER_WINDOW = "other-window"  # in scope, but served by another window
    EXCEPTION = "exception"  # a host exception applies
    NOT_ASSESSED = "not-assessed"  # no finding: nobody knows what it needs
    UNREACHABLE = "unreachable"  # the last assessment could not reach it
    NOTHING_TO_DO = "nothing-to-do"  # no pending update selected


@dataclass(frozen=True)
class SkippedHost:
    host: str
    kind: SkipKind
    reason: str
    held: tuple[HeldUpdate, ...] = ()


@dataclass(frozen=True)
class ExceptionUse:
    """A policy exception as the plan saw it: applied to what, or expired."""

    owner: str
    reason: str
    expires: date
    hosts: tuple[str, ...]  # patterns
    packages: tuple[str, ...]  # patterns
    expired: bool
    applied_to: tuple[str, ...]  # hosts it held back (or held packages on)


@dataclass(frozen=True)
class WindowSlot:
    """The occurrence of the maintenance window the plan targets."""

    name: str
    timezone: str
    start: datetime
    end: datetime
    cutoff: datetime
    frozen: tuple[str, ...]  # earlier occurrences passed over, with the freeze reason


@dataclass(frozen=True)
class Settings:
    """The policy settings a change approver should see next to the batches."""

    approval_required: bool
    approvers: tuple[str, ...]
    error_threshold: str
    on_threshold: str
    rollback: str
    snapshot_backend: str
    reboot: str
    retries: int
    verification: tuple[str, ...]
    host_key_checking: bool = True  # False: ssh accepts any host key (policy connection.*)


@dataclass(frozen=True)
class Plan:
    """A dry-run preview: approve it, and ``run`` executes exactly this."""

    id: str
    hash: str
    policy: str
    made_at: datetime
    inputs: dict[str, str]  # content hashes of policy, hosts and findings
    window: WindowSlot
    settings: Settings
    batches: tuple[Batch, ...]
    skipped: tuple[SkippedHost, ...]
    exceptions: tuple[ExceptionUse, ...]
    warnings: tuple[str, ...]

    @property
    def planned(self) -> tuple[Batch, ...]:
        return tuple(b for b in self.batches if not b.next_window)

    @property
    def deferred(self) -> tuple[Batch, ...]:
        return tuple(b for b in self.batches if b.next_window)

    def hosts(self) -> tuple[HostPlan, ...]:
        return tuple(h for b in self.batches for h in b.hosts)
