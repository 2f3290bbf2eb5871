"""How a feed's content becomes ledger rows, and the rows the values again (in patchkit.ledger).

Rows are written in chunks (executemany) in the caller's transaction, each with its feed's id
and its position in the reader's order, so that a feed reads back exactly as it was read.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Collection, Iterable, Iterator, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, Select, Table, and_, or_, select

from patchkit.advisories.types import (
    Advisory,
    AdvisoryFeed,
    Cvss,
    Distro,
    EpssScore,
    EpssScores,
    Feed,
    FixStatus,
    KevCatalog,
    KevEntry,
    PackageFix,
    Release,
    Scope,
    TrackerNotes,
    Urgency,
)
from patchkit.ledger import schema as t
from patchkit.ledger.base import aware, utc

FeedValue = AdvisoryFeed | KevCatalog | EpssScores
Progress = Callable[[int, int], None]  # (rows stored, rows in the feed)

_CHUNK = 5_000  # rows per executemany: a few MB of parameters at most
_RELEASES_PER_QUERY = 100  # releases per OR in one query, far inside SQLite's expression depth
_NAMED_IN_QUERY = 500  # CVEs named in one IN (...): far inside SQLite's bound-parameter limit
_DISTROS = {d.value: d for d in Distro}
_STATUSES = {s.value: s for s in FixStatus}
_URGENCIES = {u.value: u for u in Urgency}

# lists and notes as compact JSON; made once: json.dumps with options makes one at every call
_compact = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode


def _when(value: datetime | None) -> datetime | None:
    return None if value is None else utc(value)


def _notes_text(notes: TrackerNotes) -> str:
    """The tracker's notes as one small JSON object, in the tracker's own key names."""
    shown: dict[str, Any] = {}
    if notes.repositories:
        shown["repositories"] = [list(pair) for pair in notes.repositories]
    if notes.no_dsa is not None:
        shown["nodsa"] = notes.no_dsa
    if notes.no_dsa_reason is not None:
        shown["nodsa_reason"] = notes.no_dsa_reason
    if notes.next_point_update:
        shown["next_point_update"] = True
    return _compact(shown)


def _notes_of(text: str) -> TrackerNotes:
    shown = json.loads(text)
    return TrackerNotes(
        repositories=tuple((suite, version) for suite, version in shown.get("repositories", ())),
        no_dsa=shown.get("nodsa"),
        no_dsa_reason=shown.get("nodsa_reason"),
        next_point_update=shown.get("next_point_update", False),
    )


# ---------------------------------------------------------------- rows of a feed


def _record_rows(feed_id: int, advisories: Sequence[Advisory]) -> Iterator[dict[str, Any]]:
    for seq, a in enumerate(advisories):
        yield {
            "feed_id": feed_id,
            "seq": seq,
            "advisory": a.id,
            "cves": _compact(a.cves),
            "description": a.description,
            "scope": a.scope.value if a.scope is not None else None,
            "published": _when(a.published),
            "modified": _when(a.modified),
            "aliases": _compact(a.aliases),
            "debian_bugs": _compact(a.debian_bugs),
        }


def _cvss_rows(feed_id: int, advisories: Sequence[Advisory]) -> Iterator[dict[str, Any]]:
    for seq, a in enumerate(advisories):
        for position, c in enumerate(a.cvss):
            yield {
                "feed_id": feed_id,
                "record_seq": seq,
                "position": position,
                "version": c.version,
                "vector": c.vector,
                "base_score": c.base_score,
            }


def _fix_rows(feed_id: int, fixes: Sequence[PackageFix]) -> Iterator[dict[str, Any]]:
    notes: dict[TrackerNotes, str] = {}  # a package's CVEs on a release mostly share theirs
    for seq, f in enumerate(fixes):
        text = None
        if f.notes is not None:
            text = notes.get(f.notes)
            if text is None:
                text = notes[f.notes] = _notes_text(f.notes)
        yield {
            "feed_id": feed_id,
            "seq": seq,
            "vulnerability": f.vulnerability,
            "package": f.package,
            "distro": f.release.distro.value,
            "release": f.release.name,
            "variant": f.release.variant,
            "status": f.status.value,
            "fixed_version": f.fixed_version,
            "introduced": f.introduced,
            "urgency": f.urgency.value if f.urgency is not None else None,
            "urgency_by_nvd": f.urgency_by_nvd,
            "advisory": f.advisory,
            "notes": text,
        }


def _kev_rows(feed_id: int, entries: Sequence[KevEntry]) -> Iterator[dict[str, Any]]:
    for seq, e in enumerate(entries):
        yield {
            "feed_id": feed_id,
            "seq": seq,
            "cve": e.cve,
            "vendor_project": e.vendor_project,
            "product": e.product,
            "name": e.name,
            "description": e.description,
            "required_action": e.required_action,
            "date_added": e.date_added,
            "due_date": e.due_date,
            "known_ransomware": e.known_ransomware,
            "cwes": _compact(e.cwes),
        }


def _epss_rows(feed_id: int, scores: Sequence[EpssScore]) -> Iterator[dict[str, Any]]:
    for seq, s in enumerate(scores):
        yield {
            "feed_id": feed_id,
            "seq": seq,
            "cve": s.cve,
            "epss": s.epss,
            "percentile": s.percentile,
        }


def _content(feed_id: int, value: FeedValue) -> list[tuple[Table, int, Iterator[dict[str, Any]]]]:
    """Each table a feed's content goes to, with its row count and its rows (made lazily)."""
    if isinstance(value, AdvisoryFeed):
        cvss = sum(len(a.cvss) for a in value.advisories)
        return [
            (t.advisory_records, len(value.advisories), _record_rows(feed_id, value.advisories)),
            (t.advisory_cvss, cvss, _cvss_rows(feed_id, value.advisories)),
            (t.advisory_fixes, len(value.fixes), _fix_rows(feed_id, value.fixes)),
        ]
    if isinstance(value, KevCatalog):
        return [(t.kev_entries, len(value.entries), _kev_rows(feed_id, value.entries))]
    return [(t.epss_scores, len(value.scores), _epss_rows(feed_id, value.scores))]


