"""Which vulnerabilities touch a host, and which of its pending updates fix them (pure).

A host is matched by its installed *source* packages, because advisories speak of source
packages: for each vulnerability a feed knows in one of them on the host's release, the host is

- not affected: its installed source version already has the fix, is older than the version
  that brought the flaw in, or the feed says the release never had it;
- ``fix pending``: affected, and a pending update of a binary built from that source brings a
  source version that has the fix;
- ``fix not available here``: affected, a fixed version exists upstream, but the host's
  repositories offer no update that reaches it;
- ``no fix yet``: affected, and no fixed version exists for the release.

Where feeds disagree about one vulnerability (the tracker and an OSV record), the worst state
wins: a wrong "not affected" hides a hole, a wrong "affected" costs a look.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

from patchkit.advisories.types import AdvisoryFeed, Distro, FixStatus, PackageFix, Release, Urgency
from patchkit.advisories.versions import NOT_AFFECTED, parse_version

_BINNMU = re.compile(r"\+b\d+\Z")  # a binary-only rebuild: same source version, new binary


class Exposure(enum.StrEnum):
    """How one vulnerability stands on one host; the order is from worst to best."""

    NO_FIX_YET = "no fix yet"
    NO_FIX_HERE = "fix not available here"
    FIX_PENDING = "fix pending"
    NOT_AFFECTED = "not affected"

    @property
    def affected(self) -> bool:
        return self is not Exposure.NOT_AFFECTED


_WORST_FIRST = tuple(Exposure)


class Installed(Protocol):
    """What the matcher reads of an installed binary package (patchkit.model.InstalledPackage)."""

    @property
    def name(self) -> str: ...
    @property
    def version(self) -> str: ...
    @property
    def source(self) -> str: ...
    @property
    def source_version(self) -> str: ...


class Pending(Protocol):
    """What the matcher reads of a pending update (patchkit.model.PendingUpdate)."""

    @property
    def package(self) -> str: ...
    @property
    def candidate(self) -> str: ...


@dataclass(frozen=True, slots=True)
class Vulnerable:
    """One vulnerability that affects a host, through one installed source package."""

    vulnerability: str  # the CVE (or the feed's own id when the record names none)
    source: str
    installed: str  # the installed source version
    exposure: Exposure
    fixed_version: str | None  # the version that fixes it upstream; None when there is none
    updates: tuple[str, ...] = ()  # the pending binary updates that bring the fix (package names)
    urgency: Urgency | None = None


@dataclass(frozen=True)
class HostMatch:
    """Every vulnerability affecting one host, and the vulnerabilities each update fixes."""

    vulnerable: tuple[Vulnerable, ...]  # by vulnerability id
    fixes_by_update: Mapping[str, tuple[str, ...]]  # pending package → vulnerabilities it fixes

    def exposure(self, vulnerability: str) -> Exposure:
        """The host's state for ``vulnerability``: NOT_AFFECTED when nothing matched it."""
        states = [v.exposure for v in self.vulnerable if v.vulnerability == vulnerability]
        return min(states, key=_WORST_FIRST.index) if states else Exposure.NOT_AFFECTED


def release_keys(
    distribution: str, codename: str | None, version: str | None
) -> tuple[Release, ...]:
    """The names feeds may give a host's release: the tracker's codename (``bookworm``), OSV's
    major version for Debian (``12`` of ``12.5``) and its ``YY.MM`` for Ubuntu."""
    try:
        distro = Distro(distribution.strip().lower())
    except ValueError:
        return ()
    keys: list[Release] = []
    if codename:
        keys.append(Release(distro, codename.strip().lower()))
    if version:
        number = version.strip()
        if distro is Distro.DEBIAN:
            number = number.split(".", 1)[0]
        keys.append(Release(distro, number))
    return tuple(dict.fromkeys(keys))


class _Dated(Protocol):
    """What ``host_releases`` reads of a finding (patchkit.model.Finding)."""

    @property
    def distribution(self) -> str | None: ...
    @property
    def release(self) -> str | None: ...
    @property
    def release_version(self) -> str | None: ...


