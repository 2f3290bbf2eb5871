"""The planner's output: a plan of batches for one window occurrence, and everything left out.

Every value here is frozen and made of plain data, so a plan serialises to the same bytes for
the same inputs (see ``patchkit.planning.plan.plan_body``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from enum import StrEnum
from typing import Any

from patchkit.model import Severity
from patchkit.policy.values import Amount


@dataclass(frozen=True)
class CveRef:
    """A CVE an update fixes, with what the advisories say of it (as the plan was made)."""

    cve: str
    cvss: float | None = None  # base score of the vector patchkit rates by (highest, newest)
    cvss_version: str | None = None
    kev: bool = False  # in CISA's Known Exploited Vulnerabilities catalog
    epss: float | None = None  # FIRST EPSS: probability of exploitation in the next 30 days
    urgency: str | None = None  # Debian tracker urgency / Ubuntu priority


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
    rated_by: str = ""  # what set the severity: "rule 2 (kev: true) for CVE-…", "default_severity"
    cves: tuple[CveRef, ...] = ()  # the CVEs it fixes on this host, known-exploited first


@dataclass(frozen=True)
class HeldUpdate:
    """A pending update the plan will not install this time, and why."""

    package: str
    candidate: str
    reason: str
    cves: tuple[CveRef, ...] = ()  # what staying held leaves open, known-exploited first


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
    checks: tuple[int, ...] = ()  # the verification checks (Phases.checks) that apply to it
    node_group: str = ""  # the execution node group that patches it; "": the controller


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
    QUORUM = "quorum"  # its cluster has as many members down as max_unavailable allows


@dataclass(frozen=True)
class SkippedHost:
    host: str
    kind: SkipKind
    reason: str
    held: tuple[HeldUpdate, ...] = ()


@dataclass(frozen=True)
class ClusterState:
    """A cluster under ``rollout.anti_affinity.max_unavailable``, as the plan saw it.

    ``run`` holds a host back when its cluster's members down (``down`` and those the run
    failed or left unpatched) leave no room (``patchkit.planning.quorum.held_for_quorum``).
    """

    name: str
    size: int  # inventory hosts with this cluster value, in scope or not
    limit: int  # max_unavailable resolved against size: members that may be down at once
    down: tuple[str, ...]  # members unreachable when last assessed, by name
    members: tuple[str, ...]  # every inventory host of the cluster, by name (size of them)

    @property
    def budget(self) -> int:
        """Members that may still go down at planning (0 or less: none may)."""
        return self.limit - len(self.down)


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
class FreezeSpan:
    """A change freeze of the window: whole days, in the window's timezone."""

    start: date
    end: date  # inclusive
    reason: str


@dataclass(frozen=True)
class WindowSlot:
    """The occurrence of the maintenance window the plan targets."""

    name: str
    timezone: str
    start: datetime
    end: datetime
    cutoff: datetime
    frozen: tuple[str, ...]  # earlier occurrences passed over, with the freeze reason
    freezes: tuple[FreezeSpan, ...] = ()  # the window's freezes: no batch starts inside one


@dataclass(frozen=True)
class ApprovalRules:
    """Who must approve the plan, how, and for how long an approval holds (policy roles)."""

    required: bool
    approvers: tuple[str, ...]
    needed: int = 1  # approvals by different approvers
    separation_of_duties: bool = False  # whoever made the plan may not approve it
    expires_after: timedelta | None = None  # None: at the end of the window occurrence
    emergency_approvers: tuple[str, ...] = ()
    signatures_required: bool = False
    allowed_signers: str = ""  # the allowed_signers file's content when the plan was made


@dataclass(frozen=True)
class Phases:
    """The settings of the playbook's phases, as the run passes them to the roles."""

    snapshot_backend: str = "package"
    reboot: str = "if-needed"  # if-needed / always / never
    reboot_timeout: timedelta = timedelta(minutes=10)
    min_free_disk: int = 500  # MB
    healthy_before: bool = True
    pending_reboot: str = "note"  # note / reboot-first / skip-host
    backup_command: str = ""  # empty: no backup hook
    backup_timeout: timedelta = timedelta(minutes=10)
    # the policy's verification checks as the playbook takes them; hosts name theirs by index
    checks: tuple[Mapping[str, Any], ...] = ()


@dataclass(frozen=True)
class RunRules:
    """How the run judges outcomes: threshold, rollback, retries, canary, quorum."""

    error_threshold: Amount = field(default_factory=lambda: Amount(value=10, percent=True))
    on_threshold: str = "halt"  # halt / continue
    rollback: str = "host"  # host / batch / none
    retries: int = 0  # attempts after the first for a host whose patch phase failed
    canary_on_failure: str = "halt"  # halt / continue
    canary_soak: timedelta = timedelta(0)
    max_unavailable: Amount | None = None  # per cluster, members down at once
    host_key_checking: bool = True  # False: ssh accepts any host key (policy connection.*)
    environment: tuple[str, ...] = ()  # controller variables (globs) the playbooks may see
    on_node_lost: str = "halt"  # halt / continue (policy execution.on_node_lost)


@dataclass(frozen=True)
class NodeGroup:
    """Execution nodes that run the jobs of the hosts placed on them (policy execution.*)."""

    name: str
    nodes: tuple[str, ...]  # user@host[:port]
    key: str = ""  # SSH key file on the controller for the nodes; "": ssh's own
    known_hosts: str = ""  # the nodes' host keys; "": ssh's own files
    venv: str = "/opt/patchkit-node"


@dataclass(frozen=True)
class Settings:
    """What the run executes, carried by the plan so that ``run`` never reads the live policy,
    and shown to the change approver next to the batches."""

    approval: ApprovalRules
    phases: Phases
    rules: RunRules
    verification: tuple[str, ...]  # the checks, described for people
    node_groups: tuple[NodeGroup, ...] = ()  # the groups the plan places hosts on

    # The names the previews read.
    @property
    def approval_required(self) -> bool:
        return self.approval.required

    @property
    def approvers(self) -> tuple[str, ...]:
        return self.approval.approvers

    @property
    def error_threshold(self) -> Amount:
        return self.rules.error_threshold

    @property
    def on_threshold(self) -> str:
        return self.rules.on_threshold

    @property
    def rollback(self) -> str:
        return self.rules.rollback

    @property
    def snapshot_backend(self) -> str:
        return self.phases.snapshot_backend

    @property
    def reboot(self) -> str:
        return self.phases.reboot

    @property
    def retries(self) -> int:
        return self.rules.retries

    @property
    def host_key_checking(self) -> bool:
        return self.rules.host_key_checking


@dataclass(frozen=True)
class Plan:
    """A dry-run preview: approve it, and ``run`` executes exactly this.

    Its id and hash come from what it decides; ``made_at``, the batches' estimated start times
    and the warnings (which follow from the rest and the time it was made) are outside the hash,
    so the same inputs planned a minute apart make the same plan.
    """

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
    # the clusters of hosts this plan would patch, when the policy sets max_unavailable
    clusters: tuple[ClusterState, ...] = ()
    owner: str = ""  # the policy's roles.owner: who answers for it
    description: str = ""  # the policy's description, shown to whoever approves

    @property
    def planned(self) -> tuple[Batch, ...]:
        return tuple(b for b in self.batches if not b.next_window)

    @property
    def deferred(self) -> tuple[Batch, ...]:
        return tuple(b for b in self.batches if b.next_window)

    def hosts(self) -> tuple[HostPlan, ...]:
        return tuple(h for b in self.batches for h in b.hosts)
