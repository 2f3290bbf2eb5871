"""The Debian Security Tracker's JSON (security-tracker.debian.org/tracker/data/json), read.

Its shape, as ``bin/tracker_service.py`` of the tracker writes it (null fields dropped)::

    {source package: {CVE-… or TEMP-…: {
        "description": str, "scope": "remote"|"local", "debianbug": int,
        "releases": {codename: {
            "status": "resolved"|"open"|"undetermined",
            "repositories": {suite: version},   # bookworm, bookworm-security, …
            "fixed_version": str,               # only when resolved; "0": never affected
            "urgency": str,                     # "low**": NVD's rating, not the team's
            "nodsa": str, "nodsa_reason": str, "next_point_update": true}}}}}

The file carries no date of its own: the feed is dated by the file's modification time.
"""

from __future__ import annotations

import enum
import re
import sys
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import NamedTuple

from patchkit.advisories.files import MAX_BYTES, bulk, decode_json, read_file
from patchkit.advisories.problems import Fields, Problems, describe
from patchkit.advisories.types import (
    Advisory,
    AdvisoryFeed,
    Distro,
    Feed,
    FeedDating,
    FeedKind,
    FixStatus,
    PackageFix,
    Release,
    Scope,
    TrackerNotes,
    Urgency,
)
from patchkit.advisories.versions import NOT_AFFECTED, is_version

ISSUE_ID = re.compile(r"(CVE-\d{4}-\d{4,}|TEMP-\d+-[0-9A-Fa-f]+)\Z")
NVD_MARK = "**"  # appended by the tracker to an urgency it took from NVD's severity


class TrackerStatus(enum.StrEnum):
    """The tracker's own status words, before they become a FixStatus."""

    RESOLVED = "resolved"
    OPEN = "open"
    UNDETERMINED = "undetermined"


def read_urgency(fields: Fields, key: str) -> tuple[Urgency | None, bool]:
    """Field ``key`` as an urgency, and whether the tracker took it from NVD (``low**``)."""
    text = fields.text(key)
    if text is None:
        return None, False
    by_nvd = text.endswith(NVD_MARK)
    return fields.value_of(key, text.removesuffix(NVD_MARK), Urgency), by_nvd


@dataclass
class _Found:
    """What the packages say of one CVE, merged (the tracker lists a CVE under each package)."""

    description: str = ""
    scope: Scope | None = None
    bugs: set[int] = field(default_factory=set)


class _State(NamedTuple):
    status: FixStatus
    fixed: str | None
    urgency: Urgency | None
    by_nvd: bool
    notes: TrackerNotes


_STATUSES = {status.value: status for status in TrackerStatus}
_URGENCIES = {
    **{urgency.value: (urgency, False) for urgency in Urgency},
    **{urgency.value + NVD_MARK: (urgency, True) for urgency in Urgency},
}
_NOTE_KEYS = ("nodsa", "nodsa_reason")


def _fix_status(status: TrackerStatus, fixed: str | None) -> FixStatus | None:
    """The status a release has; None when ``fixed_version`` contradicts the tracker's status."""
    if status is TrackerStatus.RESOLVED:
        if fixed is None:
            return None
        return FixStatus.NOT_AFFECTED if fixed == NOT_AFFECTED else FixStatus.FIXED
    if fixed is not None:
        return None
    return FixStatus.OPEN if status is TrackerStatus.OPEN else FixStatus.UNDETERMINED


def _well_formed(value: object) -> _State | None:
    """A release's entry when all of it is right, read without the checks' bookkeeping.

    Most of a tracker file is these entries, so this is the path that sets the reading time;
    anything it is unsure of returns None and is read again by ``_Reader.checked``.
    """
    if type(value) is not dict:
        return None
    stated = value.get("status")
    status = _STATUSES.get(stated) if type(stated) is str else None
    fixed = value.get("fixed_version")
    urgency = value.get("urgency")
    repositories = value.get("repositories", {})
    npu = value.get("next_point_update", False)
    if (
        status is None
        or not (
            fixed is None or (type(fixed) is str and (fixed == NOT_AFFECTED or is_version(fixed)))
        )
        or not (urgency is None or (type(urgency) is str and urgency in _URGENCIES))
        or type(repositories) is not dict
        or type(npu) is not bool
        or any(type(value.get(key, "")) is not str for key in _NOTE_KEYS)
        or any(type(v) is not str or not is_version(v) for v in repositories.values())
    ):
        return None
    fix_status = _fix_status(status, fixed)
    if fix_status is None:
        return None
    rating, by_nvd = _URGENCIES[urgency] if urgency is not None else (None, False)
    notes = TrackerNotes(
        repositories=tuple(sorted((sys.intern(s), v) for s, v in repositories.items())),
        no_dsa=value.get("nodsa"),
        no_dsa_reason=value.get("nodsa_reason") or None,
        next_point_update=npu,
    )
    return _State(fix_status, fixed, rating, by_nvd, notes)


