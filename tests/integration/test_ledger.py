"""Integration: the ledger on real SQLite and PostgreSQL databases (no lab hosts needed).

Every test that is not about one backend runs on both: a SQLite file in the test's directory and
a new database on a PostgreSQL server the session starts itself (see ``postgres.py``).
"""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from patchkit.errors import ExitCode, LedgerError, RefusedError
from patchkit.execution.events import HostOutcome, PackageChange, PhaseOutcome
from patchkit.execution.status import HostStatus, Phase, PhaseStatus
from patchkit.ledger import Ledger
from patchkit.model import Finding, PendingUpdate

# ledger_url (a ledger on SQLite and on PostgreSQL) and the server come from this plugin.
pytest_plugins = ["tests.integration.postgres"]

T0 = datetime(2026, 11, 1, 9, 0, tzinfo=UTC)


def finding(host: str, at: datetime, *updates: tuple[str, str]) -> Finding:
    pending = tuple(PendingUpdate(p, "1.0", c, "lab-security") for p, c in updates)
    return Finding(host=host, assessed_at=at, reachable=True, updates=pending)


def test_assessments_round_trip_and_latest_wins(ledger_url: str) -> None:
    ledger = Ledger(ledger_url)
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


def test_first_seen_is_the_earliest_sighting_of_that_candidate(ledger_url: str) -> None:
    ledger = Ledger(ledger_url)
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


def test_plans_are_saved_once_by_id(ledger_url: str) -> None:
    ledger = Ledger(ledger_url)
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


def ledger_with_plan(url: str) -> Ledger:
    """A ledger holding the minimal plan ``plan-abc`` (hash ``"abc" * 10``)."""
    ledger = Ledger(url)
    body = {
        "id": "plan-abc",
        "hash": "abc" * 10,
        "policy": "p",
        "made_at": T0.isoformat(),
        "window": {"name": "w", "start": T0.isoformat()},
    }
    ledger.save_plan(body, saved_at=T0)
    return ledger


def test_approvals_and_runs_round_trip(ledger_url: str) -> None:
    ledger = ledger_with_plan(ledger_url)
    ledger.approve("plan-abc", "abc" * 10, by="cab", at=T0, comment="ok")
    assert [
        (a.by, a.at, a.plan_hash, a.comment, a.reboots) for a in ledger.approvals("plan-abc")
    ] == [("cab", T0, "abc" * 10, "ok", False)]
    end = T0 + timedelta(hours=1)
    ledger.start_run("run-1", "plan-abc", "abc" * 10, at=T0, holder="ctl:1")
    ledger.record_batch("run-1", 1, status="running", hosts=1, started=T0)
    patched = HostOutcome(
        host="a",
        status=HostStatus.FAILED,
        failed_phase=Phase.VERIFY,
        message="check failed",
        phases=(
            PhaseOutcome(Phase.PATCH, PhaseStatus.OK, "", 2.5),
            PhaseOutcome(Phase.VERIFY, PhaseStatus.FAILED, "check failed", 1.0),
        ),
        changes=(PackageChange("lib", "1.0", "1.1"),),
        snapshot=("btrfs", "snap-1"),
    )
    ledger.record_outcomes("run-1", 1, [patched], started=T0, ended=end)
    ledger.record_batch("run-1", 1, status="halted", hosts=1, failed=1, started=T0, ended=end)
    ledger.finish_run("run-1", status="halted", reason="threshold", at=end)
    run = ledger.run_record()
    assert run is not None
    assert (run["id"], run["status"], run["started"], run["ended"]) == ("run-1", "halted", T0, end)
    assert run["batches"] == [
        {
            "number": 1,
            "status": "halted",
            "hosts": 1,
            "failed": 1,
            "reason": "",
            "started": T0,
            "ended": end,
        }
    ]
    assert [(p["phase"], p["status"], p["seconds"]) for p in run["phases"]] == [
        ("patch", "ok", 2.5),
        ("verify", "failed", 1.0),
        ("rollback", "pending", None),
    ]
    assert run["changes"] == [{"host": "a", "package": "lib", "before": "1.0", "after": "1.1"}]
    assert run["snapshots"] == [{"host": "a", "backend": "btrfs", "id": "snap-1", "released": None}]
    assert ledger.run_record("run-nope") is None


