"""Integration: older ledgers are migrated on open, atomically, on SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import Connection, create_engine, inspect, text

from patchkit.advisories import Distro, Release, read_epss, read_kev, read_osv, read_tracker
from patchkit.errors import LedgerError
from patchkit.ledger import Ledger, migrations
from patchkit.ledger import schema as t
from patchkit.ledger.feed_rows import FeedValue
from tests.unit.advisory_files import epss_file, tracker_file
from tests.unit.test_advisory_feeds import kev, kev_entry, ubuntu_notice, write_json

# ledger_url (a ledger on SQLite and on PostgreSQL) and the server come from this plugin.
pytest_plugins = ["tests.integration.postgres"]

T0 = datetime(2026, 11, 1, 9, 0, tzinfo=UTC)


# Columns versions after 1 added to existing tables (version 4: admission, retries).
LATER_COLUMNS = (
    ("plans", "made_by"),
    ("approvals", "emergency"),
    ("approvals", "expires"),
    ("approvals", "signature"),
    ("approvals", "consumed_by"),
    ("runs", "emergency"),
    ("host_phases", "attempt"),
)


# Columns version 5 added to findings (the software inventory); package_sets is new in it too.
SOFTWARE_COLUMNS = ("distribution", "release", "release_version", "package_set")


def drop_software(conn: Connection) -> None:
    """Take findings back to before version 5. SQLite cannot drop a column a foreign key
    names: there the table is rebuilt without them (SQLite's own recipe for such changes)."""
    if conn.dialect.name == "postgresql":
        drops = ", ".join(f'DROP COLUMN "{c}"' for c in SOFTWARE_COLUMNS)
        conn.execute(text(f"ALTER TABLE findings {drops}"))
    else:
        # this plain engine leaves SQLite's foreign keys off (its default), so pending_updates'
        # reference to findings does not stop the drop
        conn.execute(
            text(
                "CREATE TABLE findings_v4 (id INTEGER NOT NULL, assessment_id INTEGER NOT NULL,"
                " host VARCHAR(255) NOT NULL, assessed_at DATETIME NOT NULL,"
                " reachable BOOLEAN NOT NULL, reboot_pending BOOLEAN NOT NULL,"
                " message TEXT NOT NULL, PRIMARY KEY (id),"
                " FOREIGN KEY(assessment_id) REFERENCES assessments (id))"
            )
        )
        conn.execute(
            text(
                "INSERT INTO findings_v4 SELECT id, assessment_id, host, assessed_at, reachable,"
                " reboot_pending, message FROM findings"
            )
        )
        conn.execute(text("DROP TABLE findings"))
        conn.execute(text("ALTER TABLE findings_v4 RENAME TO findings"))
        conn.execute(text("CREATE INDEX ix_findings_host_time ON findings (host, assessed_at)"))
    conn.execute(text("DROP TABLE package_sets"))


def drop_advisories(conn: Connection) -> None:
    """Take a ledger back to before version 6: no advisory feed tables."""
    for table in reversed(t.ADVISORY_TABLES):
        conn.execute(text(f"DROP TABLE {table.name}"))


def drop_packed_plans(conn: Connection) -> None:
    """Take plans back to before version 7: the body only as text (and phases back to before
    version 8: no controller or node)."""
    conn.execute(text("ALTER TABLE plans DROP COLUMN body_z"))
    drop_who_ran(conn)


def drop_who_ran(conn: Connection) -> None:
    """Take phases back to before version 8: who ran them was not recorded."""
    for column in ("controller", "via"):
        conn.execute(text(f"ALTER TABLE host_phases DROP COLUMN {column}"))


def version_1_ledger(url: str) -> None:
    """A ledger as patchkit with schema 1 left it: approvals without the reboots column, none of
    the columns of version 4, no locks table, none of version 5's software inventory, none of
    version 6's advisory feeds."""
    Ledger(url)  # today's schema, then taken back to version 1
    engine = create_engine(url)
    with engine.begin() as conn:
        drop_packed_plans(conn)
        drop_advisories(conn)
        drop_software(conn)
        conn.execute(
            text(
                'INSERT INTO plans (id, hash, policy, "window", window_start, made_at, saved_at,'
                " body) VALUES ('plan-1', 'h1', 'lab', 'hourly', :at, :at, :at, '{}')"
            ),
            {"at": T0},
        )
        conn.execute(text("ALTER TABLE approvals DROP COLUMN reboots"))
        for table, column in LATER_COLUMNS:
            conn.execute(text(f"ALTER TABLE {table} DROP COLUMN {column}"))
        conn.execute(text("DROP TABLE locks"))  # version 3
        conn.execute(
            text(
                "INSERT INTO approvals (plan_id, plan_hash, approved_by, approved_at, comment)"
                " VALUES ('plan-1', 'h1', 'alice', :at, 'CHG-1')"
            ),
            {"at": T0},
        )
        conn.execute(
            text("INSERT INTO assessments (id, started, source, hosts) VALUES (1, :at, 'inv', 1)"),
            {"at": T0},
        )
        conn.execute(
            text(
                "INSERT INTO findings (assessment_id, host, assessed_at, reachable,"
                " reboot_pending, message) VALUES (1, 'web1', :at, TRUE, FALSE, 'as of v1')"
            ),
            {"at": T0},
        )
        conn.execute(text("UPDATE meta SET value = '1' WHERE key = 'schema'"))
    engine.dispose()


def schema_of(url: str, table: str = "approvals") -> tuple[str, set[str]]:
    engine = create_engine(url)
    with engine.connect() as conn:
        version = conn.execute(text("SELECT value FROM meta WHERE key = 'schema'")).scalar_one()
        columns = {c["name"] for c in inspect(conn).get_columns(table)}
    engine.dispose()
    return str(version), columns


def test_a_version_1_ledger_is_migrated_and_keeps_its_records(ledger_url: str) -> None:
    version_1_ledger(ledger_url)
    later = {"reboots"} | {c for table, c in LATER_COLUMNS if table == "approvals"}
    assert schema_of(ledger_url) == ("1", {c.name for c in t.approvals.columns} - later)
    old_findings = {c.name for c in t.findings.columns} - set(SOFTWARE_COLUMNS)
    assert schema_of(ledger_url, "findings") == ("1", old_findings)
    ledger = Ledger(ledger_url)  # opening migrates
    assert schema_of(ledger_url) == (str(t.SCHEMA_VERSION), {c.name for c in t.approvals.columns})
    assert schema_of(ledger_url, "findings")[1] == {c.name for c in t.findings.columns}
    for table in t.ADVISORY_TABLES:
        assert schema_of(ledger_url, table.name)[1] == {c.name for c in table.columns}
    found = ledger.latest_findings()["web1"]
    assert (found.message, found.software, found.release) == ("as of v1", None, None)
    assert schema_of(ledger_url, "plans")[1] == {c.name for c in t.plans.columns}
    assert ledger.plan("plan-1") == {}  # a plan saved as text reads as before
    (old,) = ledger.approvals("plan-1")
    assert (old.by, old.comment, old.reboots) == ("alice", "CHG-1", False)
    ledger.approve("plan-1", "h1", by="bob", at=T0, reboots=True)
    assert [a.reboots for a in ledger.approvals("plan-1")] == [False, True]
    Ledger(ledger_url)  # opening an up-to-date ledger again changes nothing
    assert schema_of(ledger_url)[0] == str(t.SCHEMA_VERSION)


def test_a_failing_migration_leaves_the_ledger_as_it_was(
    ledger_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    version_1_ledger(ledger_url)
    before = schema_of(ledger_url)
    real_step = migrations.STEPS[2]

    def half_done(conn: Connection) -> None:
        real_step(conn)  # the real step runs...
        conn.execute(text("ALTER TABLE no_such_table ADD COLUMN x INTEGER"))  # ...then one fails

    monkeypatch.setitem(migrations.STEPS, 2, half_done)
    with pytest.raises(LedgerError) as caught:
        Ledger(ledger_url)
    assert "cannot migrate the ledger" in str(caught.value)
    assert "from schema 1 to 2" in str(caught.value)
    assert "nothing was changed" in (caught.value.hint or "")
    assert schema_of(ledger_url) == before  # the column the first half added is gone too


def test_a_ledger_newer_than_patchkit_is_refused(ledger_url: str) -> None:
    Ledger(ledger_url)
    engine = create_engine(ledger_url)
    with engine.begin() as conn:
        conn.execute(text("UPDATE meta SET value = '99' WHERE key = 'schema'"))
    engine.dispose()
    with pytest.raises(LedgerError, match="has schema 99, newer than this patchkit's"):
        Ledger(ledger_url)


def test_a_version_5_ledger_gains_the_advisory_feeds_and_stores_them(
    ledger_url: str, tmp_path: Path
) -> None:
    Ledger(ledger_url)
    engine = create_engine(ledger_url)
    with engine.begin() as conn:
        drop_packed_plans(conn)
        drop_advisories(conn)
        conn.execute(text("UPDATE meta SET value = '5' WHERE key = 'schema'"))
    engine.dispose()
    ledger = Ledger(ledger_url)  # opening migrates
    assert schema_of(ledger_url, "advisory_fixes")[0] == str(t.SCHEMA_VERSION)
    # every kind stored and read back as the reader made it, here on PostgreSQL too
    folder = tmp_path / "osv"
    folder.mkdir()
    write_json(folder / "usn.json", ubuntu_notice())
    values: list[FeedValue] = [
        read_tracker(tracker_file(tmp_path)),
        read_osv(folder),
        read_kev(write_json(tmp_path / "kev.json", kev(kev_entry("CVE-2024-0001")))),
        read_epss(epss_file(tmp_path / "epss.csv.gz", "2026-11-30")),
    ]
    for value in values:
        assert ledger.import_feed(value, T0, "alice").stored
    assert not ledger.import_feed(values[0], T0, "bob").stored  # the same bytes: once
    knowledge = ledger.advisories()
    assert list(knowledge.feeds) == values[:2]
    assert (knowledge.kev, knowledge.epss) == (values[2], values[3])
    bookworm = Release(Distro.DEBIAN, "bookworm")
    (tracked, _) = ledger.advisories([bookworm]).feeds
    assert tracked.releases() == {bookworm}


def test_a_version_6_ledger_keeps_its_plans_as_text_and_packs_new_ones(ledger_url: str) -> None:
    Ledger(ledger_url)
    engine = create_engine(ledger_url)
    old_body = '{"id": "plan-old", "batches": []}'
    with engine.begin() as conn:
        drop_packed_plans(conn)
        conn.execute(
            text(
                'INSERT INTO plans (id, hash, policy, "window", window_start, made_at, saved_at,'
                " body) VALUES ('plan-old', 'h-old', 'lab', 'w', :at, :at, :at, :body)"
            ),
            {"at": T0, "body": old_body},
        )
        conn.execute(text("UPDATE meta SET value = '6' WHERE key = 'schema'"))
    engine.dispose()
    ledger = Ledger(ledger_url)  # opening migrates
    assert schema_of(ledger_url, "plans") == (
        str(t.SCHEMA_VERSION),
        {c.name for c in t.plans.columns},
    )
    assert ledger.plan("plan-old") == {"id": "plan-old", "batches": []}
    new_body = {
        "id": "plan-new", "hash": "h-new", "policy": "lab", "made_at": T0.isoformat(),
        "window": {"name": "w", "start": T0.isoformat()}, "note": "ünïcode",
    }  # fmt: skip
    assert ledger.save_plan(new_body, saved_at=T0)
    engine = create_engine(ledger_url)
    with engine.connect() as conn:
        row = conn.execute(text("SELECT body, body_z FROM plans WHERE id = 'plan-new'")).one()
    engine.dispose()
    assert row.body == "" and bytes(row.body_z)[:1] == b"\x78"  # a zlib stream, on both
    assert ledger.plan("plan-new") == new_body
