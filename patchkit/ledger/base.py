"""The ledger's connection: URL, engine, schema migration on open, transactions, errors.

Every other ledger module is a mixin on ``LedgerBase``; ``patchkit.ledger.store.Ledger`` puts
them together. Rows stop in these modules; callers get model values."""

from __future__ import annotations

import os
import re
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import (
    Connection,
    Engine,
    create_engine,
    event,
    insert,
    inspect,
    select,
    update,
)
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, SQLAlchemyError

from patchkit.errors import LedgerError
from patchkit.ledger import migrations
from patchkit.ledger import schema as t


def this_controller() -> str:
    """This controller process, as the ledger records who holds a lock or ran a phase:
    ``hostname:pid`` (two controllers on one machine are told apart)."""
    return f"{socket.gethostname()}:{os.getpid()}"


DEFAULT_PATH = Path(".patchkit/ledger.sqlite")


def default_url() -> str:
    return f"sqlite:///{DEFAULT_PATH}"


def _make_private(path: Path) -> None:
    """Create the ledger's folder (0700) and an empty database file (0600) where they are missing.

    The ledger holds who approved what and the fleet's state, so only its owner reads it. SQLite
    gives its ``-wal`` and ``-shm`` files the database file's mode, and takes an empty file for
    an empty database: creating that file first makes all three private. A folder or file that
    exists already is the user's choice and is left as it is.
    """
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)  # the mode only for a new folder
    try:
        # O_EXCL: never touch a file someone else made, even one made a moment ago
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return
    os.close(fd)


def shown_url(url: str) -> str:
    """``url`` as messages show it: a password in it (user:password@ or ?password=) masked."""
    try:
        parsed = make_url(url)
    except (ArgumentError, ValueError):
        # Not a URL SQLAlchemy reads, but it may still hold "user:password@": mask that.
        return re.sub(r"(://[^/:@]*:)[^/@]*@", r"\1***@", url)
    if parsed.password is None and "password" not in parsed.query:
        return url  # as given: rendering would re-quote it (sqlite:///file:… → file%3A…)
    if "password" in parsed.query:
        parsed = parsed.difference_update_query(["password"]).set(
            password=str(parsed.query["password"])
        )
    return parsed.render_as_string(hide_password=True)


# Backends (URL schemes before any "+driver") the schema is written and tested for.
SUPPORTED = frozenset({"sqlite", "postgresql"})


def _backend(url: str) -> str:
    """The database named by ``url`` (``postgresql+psycopg://`` → ``postgresql``), or ""."""
    scheme, sep, _ = url.partition("://")
    return scheme.split("+", 1)[0].lower() if sep else ""


def utc(value: datetime) -> datetime:
    return value.astimezone(UTC)


def aware(value: datetime) -> datetime:
    """SQLite hands times back without a zone; they were stored in UTC."""
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def audit(conn: Connection, at: datetime, who: str, action: str, detail: str) -> None:
    """One line of the audit trail, in the caller's transaction."""
    conn.execute(insert(t.audit).values(at=utc(at), who=who, action=action, detail=detail))


def lock_row(row: Any) -> dict[str, Any]:
    return {
        "host": row.host,
        "run": row.run_id,
        "holder": row.holder,
        "acquired": aware(row.acquired),
        "heartbeat": aware(row.heartbeat),
    }


def new_id(result: Any) -> int:
    """The integer key an INSERT just made (SQLAlchemy types it as optional)."""
    return int(result.inserted_primary_key[0])


