"""Unit: advisory feeds in the ledger (SQLite in tmp_path): stored whole, read back as the
readers made them, which import is current, the releases filter, and schema 5 → 6."""

from __future__ import annotations

import dataclasses
import gzip
import sqlite3
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import Connection, create_engine, func, select

from patchkit.advisories import (
    AdvisoryFeed,
    Distro,
    EpssScores,
    Feed,
    FeedDating,
    FeedKind,
    KevCatalog,
    Release,
    read_epss,
    read_feed,
    read_kev,
    read_osv,
    read_tracker,
)
from patchkit.errors import LedgerError
from patchkit.ledger import Ledger, feed_rows
from patchkit.ledger import advisories as stored_feeds
from patchkit.ledger import schema as t
from patchkit.model import Finding, PendingUpdate
from tests.unit.advisory_files import AT, epss_file, osv_zip, tracker_file
from tests.unit.test_advisory_feeds import (
    BOOKWORM,
    DEBIAN_12,
    JAMMY,
    debian_record,
    kev,
    kev_entry,
    pypi_record,
    ubuntu_notice,
    write_json,
)

FIPS = Release(Distro.UBUNTU, "20.04", "pro:fips-updates")
STATED = FeedDating.STATED


@pytest.fixture
def ledger(tmp_path: Path) -> Ledger:
    return Ledger(f"sqlite:///{tmp_path / 'ledger.sqlite'}")


def rows(path: Path, table: str) -> int:
    with sqlite3.connect(path) as conn:
        (count,) = conn.execute(f"SELECT count(*) FROM {table}").fetchone()  # noqa: S608
    return int(count)


# ---------------------------------------------------------------- read back as read


def test_every_kind_reads_back_equal_to_what_the_reader_made(
    ledger: Ledger, tmp_path: Path
) -> None:
    folder = tmp_path / "osv"
    folder.mkdir()
    records = {
        "debian.json": debian_record(),
        "usn.json": ubuntu_notice(),  # CVSS 4.0, an Ubuntu priority, a Pro FIPS variant
        "pypi.json": pypi_record(),  # ignored: not Debian or Ubuntu
        "gone.json": debian_record("DEBIAN-CVE-2023-0001", withdrawn="2026-11-01T00:00:00Z"),
    }
    for name, record in records.items():
        write_json(folder / name, record)
    catalog = kev(
        kev_entry("CVE-2024-0001"),
        kev_entry("CVE-2024-0002", knownRansomwareCampaignUse="Unknown", cwes=[]),
    )
    read: list[AdvisoryFeed | KevCatalog | EpssScores] = [
        read_tracker(tracker_file(tmp_path)),
        read_osv(folder),
        read_kev(write_json(tmp_path / "kev.json", catalog)),
        read_epss(epss_file(tmp_path / "epss_scores-2026-11-30.csv.gz", "2026-11-30")),
    ]
    for value in read:
        result = ledger.import_feed(value, AT, "alice")
        assert result.stored and result.feed.current and result.replaced is None
        assert result.feed.feed == value.feed
        assert (result.feed.imported_at, result.feed.imported_by) == (AT, "alice")
    tracker_feed, osv_feed, kev_catalog, scores = read
    assert isinstance(tracker_feed, AdvisoryFeed) and isinstance(osv_feed, AdvisoryFeed)
    assert osv_feed.feed.ignored == 2 and any(a.cvss for a in osv_feed.advisories)

    knowledge = ledger.advisories()
    assert knowledge.feeds == (tracker_feed, osv_feed)  # the tracker first, then OSV
    assert knowledge.kev == kev_catalog and knowledge.epss == scores
    # and field by field, where a slip would hide in a large tuple's equality
    assert knowledge.feeds[0].fixes == tracker_feed.fixes
    assert [f.notes for f in knowledge.feeds[0].fixes] == [f.notes for f in tracker_feed.fixes]
    assert knowledge.feeds[1].advisories == osv_feed.advisories
    assert knowledge.sources() == tuple(v.feed for v in read)
    assert knowledge.facts("CVE-2024-0001").kev is not None
    assert knowledge.facts("CVE-2024-0002").cvss is not None


