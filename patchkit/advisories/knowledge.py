"""Everything patchkit knows about vulnerabilities at one moment, and the facts of one CVE (pure).

The ledger hands the planner, the audit and the reports one :class:`Knowledge`: the current
tracker and OSV feeds (the fixes per release and source package), the KEV catalog and the
EPSS scores. :meth:`Knowledge.facts` folds what they say of one CVE into :class:`CveFacts`, the
values severity rules test and previews show.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from functools import cached_property

from patchkit.advisories.types import (
    AdvisoryFeed,
    Cvss,
    EpssScore,
    EpssScores,
    Feed,
    KevCatalog,
    KevEntry,
    Release,
    Urgency,
)

# The tracker's urgencies and Ubuntu's priorities, from worst to mildest; "not yet assigned"
# and "untriaged" say nothing and rank last.
URGENCY_ORDER: tuple[Urgency, ...] = (
    Urgency.CRITICAL,
    Urgency.HIGH,
    Urgency.MEDIUM,
    Urgency.LOW,
    Urgency.NEGLIGIBLE,
    Urgency.UNIMPORTANT,
    Urgency.END_OF_LIFE,
    Urgency.NOT_YET_ASSIGNED,
    Urgency.UNTRIAGED,
)


@dataclass(frozen=True, slots=True)
class CveFacts:
    """What the loaded feeds say of one CVE."""

    cve: str
    cvss: Cvss | None = None  # the highest-scoring vector of the newest CVSS version given
    kev: KevEntry | None = None
    epss: EpssScore | None = None
    urgency: Urgency | None = None  # the worst the feeds give, over all packages and releases
    published: datetime | None = None  # the earliest publication date a record gives
    description: str = ""

    @property
    def known_exploited(self) -> bool:
        return self.kev is not None


def _cvss_rank(cvss: Cvss) -> tuple[int, float]:
    major = int(cvss.version.split(".", 1)[0]) if cvss.version[:1].isdigit() else 0
    return (major, cvss.base_score)


@dataclass(frozen=True)
class Knowledge:
    """The loaded advisory data: tracker/OSV feeds, the KEV catalog, the EPSS scores."""

    feeds: Sequence[AdvisoryFeed] = ()
    kev: KevCatalog | None = None
    epss: EpssScores | None = None
    _cache: dict[str, CveFacts] = field(default_factory=dict, compare=False, repr=False)

    @property
    def empty(self) -> bool:
        return not self.feeds and self.kev is None and self.epss is None

    def of_releases(self, releases: Collection[Release]) -> Knowledge:
        """This knowledge with only the fixes of ``releases`` (what ``Ledger.advisories``
        reads for them); each feed still covers every release it speaks of."""
        wanted = frozenset(releases)
        feeds = tuple(
            replace(
                feed,
                fixes=tuple(f for f in feed.fixes if f.release in wanted),
                covered=feed.releases(),
            )
            for feed in self.feeds
        )
        return Knowledge(feeds=feeds, kev=self.kev, epss=self.epss)  # facts made anew

    def sources(self) -> tuple[Feed, ...]:
        """The feeds this knowledge was made from, in the order: tracker/OSV, KEV, EPSS."""
        found = [feed.feed for feed in self.feeds]
        if self.kev is not None:
            found.append(self.kev.feed)
        if self.epss is not None:
            found.append(self.epss.feed)
        return tuple(found)

    @cached_property
    def has_cvss(self) -> bool:
        """Whether any advisory gives a CVSS vector (the tracker's JSON never does)."""
        return any(a.cvss for feed in self.feeds for a in feed.advisories)

    @cached_property
    def _urgencies(self) -> dict[str, Urgency]:
        worst: dict[str, Urgency] = {}
        for feed in self.feeds:
            for fix in feed.fixes:
                if fix.urgency is None:
                    continue
                have = worst.get(fix.vulnerability)
                if have is None or URGENCY_ORDER.index(fix.urgency) < URGENCY_ORDER.index(have):
                    worst[fix.vulnerability] = fix.urgency
        return worst

    def facts(self, cve: str) -> CveFacts:
        """Everything known of ``cve``; a CVE no feed names gets facts with nothing set."""
        cached = self._cache.get(cve)
        if cached is not None:
            return cached
        cvss: Cvss | None = None
        published: datetime | None = None
        description = ""
        for feed in self.feeds:
            for advisory in feed.advisories_for(cve):
                for vector in advisory.cvss:
                    if cvss is None or _cvss_rank(vector) > _cvss_rank(cvss):
                        cvss = vector
                if advisory.published is not None and (
                    published is None or advisory.published < published
                ):
                    published = advisory.published
                if not description and advisory.description:
                    description = advisory.description
        facts = CveFacts(
            cve=cve,
            cvss=cvss,
            kev=self.kev.entry(cve) if self.kev is not None else None,
            epss=self.epss.score(cve) if self.epss is not None else None,
            urgency=self._urgencies.get(cve),
            published=published,
            description=description,
        )
        self._cache[cve] = facts
        return facts
