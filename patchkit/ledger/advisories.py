"""The ledger's advisory feeds: every import stored whole, the current feeds read back as values.

Which imports are current, that is, used by the planner, audits and reports:

- ``debian-tracker``, ``kev`` and ``epss``: of all imports of the kind, the one with the newest
  feed date, and of imports with the same date the latest imported. Each of these files is the
  whole state of its source, so the newest replaces every older one wherever it was read from
  (EPSS files carry their day in their name: keyed by path, they would pile up).
- ``osv``: the same rule, but per location (the path as given, resolved to an absolute one when
  imported): a team imports a Debian and an Ubuntu export side by side, and each replaces only
  the older imports of its own path.

Older imports stay recorded, to prove what was known when, but are not used. Importing bytes
already imported (the same kind and SHA-256) writes nothing and says so. An import is one
transaction: a feed is stored whole or not at all.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Collection, Iterable, Iterator, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, Table, and_, or_, select
from sqlalchemy.dialects import postgresql, sqlite

from patchkit.advisories.files import bulk
from patchkit.advisories.knowledge import Knowledge
from patchkit.advisories.types import (
    Advisory,
    AdvisoryFeed,
    Cvss,
    Distro,
    EpssScore,
    EpssScores,
    Feed,
    FeedDating,
    FeedKind,
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
from patchkit.ledger.base import LedgerBase, aware, new_id, utc

FeedValue = AdvisoryFeed | KevCatalog | EpssScores
Progress = Callable[[int, int], None]  # (rows stored, rows in the feed)

_CHUNK = 5_000  # rows per executemany: a few MB of parameters at most
_RELEASES_PER_QUERY = 100  # releases per OR in one query, far inside SQLite's expression depth
# Knowledge.feeds in this order: the tracker, then the OSV feeds by location
_KIND_ORDER = {kind: i for i, kind in enumerate(FeedKind)}
_DISTROS = {d.value: d for d in Distro}
_STATUSES = {s.value: s for s in FixStatus}
_URGENCIES = {u.value: u for u in Urgency}


@dataclass(frozen=True)
class StoredFeed:
    """One import of a feed file: what it was, when and by whom, and whether it is current."""

    feed: Feed
    id: int
    location: str  # the source resolved to an absolute path when imported
    imported_at: datetime
    imported_by: str
    current: bool


@dataclass(frozen=True)
class ImportResult:
    """What an import did. ``stored`` is False when these bytes were imported before: then
    ``feed`` is that earlier import and nothing was written."""

    feed: StoredFeed
    stored: bool
    replaced: StoredFeed | None = None  # the feed current before this one, which it replaces


def current_ids(feeds: Iterable[StoredFeed]) -> frozenset[int]:
    """The ids of the current imports among ``feeds`` (the rule of this module's docstring)."""
    newest: dict[tuple[FeedKind, str], StoredFeed] = {}
    for stored in feeds:
        kind = stored.feed.kind
        group = (kind, stored.location if kind is FeedKind.OSV else "")
        have = newest.get(group)
        if have is None or _recency(stored) > _recency(have):
            newest[group] = stored
    return frozenset(s.id for s in newest.values())


def _recency(stored: StoredFeed) -> tuple[datetime, datetime, int]:
    return (stored.feed.date, stored.imported_at, stored.id)


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


def _write(conn: Connection, feed_id: int, value: FeedValue, progress: Progress | None) -> None:
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


def _stored_feeds(conn: Connection) -> list[StoredFeed]:
    """Every import, in the order imported, with ``current`` set."""
    f = t.advisory_feeds
    found = [
        StoredFeed(
            feed=Feed(
                kind=FeedKind(r.kind),
                source=r.source,
                sha256=r.sha256,
                date=aware(r.feed_date),
                dated_by=FeedDating(r.dated_by),
                records=r.records,
                cves=r.cves,
                version=r.version,
                ignored=r.ignored,
            ),
            id=r.id,
            location=r.location,
            imported_at=aware(r.imported_at),
            imported_by=r.imported_by,
            current=False,
        )
        for r in conn.execute(select(f).order_by(f.c.id))
    ]
    current = current_ids(found)
    return [replace(s, current=s.id in current) for s in found]


def _listed(text: str) -> tuple[Any, ...]:
    return () if text == "[]" else tuple(json.loads(text))


def _advisories_of(conn: Connection, feed_id: int) -> tuple[Advisory, ...]:
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

    def fixes(self, rows: Iterable[tuple[Any, ...]]) -> tuple[PackageFix, ...]:
        release = self.release
        note = self.note
        return tuple(
            PackageFix(
                vulnerability,
                sys.intern(package),
                release(distro, name, variant),
                _STATUSES[status],
                fixed,
                introduced,
                _URGENCIES[urgency] if urgency is not None else None,
                by_nvd,
                advisory,
                note(notes),
            )
            for _, vulnerability, package, distro, name, variant, status, fixed, introduced,
            urgency, by_nvd, advisory, notes in rows
        )  # fmt: skip


def _fixes_of(
    conn: Connection, feed_id: int, releases: Collection[Release] | None
) -> tuple[PackageFix, ...]:
    f = t.advisory_fixes
    query = select(
        f.c.seq, f.c.vulnerability, f.c.package, f.c.distro, f.c.release, f.c.variant,
        f.c.status, f.c.fixed_version, f.c.introduced, f.c.urgency, f.c.urgency_by_nvd,
        f.c.advisory, f.c.notes,
    ).where(f.c.feed_id == feed_id)  # fmt: skip
    rows: list[tuple[Any, ...]]
    if releases is None:
        rows = list(conn.execute(query.order_by(f.c.seq)))
    else:
        wanted = sorted(set(releases))
        rows = []
        for start in range(0, len(wanted), _RELEASES_PER_QUERY):
            part = wanted[start : start + _RELEASES_PER_QUERY]
            where = or_(
                *(
                    and_(f.c.distro == r.distro.value, f.c.release == r.name)
                    & (f.c.variant == r.variant)
                    for r in part
                )
            )
            rows.extend(conn.execute(query.where(where)))
        rows.sort(key=lambda row: int(row[0]))
    return _FixMaker().fixes(rows)


def _kev_of(conn: Connection, stored: StoredFeed) -> KevCatalog:
    k = t.kev_entries
    title = conn.execute(
        select(t.advisory_feeds.c.title).where(t.advisory_feeds.c.id == stored.id)
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
        for r in conn.execute(select(k).where(k.c.feed_id == stored.id).order_by(k.c.seq))
    )
    return KevCatalog(feed=stored.feed, title=title or "", entries=entries)


def _epss_of(conn: Connection, stored: StoredFeed) -> EpssScores:
    e = t.epss_scores
    day = stored.feed.date
    query = select(e.c.cve, e.c.epss, e.c.percentile).where(e.c.feed_id == stored.id)
    scores = tuple(
        EpssScore(cve, epss, percentile, day)
        for cve, epss, percentile in conn.execute(query.order_by(e.c.seq))
    )
    return EpssScores(feed=stored.feed, model_version=stored.feed.version, scores=scores)


class AdvisoryRecords(LedgerBase):
    def import_feed(
        self, value: FeedValue, at: datetime, by: str, *, progress: Progress | None = None
    ) -> ImportResult:
        """Store a feed as read (``patchkit.advisories.read_feed``), whole, in one transaction.

        Bytes imported before (same kind and SHA-256) are not stored again: the result names
        the earlier import. ``progress`` is told the rows stored so far, after each chunk.
        """
        feed = value.feed
        title = value.title if isinstance(value, KevCatalog) else None
        with self._tx("cannot write to") as conn:
            before = _stored_feeds(conn)
            earlier = [s for s in before if _key(s.feed) == _key(feed)]
            if earlier:
                return ImportResult(earlier[0], stored=False)
            dialect = sqlite if conn.dialect.name == "sqlite" else postgresql
            # Two controllers importing the same file at once: the second finds the first's row
            # (PostgreSQL makes it wait for the first to commit) and stores nothing.
            insert = dialect.insert(t.advisory_feeds).on_conflict_do_nothing(
                index_elements=[t.advisory_feeds.c.kind, t.advisory_feeds.c.sha256]
            )
            result = conn.execute(
                insert.values(
                    kind=feed.kind.value,
                    source=feed.source,
                    location=str(Path(feed.source).resolve()),
                    sha256=feed.sha256,
                    feed_date=utc(feed.date),
                    dated_by=feed.dated_by.value,
                    records=feed.records,
                    cves=feed.cves,
                    version=feed.version,
                    ignored=feed.ignored,
                    title=title,
                    imported_at=utc(at),
                    imported_by=by,
                )
            )
            if result.rowcount == 0:
                # Another controller stored these bytes since ``before`` was read (PostgreSQL
                # waited for it to commit; SQLite lets one writer at a time): theirs stands.
                (theirs,) = (s for s in _stored_feeds(conn) if _key(s.feed) == _key(feed))
                return ImportResult(theirs, stored=False)
            feed_id = new_id(result)
            _write(conn, feed_id, value, progress)
            after = _stored_feeds(conn)
        mine = next(s for s in after if s.id == feed_id)
        replaced = None
        if mine.current:
            group = current_ids(s for s in before if _same_group(s, mine))
            replaced = next((s for s in before if s.id in group), None)
        return ImportResult(mine, stored=True, replaced=replaced)

    def feed_status(self) -> list[StoredFeed]:
        """Every import of a feed, in the order imported; ``current`` marks those in use."""
        with self._tx("cannot read") as conn:
            return _stored_feeds(conn)

    def advisories(self, releases: Collection[Release] | None = None) -> Knowledge:
        """What the current feeds say, as the readers made it (see the module's docstring).

        With ``releases``, only the fixes of those releases are read (the planner passes the
        releases its hosts run, by codename and by number); the advisories (descriptions,
        CVSS), KEV and EPSS are always whole.
        """
        with self._tx("cannot read") as conn, bulk():
            current = sorted(
                (s for s in _stored_feeds(conn) if s.current),
                key=lambda s: (_KIND_ORDER[s.feed.kind], s.location, s.id),
            )
            feeds: list[AdvisoryFeed] = []
            kev: KevCatalog | None = None
            epss: EpssScores | None = None
            for stored in current:
                kind = stored.feed.kind
                if kind is FeedKind.KEV:
                    kev = _kev_of(conn, stored)
                elif kind is FeedKind.EPSS:
                    epss = _epss_of(conn, stored)
                else:
                    advisories = _advisories_of(conn, stored.id)
                    fixes = _fixes_of(conn, stored.id, releases)
                    feeds.append(AdvisoryFeed(stored.feed, advisories, fixes))
        return Knowledge(feeds=tuple(feeds), kev=kev, epss=epss)


def _key(feed: Feed) -> tuple[FeedKind, str]:
    """What makes two imports the same: the kind and the bytes, not the path nor the time."""
    return (feed.kind, feed.sha256)


def _same_group(one: StoredFeed, other: StoredFeed) -> bool:
    if one.feed.kind is not other.feed.kind:
        return False
    return one.feed.kind is not FeedKind.OSV or one.location == other.location
