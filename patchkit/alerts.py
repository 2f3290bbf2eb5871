"""New-patch alerts: which updates an assessment found that the hosts did not have pending
before, and which CVEs they fix (pure: the ``new-updates`` webhook event is made from this).

Two steps, so that a caller loads advisories only when something is new:

- :func:`compare` diffs each host's new finding with its *previous reachable* finding. An update
  (package, candidate) is new on a host when that host did not have it pending then; a
  candidate that moved (1.1 → 1.2) is a new update.
- :func:`new_updates` groups the new updates over the hosts and adds the CVEs each fixes there,
  from one ``match_host`` per distinct (package set, release, pending updates).

What counts as "before":

- A host with no reachable finding before this one is a **baseline**: its pending updates are
  what it has, not what just appeared, so they are not new (a first assessment of 5,000 hosts
  pages no one). The event counts such hosts.
- A host **unreachable now** says nothing about its updates: it is skipped (counted), and its
  last reachable finding stays the reference for the next assessment that reaches it.
- A host **unreachable before** (one or more assessments) is compared with the last assessment
  that reached it: what appeared during the outage is new, what was already pending is not.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from patchkit.advisories.fleet import FleetMatcher
from patchkit.advisories.knowledge import CveFacts, Knowledge
from patchkit.model import Finding, PendingUpdate
from patchkit.policy.model import NotifyEvent

EVENT: NotifyEvent = "new-updates"
HOST_CAP = 50  # host names listed per update in the event; the count is always whole


@dataclass(frozen=True, slots=True)
class HostNews:
    """The updates one host has pending now that it did not have at its previous reachable
    assessment."""

    finding: Finding  # the new finding (its software and release are what the CVEs match)
    updates: tuple[PendingUpdate, ...]


@dataclass(frozen=True)
class Comparison:
    """One assessment against the one before it, host by host (see the module docstring)."""

    news: tuple[HostNews, ...]  # hosts with at least one new update, by name
    baseline: tuple[str, ...] = ()  # reached for the first time: nothing counts as new
    unreachable: tuple[str, ...] = ()  # not reached now: nothing known, nothing new

    @property
    def anything_new(self) -> bool:
        return bool(self.news)


@dataclass(frozen=True, slots=True)
class FixedCve:
    """A CVE a new update fixes on at least one of the hosts it appeared on."""

    cve: str
    cvss: float | None = None  # the base score patchkit rates by (highest, newest version)
    kev: bool = False  # in CISA's Known Exploited Vulnerabilities catalog
    epss: float | None = None  # probability of exploitation in the next 30 days

    @classmethod
    def of(cls, facts: CveFacts) -> FixedCve:
        return cls(
            cve=facts.cve,
            cvss=facts.cvss.base_score if facts.cvss is not None else None,
            kev=facts.known_exploited,
            epss=facts.epss.epss if facts.epss is not None else None,
        )


def _cve_order(cve: FixedCve) -> tuple[bool, float, str]:
    return (not cve.kev, -(cve.cvss if cve.cvss is not None else -1.0), cve.cve)


@dataclass(frozen=True)
class NewUpdate:
    """One update (package=candidate) that appeared, the hosts it appeared on, what it fixes."""

    package: str
    candidate: str
    hosts: tuple[str, ...]  # sorted
    cves: tuple[FixedCve, ...] = ()  # known exploited first, then by CVSS, then by id

    @property
    def kev(self) -> bool:
        return any(c.kev for c in self.cves)

    @property
    def cvss(self) -> float | None:
        """The highest CVSS base score among its CVEs."""
        return max((c.cvss for c in self.cves if c.cvss is not None), default=None)


def _update_order(update: NewUpdate) -> tuple[bool, float, str, str]:
    score = update.cvss if update.cvss is not None else -1.0
    return (not update.kev, -score, update.package, update.candidate)


@dataclass(frozen=True)
class NewUpdates:
    """Everything one assessment found new: the content of a ``new-updates`` event."""

    updates: tuple[NewUpdate, ...]  # fixing a known exploited CVE first, then by CVSS, package
    hosts: int  # hosts with at least one new update
    baseline_hosts: int = 0
    unreachable_hosts: int = 0

    @property
    def kev_hits(self) -> int:
        """How many of the new updates fix a known exploited CVE."""
        return sum(1 for u in self.updates if u.kev)

    @property
    def empty(self) -> bool:
        return not self.updates


def compare(previous: Mapping[str, Finding], current: Iterable[Finding]) -> Comparison:
    """``current`` (one assessment) against ``previous``: per host, its newest *reachable*
    finding from before (patchkit.ledger's ``latest_reachable_findings``), absent when the
    host was never reached."""
    news: list[HostNews] = []
    baseline: list[str] = []
    unreachable: list[str] = []
    for finding in sorted(current, key=lambda f: f.host):
        if not finding.reachable:
            unreachable.append(finding.host)
            continue
        before = previous.get(finding.host)
        if before is None:
            baseline.append(finding.host)
            continue
        had = {(u.package, u.candidate) for u in before.updates}
        fresh = tuple(u for u in finding.updates if (u.package, u.candidate) not in had)
        if fresh:
            news.append(HostNews(finding, fresh))
    return Comparison(tuple(news), tuple(baseline), tuple(unreachable))


def new_updates(
    comparison: Comparison, knowledge: Knowledge, matcher: FleetMatcher | None = None
) -> NewUpdates:
    """The new updates of ``comparison`` over all hosts, each with the CVEs it fixes where it
    appeared (none without advisories, or on a host whose software was not collected)."""
    matcher = matcher if matcher is not None else FleetMatcher(knowledge)
    hosts: dict[tuple[str, str], list[str]] = {}
    fixes: dict[tuple[str, str], set[str]] = {}
    for item in comparison.news:
        found = matcher.match(item.finding)
        by_update = found.fixes_by_update if found is not None else {}
        for update in item.updates:
            key = (update.package, update.candidate)
            hosts.setdefault(key, []).append(item.finding.host)
            # the matcher names a package without its architecture qualifier (libc6:i386)
            fixes.setdefault(key, set()).update(by_update.get(update.package.split(":", 1)[0], ()))
    updates = [
        NewUpdate(key[0], key[1], tuple(sorted(set(names))), _cves(knowledge, fixes[key]))
        for key, names in hosts.items()
    ]
    return NewUpdates(
        updates=tuple(sorted(updates, key=_update_order)),
        hosts=len(comparison.news),
        baseline_hosts=len(comparison.baseline),
        unreachable_hosts=len(comparison.unreachable),
    )


def _cves(knowledge: Knowledge, ids: Iterable[str]) -> tuple[FixedCve, ...]:
    return tuple(sorted((FixedCve.of(knowledge.facts(c)) for c in ids), key=_cve_order))


def event_data(found: NewUpdates, policy: str, host_cap: int = HOST_CAP) -> dict[str, Any]:
    """The ``new-updates`` event's facts as JSON (notify adds ``event``, ``at`` and ``text``).

    Each update lists at most ``host_cap`` host names (the first by name) and always the whole
    ``host_count``, so that an event about 50,000 hosts stays a few kilobytes.
    """
    return {
        "policy": policy,
        "new_updates": len(found.updates),
        "hosts": found.hosts,
        "kev_hits": found.kev_hits,
        "baseline_hosts": found.baseline_hosts,
        "unreachable_hosts": found.unreachable_hosts,
        "host_cap": host_cap,
        "updates": [_update_data(u, host_cap) for u in found.updates],
    }


def _update_data(update: NewUpdate, host_cap: int) -> dict[str, Any]:
    return {
        "package": update.package,
        "candidate": update.candidate,
        "hosts": list(update.hosts[:host_cap]),
        "host_count": len(update.hosts),
        "cves": [_cve_data(c) for c in update.cves],
    }


def _cve_data(cve: FixedCve) -> dict[str, Any]:
    return {"cve": cve.cve, "cvss": cve.cvss, "kev": cve.kev, "epss": cve.epss}


def summary(found: NewUpdates) -> str:
    """One line for the terminal and the log: what is new, without the list."""
    line = f"{len(found.updates)} new update(s) on {found.hosts} host(s)"
    if found.kev_hits:
        line += f", {kev_phrase(found.kev_hits)}"
    return line


def kev_phrase(hits: int) -> str:
    """``1 fixes a known exploited CVE``, ``2 fix …``: the part of a line that pages someone."""
    return f"{hits} {'fixes' if hits == 1 else 'fix'} a known exploited CVE"
