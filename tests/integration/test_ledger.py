"""Integration: the ledger on a real SQLite database (no lab hosts needed)."""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from patchkit.errors import ExitCode, LedgerError
from patchkit.ledger import Ledger
from patchkit.model import Finding, PendingUpdate

T0 = datetime(2026, 11, 1, 9, 0, tzinfo=UTC)


def finding(host: str, at: datetime, *updates: tuple[str, str]) -> Finding:
    pending = tuple(PendingUpdate(p, "1.0", c, "lab-security") for p, c in updates)
    return Finding(host=host, assessed_at=at, reachable=True, updates=pending)


def test_assessments_round_trip_and_latest_wins(tmp_path: Path) -> None:
    ledger = Ledger(f"sqlite:///{tmp_path / 'l.sqlite'}")
    ledger.record_assessment([finding("a", T0, ("lib", "1.1"))], source="inv", started=T0)
    later = T0 + timedelta(days=2)
    down = Finding(host="b", assessed_at=later, reachable=False, message="timed out")
    ledger.record_assessment(
        [finding("a", later, ("lib", "1.1"), ("app", "2.0")), down], source="inv", started=later
    )
    latest = ledger.latest_findings()
    assert sorted(latest) == ["a", "b"]
    assert latest["a"].assessed_at == later
    assert [u.package for u in latest["a"].updates] == ["app", "lib"]
    assert not latest["b"].reachable and latest["b"].message == "timed out"
    assert ledger.latest_findings({"b"}).keys() == {"b"}


def test_first_seen_is_the_earliest_sighting_of_that_candidate(tmp_path: Path) -> None:
    ledger = Ledger(f"sqlite:///{tmp_path / 'l.sqlite'}")
    ledger.record_assessment([finding("a", T0, ("lib", "1.1"))], source="x", started=T0)
    later = T0 + timedelta(days=5)
    stored = ledger.record_assessment(
        [finding("a", later, ("lib", "1.1"), ("lib2", "1.0"))], source="x", started=later
    )
    seen = {u.package: u.first_seen for u in stored[0].updates}
    assert seen == {"lib": T0, "lib2": later}
    newer = T0 + timedelta(days=9)  # a newer candidate restarts the clock
    stored = ledger.record_assessment(
        [finding("a", newer, ("lib", "1.2"))], source="x", started=newer
    )
    assert stored[0].updates[0].first_seen == newer
    assert ledger.latest_findings()["a"].updates[0].first_seen == newer


def test_plans_are_saved_once_by_id(tmp_path: Path) -> None:
    ledger = Ledger(f"sqlite:///{tmp_path / 'l.sqlite'}")
    body = {
        "id": "plan-abc",
        "hash": "abc" * 10,
        "policy": "p",
        "made_at": T0.isoformat(),
        "window": {"name": "w", "start": T0.isoformat()},
    }
    assert ledger.save_plan(body, saved_at=T0)
    assert not ledger.save_plan(body, saved_at=T0)
    assert ledger.plan("plan-abc") == body
    assert ledger.plan("plan-nope") is None


def test_wal_mode_on_sqlite(tmp_path: Path) -> None:
    path = tmp_path / "l.sqlite"
    Ledger(f"sqlite:///{path}").latest_findings()
    assert sqlite3.connect(path).execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_read_only_ledger_is_a_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "l.sqlite"
    Ledger(f"sqlite:///{path}").latest_findings()
    # Root ignores file modes, so make the write fail the way a read-only mount would.
    ledger = Ledger(f"sqlite:///file:{path}?mode=ro&uri=true")
    with pytest.raises(LedgerError) as err:
        ledger.record_assessment([finding("a", T0, ("lib", "1.1"))], source="x", started=T0)
    assert "readonly" in err.value.message.replace("-", "").replace(" ", "").lower()
    assert str(path) in err.value.message
    assert err.value.exit_code == ExitCode.BAD_INPUT
    assert err.value.hint
    assert Ledger(f"sqlite:///{path}").latest_findings() == {}  # nothing half-written


def test_unopenable_ledger_names_the_url(tmp_path: Path) -> None:
    (tmp_path / "dir.sqlite").mkdir()
    with pytest.raises(LedgerError) as err:
        Ledger(f"sqlite:///{tmp_path / 'dir.sqlite'}")
    assert "dir.sqlite" in err.value.message
