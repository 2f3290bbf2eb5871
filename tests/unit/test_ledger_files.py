"""Unit: a SQLite ledger patchkit creates is private: folder 0700; database, -wal, -shm 0600."""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from patchkit.ledger import Ledger
from patchkit.model import Finding, PendingUpdate

AT = datetime(2026, 11, 20, 6, 30, tzinfo=UTC)


@pytest.fixture(autouse=True)
def usual_umask() -> Iterator[None]:
    """The umask that made the ledger 0644 before: modes must not depend on a strict one."""
    before = os.umask(0o022)
    yield
    os.umask(before)


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def write_something(ledger: Ledger) -> None:
    update = PendingUpdate("openssl", "3.0.15-1~deb12u1", "3.0.17-1~deb12u2", "12/oldstable")
    ledger.record_assessment([Finding("web1", AT, True, (update,))], source="test", started=AT)


def test_a_new_ledger_and_its_wal_are_for_the_owner_only(tmp_path: Path) -> None:
    folder = tmp_path / "state"
    db = folder / "ledger.sqlite"
    ledger = Ledger(f"sqlite:///{db}")
    try:
        write_something(ledger)
        # while the ledger is open, SQLite keeps its write-ahead log and shared memory beside it
        wal, shm = db.with_name(db.name + "-wal"), db.with_name(db.name + "-shm")
        assert wal.exists(), "the ledger is not in WAL mode: nothing here checks the -wal file"
        assert {p.name: mode(p) for p in (db, wal, shm) if p.exists()} == {
            p.name: 0o600 for p in (db, wal, shm) if p.exists()
        }
        assert mode(folder) == 0o700
    finally:
        ledger.close()
    assert mode(db) == 0o600


def test_a_folder_and_file_the_user_made_keep_their_modes(tmp_path: Path) -> None:
    folder = tmp_path / "shared"
    folder.mkdir(mode=0o750)
    db = folder / "ledger.sqlite"
    db.touch(mode=0o640)
    ledger = Ledger(f"sqlite:///{db}")
    try:
        write_something(ledger)
    finally:
        ledger.close()
    assert (mode(folder), mode(db)) == (0o750, 0o640)