def test_runs_are_listed_newest_first_with_counts_and_filters(ledger_url: str) -> None:
    ledger = ledger_with_plan(ledger_url)
    for number, (status, failed) in enumerate([("completed", 0), ("halted", 2), ("failed", 1)]):
        run_id, start = f"run-{number}", T0 + timedelta(days=number)
        ledger.start_run(run_id, "plan-abc", "abc" * 10, at=start, holder="ctl:1")
        ledger.record_batch(run_id, 1, status="completed", hosts=2, started=start, ended=start)
        ledger.record_batch(run_id, 2, status=status, hosts=3, failed=failed, started=start)
        ledger.finish_run(run_id, status=status, reason=f"why {number}", at=start)
    ledger.start_run("run-9", "plan-abc", "abc" * 10, at=T0 + timedelta(days=9), holder="c:2")
    listed = ledger.runs()
    assert [r["id"] for r in listed] == ["run-9", "run-2", "run-1", "run-0"]
    assert listed[0]["status"] == "running" and listed[0]["hosts"] == 0  # no batch yet
    assert {k: listed[2][k] for k in ("policy", "window", "batches", "hosts", "failed")} == {
        "policy": "p", "window": "w", "batches": 2, "hosts": 5, "failed": 2
    }  # fmt: skip
    assert listed[2]["started"] == T0 + timedelta(days=1) and listed[2]["reason"] == "why 1"
    assert [r["id"] for r in ledger.runs(statuses=["halted", "failed"])] == ["run-2", "run-1"]
    assert [r["id"] for r in ledger.runs(since=T0 + timedelta(days=2), limit=1)] == ["run-9"]
    assert ledger.runs(policy="other") == []


# ---------------------------------------------------------------- SQLite only


def test_wal_mode_on_sqlite(tmp_path: Path) -> None:
    path = tmp_path / "l.sqlite"
    Ledger(f"sqlite:///{path}").latest_findings()
    assert sqlite3.connect(path).execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_read_only_sqlite_ledger_is_a_clear_error(tmp_path: Path) -> None:
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


def test_unopenable_sqlite_ledger_names_the_url(tmp_path: Path) -> None:
    (tmp_path / "dir.sqlite").mkdir()
    with pytest.raises(LedgerError) as err:
        Ledger(f"sqlite:///{tmp_path / 'dir.sqlite'}")
    assert "dir.sqlite" in err.value.message


def test_a_run_cannot_lock_hosts_another_run_holds(ledger_url: str) -> None:
    ledger = ledger_with_plan(ledger_url)
    ledger.start_run("run-1", "plan-abc", "abc" * 10, at=T0, holder="ctl:1", hosts=["a", "b"])
    with pytest.raises(RefusedError) as caught:
        ledger.start_run("run-2", "plan-abc", "abc" * 10, at=T0, holder="ctl:2", hosts=["b", "c"])
    assert caught.value.exit_code == ExitCode.REFUSED
    assert "b held by run run-1 (controller ctl:1" in str(caught.value)
    assert ledger.run_record("run-2") is None  # refused as a whole: no run, no lock
    assert [lk["host"] for lk in ledger.locks(["a", "b", "c"])] == ["a", "b"]
    # the holder may take its own hosts again; a taker rule may take a dead holder's
    ledger.lock("run-1", ["a"], holder="ctl:1", at=T0, may_take=lambda _lock: False)
    ledger.start_run(
        "run-3", "plan-abc", "abc" * 10, at=T0, holder="ctl:3", hosts=["b"],
        may_take=lambda lk: lk["holder"] == "ctl:1",
    )  # fmt: skip
    assert {lk["host"]: lk["run"] for lk in ledger.locks(["a", "b"])} == {
        "a": "run-1",
        "b": "run-3",
    }
    ledger.unlock("run-1")
    assert [lk["host"] for lk in ledger.locks(["a", "b"])] == ["b"]
