"""Core value types shared along the flow: hosts, pending updates, findings, approvals.

Plain frozen dataclasses with no behaviour that does I/O. The planner's own output types live in
``patchkit.planning.plan``; the policy's types in ``patchkit.policy``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from types import MappingProxyType
from typing import Any


class Severity(StrEnum):
    """How urgent a patch is; the order of the members is the order of urgency."""

    CRITICAL = "critical"
    HIGH = "high"
    MEDIUM = "medium"
    LOW = "low"

    @property
    def rank(self) -> int:
        """4 for critical … 1 for low: higher is more urgent."""
        return len(Severity) - list(Severity).index(self)


def freeze(value: Any) -> Any:
    """A read-only copy of nested dicts and lists (mappings stay mappings, lists become tuples)."""
    if isinstance(value, Mapping):
        return MappingProxyType({str(k): freeze(v) for k, v in value.items()})
    if isinstance(value, list | tuple):
        return tuple(freeze(v) for v in value)
    return value


@dataclass(frozen=True)
class Host:
    """One inventory host: its name, every group it belongs to, and its merged variables."""

    name: str
    groups: tuple[str, ...] = ()
    vars: Mapping[str, Any] = field(default_factory=lambda: MappingProxyType({}))

    def var(self, name: str, default: Any = None) -> Any:
        return self.vars.get(name, default)


@dataclass(frozen=True)
class PendingUpdate:
    """An update a host could install: what is there now, what would come, and from where."""

    package: str
    installed: str | None  # None: the update would install a package that is not there yet
    candidate: str
    origin: str  # the suite it comes from, e.g. "bookworm-security" or "lab-security"
    first_seen: datetime | None = None  # when an assessment first saw this candidate

    @property
    def key(self) -> str:
        """``package=candidate``: what apt would be asked to install."""
        return f"{self.package}={self.candidate}"


@dataclass(frozen=True)
class Finding:
    """What one assessment learnt about one host."""

    host: str
    assessed_at: datetime
    reachable: bool
    updates: tuple[PendingUpdate, ...] = ()
    reboot_pending: bool = False  # the host already waits for a reboot (e.g. /run/reboot-required)
    message: str = ""  # why the host could not be assessed, when it could not


@dataclass(frozen=True)
class Approval:
    """One approval of one version (hash) of a plan, as the ledger holds it.

    ``expires`` None comes from ledgers older than schema 4; admission then takes the default
    expiry of the plan. ``consumed_by`` names the run that used it: an approval starts one run.
    """

    id: int
    plan_id: str
    plan_hash: str
    by: str
    at: datetime
    comment: str = ""
    reboots: bool = False  # the downtime (reboots the policy wants approved) is approved too
    emergency: bool = False  # the plan may start outside its window occurrence
    expires: datetime | None = None
    signature: str | None = None  # armored ``ssh-keygen -Y sign`` signature of the statement
    consumed_by: str | None = None
