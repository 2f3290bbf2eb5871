"""Matching a whole fleet: one ``match_host`` per distinct host image, not per host (pure).

Hosts built from one image share a package set (the same object, interned by digest), a release
and usually their pending updates; a fleet of 50,000 hosts from 20 images is matched some 20
times. The planner, the compliance report, the CVE audit and the new-update alerts all ask
through :class:`FleetMatcher`, so that they agree on every host.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from typing import Protocol

from patchkit.advisories.knowledge import Knowledge
from patchkit.advisories.matching import HostMatch, Installed, Matcher, Pending, release_keys
from patchkit.advisories.types import Release


class Assessed(Protocol):
    """What the matcher reads of a finding (patchkit.model.Finding)."""

    @property
    def distribution(self) -> str | None: ...
    @property
    def release(self) -> str | None: ...
    @property
    def release_version(self) -> str | None: ...
    @property
    def updates(self) -> tuple[Pending, ...]: ...
    @property
    def software(self) -> _Software | None: ...


class _Software(Protocol):
    @property
    def digest(self) -> str: ...
    @property
    def packages(self) -> tuple[Installed, ...]: ...


class FleetMatcher:
    """``match_host`` for each finding, computed once per (package set, release, pending)."""

    def __init__(self, knowledge: Knowledge, only: Collection[str] | None = None) -> None:
        """``only``: the vulnerabilities to judge (the CVEs an audit asks about); the matches
        then speak of no others. None: every vulnerability the feeds know."""
        self.knowledge = knowledge
        # images share most source packages at the same versions: judged once for them all
        self._matcher = Matcher(knowledge.feeds, only)
        self._done: dict[
            tuple[str, tuple[Release, ...], tuple[tuple[str, str], ...]], HostMatch
        ] = {}
        # the ledger hands hosts of an image the same package set and updates objects: found
        # by identity without building the key above for each of 50,000 hosts (the objects
        # are kept with the answer, so that an id is never another object's)
        self._same: dict[tuple[int, int, str | None, str | None, str | None], _Same] = {}

    @property
    def active(self) -> bool:
        """Whether there is anything to match against (a tracker or OSV feed)."""
        return bool(self.knowledge.feeds)

    def releases(self, finding: Assessed) -> tuple[Release, ...]:
        return release_keys(finding.distribution or "", finding.release, finding.release_version)

    def match(self, finding: Assessed) -> HostMatch | None:
        """The host's vulnerabilities; None when its software was not collected or no feed is
        loaded (then nothing can be said, which is not the same as "not affected")."""
        software = finding.software
        if software is None or not self.active:
            return None
        updates = finding.updates
        same = (
            id(software),
            id(updates),
            finding.distribution,
            finding.release,
            finding.release_version,
        )
        seen = self._same.get(same)
        if seen is not None and seen.software is software and seen.updates is updates:
            return seen.match
        releases = self.releases(finding)
        pending = tuple((u.package, u.candidate) for u in updates)
        key = (software.digest, releases, pending)
        found = self._done.get(key)
        if found is None:
            found = self._matcher.match(releases, software.packages, updates)
            self._done[key] = found
        self._same[same] = _Same(software, updates, found)
        return found


@dataclass(frozen=True, slots=True)
class _Same:
    software: _Software
    updates: tuple[Pending, ...]
    match: HostMatch