def write_content(
    conn: Connection, feed_id: int, value: FeedValue, progress: Progress | None
) -> None:
    parts = _content(feed_id, value)
    total = sum(count for _, count, _ in parts)
    done = 0
    for table, _, rows in parts:
        chunk: list[dict[str, Any]] = []
        for row in rows:
            chunk.append(row)
            if len(chunk) == _CHUNK:
                conn.execute(table.insert(), chunk)
                done += len(chunk)
                chunk = []
                if progress is not None:
                    progress(done, total)
        if chunk:
            conn.execute(table.insert(), chunk)
            done += len(chunk)
    if progress is not None:
        progress(done, total)


# ---------------------------------------------------------------- values of rows


def _listed(text: str) -> tuple[Any, ...]:
    return () if text == "[]" else tuple(json.loads(text))


def advisories_of(
    conn: Connection, feed_id: int, only: Collection[str] | None = None
) -> tuple[Advisory, ...]:
    """The feed's advisories in their order; with ``only``, those naming one of these CVEs."""
    c = t.advisory_cvss
    vectors: dict[int, list[Cvss]] = {}
    query = select(c.c.record_seq, c.c.version, c.c.vector, c.c.base_score)
    ordered = query.where(c.c.feed_id == feed_id).order_by(c.c.record_seq, c.c.position)
    for seq, version, vector, score in conn.execute(ordered):
        vectors.setdefault(seq, []).append(Cvss(version, vector, score))
    a = t.advisory_records
    query = select(
        a.c.seq, a.c.advisory, a.c.cves, a.c.description, a.c.scope, a.c.published,
        a.c.modified, a.c.aliases, a.c.debian_bugs,
    ).where(a.c.feed_id == feed_id)  # fmt: skip
    scopes = {s.value: s for s in Scope}
    rows: Iterable[tuple[Any, ...]] = conn.execute(query.order_by(a.c.seq))
    if only is not None:
        named = frozenset(only)
        rows = (row for row in rows if not named.isdisjoint(_listed(row[2])))
    return tuple(
        Advisory(
            ident,
            _listed(cves),
            description,
            scopes[scope] if scope is not None else None,
            tuple(vectors.get(seq, ())),
            aware(published) if published is not None else None,
            aware(modified) if modified is not None else None,
            _listed(aliases),
            _listed(bugs),
        )
        for seq, ident, cves, description, scope, published, modified, aliases, bugs in rows
    )


class _FixMaker:
    """PackageFix values from fix rows, sharing one Release and one TrackerNotes per value."""

    def __init__(self) -> None:
        self.releases: dict[tuple[str, str, str], Release] = {}
        self.notes: dict[str, TrackerNotes] = {}

    def release(self, distro: str, name: str, variant: str) -> Release:
        made = self.releases.get((distro, name, variant))
        if made is None:
            made = self.releases[(distro, name, variant)] = Release(_DISTROS[distro], name, variant)
        return made

    def note(self, text: str | None) -> TrackerNotes | None:
        if text is None:
            return None
        made = self.notes.get(text)
        if made is None:
            made = self.notes[text] = _notes_of(text)
        return made

    def fix(self, row: Sequence[Any]) -> PackageFix:
        (_, vulnerability, package, distro, name, variant, status, fixed, introduced, urgency,
         by_nvd, advisory, notes) = row  # fmt: skip
        return PackageFix(
            vulnerability,
            sys.intern(package),
            self.release(distro, name, variant),
            _STATUSES[status],
            fixed,
            introduced,
            _URGENCIES[urgency] if urgency is not None else None,
            by_nvd,
            advisory,
            self.note(notes),
        )

    def fixes(self, rows: Iterable[Sequence[Any]]) -> tuple[PackageFix, ...]:
        fix = self.fix
        return tuple(fix(row) for row in rows)

    def numbered(self, rows: Iterable[Sequence[Any]]) -> list[tuple[int, PackageFix]]:
        """(seq, fix) of each row: to put the fixes of several queries in the feed's order."""
        fix = self.fix
        return [(int(row[0]), fix(row)) for row in rows]


