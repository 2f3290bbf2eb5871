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
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import cached_property
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
        states = [v.exposure for v in self.affecting(vulnerability)]
        return min(states, key=_WORST_FIRST.index) if states else Exposure.NOT_AFFECTED

    def affecting(self, vulnerability: str) -> tuple[Vulnerable, ...]:
        """The entries of ``vulnerable`` for ``vulnerability`` (one per source package it is
        in), in their order there; empty when it does not affect the host."""
        return self._by_vulnerability.get(vulnerability, ())

    @cached_property
    def _by_vulnerability(self) -> Mapping[str, tuple[Vulnerable, ...]]:
        # hosts of an image share one HostMatch: a fleet asking about a CVE host by host would
        # otherwise scan the image's thousands of entries once per host
        index: dict[str, list[Vulnerable]] = {}
        for v in self.vulnerable:
            index.setdefault(v.vulnerability, []).append(v)
        return {k: tuple(v) for k, v in index.items()}


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


class _Built(Protocol):
    """What ``updates_reaching`` reads of an installed binary (InstalledPackage)."""

    @property
    def name(self) -> str: ...
    @property
    def arch(self) -> str: ...
    @property
    def source(self) -> str: ...


def updates_reaching(
    sources: Collection[str], package_sets: Iterable[Iterable[_Built]]
) -> frozenset[str]:
    """The package names a pending update of one of ``sources`` may carry on hosts with these
    package sets, as :meth:`Matcher.match` files updates under sources: each installed binary
    built from one of them (a signed kernel's under ``linux``), and the source names
    themselves (an update of a binary not installed is filed under its own name); each plain
    and qualified with every architecture the sets hold (``libc6:i386``)."""
    wanted = frozenset(sources)
    names = set(wanted)
    archs: set[str] = set()
    for packages in package_sets:
        for package in packages:
            archs.add(package.arch)
            source = "linux" if _SIGNED_KERNEL.match(package.source) else package.source
            if source in wanted:
                names.add(package.name.split(":", 1)[0])
    return frozenset(names | {f"{name}:{arch}" for name in names for arch in archs})


class _Versions:
    """Debian versions read and compared once each: python-debian does it in pure Python, and a
    fleet's hosts repeat the same few thousand versions against the same fixed versions."""

    def __init__(self) -> None:
        self._read: dict[str, Version | None] = {}
        self._at_least: dict[tuple[str, str], bool] = {}

    def read(self, text: str) -> Version | None:
        """``text`` as a Debian version; None when it is none (a host reported something
        odd: what rests on it cannot be judged)."""
        try:
            return self._read[text]
        except KeyError:
            pass
        try:
            version: Version | None = parse_version(text)
        except ValueError:
            version = None
        self._read[text] = version
        return version

    def parse(self, text: str) -> Version:
        """``text`` as a Debian version; ValueError if it is not one (as ``parse_version``)."""
        version = self.read(text)
        if version is None:
            return parse_version(text)  # raises, naming the text
        return version

    def at_least(self, one: str, other: str) -> bool:
        """Whether version ``one`` >= version ``other`` (ValueError for a non-version)."""
        key = (one, other)
        found = self._at_least.get(key)
        if found is None:
            found = self._at_least[key] = bool(self.parse(one) >= self.parse(other))
        return found


def _verdict(
    fix: PackageFix, installed: str, reachable: str | None, versions: _Versions
) -> Exposure:
    """One feed's verdict on one vulnerability, given the installed source version and the
    highest source version a pending update reaches (None: no update of this source)."""
    if fix.status is FixStatus.NOT_AFFECTED or fix.fixed_version == NOT_AFFECTED:
        return Exposure.NOT_AFFECTED
    if (
        fix.introduced is not None
        and fix.introduced != "0"
        and not versions.at_least(installed, fix.introduced)
    ):
        return Exposure.NOT_AFFECTED
    if fix.status is not FixStatus.FIXED or fix.fixed_version is None:
        return Exposure.NO_FIX_YET
    if versions.at_least(installed, fix.fixed_version):
        return Exposure.NOT_AFFECTED
    if reachable is not None and versions.at_least(reachable, fix.fixed_version):
        return Exposure.FIX_PENDING
    return Exposure.NO_FIX_HERE


# What a source package's verdicts depend on: the host's release names, the source, its
# installed version, and the (binary, source version) pairs its pending updates bring.
_SourceKey = tuple[tuple[Release, ...], str, str, tuple[tuple[str, str], ...]]


