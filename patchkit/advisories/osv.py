"""OSV records (ossf.github.io/osv-schema) for Debian and Ubuntu: one file, a directory, a zip.

Read from each record: ``id``, ``modified`` (required by the schema), ``published``,
``withdrawn``, ``aliases`` and ``upstream`` (distributions name the CVEs they fix in
``upstream``), ``summary``/``details``, ``severity[]`` (CVSS_V2/V3/V4 vectors, scored here, and
Ubuntu's priority), and each ``affected[]`` whose ``package.ecosystem`` is ``Debian:<release>``
or ``Ubuntu:[Pro:…:]<YY.MM>[:LTS]``: its source package name, its ``ECOSYSTEM`` ranges
(``introduced``/``fixed`` pairs; ``"0"`` is before every version) and the tracker's urgency
that OSV's Debian records carry in ``ecosystem_specific``. Other ecosystems and GIT or SEMVER
ranges are not Debian versions and are left out; ``last_affected`` and ``limit`` events are
refused, as they name no fixed version to install.
"""

from __future__ import annotations

import re
import sys
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from patchkit.advisories import scoring
from patchkit.advisories.files import MAX_BYTES, Record, RecordSource, bulk, decode_json
from patchkit.advisories.problems import Fields, Problems, describe
from patchkit.advisories.tracker import read_urgency
from patchkit.advisories.types import (
    CVE_ID,
    Advisory,
    AdvisoryFeed,
    Cvss,
    Distro,
    Feed,
    FeedDating,
    FeedKind,
    FixStatus,
    PackageFix,
    Release,
    Urgency,
)
from patchkit.advisories.versions import is_version

_UBUNTU_RELEASE = re.compile(r"\d{2}\.\d{2}\Z")
_EVENTS = ("introduced", "fixed", "last_affected", "limit")
_ONE_OF = ", ".join(_EVENTS)
_FIRST = "0"  # OSV's introduced value before every version


def parse_ecosystem(ecosystem: str) -> Release | None:
    """The release an OSV ecosystem string scopes to; None for ecosystems that are not ours.

    ``Debian:12`` → debian 12; ``Ubuntu:Pro:FIPS-updates:20.04:LTS`` → ubuntu 20.04, variant
    ``pro:fips-updates``. A bare ``Debian`` names no release and is None. ValueError for a
    Debian or Ubuntu ecosystem with no release patchkit can read.
    """
    distro, _, rest = ecosystem.partition(":")
    if distro == "Debian":
        if not rest:
            return None
        if ":" in rest:
            raise ValueError(f"not a Debian release: {ecosystem!r} (expected 'Debian:<release>')")
        return Release(Distro.DEBIAN, rest)
    if distro == "Ubuntu":
        parts = rest.split(":") if rest else []
        if parts and parts[-1] == "LTS":
            parts.pop()
        if not parts or not _UBUNTU_RELEASE.match(parts[-1]):
            raise ValueError(f"not an Ubuntu release: {ecosystem!r} (expected 'Ubuntu:YY.MM…')")
        return Release(Distro.UBUNTU, parts[-1], ":".join(p.lower() for p in parts[:-1]))
    return None


@dataclass(frozen=True)
class _Severity:
    cvss: tuple[Cvss, ...] = ()
    priority: Urgency | None = None