def host_releases(findings: Iterable[_Dated]) -> frozenset[Release]:
    """Every name feeds may give the releases of these hosts (``release_keys`` of each)."""
    keys: set[Release] = set()
    seen: set[tuple[str | None, str | None, str | None]] = set()
    for finding in findings:
        triple = (finding.distribution, finding.release, finding.release_version)
        if triple in seen:
            continue
        seen.add(triple)
        keys.update(
            release_keys(finding.distribution or "", finding.release, finding.release_version)
        )
    return frozenset(keys)


def source_version_of(binary_version: str, installed: Installed | None) -> str:
    """The source version a binary update brings.

    apt's simulation gives binary versions. Most binaries carry their source's version; a
    binNMU adds ``+bN``, which the source version lacks. A binary whose installed version
    differs from its source version in another way (a package that versions its binaries on
    their own) cannot be mapped, and its candidate is taken as it is.
    """
    if installed is not None and installed.version == installed.source_version:
        return binary_version
    return _BINNMU.sub("", binary_version)


def _verdict(fix: PackageFix, installed: str, reachable: str | None) -> Exposure:
    """One feed's verdict on one vulnerability, given the installed source version and the
    highest source version a pending update reaches (None: no update of this source)."""
    if fix.status is FixStatus.NOT_AFFECTED or fix.fixed_version == NOT_AFFECTED:
        return Exposure.NOT_AFFECTED
    have = parse_version(installed)
    if (
        fix.introduced is not None
        and fix.introduced != "0"
        and have < parse_version(fix.introduced)
    ):
        return Exposure.NOT_AFFECTED
    if fix.status is not FixStatus.FIXED or fix.fixed_version is None:
        return Exposure.NO_FIX_YET
    fixed = parse_version(fix.fixed_version)
    if have >= fixed:
        return Exposure.NOT_AFFECTED
    if reachable is not None and parse_version(reachable) >= fixed:
        return Exposure.FIX_PENDING
    return Exposure.NO_FIX_HERE


def match_host(
    releases: Sequence[Release],
    installed: Iterable[Installed],
    pending: Iterable[Pending],
    feeds: Sequence[AdvisoryFeed],
) -> HostMatch:
    """The vulnerabilities of one host (see the module's docstring for the states)."""
    binaries: dict[str, Installed] = {}
    sources: dict[str, str] = {}
    for package in installed:
        binaries[package.name.split(":", 1)[0]] = package
        sources.setdefault(package.source, package.source_version)
    reaches: dict[str, list[tuple[str, str]]] = {}  # source → [(binary update, source version)]
    for update in pending:
        name = update.package.split(":", 1)[0]
        binary = binaries.get(name)
        source = binary.source if binary is not None else name
        reaches.setdefault(source, []).append((name, source_version_of(update.candidate, binary)))
    found: list[Vulnerable] = []
    fixes_by_update: dict[str, list[str]] = {}
    for source, version in sorted(sources.items()):
        by_vulnerability: dict[str, list[PackageFix]] = {}
        for feed in feeds:
            for release in releases:
                for fix in feed.fixes_for(release, source):
                    by_vulnerability.setdefault(fix.vulnerability, []).append(fix)
        updates = reaches.get(source, [])
        best = max((v for _, v in updates), key=parse_version, default=None)
        for vulnerability, fixes in sorted(by_vulnerability.items()):
            verdicts = [(_verdict(fix, version, best), fix) for fix in fixes]
            exposure, fix = min(verdicts, key=lambda pair: _WORST_FIRST.index(pair[0]))
            if not exposure.affected:
                continue
            fixed = fix.fixed_version if fix.status is FixStatus.FIXED else None
            bringing: tuple[str, ...] = ()
            if exposure is Exposure.FIX_PENDING and fixed is not None:
                bringing = tuple(
                    sorted(n for n, v in updates if parse_version(v) >= parse_version(fixed))
                )
                for name in bringing:
                    fixes_by_update.setdefault(name, []).append(vulnerability)
            urgency = next((f.urgency for f in fixes if f.urgency is not None), None)
            found.append(
                Vulnerable(vulnerability, source, version, exposure, fixed, bringing, urgency)
            )
    found.sort(key=lambda v: (v.vulnerability, v.source))
    return HostMatch(
        tuple(found), {name: tuple(sorted(set(v))) for name, v in sorted(fixes_by_update.items())}
    )
