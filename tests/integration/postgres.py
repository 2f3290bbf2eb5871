"""A throwaway PostgreSQL server for the ledger tests: Debian's binaries, a temp cluster, loopback.

Register it in a test module with ``pytest_plugins = ["tests.integration.postgres"]``: pytest then
loads these fixtures once for the whole session, however many modules name them (a plain import
into each module would give each module its own "session" fixture, hence its own server). Import
names from it only under TYPE_CHECKING: a module imported before pytest loads it as a plugin
misses pytest's assertion rewriting (and pytest warns).

The server is started by the tests themselves, never the machine's own PostgreSQL service: a
cluster made with ``initdb`` in a temporary directory, listening on 127.0.0.1 on a free port and
on a Unix socket inside that directory, with password (SCRAM) authentication so that the tests
can watch what a wrong password does. It is stopped and removed at the end of the session.
"""

from __future__ import annotations

import logging
import os
import pwd
import re
import secrets
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Collection, Iterator
from dataclasses import dataclass
from pathlib import Path

import psycopg
import pytest
from psycopg import sql
from sqlalchemy.engine import URL

from .debian import apt_install

log = logging.getLogger(__name__)

SUPERUSER = "postgres"  # the cluster's bootstrap role (initdb -U)
SERVER_PACKAGE = "postgresql"  # Debian's package for the distribution's supported version
BINARIES = Path("/usr/lib/postgresql")
START_ATTEMPTS = 3  # a free port can be taken between choosing it and binding it
# A throwaway cluster needs no crash safety; these make initdb, CREATE DATABASE and commits cheap.
SETTINGS = {
    "listen_addresses": "'127.0.0.1'",
    "fsync": "off",
    "synchronous_commit": "off",
    "full_page_writes": "off",
    "max_connections": "50",
    "shared_buffers": "32MB",
}


@dataclass(frozen=True)
class PostgresServer:
    """A running throwaway cluster: where it is and how to reach it as its superuser."""

    bindir: Path
    workdir: Path
    port: int
    password: str
    host: str = "127.0.0.1"

    @property
    def datadir(self) -> Path:
        return self.workdir / "data"

    def url(
        self,
        database: str,
        *,
        user: str = SUPERUSER,
        password: str | None = None,
        port: int | None = None,
    ) -> str:
        """A SQLAlchemy URL (psycopg 3 driver) for ``database``; the superuser's by default."""
        return URL.create(
            "postgresql+psycopg",
            username=user,
            password=self.password if password is None else password,
            host=self.host,
            port=self.port if port is None else port,
            database=database,
        ).render_as_string(hide_password=False)

    def closed_port(self) -> int:
        """A port on the server's address where nothing listens (for "no server there")."""
        return free_port()

    def execute(self, *statements: sql.SQL | sql.Composed, database: str = "postgres") -> None:
        """Run statements as the superuser outside a transaction (CREATE DATABASE needs that)."""
        with psycopg.connect(
            host=self.host,
            port=self.port,
            user=SUPERUSER,
            password=self.password,
            dbname=database,
            autocommit=True,
        ) as conn:
            for statement in statements:
                conn.execute(statement)

    def scalar(self, query: sql.SQL | sql.Composed, database: str) -> object:
        """The first column of the first row of ``query``, run as the superuser."""
        with psycopg.connect(
            host=self.host, port=self.port, user=SUPERUSER, password=self.password, dbname=database
        ) as conn:
            row = conn.execute(query).fetchone()
        assert row is not None, f"no row from {query!r}"
        return row[0]

    def create_database(self) -> str:
        """A new empty database (a fresh name each time); its name."""
        name = "ledger_" + secrets.token_hex(6)
        self.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        return name

    def create_role(self, password: str) -> str:
        """A new login role with ``password`` and no privileges beyond PUBLIC's; its name.

        Roles belong to the cluster, not to a database: nothing drops them, the cluster goes.
        """
        name = "role_" + secrets.token_hex(6)
        self.execute(
            sql.SQL("CREATE ROLE {} LOGIN PASSWORD {}").format(
                sql.Identifier(name), sql.Literal(password)
            )
        )
        return name

    def drop_database(self, name: str) -> None:
        # FORCE: a Ledger under test keeps pooled connections open until it is garbage collected.
        drop = sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)")
        self.execute(drop.format(sql.Identifier(name)))


# ---------------------------------------------------------------- binaries


def _version_key(bindir: Path) -> tuple[int, ...]:
    """Sort /usr/lib/postgresql/<version>/bin by version ("9.6" < "15")."""
    return tuple(int(part) for part in re.findall(r"\d+", bindir.parent.name))


def installed_bindirs() -> list[Path]:
    """Directories holding a PostgreSQL server's binaries, oldest version first."""
    return sorted((p.parent for p in BINARIES.glob("*/bin/initdb")), key=_version_key)


def _clusters() -> dict[tuple[str, str], str]:
    """Debian's clusters (pg_lsclusters) by (version, name): their status, online or down."""
    if shutil.which("pg_lsclusters") is None:
        return {}
    listing = subprocess.run(
        ["pg_lsclusters", "--no-header"], capture_output=True, text=True, check=True
    ).stdout
    return {(f[0], f[1]): f[3] for f in (line.split() for line in listing.splitlines()) if f}


def install_server() -> None:
    """Install Debian's server package, leaving no cluster of Debian's own running or starting.

    The package's post-install script creates a ``main`` cluster and starts it (unless a
    policy-rc.d forbids): the tests never use it, so it is stopped and set to ``manual``.
    """
    before = _clusters()
    apt_install(SERVER_PACKAGE, f"no PostgreSQL server under {BINARIES}")
    quiesce_new_clusters(before)


