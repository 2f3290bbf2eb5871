"""Integration: how the ledger fails on PostgreSQL (no server, wrong password, no write rights).

The counterparts of the SQLite-only tests in ``test_ledger.py``, on a server the session starts
itself (``postgres.py``). Every failure must be a LedgerError that names the ledger, and a write
that fails must leave nothing of itself behind.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import TYPE_CHECKING

import pytest
from psycopg import sql

from patchkit.errors import ExitCode, LedgerError
from patchkit.ledger import Ledger
from patchkit.model import Finding, PendingUpdate

if TYPE_CHECKING:
    # Only the type: importing the module itself is pytest_plugins' job (see postgres.py).
    from .postgres import PostgresServer

pytest_plugins = ["tests.integration.postgres"]

T0 = datetime(2026, 11, 1, 9, 0, tzinfo=UTC)
# Fixed, unlike the server's generated one, so a message that shows it is easy to spot.
SECRET = "s3cret-not-for-messages"  # noqa: S105 - a test role's password on a throwaway server


def finding(host: str) -> Finding:
    update = PendingUpdate("lib", "1.0", "1.1", "lab-security")
    return Finding(host=host, assessed_at=T0, reachable=True, updates=(update,))


def assert_clear(err: LedgerError, server: PostgresServer, database: str, detail: str) -> None:
    """The error names the ledger (host, port, database), says why, and what to do."""
    assert f"{server.host}:{server.port}/{database}" in err.message
    assert detail in err.message
    assert err.exit_code == ExitCode.BAD_INPUT
    assert err.hint


def test_no_server_at_that_port_names_the_url(
    postgres_server: PostgresServer, postgres_database: str
) -> None:
    port = postgres_server.closed_port()
    with pytest.raises(LedgerError) as err:
        Ledger(postgres_server.url(postgres_database, port=port))
    assert f"{postgres_server.host}:{port}/{postgres_database}" in err.value.message
    assert "Connection refused" in err.value.message
    assert err.value.exit_code == ExitCode.BAD_INPUT


def test_wrong_password_names_the_url(
    postgres_server: PostgresServer, postgres_database: str
) -> None:
    with pytest.raises(LedgerError) as err:
        Ledger(postgres_server.url(postgres_database, password=SECRET))
    assert_clear(err.value, postgres_server, postgres_database, "password authentication failed")


def test_malformed_port_is_a_ledger_error(postgres_server: PostgresServer) -> None:
    url = postgres_server.url("ledger").replace(f":{postgres_server.port}/", ":port/")
    with pytest.raises(LedgerError) as err:
        Ledger(url)
    assert "ledger" in err.value.message


def test_empty_database_without_create_rights_cannot_be_opened(
    postgres_server: PostgresServer, postgres_database: str
) -> None:
    # Since PostgreSQL 15 nobody but the owner may create tables in the public schema.
    role = postgres_server.create_role(SECRET)
    with pytest.raises(LedgerError) as err:
        Ledger(postgres_server.url(postgres_database, user=role, password=SECRET))
    assert_clear(err.value, postgres_server, postgres_database, "permission denied for schema")


def select_only(server: PostgresServer, database: str) -> str:
    """A role that may read every ledger table and write none; its URL."""
    role = server.create_role(SECRET)
    server.execute(
        sql.SQL("GRANT SELECT ON ALL TABLES IN SCHEMA public TO {}").format(sql.Identifier(role)),
        database=database,
    )
    return server.url(database, user=role, password=SECRET)


def first_insert_only(server: PostgresServer, database: str) -> str:
    """A role that may add an assessment but none of its findings: the write fails halfway."""
    role = server.create_role(SECRET)
    server.execute(
        sql.SQL("GRANT SELECT ON ALL TABLES IN SCHEMA public TO {}").format(sql.Identifier(role)),
        sql.SQL("GRANT INSERT ON assessments TO {}").format(sql.Identifier(role)),
        sql.SQL("GRANT USAGE ON SEQUENCE assessments_id_seq TO {}").format(sql.Identifier(role)),
        database=database,
    )
    return server.url(database, user=role, password=SECRET)


def read_only_database(server: PostgresServer, database: str) -> str:
    """The owner's URL, on a database whose transactions are read-only by default."""
    server.execute(
        sql.SQL("ALTER DATABASE {} SET default_transaction_read_only = on").format(
            sql.Identifier(database)
        )
    )
    return server.url(database)


RESTRICTIONS: dict[str, tuple[Callable[[PostgresServer, str], str], str]] = {
    "select-only-role": (select_only, "permission denied for table assessments"),
    "first-insert-only": (first_insert_only, "permission denied for table findings"),
    "read-only-transactions": (read_only_database, "read-only transaction"),
}


@pytest.mark.parametrize("restriction", sorted(RESTRICTIONS))
def test_write_refused_is_a_clear_error_and_writes_nothing(
    postgres_server: PostgresServer, postgres_database: str, restriction: str
) -> None:
    Ledger(postgres_server.url(postgres_database)).close()  # the owner creates the tables
    restrict, detail = RESTRICTIONS[restriction]
    ledger = Ledger(restrict(postgres_server, postgres_database))
    with pytest.raises(LedgerError) as err:
        ledger.record_assessment([finding("a"), finding("b")], source="x", started=T0)
    ledger.close()
    assert_clear(err.value, postgres_server, postgres_database, detail)
    assert "cannot write" in err.value.message
    assert Ledger(postgres_server.url(postgres_database)).latest_findings() == {}
    count = sql.SQL("SELECT count(*) FROM assessments")
    assert postgres_server.scalar(count, postgres_database) == 0  # nothing half-written
    if restriction == "first-insert-only":
        # The assessment row was really inserted (its id was drawn), then rolled back.
        drawn = sql.SQL("SELECT is_called FROM assessments_id_seq")
        assert postgres_server.scalar(drawn, postgres_database) is True


@pytest.mark.parametrize("where", ["authority", "query"])
def test_open_error_does_not_show_the_password(
    postgres_server: PostgresServer, postgres_database: str, where: str
) -> None:
    url = postgres_server.url(postgres_database, password=SECRET)
    if where == "query":  # libpq also takes the password as a parameter
        url = url.replace(f":{SECRET}@", "@") + f"?password={SECRET}"
    with pytest.raises(LedgerError) as err:
        Ledger(url)
    assert SECRET not in err.value.message
    assert SECRET not in (err.value.hint or "")
    assert f"{postgres_server.host}:{postgres_server.port}/{postgres_database}" in err.value.message


def test_write_error_does_not_show_the_password(
    postgres_server: PostgresServer, postgres_database: str
) -> None:
    Ledger(postgres_server.url(postgres_database)).close()
    ledger = Ledger(select_only(postgres_server, postgres_database))
    with pytest.raises(LedgerError) as err:
        ledger.record_assessment([finding("a")], source="x", started=T0)
    ledger.close()
    assert SECRET not in err.value.message
    assert SECRET not in str(ledger.url)  # callers put ledger.url in messages (cli/window.py)