class _Reader:
    def __init__(self, problems: Problems) -> None:
        self.problems = problems
        self.found: dict[str, _Found] = {}
        self.fixes: list[PackageFix] = []
        self.pairs = 0
        self._releases: dict[str, Release] = {}

    def document(self, data: object) -> None:
        if not isinstance(data, dict):
            self.problems.fail(
                f"not the Debian security tracker's JSON: expected an object of source packages,"
                f" found {describe(data)}"
            )
        # Each package's part of the parsed document is let go once read: the document and
        # what is made of it are not both held whole.
        for package in list(data):
            issues = data.pop(package)
            if not isinstance(issues, dict):
                found = describe(issues)
                self.problems.add(package, "", f"expected an object of CVEs, found {found}")
                continue
            package = sys.intern(package)
            for issue, body in issues.items():
                self.pairs += 1
                self.issue(package, issue, body)

    def issue(self, package: str, issue: str, body: object) -> None:
        record = f"{package}/{issue}"
        if not ISSUE_ID.match(issue):
            self.problems.add(record, "", "not a CVE-… or TEMP-… id")
            return
        fields = Fields(self.problems, record, "", body)
        found = self.found.setdefault(issue, _Found())
        found.description = found.description or (fields.text("description") or "")
        found.scope = found.scope or fields.choice("scope", Scope)
        bug = fields.integer("debianbug")
        if bug is not None:
            found.bugs.add(bug)
        releases = fields.child("releases", required=True)
        if releases is None:
            return
        for codename, value in releases.data.items():
            state = _well_formed(value)
            if state is None:  # something is wrong: the checked read says what
                state = self.checked(Fields(self.problems, record, releases.at(codename), value))
            if state is not None:
                self.fixes.append(
                    PackageFix(
                        vulnerability=issue,
                        package=package,
                        release=self.codename(codename),
                        status=state.status,
                        fixed_version=state.fixed,
                        urgency=state.urgency,
                        urgency_by_nvd=state.by_nvd,
                        advisory=issue,
                        notes=state.notes,
                    )
                )

    def checked(self, fields: Fields) -> _State | None:
        """A release's entry read field by field, each problem noted; None if it has any."""
        status = fields.choice("status", TrackerStatus, required=True)
        fixed = fields.text("fixed_version")
        urgency, by_nvd = read_urgency(fields, "urgency")
        notes = TrackerNotes(
            repositories=self.repositories(fields),
            no_dsa=fields.text("nodsa"),
            no_dsa_reason=fields.text("nodsa_reason") or None,
            next_point_update=bool(fields.flag("next_point_update")),
        )
        if fixed is not None and fixed != NOT_AFFECTED and not is_version(fixed):
            fields.problem("fixed_version", f"not a Debian version: {fixed!r}")
            return None
        if status is None:
            return None
        fix_status = _fix_status(status, fixed)
        if fix_status is None:
            if fixed is None:
                fields.problem("fixed_version", "missing, and status 'resolved' needs it")
            else:
                fields.problem(
                    "fixed_version", f"given for status {status.value!r}, which has none"
                )
            return None
        return _State(fix_status, fixed, urgency, by_nvd, notes)

    def repositories(self, fields: Fields) -> tuple[tuple[str, str], ...]:
        repositories = fields.child("repositories")
        if repositories is None:
            return ()
        found: list[tuple[str, str]] = []
        for suite, version in repositories.data.items():
            if not isinstance(version, str) or not is_version(version):
                repositories.problem(suite, f"expected a Debian version, found {describe(version)}")
                continue
            found.append((sys.intern(suite), version))
        return tuple(sorted(found))

    def codename(self, name: str) -> Release:
        release = self._releases.get(name)
        if release is None:
            release = self._releases[name] = Release(Distro.DEBIAN, sys.intern(name))
        return release


def read_tracker(path: Path, *, max_bytes: int = MAX_BYTES) -> AdvisoryFeed:
    """Read the tracker's JSON at ``path`` (gzip too); AdvisoryError lists what is wrong in it."""
    with bulk():
        return _read_tracker(path, max_bytes)


def _read_tracker(path: Path, max_bytes: int) -> AdvisoryFeed:
    problems = Problems(str(path))
    raw = read_file(path, problems, max_bytes=max_bytes)
    _, data = decode_json(raw.data, problems)
    problems.check()
    reader = _Reader(problems)
    reader.document(data)
    problems.check()
    advisories = tuple(
        Advisory(
            id=cve,
            cves=(cve,),
            description=found.description,
            scope=found.scope,
            debian_bugs=tuple(sorted(found.bugs)),
        )
        for cve, found in sorted(reader.found.items())
    )
    feed = Feed(
        kind=FeedKind.DEBIAN_TRACKER,
        source=str(path),
        sha256=raw.sha256,
        date=datetime.fromtimestamp(raw.mtime, UTC),
        dated_by=FeedDating.FILE_TIME,
        records=reader.pairs,
        cves=len(advisories),
    )
    fixes = sorted(reader.fixes, key=PackageFix.sort_key)
    return AdvisoryFeed(feed=feed, advisories=advisories, fixes=tuple(fixes))
