"""The value types of advisory data: feeds, per-release fixes, CVSS, KEV entries, EPSS scores.

Readers (``tracker``, ``osv``, ``kev``, ``epss``) build these from files and return them whole;
nothing here reads a file or the clock. The question a matcher asks — "for source package P on
release R, which vulnerabilities, and from which version are they fixed" — is
:meth:`AdvisoryFeed.fixes_for`, a dictionary look-up.
"""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass, field
from datetime import date, datetime
from functools import cached_property

CVE_ID = re.compile(r"CVE-\d{4}-\d{4,19}\Z")  # the pattern of KEV's schema


class FeedKind(enum.StrEnum):
    """The advisory formats patchkit reads (the values are the names users and the ledger see)."""

    DEBIAN_TRACKER = "debian-tracker"
    OSV = "osv"
    KEV = "kev"
    EPSS = "epss"


class FeedDating(enum.StrEnum):
    """Where a feed's date comes from: the tracker's JSON carries none of its own."""

    STATED = "stated"  # the file says when it was made (KEV dateReleased, EPSS score_date)
    NEWEST_RECORD = "newest-record"  # OSV: the latest ``modified`` among its records
    FILE_TIME = "file-time"  # the file's modification time (``curl -R`` keeps the server's)


class Distro(enum.StrEnum):
    """The distributions whose advisories patchkit reads."""

    DEBIAN = "debian"
    UBUNTU = "ubuntu"


class FixStatus(enum.StrEnum):
    """What a feed says of one vulnerability in one source package on one release."""

    FIXED = "fixed"  # fixed from ``fixed_version`` on; older versions are affected
    NOT_AFFECTED = "not-affected"  # no version of the release is (the tracker's fixed version 0)
    OPEN = "open"  # affected, and no fixed version exists for the release (yet)
    UNDETERMINED = "undetermined"  # the security team has not decided yet


class Urgency(enum.StrEnum):
    """The Debian tracker's urgencies, and Ubuntu's priorities (OSV severity type ``Ubuntu``).

    One vocabulary, so that a policy rule ``urgency: high`` means the same on both.
    """

    CRITICAL = "critical"  # Ubuntu only
    HIGH = "high"
    MEDIUM = "medium"
    LOW = "low"
    NEGLIGIBLE = "negligible"  # Ubuntu only
    UNIMPORTANT = "unimportant"  # Debian only
    END_OF_LIFE = "end-of-life"  # Debian only: the package is no longer supported there
    NOT_YET_ASSIGNED = "not yet assigned"  # Debian
    UNTRIAGED = "untriaged"  # Ubuntu


class Scope(enum.StrEnum):
    """The tracker's scope of an issue: reachable over the network, or only locally."""

    REMOTE = "remote"
    LOCAL = "local"


@dataclass(frozen=True, order=True, slots=True)
class Release:
    """A release as a feed names it: the tracker by codename, OSV by number.

    ``Release(DEBIAN, "bookworm")`` from the tracker, ``Release(DEBIAN, "12")`` and
    ``Release(UBUNTU, "22.04")`` from OSV; ``variant`` is Ubuntu's ``pro`` or
    ``pro:fips-updates`` and empty for the main archive. The reader does not translate numbers
    to codenames (that table goes stale); a host knows both, and asks with each.
    """

    distro: Distro
    name: str
    variant: str = ""

    def __str__(self) -> str:
        parts = [self.distro.value, *(p for p in self.variant.split(":") if p), self.name]
        return ":".join(parts)


@dataclass(frozen=True, slots=True)
class Cvss:
    """A CVSS vector with the base score the ``cvss`` library computes for it."""

    version: str  # "2.0", "3.0", "3.1" or "4.0"
    vector: str
    base_score: float


@dataclass(frozen=True, slots=True)
class TrackerNotes:
    """What the Debian tracker adds to a release's status; none of it changes the status."""

    repositories: tuple[tuple[str, str], ...] = ()  # (suite, version in it), e.g. bookworm-security
    no_dsa: str | None = None  # the <no-dsa> note: no advisory will be issued for it
    no_dsa_reason: str | None = None  # "ignored" or "postponed" when given
    next_point_update: bool = False  # fixed in the release's next point release


@dataclass(frozen=True, slots=True)
class PackageFix:
    """One vulnerability in one source package on one release, and from which version it is fixed.

    ``vulnerability`` is the CVE (or the feed's own id when a record names no CVE); ``advisory``
    is the record it came from (the CVE for the tracker, the OSV id). ``fixed_version`` is the
    feed's: a Debian version when FIXED, ``"0"`` when NOT_AFFECTED, None when OPEN or
    UNDETERMINED, so that ``versions.is_fixed(installed, fix.fixed_version)`` holds for all.
    An OSV range that starts after the first version gives ``introduced``; versions before it
    are not affected. A feed may give several ranges, so several fixes, for one key.
    """

    vulnerability: str
    package: str
    release: Release
    status: FixStatus
    fixed_version: str | None = None
    introduced: str | None = None
    urgency: Urgency | None = None
    urgency_by_nvd: bool = False  # the tracker's "**": NVD's rating, not the security team's
    advisory: str = ""
    notes: TrackerNotes | None = None

    def sort_key(self) -> tuple[str, ...]:
        """A feed's order of fixes: release, package, vulnerability, advisory, introduced."""
        release = self.release
        return (
            release.distro,
            release.name,
            release.variant,
            self.package,
            self.vulnerability,
            self.advisory,
            self.introduced or "",
        )