def test_an_empty_ledger_knows_nothing(ledger: Ledger) -> None:
    assert ledger.advisories().empty
    assert ledger.feed_status() == []


def test_the_same_bytes_again_are_not_stored(ledger: Ledger, tmp_path: Path) -> None:
    path = tracker_file(tmp_path)
    first = ledger.import_feed(read_feed(path), AT, "alice")
    again = ledger.import_feed(read_feed(path), AT + timedelta(hours=1), "bob")
    assert first.stored and not again.stored
    assert again.feed == first.feed  # the earlier import, who and when
    # the same bytes under another name are the same feed too
    copy = tracker_file(tmp_path, "copy.json", when=AT + timedelta(days=1))
    assert not ledger.import_feed(read_feed(copy), AT, "carol").stored
    assert [s.id for s in ledger.feed_status()] == [first.feed.id]
    assert rows(tmp_path / "ledger.sqlite", "advisory_fixes") == len(read_tracker(path).fixes)


def test_a_controller_that_lost_the_race_stores_nothing(
    ledger: Ledger, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    feed = read_tracker(tracker_file(tmp_path))
    first = ledger.import_feed(feed, AT, "alice")
    real = stored_feeds._stored_feeds
    calls: list[int] = []

    def not_yet_seen(conn: Connection) -> list[stored_feeds.StoredFeed]:
        calls.append(1)  # the first look misses alice's import, as a concurrent one would
        return [] if len(calls) == 1 else real(conn)

    monkeypatch.setattr(stored_feeds, "_stored_feeds", not_yet_seen)
    again = ledger.import_feed(feed, AT, "bob")
    assert not again.stored and again.feed == first.feed
    assert [s.id for s in ledger.feed_status()] == [first.feed.id]


def test_progress_is_told_the_rows_stored(
    ledger: Ledger, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(feed_rows, "_CHUNK", 2)
    told: list[tuple[int, int]] = []
    feed = read_tracker(tracker_file(tmp_path))
    ledger.import_feed(feed, AT, "alice", progress=lambda done, total: told.append((done, total)))
    total = len(feed.advisories) + len(feed.fixes)
    assert told[-1] == (total, total) and len(told) > 2
    assert [done for done, _ in told] == sorted(done for done, _ in told)


def test_a_feed_that_fails_half_way_leaves_nothing(
    ledger: Ledger, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(feed_rows, "_CHUNK", 2)  # several chunks are in before it fails
    feed = read_tracker(tracker_file(tmp_path))
    # NOT NULL: the last chunk fails
    broken = dataclasses.replace(feed.fixes[-1], package=None)  # type: ignore[arg-type]
    value = dataclasses.replace(feed, fixes=(*feed.fixes[:-1], broken))
    with pytest.raises(LedgerError, match="cannot write to the ledger"):
        ledger.import_feed(value, AT, "alice")
    assert ledger.feed_status() == []
    for table in ("advisory_feeds", "advisory_records", "advisory_fixes"):
        assert rows(tmp_path / "ledger.sqlite", table) == 0
    assert ledger.import_feed(feed, AT, "alice").stored  # and the good feed goes in after


# ---------------------------------------------------------------- which import is current


def test_the_newest_tracker_is_current_whenever_it_was_imported(
    ledger: Ledger, tmp_path: Path
) -> None:
    older = read_tracker(tracker_file(tmp_path, "old.json", when=AT - timedelta(days=2)))
    newer = read_tracker(tracker_file(tmp_path, "new.json", said="changed since"))

    first = ledger.import_feed(older, AT, "alice")
    second = ledger.import_feed(newer, AT, "alice")
    assert second.feed.current and second.replaced == first.feed
    # an older file imported later is kept, but not used
    oldest = tracker_file(tmp_path, "oldest.json", when=AT - timedelta(days=9), said="once")
    late = ledger.import_feed(read_tracker(oldest), AT + timedelta(hours=1), "bob")
    assert late.stored and not late.feed.current and late.replaced is None
    status = {Path(s.feed.source).name: s.current for s in ledger.feed_status()}
    assert status == {"old.json": False, "new.json": True, "oldest.json": False}
    assert ledger.advisories().feeds == (newer,)


def test_of_two_feeds_of_one_date_the_later_import_is_current(
    ledger: Ledger, tmp_path: Path
) -> None:
    one = read_kev(write_json(tmp_path / "a.json", kev(kev_entry("CVE-2024-0001"))))
    two = read_kev(write_json(tmp_path / "b.json", kev(kev_entry("CVE-2024-0002"))))
    assert one.feed.date == two.feed.date
    ledger.import_feed(one, AT, "alice")
    ledger.import_feed(two, AT + timedelta(minutes=1), "alice")
    assert ledger.advisories().kev == two


def test_epss_files_of_each_day_replace_each_other(ledger: Ledger, tmp_path: Path) -> None:
    days = ("2026-11-29", "2026-11-30", "2026-11-28")
    read = [read_epss(epss_file(tmp_path / f"epss_scores-{d}.csv.gz", d)) for d in days]
    results = [ledger.import_feed(scores, AT, "cron") for scores in read]
    assert [r.feed.current for r in results] == [True, True, False]
    assert results[1].replaced is not None and results[1].replaced.id == results[0].feed.id
    knowledge = ledger.advisories()
    assert isinstance(knowledge.epss, EpssScores) and knowledge.epss == read[1]
    score = knowledge.epss.score("CVE-2024-0001")
    assert score is not None and score.score_date == datetime(2026, 11, 30, tzinfo=UTC)
    assert [s.current for s in ledger.feed_status()] == [False, True, False]


def test_osv_feeds_are_current_per_path(
    ledger: Ledger, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    debian = read_osv(osv_zip(tmp_path / "debian.zip", debian_record()))
    ubuntu = read_osv(osv_zip(tmp_path / "ubuntu.zip", ubuntu_notice()))
    ledger.import_feed(debian, AT, "alice")
    assert ledger.import_feed(ubuntu, AT, "alice").replaced is None  # beside it, not instead
    assert ledger.advisories().feeds == (debian, ubuntu)
    # a newer export at the same path, given relative this time, replaces only its own
    newer = debian_record(modified="2026-11-20T00:00:00Z")
    again = read_osv(osv_zip(Path("debian.zip"), newer))
    assert again.feed.source == "debian.zip"
    result = ledger.import_feed(again, AT, "alice")
    assert result.replaced is not None and result.replaced.feed == debian.feed
    assert result.feed.location == str(tmp_path / "debian.zip")
    assert ledger.advisories().feeds == (again, ubuntu)


def test_the_current_rule_is_pure_and_total() -> None:
    def stored(
        ident: int, kind: FeedKind, location: str, day: int, minute: int = 0
    ) -> stored_feeds.StoredFeed:
        return stored_feeds.StoredFeed(
            feed=Feed(kind, location, f"{ident:064}", AT + timedelta(days=day), STATED, 0, 0),
            id=ident,
            location=location,
            imported_at=AT + timedelta(minutes=minute),
            imported_by="x",
            current=False,
        )

    feeds = [
        stored(1, FeedKind.DEBIAN_TRACKER, "/a", 1),
        stored(2, FeedKind.DEBIAN_TRACKER, "/b", 0),
        stored(3, FeedKind.OSV, "/d.zip", 0),
        stored(4, FeedKind.OSV, "/u.zip", 0),
        stored(5, FeedKind.OSV, "/d.zip", 0, minute=5),  # same date, imported later
        stored(6, FeedKind.EPSS, "/e1", 2),
        stored(7, FeedKind.EPSS, "/e2", 3),
    ]
    assert stored_feeds.current_ids(feeds) == {1, 4, 5, 7}
    assert stored_feeds.current_ids(reversed(feeds)) == {1, 4, 5, 7}


# ---------------------------------------------------------------- only the releases asked for


def test_only_the_fixes_of_the_releases_asked_for(ledger: Ledger, tmp_path: Path) -> None:
    whole_tracker = read_tracker(tracker_file(tmp_path))
    whole_osv = read_osv(osv_zip(tmp_path / "all.zip", debian_record(), ubuntu_notice()))
    for value in (whole_tracker, whole_osv):
        ledger.import_feed(value, AT, "alice")
    wanted = {BOOKWORM, DEBIAN_12, FIPS}
    got = ledger.advisories(wanted)
    for have, whole in zip(got.feeds, (whole_tracker, whole_osv), strict=True):
        assert have.feed == whole.feed and have.advisories == whole.advisories  # always whole
        assert have.fixes == tuple(f for f in whole.fixes if f.release in wanted)
    assert got.feeds[0].releases() == {BOOKWORM}
    assert got.feeds[1].releases() == {DEBIAN_12, FIPS}  # the variant is a release of its own
    assert got.feeds[1].fixes_for(JAMMY, "demo-lib") == ()
    assert all(not f.fixes for f in ledger.advisories([]).feeds)
    assert ledger.advisories([Release(Distro.DEBIAN, "hamm")]).feeds[0].fixes == ()


def test_many_releases_are_asked_for_in_parts(
    ledger: Ledger, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(feed_rows, "_RELEASES_PER_QUERY", 1)
    whole = read_tracker(tracker_file(tmp_path))
    ledger.import_feed(whole, AT, "alice")
    names = ("sid", "bookworm", "trixie", "bullseye")
    (got,) = ledger.advisories([Release(Distro.DEBIAN, n) for n in names]).feeds
    assert got.fixes == whole.fixes  # in the feed's order, however many queries made it


def epss_of_three(path: Path) -> Path:
    """An EPSS file scoring the tracker's CVE, another CVE no fixture names, and a third."""
    text = (
        "#model_version:v2025.03.14,score_date:2026-11-30T00:00:00+0000\n"
        "cve,epss,percentile\n"
        "CVE-2099-0007,0.5,0.9\n"
        "CVE-2024-0001,0.94334,0.99912\n"
        "CVE-2099-0008,0.1,0.2\n"
    )
    path.write_bytes(gzip.compress(text.encode()))
    return path


def test_with_releases_epss_is_read_for_the_cves_the_feeds_name(
    ledger: Ledger, tmp_path: Path
) -> None:
    ledger.import_feed(read_tracker(tracker_file(tmp_path)), AT, "alice")
    scores = read_epss(epss_of_three(tmp_path / "epss_scores-2026-11-30.csv.gz"))
    ledger.import_feed(scores, AT, "alice")
    ledger.import_feed(
        read_kev(write_json(tmp_path / "kev.json", kev(kev_entry("CVE-2099-0008")))), AT, "alice"
    )
    assert ledger.advisories().epss == scores  # whole when nothing narrows the read
    narrowed = ledger.advisories({BOOKWORM}).epss
    assert narrowed is not None and narrowed.feed == scores.feed
    # CVE-2099-0007 is named by no advisory, no fix and no KEV entry: nothing can ask of it
    assert [s.cve for s in narrowed.scores] == ["CVE-2024-0001", "CVE-2099-0008"]
    assert narrowed.score("CVE-2024-0001") == scores.score("CVE-2024-0001")


@pytest.mark.parametrize("in_query", [500, 0], ids=["named-in-sql", "filtered-as-read"])
def test_an_audit_reads_only_what_is_said_of_the_cves_it_names(
    ledger: Ledger, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, in_query: int
) -> None:
    monkeypatch.setattr(feed_rows, "_NAMED_IN_QUERY", in_query)
    whole_tracker = read_tracker(tracker_file(tmp_path))
    whole_osv = read_osv(osv_zip(tmp_path / "all.zip", debian_record(), ubuntu_notice()))
    scores = read_epss(epss_of_three(tmp_path / "epss_scores-2026-11-30.csv.gz"))
    catalog = read_kev(write_json(tmp_path / "kev.json", kev(kev_entry("CVE-2099-0008"))))
    for value in (whole_tracker, whole_osv, scores, catalog):
        ledger.import_feed(value, AT, "alice")
    asked = {"CVE-2024-0001"}
    got = ledger.advisories(None, asked)
    for have, whole in zip(got.feeds, (whole_tracker, whole_osv), strict=True):
        assert have.fixes == tuple(f for f in whole.fixes if f.vulnerability in asked)
        assert have.advisories == tuple(a for a in whole.advisories if asked & set(a.cves))
        # what the feed covers is still every release it speaks of: a host of a release
        # with no fix for the CVE is judged not affected, not "no feed covers its release"
        assert have.releases() == whole.releases()
    assert got.feeds[0].fixes and got.feeds[1].advisories  # the fixture does name it
    assert got.epss is not None and [s.cve for s in got.epss.scores] == ["CVE-2024-0001"]
    assert got.kev == catalog  # small, always whole
    assert got.facts("CVE-2024-0001") == ledger.advisories().facts("CVE-2024-0001")
    with_releases = ledger.advisories({BOOKWORM}, asked)
    assert with_releases.feeds[0].fixes == tuple(
        f for f in whole_tracker.fixes if f.vulnerability in asked and f.release == BOOKWORM
    )
    # the audit reads them for every release first, then keeps its hosts' releases
    kept = got.of_releases({BOOKWORM})
    assert [f.fixes for f in kept.feeds] == [f.fixes for f in with_releases.feeds]
    assert [f.releases() for f in kept.feeds] == [f.releases() for f in got.feeds]
    assert kept.facts("CVE-2024-0001") == with_releases.facts("CVE-2024-0001")
    none = ledger.advisories(None, {"CVE-1999-0001"})
    assert all(not f.fixes and not f.advisories for f in none.feeds)
    assert none.epss is not None and none.epss.scores == ()


# ---------------------------------------------------------------- schema 5 → 6


def version_5_ledger(path: Path) -> None:
    """A ledger as patchkit with schema 5 left it (no advisory tables), with one assessment."""
    ledger = Ledger(f"sqlite:///{path}")
    kernel = PendingUpdate("linux-image-amd64", "6.1.1", "6.1.2", "stable")
    ledger.record_assessment([Finding("web1", AT, True, (kernel,))], source="inv", started=AT)
    ledger.close()
    conn = sqlite3.connect(path, isolation_level=None)
    for table in reversed(t.ADVISORY_TABLES):
        conn.execute(f"DROP TABLE {table.name}")
    conn.execute("ALTER TABLE plans DROP COLUMN body_z")  # version 7
    conn.execute("ALTER TABLE host_phases DROP COLUMN controller")  # version 8
    conn.execute("ALTER TABLE host_phases DROP COLUMN via")
    conn.execute("UPDATE meta SET value = '5' WHERE key = 'schema'")
    conn.close()


def test_a_version_5_ledger_is_migrated_and_keeps_its_records(tmp_path: Path) -> None:
    path = tmp_path / "ledger.sqlite"
    version_5_ledger(path)
    engine = create_engine(f"sqlite:///{path}")
    with engine.connect() as conn:
        assert not conn.dialect.has_table(conn, "advisory_feeds")
    ledger = Ledger(f"sqlite:///{path}")  # opening migrates
    with engine.connect() as conn:
        version = conn.execute(select(t.meta.c.value).where(t.meta.c.key == "schema")).scalar()
        assert version == str(t.SCHEMA_VERSION) == "8"
        assert all(conn.dialect.has_table(conn, table.name) for table in t.ADVISORY_TABLES)
        assert conn.execute(select(func.count()).select_from(t.findings)).scalar() == 1
    engine.dispose()
    assert ledger.latest_findings()["web1"].updates[0].candidate == "6.1.2"
    assert ledger.feed_status() == []
    feed = read_tracker(tracker_file(tmp_path))
    assert ledger.import_feed(feed, AT, "alice").stored
    assert ledger.advisories().feeds == (feed,)
    with sqlite3.connect(path) as conn:
        assert conn.execute("PRAGMA foreign_key_check").fetchall() == []