class LedgerBase:
    """Open (and create if needed) the ledger at ``url``: ``sqlite:///path`` or PostgreSQL."""

    def __init__(self, url: str | None = None) -> None:
        given = url or default_url()
        self.url = shown_url(given)  # for messages, which must never show a password
        try:
            self.engine = self._connect(given)
            with self.engine.begin() as conn:
                self._bring_up_to_date(conn)
        except LedgerError:
            raise
        # ValueError: a port that is no number; OSError: the ledger's folder cannot be made
        except (SQLAlchemyError, ValueError, OSError) as exc:
            raise self._error("cannot open", exc) from None

    def _bring_up_to_date(self, conn: Connection) -> None:
        """Create a new ledger, or migrate an older one, in the caller's transaction."""
        version: str | None = None
        if inspect(conn).has_table(t.meta.name):
            stored = conn.execute(select(t.meta.c.value).where(t.meta.c.key == "schema"))
            version = stored.scalar_one_or_none()
        if version is None:
            t.metadata.create_all(conn)
            conn.execute(insert(t.meta).values(key="schema", value=str(t.SCHEMA_VERSION)))
            return
        current = int(version)
        if current > t.SCHEMA_VERSION:
            raise LedgerError(
                f"ledger {self.url} has schema {current}, newer than this patchkit's "
                f"{t.SCHEMA_VERSION}",
                hint="upgrade patchkit (every controller sharing a ledger needs the same version)",
            )
        for target, step in migrations.pending(current, t.SCHEMA_VERSION):
            try:
                step(conn)
            except SQLAlchemyError as exc:
                detail = str(getattr(exc, "orig", exc)).splitlines()[0]
                raise LedgerError(
                    f"cannot migrate the ledger {self.url} from schema {target - 1} to "
                    f"{target}: {detail}",
                    hint="nothing was changed (the migration is one transaction); check the "
                    "database user's rights to alter tables",
                ) from None
        t.metadata.create_all(conn)  # tables that are new in this version
        if current != t.SCHEMA_VERSION:
            conn.execute(
                update(t.meta).where(t.meta.c.key == "schema").values(value=str(t.SCHEMA_VERSION))
            )

    def _connect(self, url: str) -> Engine:
        backend = _backend(url)
        if backend not in SUPPORTED:
            raise LedgerError(
                f"ledger {self.url}: {backend or 'this URL'} is not a database patchkit keeps "
                "its ledger in",
                hint="use sqlite:///PATH (the default) or postgresql://USER@HOST/DB",
            )
        if url in ("sqlite://", "sqlite:///"):  # SQLAlchemy would keep it in memory: lost at exit
            raise LedgerError(
                f"ledger {self.url}: a SQLite ledger needs a file",
                hint="give its path: sqlite:///relative/path.sqlite or sqlite:////absolute/path",
            )
        if backend == "sqlite":
            parsed = make_url(url)
            # ":memory:" is no file; a URI filename (?uri=true, "file:…") is SQLite's to read
            if parsed.database not in (None, ":memory:") and "uri" not in parsed.query:
                _make_private(Path(str(parsed.database)))
        try:
            engine = create_engine(url)
        except ModuleNotFoundError as exc:
            raise LedgerError(
                f"ledger {self.url}: the database driver {exc.name} is not installed",
                hint="pip install 'patchkit[postgresql]' (psycopg 3) for a PostgreSQL ledger",
            ) from None
        if engine.dialect.name == "sqlite":

            @event.listens_for(engine, "connect")
            def _pragmas(dbapi_conn: Any, _record: Any) -> None:
                # The driver's own transaction handling commits DDL on its own; let SQLAlchemy
                # say BEGIN itself (below) so that a migration is one transaction here too.
                dbapi_conn.isolation_level = None
                cursor = dbapi_conn.cursor()
                cursor.execute("PRAGMA foreign_keys=ON")
                cursor.execute("PRAGMA journal_mode=WAL")  # readers never block the writer
                cursor.execute("PRAGMA busy_timeout=10000")
                cursor.close()

            @event.listens_for(engine, "begin")
            def _begin(conn: Connection) -> None:
                conn.exec_driver_sql("BEGIN")

        return engine

    def _error(self, what: str, exc: Exception) -> LedgerError:
        detail = str(getattr(exc, "orig", exc)).splitlines()[0]
        return LedgerError(
            f"{what} the ledger {self.url}: {detail}",
            hint="check the path or URL, its permissions and free disk space (--ledger or "
            "PATCHKIT_LEDGER choose another)",
        )

    @contextmanager
    def _tx(self, what: str) -> Iterator[Connection]:
        try:
            with self.engine.begin() as conn:
                yield conn
        except SQLAlchemyError as exc:
            raise self._error(what, exc) from None

    def close(self) -> None:
        self.engine.dispose()