@dataclass(frozen=True, slots=True)
class Advisory:
    """A vulnerability record: what it is, how bad, and which CVEs it concerns."""

    id: str
    cves: tuple[str, ...]
    description: str = ""
    scope: Scope | None = None
    cvss: tuple[Cvss, ...] = ()
    published: datetime | None = None
    modified: datetime | None = None
    aliases: tuple[str, ...] = ()  # other ids of it: DSA-…, USN-…, GHSA-…
    debian_bugs: tuple[int, ...] = ()


@dataclass(frozen=True, slots=True)
class KevEntry:
    """An entry of CISA's Known Exploited Vulnerabilities catalog."""

    cve: str
    vendor_project: str
    product: str
    name: str
    description: str
    required_action: str
    date_added: date
    due_date: date
    known_ransomware: bool  # "Known" in knownRansomwareCampaignUse
    cwes: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class EpssScore:
    """FIRST's EPSS: the probability of exploitation in the next 30 days, and its percentile."""

    cve: str
    epss: float
    percentile: float
    score_date: datetime


@dataclass(frozen=True)
class Feed:
    """One file read: its kind, where it came from, when it was made, and what it holds."""

    kind: FeedKind
    source: str  # the path as it was given
    sha256: str  # of the bytes read (for a directory, of its records' names and bytes)
    date: datetime  # timezone-aware
    dated_by: FeedDating
    records: int  # tracker: (package, CVE) pairs; OSV: records; KEV: entries; EPSS: rows
    cves: int  # distinct vulnerability ids
    version: str | None = None  # KEV catalogVersion, EPSS model_version
    ignored: int = 0  # OSV records withdrawn or about no Debian or Ubuntu package


@dataclass(frozen=True)
class AdvisoryFeed:
    """What a tracker or OSV file holds: the advisories, and the fixes per release and package.

    ``fixes`` is sorted by (release, package, vulnerability); look-ups build their index once.
    """

    feed: Feed
    advisories: tuple[Advisory, ...]
    fixes: tuple[PackageFix, ...]
    # every release the feed speaks of, when ``fixes`` holds only some of its vulnerabilities
    # (an audit reads those it asks about); None: the releases of ``fixes``
    covered: frozenset[Release] | None = None

    @cached_property
    def _by_package(self) -> dict[tuple[Release, str], tuple[PackageFix, ...]]:
        index: dict[tuple[Release, str], list[PackageFix]] = {}
        for fix in self.fixes:
            index.setdefault((fix.release, fix.package), []).append(fix)
        return {key: tuple(value) for key, value in index.items()}

    @cached_property
    def _by_cve(self) -> dict[str, tuple[Advisory, ...]]:
        index: dict[str, list[Advisory]] = {}
        for advisory in self.advisories:
            for cve in advisory.cves:
                index.setdefault(cve, []).append(advisory)
        return {key: tuple(value) for key, value in index.items()}

    def fixes_for(self, release: Release, package: str) -> tuple[PackageFix, ...]:
        """The vulnerabilities the feed knows in source ``package`` on ``release``."""
        return self._by_package.get((release, package), ())

    def releases(self) -> frozenset[Release]:
        """Every release the feed speaks of."""
        return self._releases

    @cached_property
    def _releases(self) -> frozenset[Release]:
        if self.covered is not None:
            return self.covered
        return frozenset(release for release, _ in self._by_package)

    def advisories_for(self, cve: str) -> tuple[Advisory, ...]:
        """The records about ``cve`` (OSV may hold several: DSA-…, DEBIAN-CVE-…, USN-…)."""
        return self._by_cve.get(cve, ())


@dataclass(frozen=True)
class KevCatalog:
    """The KEV catalog read from one file."""

    feed: Feed
    title: str
    entries: tuple[KevEntry, ...] = field(default=())

    @cached_property
    def _by_cve(self) -> dict[str, KevEntry]:
        return {entry.cve: entry for entry in self.entries}

    def entry(self, cve: str) -> KevEntry | None:
        """The catalog's entry for ``cve``, if it is a known exploited vulnerability."""
        return self._by_cve.get(cve)


@dataclass(frozen=True)
class EpssScores:
    """One day's EPSS scores read from one file."""

    feed: Feed
    model_version: str | None
    scores: tuple[EpssScore, ...] = field(default=())

    @cached_property
    def _by_cve(self) -> dict[str, EpssScore]:
        return {score.cve: score for score in self.scores}

    def score(self, cve: str) -> EpssScore | None:
        """The EPSS score of ``cve``, if the file has one."""
        return self._by_cve.get(cve)