class Matcher:
    """``match_host`` against one sequence of feeds, remembering what it worked out.

    Hosts built from different images still share most of their source packages at the same
    versions: each (releases, source, installed version, updates of it) is judged once, and
    each pair of versions compared once, whichever host asks. The results are those of
    ``match_host``, which is this class used once.
    """

    def __init__(self, feeds: Sequence[AdvisoryFeed], only: Collection[str] | None = None) -> None:
        """``only``: judge just these vulnerabilities (an audit of a few CVEs), as if the
        feeds knew no others; None: all of them."""
        self.feeds = tuple(feeds)
        self._versions = _Versions()
        self._covered = frozenset(r for feed in self.feeds for r in feed.releases())
        self._judged: dict[_SourceKey, tuple[Vulnerable, ...]] = {}
        self._only = frozenset(only) if only is not None else None
        # the source packages the vulnerabilities asked about are in: no other is looked at
        self._touched = (
            frozenset(
                fix.package
                for f in self.feeds
                for fix in f.fixes
                if fix.vulnerability in self._only
            )
            if self._only is not None
            else None
        )

    def match(
        self,
        releases: Sequence[Release],
        installed: Iterable[Installed],
        pending: Iterable[Pending],
    ) -> HostMatch:
        """The vulnerabilities of one host (see the module's docstring for the states)."""
        releases = tuple(releases)
        if not any(release in self._covered for release in releases):
            return HostMatch((), {}, covered=False)
        versions = self._versions
        binaries: dict[str, Installed] = {}
        sources: dict[str, str] = {}  # source → its oldest installed version (the worst case)
        odd: dict[str, str] = {}  # source → a version of it that is no Debian version
        for package in installed:
            binaries[package.name.split(":", 1)[0]] = package
            source, version = _tracked_as(package)
            if versions.read(version) is None:
                odd.setdefault(source, version)
                continue
            known = sources.get(source)
            if known is None or not versions.at_least(version, known):
                # a source half upgraded (libssl3 new, openssl old) is as exposed as its oldest
                sources[source] = version
        reaches: dict[str, list[tuple[str, str]]] = {}  # source → [(binary, source version)]
        for update in pending:
            name = update.package.split(":", 1)[0]
            binary = binaries.get(name)
            brings: str | None
            if binary is not None and _SIGNED_KERNEL.match(binary.source):
                source, brings = "linux", update.candidate  # as _tracked_as files it
            else:
                source = binary.source if binary is not None else name
                brings = source_version_of(update.candidate, binary)
            if brings is not None and versions.read(brings) is not None:
                reaches.setdefault(source, []).append((name, brings))
        found: list[Vulnerable] = []
        for source, version in sorted(sources.items()):
            if self._touched is not None and source not in self._touched:
                continue
            key = (releases, source, version, tuple(reaches.get(source, ())))
            judged = self._judged.get(key)
            if judged is None:
                judged = self._judged[key] = self._judge(*key)
            found.extend(judged)
        fixes_by_update: dict[str, set[str]] = {}
        for v in found:
            for name in v.updates:
                fixes_by_update.setdefault(name, set()).add(v.vulnerability)
        unjudged = {
            fix.vulnerability: f"{source} {version} is not a Debian version"
            for source, version in sorted(odd.items())
            for feed in self.feeds
            for release in releases
            for fix in feed.fixes_for(release, source)
            if self._only is None or fix.vulnerability in self._only
        }
        found.sort(key=lambda v: (v.vulnerability, v.source))
        return HostMatch(
            tuple(found),
            {name: tuple(sorted(v)) for name, v in sorted(fixes_by_update.items())},
            unjudged=unjudged,
        )

    def _judge(
        self,
        releases: tuple[Release, ...],
        source: str,
        version: str,
        updates: tuple[tuple[str, str], ...],
    ) -> tuple[Vulnerable, ...]:
        """The vulnerabilities of ``source`` at ``version`` with these updates of it pending."""
        versions = self._versions
        by_vulnerability: dict[str, list[PackageFix]] = {}
        only = self._only
        for feed in self.feeds:
            for release in releases:
                for fix in feed.fixes_for(release, source):
                    if only is None or fix.vulnerability in only:
                        by_vulnerability.setdefault(fix.vulnerability, []).append(fix)
        best = max((v for _, v in updates), key=versions.parse, default=None)
        found: list[Vulnerable] = []
        for vulnerability, fixes in sorted(by_vulnerability.items()):
            verdicts = [(_verdict(fix, version, best, versions), fix) for fix in fixes]
            exposure, fix = min(verdicts, key=lambda pair: _WORST_FIRST.index(pair[0]))
            if not exposure.affected:
                continue
            fixed = fix.fixed_version if fix.status is FixStatus.FIXED else None
            bringing: tuple[str, ...] = ()
            if exposure is Exposure.FIX_PENDING and fixed is not None:
                bringing = tuple(sorted(n for n, v in updates if versions.at_least(v, fixed)))
            urgency = next((f.urgency for f in fixes if f.urgency is not None), None)
            found.append(
                Vulnerable(vulnerability, source, version, exposure, fixed, bringing, urgency)
            )
        return tuple(found)


def match_host(
    releases: Sequence[Release],
    installed: Iterable[Installed],
    pending: Iterable[Pending],
    feeds: Sequence[AdvisoryFeed],
) -> HostMatch:
    """The vulnerabilities of one host (see the module's docstring for the states)."""
    return Matcher(feeds).match(releases, installed, pending)
