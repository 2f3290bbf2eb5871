"""Ledger schema versions and the steps between them.

The ``meta`` row ``schema`` holds the version a ledger is at. Opening an older ledger runs every
step from its version up to ``SCHEMA_VERSION`` in one transaction (DDL is transactional on both
PostgreSQL and SQLite): a step that fails leaves the ledger exactly at its old version. A ledger
newer than this patchkit is refused rather than guessed at.

Adding a version: append a step below that changes existing tables (new tables are created by
``metadata.create_all`` after the steps), bump ``schema.SCHEMA_VERSION``, and test the step on a
ledger at the previous version (``tests/integration/test_ledger_migrations.py``, and
``tests/unit/test_software_inventory.py`` for version 5 on SQLite,
``tests/unit/test_advisory_ledger.py`` for version 6, ``tests/unit/test_plan_bodies.py`` for 7,
``tests/unit/test_who_ran.py`` for 8).
"""

from __future__ import annotations

from collections.abc import Callable

from sqlalchemy import Connection, text

from patchkit.ledger import schema


def _v2_reboot_approval(conn: Connection) -> None:
    # Approvals of version 1 did not say whether downtime (reboots) was approved: they did not.
    conn.execute(text("ALTER TABLE approvals ADD COLUMN reboots BOOLEAN DEFAULT FALSE NOT NULL"))


def _v3_locks(conn: Connection) -> None:
    schema.locks.create(conn, checkfirst=True)


def _v4_admission(conn: Connection) -> None:
    # Approvals of version 3 were not single-use, never expired and were never signed; they
    # keep working as they did until a run consumes them.
    for table, column in (
        ("plans", "made_by VARCHAR(255) DEFAULT '' NOT NULL"),
        ("approvals", "emergency BOOLEAN DEFAULT FALSE NOT NULL"),
        ("approvals", "expires TIMESTAMP"),
        ("approvals", "signature TEXT"),
        ("approvals", "consumed_by VARCHAR(64)"),
        ("runs", "emergency BOOLEAN DEFAULT FALSE NOT NULL"),
        ("host_phases", "attempt INTEGER DEFAULT 1 NOT NULL"),
    ):
        if conn.dialect.name == "postgresql":
            column = column.replace("TIMESTAMP", "TIMESTAMP WITH TIME ZONE")
        conn.execute(text(f"ALTER TABLE {table} ADD COLUMN {column}"))
    # Locks gain holders without a run (assess, release): the table is rebuilt with its rows,
    # the portable way to drop a NOT NULL on SQLite.
    rows = [dict(r._mapping) for r in conn.execute(text("SELECT * FROM locks"))]
    conn.execute(text("DROP TABLE locks"))
    schema.locks.create(conn)
    if rows:
        conn.execute(schema.locks.insert(), [r | {"purpose": "run"} for r in rows])


def _v5_software(conn: Connection) -> None:
    # Findings of version 4 knew nothing of the installed software: None, "not collected".
    schema.package_sets.create(conn, checkfirst=True)  # first: findings refer to it
    for column in (
        "distribution VARCHAR(64)",
        '"release" VARCHAR(64)',  # quoted: a keyword (RELEASE SAVEPOINT)
        "release_version VARCHAR(64)",
        "package_set VARCHAR(64) REFERENCES package_sets (digest)",
    ):
        conn.execute(text(f"ALTER TABLE findings ADD COLUMN {column}"))


def _v6_advisories(conn: Connection) -> None:
    # Only new tables (imported advisory feeds): nothing older changes.
    for table in schema.ADVISORY_TABLES:
        table.create(conn, checkfirst=True)


def _v7_packed_plans(conn: Connection) -> None:
    # Plans saved before keep their text in body (body_z NULL) and read as before.
    kind = "BYTEA" if conn.dialect.name == "postgresql" else "BLOB"
    conn.execute(text(f"ALTER TABLE plans ADD COLUMN body_z {kind}"))


# version -> the step that takes a ledger from the version before to it
def _v8_who_ran(conn: Connection) -> None:
    # Phases of version 7 did not record their controller or node: "" (unknown, or before
    # execution nodes existed: the run's own controller, runs.holder).
    for column in ("controller", "via"):
        conn.execute(
            text(f"ALTER TABLE host_phases ADD COLUMN {column} VARCHAR(255) DEFAULT '' NOT NULL")
        )


STEPS: dict[int, Callable[[Connection], None]] = {
    2: _v2_reboot_approval,
    3: _v3_locks,
    4: _v4_admission,
    5: _v5_software,
    6: _v6_advisories,
    7: _v7_packed_plans,
    8: _v8_who_ran,
}


def pending(current: int, target: int) -> list[tuple[int, Callable[[Connection], None]]]:
    """The steps to run, in order, to take a ledger at ``current`` to ``target``."""
    return [(version, STEPS[version]) for version in range(current + 1, target + 1)]