class _Reader:
    def __init__(self, problems: Problems) -> None:
        self.problems = problems
        self.advisories: list[Advisory] = []
        self.fixes: list[PackageFix] = []
        self.ignored = 0
        self.newest: datetime | None = None
        self.seen: dict[str, str] = {}  # record id → where it was read
        self._releases: dict[Release, Release] = {}

    def record(self, record: Record) -> None:
        ok, doc = decode_json(record.data, self.problems, record.name)
        if not ok:
            return
        if not isinstance(doc, dict):
            self.problems.add(record.name, "", f"expected an OSV record, found {describe(doc)}")
            return
        given = doc.get("id")
        name = record.name or (given if isinstance(given, str) else "")
        fields = Fields(self.problems, name, "", doc)
        ident = fields.text("id", required=True)
        modified = fields.timestamp("modified", required=True)
        withdrawn = fields.timestamp("withdrawn")
        ours = self.ours(fields)
        if ident is None or modified is None:
            return
        if ident in self.seen:
            fields.problem("id", f"{ident!r} again (first in {self.seen[ident] or 'this file'})")
            return
        self.seen[ident] = record.name
        self.newest = modified if self.newest is None else max(self.newest, modified)
        if withdrawn is not None or not ours:
            # Not read further: a record about npm packages does not stop a Debian import.
            self.ignored += 1
            return
        others = (*fields.strings("aliases"), *fields.strings("upstream"))
        cves = tuple(sorted({c for c in (ident, *others) if CVE_ID.match(c)})) or (ident,)
        severity = self.severity(fields, "severity")
        fixes: list[PackageFix] = []
        cvss = {c.vector: c for c in severity.cvss}
        for entry, release, package in ours:
            own = self.severity(entry, "severity")
            cvss.update((c.vector, c) for c in own.cvss)
            specific = entry.child("ecosystem_specific")
            urgency, by_nvd = read_urgency(specific, "urgency") if specific else (None, False)
            urgency = urgency or own.priority or severity.priority
            fixes.extend(
                PackageFix(
                    vulnerability=cve,
                    package=package,
                    release=release,
                    status=FixStatus.FIXED if fixed else FixStatus.OPEN,
                    fixed_version=fixed,
                    introduced=introduced,
                    urgency=urgency,
                    urgency_by_nvd=by_nvd,
                    advisory=ident,
                )
                for introduced, fixed in self.ranges(entry)
                for cve in cves
            )
        description = fields.text("summary") or (fields.text("details") or "").strip()
        published = fields.timestamp("published")
        if not fixes:  # Debian or Ubuntu packages, but only with ranges that are not theirs
            self.ignored += 1
            return
        self.advisories.append(
            Advisory(
                id=ident,
                cves=cves,
                description=description,
                cvss=tuple(sorted(cvss.values(), key=lambda c: (c.version, c.vector))),
                published=published,
                modified=modified,
                aliases=tuple(sorted(set(others) - {ident})),
            )
        )
        self.fixes.extend(fixes)

    def ours(self, fields: Fields) -> list[tuple[Fields, Release, str]]:
        """The record's ``affected[]`` entries about a Debian or Ubuntu release's package."""
        found: list[tuple[Fields, Release, str]] = []
        for index, item in enumerate(fields.array("affected")):
            entry = Fields(self.problems, fields.record, f"affected[{index}]", item)
            package = entry.child("package", required=True)
            if package is None:
                continue
            ecosystem = package.text("ecosystem", required=True)
            name = package.text("name", required=True)
            if ecosystem is None or name is None:
                continue
            try:
                release = parse_ecosystem(ecosystem)
            except ValueError as exc:
                package.problem("ecosystem", str(exc))
                continue
            if release is not None:
                release = self._releases.setdefault(release, release)
                found.append((entry, release, sys.intern(name)))
        return found

    def ranges(self, entry: Fields) -> list[tuple[str | None, str | None]]:
        """The (introduced, fixed) pairs of an entry's ECOSYSTEM ranges; None: open-ended."""
        pairs: list[tuple[str | None, str | None]] = []
        for index, item in enumerate(entry.array("ranges")):
            fields = Fields(self.problems, entry.record, entry.at(f"ranges[{index}]"), item)
            kind = fields.text("type", required=True)
            events = self.events(fields)
            if kind != "ECOSYSTEM":
                continue
            pending: str | None = None
            started = False
            for key, value, where in events:
                if key == "introduced":
                    if started:
                        where.problem(key, "a second 'introduced' before the 'fixed' of the first")
                    pending, started = (None if value == _FIRST else value), True
                elif not started:
                    where.problem(key, "a 'fixed' with no 'introduced' before it")
                else:
                    pairs.append((pending, value))
                    started = False
            if started:
                pairs.append((pending, None))
        return pairs

    def events(self, fields: Fields) -> list[tuple[str, str, Fields]]:
        found: list[tuple[str, str, Fields]] = []
        for index, item in enumerate(fields.array("events", required=True)):
            event = Fields(self.problems, fields.record, fields.at(f"events[{index}]"), item)
            keys = [key for key in _EVENTS if key in event.data]
            if event.valid and len(keys) != 1:
                event.problems.add(event.record, event.path, f"expected one of {_ONE_OF}")
                continue
            value = event.text(keys[0], required=True) if keys else None
            if value is None:
                continue
            key = keys[0]
            if key == "limit" and value == "*":  # the implicit limit, written out
                continue
            if key in ("last_affected", "limit"):
                event.problem(key, "not supported: patchkit needs the version that fixes it")
            elif not (key == "introduced" and value == _FIRST) and not is_version(value):
                event.problem(key, f"not a Debian version: {value!r}")
            else:
                found.append((key, value, event))
        return found

    def severity(self, fields: Fields, key: str) -> _Severity:
        cvss: list[Cvss] = []
        priority: Urgency | None = None
        for index, item in enumerate(fields.array(key)):
            entry = Fields(self.problems, fields.record, fields.at(f"{key}[{index}]"), item)
            kind = entry.text("type", required=True)
            score = entry.text("score", required=True)
            if kind is None or score is None:
                continue
            if kind == "Ubuntu":
                priority = entry.value_of("score", score, Urgency)
            elif kind in scoring.KINDS:
                try:
                    cvss.append(scoring.score(kind, score))
                except ValueError as exc:
                    entry.problem("score", str(exc))
            else:
                known = ", ".join(repr(k) for k in (*sorted(scoring.KINDS), "Ubuntu"))
                entry.problem("type", f"unknown value {kind!r} (known: {known})")
        return _Severity(tuple(cvss), priority)


def read_osv(path: Path, *, max_bytes: int = MAX_BYTES) -> AdvisoryFeed:
    """Read OSV records from a .json file, a directory of them or a .zip; all or nothing."""
    with bulk():
        return _read_osv(path, max_bytes)


def _read_osv(path: Path, max_bytes: int) -> AdvisoryFeed:
    problems = Problems(str(path))
    source = RecordSource(path, problems, max_bytes=max_bytes)
    reader = _Reader(problems)
    count = 0
    for record in source.records():
        count += 1
        reader.record(record)
    if not count:
        problems.fail("no OSV records in it (files named *.json)")
    problems.check()
    if reader.newest is None:  # cannot be: every record read has its modified time
        problems.fail("no OSV record with a modified time in it")
    advisories = tuple(sorted(reader.advisories, key=lambda a: a.id))
    fixes = sorted(reader.fixes, key=PackageFix.sort_key)
    feed = Feed(
        kind=FeedKind.OSV,
        source=str(path),
        sha256=source.sha256,
        date=reader.newest,
        dated_by=FeedDating.NEWEST_RECORD,
        records=len(advisories),
        cves=len({cve for advisory in advisories for cve in advisory.cves}),
        ignored=reader.ignored,
    )
    return AdvisoryFeed(feed=feed, advisories=advisories, fixes=tuple(fixes))