def quiesce_new_clusters(before: Collection[tuple[str, str]]) -> None:
    """Stop the Debian clusters not in ``before``, and keep them from starting at boot."""
    for (version, name), status in _clusters().items():
        if (version, name) in before:
            continue
        if status == "online":
            subprocess.run(["pg_ctlcluster", version, name, "stop"], check=True, timeout=120)
        (Path("/etc/postgresql") / version / name / "start.conf").write_text("manual\n")


def server_bindir() -> Path:
    """The newest installed server's bin directory, installing the package if there is none."""
    if not installed_bindirs():
        install_server()
    found = installed_bindirs()
    if not found:
        pytest.fail(f"{SERVER_PACKAGE} is installed but there is no {BINARIES}/*/bin/initdb")
    return found[-1]


# ---------------------------------------------------------------- the cluster


def free_port() -> int:
    """A TCP port nothing listens on at 127.0.0.1 right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _as_owner(argv: list[str]) -> list[str]:
    # initdb and postgres refuse to run as root; any other user runs them as itself.
    return ["runuser", "-u", SUPERUSER, "--", *argv] if os.geteuid() == 0 else argv


def _run(argv: list[str], workdir: Path) -> None:
    # The cluster's owner may not be allowed into the caller's working directory, and the
    # PostgreSQL programs fail when they cannot resolve it: run them from the work directory.
    done = subprocess.run(
        _as_owner(argv), cwd=workdir, capture_output=True, text=True, timeout=120, check=False
    )
    if done.returncode != 0:
        log_file = workdir / "server.log"
        server_log = log_file.read_text(errors="replace") if log_file.exists() else ""
        raise RuntimeError(
            f"{' '.join(argv)} failed ({done.returncode}):\n{done.stdout}{done.stderr}{server_log}"
        )


def _make_workdir() -> Path:
    # Not under pytest's tmp_path: its parents are private to root, and the server runs as postgres.
    workdir = Path(tempfile.mkdtemp(prefix="patchkit-pg-"))
    if os.geteuid() == 0:
        owner = pwd.getpwnam(SUPERUSER)
        os.chown(workdir, owner.pw_uid, owner.pw_gid)
    return workdir


def start_server(bindir: Path) -> PostgresServer:
    """initdb a cluster in a new temporary directory and start it; remove it all on failure."""
    workdir = _make_workdir()
    try:
        password = secrets.token_urlsafe(16)
        pwfile = workdir / "superuser.pw"
        pwfile.write_text(password + "\n")
        if os.geteuid() == 0:
            shutil.chown(pwfile, SUPERUSER)
        datadir = workdir / "data"
        _run(
            [
                str(bindir / "initdb"),
                f"--pgdata={datadir}",
                f"--username={SUPERUSER}",
                f"--pwfile={pwfile}",
                "--auth=scram-sha-256",
                "--encoding=UTF8",
                "--locale=C",
                "--no-sync",
                "--no-instructions",
            ],
            workdir,
        )
        pwfile.unlink()
        settings = {**SETTINGS, "unix_socket_directories": f"'{workdir}'"}
        with (datadir / "postgresql.conf").open("a") as conf:
            conf.writelines(f"{key} = {value}\n" for key, value in settings.items())
        for attempt in range(1, START_ATTEMPTS + 1):
            port = free_port()
            try:
                _run(
                    [
                        str(bindir / "pg_ctl"),
                        f"--pgdata={datadir}",
                        f"--log={workdir / 'server.log'}",
                        f"--options=-p {port}",
                        "--wait",
                        "--timeout=60",
                        "start",
                    ],
                    workdir,
                )
            except RuntimeError:
                if attempt == START_ATTEMPTS:
                    raise
                continue
            return PostgresServer(bindir=bindir, workdir=workdir, port=port, password=password)
        raise AssertionError("unreachable: the last start attempt returns or raises")
    except BaseException:
        shutil.rmtree(workdir, ignore_errors=True)
        raise


def stop_server(server: PostgresServer) -> None:
    """Stop the cluster (immediately: nothing in it is worth a clean shutdown) and remove it."""
    try:
        _run(
            [
                str(server.bindir / "pg_ctl"),
                f"--pgdata={server.datadir}",
                "--mode=immediate",
                "--wait",
                "stop",
            ],
            server.workdir,
        )
    finally:
        shutil.rmtree(server.workdir, ignore_errors=True)


# ---------------------------------------------------------------- fixtures


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    """A PostgreSQL server of the tests' own for the whole session, removed at its end."""
    began = time.monotonic()
    bindir = server_bindir()
    installed = time.monotonic()
    server = start_server(bindir)
    log.info(
        "PostgreSQL %s on 127.0.0.1:%d in %s: binaries %.1f s, initdb and start %.1f s",
        bindir.parent.name,
        server.port,
        server.workdir,
        installed - began,
        time.monotonic() - installed,
    )
    try:
        yield server
    finally:
        stop_server(server)


@pytest.fixture
def postgres_database(postgres_server: PostgresServer) -> Iterator[str]:
    """A new empty database for one test (dropped after it); its name."""
    name = postgres_server.create_database()
    try:
        yield name
    finally:
        postgres_server.drop_database(name)


@pytest.fixture(params=["sqlite", "postgresql"])
def ledger_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """The URL of a new, empty ledger database on each backend."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'l.sqlite'}"
    # Looked up only here, so that a run of the SQLite tests alone starts no server.
    server: PostgresServer = request.getfixturevalue("postgres_server")
    return server.url(request.getfixturevalue("postgres_database"))
