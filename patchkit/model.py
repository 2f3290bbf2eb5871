"""Core value types shared along the flow: hosts, pending updates, findings, approvals.

Plain frozen dataclasses with no behaviour that does I/O. The planner's own output types live in
``patchkit.planning.plan``; the policy's types in ``patchkit.policy``.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable, Mapping
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


def freeze(value: Any, leaf: Callable[[Any], Any] | None = None) -> Any:
    """A read-only copy of nested dicts and lists (mappings stay mappings, lists become tuples);
    ``leaf`` maps every other value (e.g. to one shared copy of each equal string)."""
    kind = type(value)
    if kind is str or kind is int or kind is bool or kind is float or value is None:
        # most values (an inventory's are JSON): told apart without the ABC checks below,
        # which were a third of reading a 50,000-host inventory
        return value if leaf is None else leaf(value)
    if kind is dict:
        return MappingProxyType({str(k): freeze(v, leaf) for k, v in value.items()})
    if isinstance(value, Mapping):
        return MappingProxyType({str(k): freeze(v, leaf) for k, v in value.items()})
    if isinstance(value, list | tuple):
        return tuple(freeze(v, leaf) for v in value)
    return value if leaf is None else leaf(value)


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


@dataclass(frozen=True, order=True, slots=True)
class InstalledPackage:
    """One binary package installed on a host, with the source package it was built from.

    ``name`` carries no architecture qualifier (``libc6``, not ``libc6:amd64``): ``arch`` says it,
    so ``libc6`` for amd64 and for i386 are two packages. Advisories speak of ``source`` at
    ``source_version`` (a binNMU's ``version`` has a ``+bN`` its source version lacks).
    """

    name: str
    version: str
    arch: str  # amd64, i386, all …
    source: str
    source_version: str

    def line(self) -> str:
        """The package's line in a set's canonical form: its five fields, tab-separated."""
        return "\t".join((self.name, self.version, self.arch, self.source, self.source_version))


class PackageSet:
    """Everything installed on a host, sorted; hosts made from one image share one set.

    Content-addressed: ``digest`` is the SHA-256 of ``canonical()``, the same for the same
    packages in any order. Readers (the ledger, the findings file, the assessment) intern sets
    by digest, so a fleet of 50,000 hosts from 20 images holds 20 sets in memory.

    Immutable, and deliberately not a dataclass: code that walks dataclasses field by field
    (the plan's input hash, ``dataclasses.asdict``) would expand every host's hundreds of
    packages; to them a set is one opaque value, and ``str()`` of it is its digest.
    """

    __slots__ = ("_digest", "packages")
    packages: tuple[InstalledPackage, ...]
    _digest: str | None

    def __init__(self, packages: Iterable[InstalledPackage]) -> None:
        # sorted and without repeats whatever the caller passed: the canonical form depends on it
        object.__setattr__(self, "packages", tuple(sorted(set(packages))))
        object.__setattr__(self, "_digest", None)

    def canonical(self) -> str:
        """One line per package (``InstalledPackage.line``), each ending in a newline, sorted."""
        return "".join(p.line() + "\n" for p in self.packages)

    @property
    def digest(self) -> str:
        """SHA-256 (hex) of the canonical form; computed once per object."""
        if self._digest is None:
            digest = hashlib.sha256(self.canonical().encode("utf-8")).hexdigest()
            object.__setattr__(self, "_digest", digest)
            return digest
        return self._digest

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError(f"a PackageSet cannot be changed (setting {name!r})")

    def __delattr__(self, name: str) -> None:
        raise AttributeError(f"a PackageSet cannot be changed (deleting {name!r})")

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, PackageSet):
            return NotImplemented
        return self is other or self.digest == other.digest

    def __hash__(self) -> int:
        return hash(self.digest)

    def __str__(self) -> str:
        return self.digest

    def __repr__(self) -> str:
        return f"PackageSet({len(self.packages)} packages, digest={self.digest[:12]}…)"

    def __reduce__(self) -> tuple[type[PackageSet], tuple[tuple[InstalledPackage, ...]]]:
        return (PackageSet, (self.packages,))

    def __copy__(self) -> PackageSet:
        return self  # immutable: a copy would be the same value

    def __deepcopy__(self, memo: dict[int, object]) -> PackageSet:
        return self


@dataclass(frozen=True)
class Finding:
    """What one assessment learnt about one host."""

    host: str
    assessed_at: datetime
    reachable: bool
    updates: tuple[PendingUpdate, ...] = ()
    reboot_pending: bool = False  # the host already waits for a reboot (e.g. /run/reboot-required)
    message: str = ""  # why the host could not be assessed, when it could not
    release: str | None = None  # the release's codename ("bookworm"); None: not known
    software: PackageSet | None = None  # what is installed; None: not collected
    # What feeds other than the tracker name a release by (OSV: "Debian:12"), from the same
    # distribution facts: "Debian" / "Ubuntu", and "12.8" / "22.04".
    distribution: str | None = None
    release_version: str | None = None


@dataclass(frozen=True)
class HostSoftware:
    """The newest known software of one host: from its latest assessment that listed it."""

    host: str
    assessed_at: datetime
    release: str | None
    software: PackageSet
    distribution: str | None = None
    release_version: str | None = None


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
