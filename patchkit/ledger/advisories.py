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

from collections.abc import Collection, Iterable
from dataclasses import dataclass, replace
from datetime import datetime
from pathlib import Path

from sqlalchemy import Connection, select
from sqlalchemy.dialects import postgresql, sqlite

from patchkit.advisories.files import bulk
from patchkit.advisories.knowledge import Knowledge
from patchkit.advisories.types import (
    AdvisoryFeed,
    EpssScores,
    Feed,
    FeedDating,
    FeedKind,
    KevCatalog,
    Release,
)
from patchkit.ledger import schema as t
from patchkit.ledger.base import LedgerBase, aware, new_id, utc
from patchkit.ledger.feed_rows import (
    FeedValue,
    Progress,
    advisories_of,
    covered_releases,
    epss_of,
    fixes_of,
    kev_of,
    write_content,
)

# Knowledge.feeds in this order: the tracker, then the OSV feeds by location
_KIND_ORDER = {kind: i for i, kind in enumerate(FeedKind)}


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
            write_content(conn, feed_id, value, progress)
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

    def advisories(
        self,
        releases: Collection[Release] | None = None,
        vulnerabilities: Collection[str] | None = None,
    ) -> Knowledge:
        """What the current feeds say, as the readers made it (see the module's docstring).

        With ``releases``, only the fixes of those releases are read (the planner passes the
        releases its hosts run, by codename and by number), and EPSS scores only for the CVEs
        the advisories, those fixes and the KEV catalog name (a 250,000-row EPSS file scores
        every CVE ever published; nothing asks about the others). With ``vulnerabilities``
        (an audit of named CVEs), only what is said of those: their advisories, their fixes,
        their EPSS scores; each feed still knows every release it covers. The KEV catalog is
        always whole.
        """
        only = frozenset(vulnerabilities) if vulnerabilities is not None else None
        with self._tx("cannot read") as conn, bulk():
            current = sorted(
                (s for s in _stored_feeds(conn) if s.current),
                key=lambda s: (_KIND_ORDER[s.feed.kind], s.location, s.id),
            )
            feeds: list[AdvisoryFeed] = []
            kev: KevCatalog | None = None
            epss_feed: StoredFeed | None = None
            for stored in current:
                kind = stored.feed.kind
                if kind is FeedKind.KEV:
                    kev = kev_of(conn, stored.id, stored.feed)
                elif kind is FeedKind.EPSS:
                    epss_feed = stored  # read last: which CVEs matter is known then
                else:
                    advisories = advisories_of(conn, stored.id, only)
                    fixes = fixes_of(conn, stored.id, releases, only)
                    covered = covered_releases(conn, stored.id) if only is not None else None
                    feeds.append(AdvisoryFeed(stored.feed, advisories, fixes, covered))
            epss: EpssScores | None = None
            if epss_feed is not None:
                named: Collection[str] | None = only
                if named is None and releases is not None:
                    named = {x.vulnerability for feed in feeds for x in feed.fixes}
                    named.update(c for feed in feeds for a in feed.advisories for c in a.cves)
                    if kev is not None:
                        named.update(e.cve for e in kev.entries)
                epss = epss_of(conn, epss_feed.id, epss_feed.feed, named)
        return Knowledge(feeds=tuple(feeds), kev=kev, epss=epss)


def _key(feed: Feed) -> tuple[FeedKind, str]:
    """What makes two imports the same: the kind and the bytes, not the path nor the time."""
    return (feed.kind, feed.sha256)


def _same_group(one: StoredFeed, other: StoredFeed) -> bool:
    if one.feed.kind is not other.feed.kind:
        return False
    return one.feed.kind is not FeedKind.OSV or one.location == other.location