def fixes_of(
    conn: Connection,
    feed_id: int,
    releases: Collection[Release] | None,
    only: Collection[str] | None = None,
) -> tuple[PackageFix, ...]:
    """The feed's fixes in their order: of ``releases`` only, when given, and of the
    vulnerabilities ``only`` names, when given. Rows become values as they are read."""
    f = t.advisory_fixes
    query = select(
        f.c.seq, f.c.vulnerability, f.c.package, f.c.distro, f.c.release, f.c.variant,
        f.c.status, f.c.fixed_version, f.c.introduced, f.c.urgency, f.c.urgency_by_nvd,
        f.c.advisory, f.c.notes,
    ).where(f.c.feed_id == feed_id)  # fmt: skip
    named = frozenset(only) if only is not None else None
    if named is not None and len(named) <= _NAMED_IN_QUERY:
        query = query.where(f.c.vulnerability.in_(sorted(named)))
        named = None  # the database chose them

    def read(query: Select[Any]) -> Iterable[Sequence[Any]]:
        rows: Iterable[Sequence[Any]] = conn.execute(query.order_by(f.c.seq))
        return rows if named is None else (row for row in rows if row[1] in named)

    make = _FixMaker()
    if releases is None:
        return make.fixes(read(query))
    wanted = sorted(set(releases))
    parts = []
    for start in range(0, len(wanted), _RELEASES_PER_QUERY):
        part = wanted[start : start + _RELEASES_PER_QUERY]
        where = or_(
            *(
                and_(f.c.distro == r.distro.value, f.c.release == r.name)
                & (f.c.variant == r.variant)
                for r in part
            )
        )
        parts.append(make.numbered(read(query.where(where))))
    if len(parts) == 1:
        return tuple(fix for _, fix in parts[0])
    return tuple(fix for _, fix in sorted((p for part in parts for p in part), key=_first))


def _first(pair: tuple[int, PackageFix]) -> int:
    return pair[0]


def covered_releases(conn: Connection, feed_id: int) -> frozenset[Release]:
    """Every release the feed has fixes for (read from its release index)."""
    f = t.advisory_fixes
    query = select(f.c.distro, f.c.release, f.c.variant).where(f.c.feed_id == feed_id).distinct()
    make = _FixMaker()
    return frozenset(make.release(d, r, v) for d, r, v in conn.execute(query))


def kev_of(conn: Connection, feed_id: int, feed: Feed) -> KevCatalog:
    k = t.kev_entries
    title = conn.execute(
        select(t.advisory_feeds.c.title).where(t.advisory_feeds.c.id == feed_id)
    ).scalar_one()
    entries = tuple(
        KevEntry(
            cve=r.cve,
            vendor_project=r.vendor_project,
            product=r.product,
            name=r.name,
            description=r.description,
            required_action=r.required_action,
            date_added=r.date_added,
            due_date=r.due_date,
            known_ransomware=r.known_ransomware,
            cwes=tuple(json.loads(r.cwes)),
        )
        for r in conn.execute(select(k).where(k.c.feed_id == feed_id).order_by(k.c.seq))
    )
    return KevCatalog(feed=feed, title=title or "", entries=entries)


def epss_of(
    conn: Connection, feed_id: int, feed: Feed, cves: Collection[str] | None = None
) -> EpssScores:
    """The feed's scores in their order; with ``cves``, only theirs (a few asked for by name
    are selected by the database; a set of thousands filters the rows as they are read)."""
    e = t.epss_scores
    day = feed.date
    query = select(e.c.cve, e.c.epss, e.c.percentile).where(e.c.feed_id == feed_id)
    if cves is not None and len(cves) <= _NAMED_IN_QUERY:
        query = query.where(e.c.cve.in_(sorted(cves)))
        cves = None
    rows: Iterable[Sequence[Any]] = conn.execute(query.order_by(e.c.seq))
    if cves is not None:
        keep = frozenset(cves)
        rows = (row for row in rows if row[0] in keep)
    scores = tuple(EpssScore(cve, epss, percentile, day) for cve, epss, percentile in rows)
    return EpssScores(feed=feed, model_version=feed.version, scores=scores)
