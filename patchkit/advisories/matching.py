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
from dataclasses import dataclass, field
from typing import Protocol

from debian.debian_support import Version

from patchkit.advisories.types import AdvisoryFeed, Distro, FixStatus, PackageFix, Release, Urgency
from patchkit.advisories.versions import NOT_AFFECTED, parse_version

_BINNMU = re.compile(r"\+b\d+\Z")  # a binary-only rebuild: same source version, new binary
_SIGNED_KERNEL = re.compile(r"linux-signed(-[a-z0-9]+)?\Z")


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
    # False: no feed speaks of the host's release at all (an Ubuntu host with only the Debian
    # tracker imported, a distribution patchkit does not know): nothing above means anything
    covered: bool = True
    # vulnerabilities that could not be judged, and why (an installed version that does not
    # read as a Debian version): unknown, never "not affected"
    unjudged: Mapping[str, str] = field(default_factory=dict)

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


def source_version_of(binary_version: str, installed: Installed | None) -> str | None:
    """The source version a binary update brings; None when it cannot be told.

    apt's simulation gives binary versions. Most binaries carry their source's version; a
    binNMU adds ``+bN``, which the source version lacks. A binary that versions itself apart
    from its source (dmsetup is ``2:1.02.185-2``, built from lvm2 ``2.03.16-2``) cannot be
    mapped: its candidate says nothing about the source's version, and taking it as one would
    make any update of it "fix" every CVE of the source. A binary not installed yet (a new
    dependency) is taken at its own version.
    """
    if installed is None or installed.version == installed.source_version:
        return binary_version
    if _BINNMU.sub("", installed.version) == installed.source_version:
        return _BINNMU.sub("", binary_version)
    return None


def _tracked_as(package: Installed) -> tuple[str, str]:
    """The source name and version advisories file a binary under.

    Debian builds its signed kernels from ``linux-signed-<arch>`` (source version
    ``6.1.76+1``), but the tracker and OSV file kernel CVEs under ``linux``, whose version the
    signed binaries carry (``6.1.76-1``).
    """
    if _SIGNED_KERNEL.match(package.source):
        return "linux", package.version
    return package.source, package.source_version


def _version(text: str) -> Version | None:
    try:
        return parse_version(text)
    except ValueError:
        return None  # a host reported something that is no Debian version: it cannot be judged


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
    if not any(release in feed.releases() for feed in feeds for release in releases):
        return HostMatch((), {}, covered=False)
    binaries: dict[str, Installed] = {}
    sources: dict[str, str] = {}  # source → its oldest installed version (the worst case)
    odd: dict[str, str] = {}  # source → a version of it that is no Debian version
    for package in installed:
        binaries[package.name.split(":", 1)[0]] = package
        source, version = _tracked_as(package)
        have = _version(version)
        if have is None:
            odd.setdefault(source, version)
            continue
        known = sources.get(source)
        if known is None or have < parse_version(known):
            # a source half upgraded (libssl3 new, openssl old) is as exposed as its oldest
            sources[source] = version
    reaches: dict[str, list[tuple[str, str]]] = {}  # source → [(binary update, source version)]
    for update in pending:
        name = update.package.split(":", 1)[0]
        binary = binaries.get(name)
        brings: str | None
        if binary is not None and _SIGNED_KERNEL.match(binary.source):
            source, brings = "linux", update.candidate  # as _tracked_as files it
        else:
            source = binary.source if binary is not None else name
            brings = source_version_of(update.candidate, binary)
        if brings is not None and _version(brings) is not None:
            reaches.setdefault(source, []).append((name, brings))
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
    unjudged = {
        fix.vulnerability: f"{source} {version} is not a Debian version"
        for source, version in sorted(odd.items())
        for feed in feeds
        for release in releases
        for fix in feed.fixes_for(release, source)
    }
    found.sort(key=lambda v: (v.vulnerability, v.source))
    return HostMatch(
        tuple(found),
        {name: tuple(sorted(set(v))) for name, v in sorted(fixes_by_update.items())},
        unjudged=unjudged,
    )
