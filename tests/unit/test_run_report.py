"""The run report, built from a hand-made ledger record and plan body (no I/O)."""

from __future__ import annotations

import csv
import io
import json
from datetime import UTC, datetime
from typing import Any

from patchkit.model import Approval
from patchkit.reports import run_report

T0 = datetime(2026, 11, 28, 22, 0, tzinfo=UTC)


def at(minute: int) -> datetime:
    return T0.replace(minute=minute)


def upd(package: str, candidate: str = "1.1") -> dict[str, Any]:
    return {"package": package, "candidate": candidate, "installed": "1.0"}


PLAN: dict[str, Any] = {
    "id": "plan-1",
    "policy": "prod-monthly",
    "window": {"name": "sat-night", "end": "2026-11-29T02:00:00+00:00"},
    "batches": [
        {
            "number": 1,
            "duration": 240,
            "hosts": [{"host": "web1", "updates": [upd("libssl3")], "held": []}],
        },
        {
            "number": 2,
            "hosts": [
                {"host": "web2", "updates": [upd("libssl3"), upd("tzdata")], "held": []},
                {
                    "host": "db1",
                    "updates": [upd("libssl3")],
                    "held": [{"package": "postgresql", "candidate": "16.5", "reason": "soaking"}],
                },
            ],
        },
        {"number": 3, "hosts": [{"host": "web3", "updates": [upd("libssl3")], "held": []}]},
    ],
    "skipped": [
        {
            "host": "db2",
            "kind": "exception",
            "reason": "vendor certifies 3.0.15 only (owner dba, expires 2027-01-31)",
            "held": [{"package": "libssl3", "candidate": "1.1"}],
        }
    ],
}


def phase(
    host: str, batch: int, name: str, status: str = "ok", message: str = ""
) -> dict[str, Any]:
    data: dict[str, Any] = {"seconds": 2.0}
    if name == "reboot":
        data["rebooted"] = status == "ok"
    if name == "verify":
        data["checks"] = [
            {
                "name": "http /health",
                "status": status,
                "detail": f"HTTP {200 if status == 'ok' else 503}",
            }
        ]
    return {
        "batch": batch, "host": host, "phase": name, "status": status,
        "message": message or f"{name} {status}", "seconds": 2.0, "data": data,
    }  # fmt: skip


def good(host: str, batch: int) -> list[dict[str, Any]]:
    return [phase(host, batch, p) for p in ("precheck", "snapshot", "patch", "reboot", "verify")]


RECORD: dict[str, Any] = {
    "id": "run-1",
    "plan": "plan-1",
    "status": "halted",
    "reason": "halted after batch 2: 1 host failed, the error threshold is 1",
    "started": at(0),
    "ended": at(30),
    "batches": [
        {
            "number": 1,
            "status": "completed",
            "hosts": 1,
            "failed": 0,
            "reason": "",
            "started": at(0),
            "ended": at(5),
        },
        {
            "number": 2,
            "status": "failed",
            "hosts": 2,
            "failed": 1,
            "reason": "1 host failed",
            "started": at(5),
            "ended": at(20),
        },
        {
            "number": 3,
            "status": "not-started",
            "hosts": 1,
            "failed": 0,
            "reason": "",
            "started": None,
            "ended": None,
        },
    ],
    "phases": [
        *good("web1", 1),
        *good("db1", 2),
        *[phase("web2", 2, p) for p in ("precheck", "snapshot", "patch", "reboot")],
        phase("web2", 2, "verify", "failed", "1 of 1 checks failed: http /health (HTTP 503)"),
        phase("web2", 2, "rollback", "ok", "restored the lab snapshot web2@run-1"),
    ],
    "changes": [
        {"host": "web1", "package": "libssl3", "before": "1.0", "after": "1.1"},
        {"host": "db1", "package": "libssl3", "before": "1.0", "after": "1.1"},
        {"host": "web2", "package": "libssl3", "before": "1.0", "after": "1.1"},
        {"host": "web2", "package": "tzdata", "before": None, "after": "1.1"},
    ],
}

APPROVALS = [
    Approval(
        id=1, plan_id="plan-1", plan_hash="h" * 64, by="alice", at=at(0).replace(hour=9),
        comment="CHG-1234", reboots=False, emergency=False, expires=None, signature=None,
        consumed_by="run-1",
    )
]  # fmt: skip


def made() -> run_report.RunReport:
    return run_report.build(RECORD, PLAN, APPROVALS)


def test_every_planned_host_gets_its_outcome() -> None:
    report = made()
    outcomes = {h.host: h.outcome for h in report.hosts}
    assert outcomes == {
        "web1": "patched", "db1": "patched", "web2": "rolled back", "web3": "not started"
    }  # fmt: skip
    assert report.counts == {"patched": 2, "rolled back": 1, "not started": 1}
    assert [h.host for h in report.hosts] == ["web1", "db1", "web2", "web3"]  # by batch


def test_a_failure_is_explained_by_its_message_and_the_rollback() -> None:
    web2 = {h.host: h for h in made().hosts}["web2"]
    assert web2.message == (
        "verify failed: 1 of 1 checks failed: http /health (HTTP 503); "
        "rollback ok: restored the lab snapshot web2@run-1"
    )
    assert web2.checks == ("http /health: failed (HTTP 503)",)
    assert web2.rebooted is True
    assert web2.planned == ("libssl3 1.1", "tzdata 1.1")
    assert [(c.package, c.before, c.after) for c in web2.changes][1] == ("tzdata", None, "1.1")


def test_what_was_left_for_the_next_window_says_why() -> None:
    left = {(x.host, x.what): x.why for x in made().left}
    assert left[("web3", "all its updates")] == (
        "batch 3 not-started: halted after batch 2: 1 host failed, the error threshold is 1"
    )
    assert left[("web2", "all its updates")].startswith("rolled back: verify failed")
    assert left[("db1", "postgresql 16.5: soaking")] == "held back"
    assert left[("db2", "libssl3 1.1")].startswith("exception: vendor certifies")
    assert not [x for x in made().left if x.host == "web1"]


def test_batches_carry_their_hosts_and_durations() -> None:
    batches = made().batches
    assert [b.estimate for b in batches] == [240, None, None]  # the plan's, against actual
    assert [(b.number, b.hosts, b.seconds) for b in batches] == [
        (1, ("web1",), 300.0), (2, ("web2", "db1"), 900.0), (3, ("web3",), None)
    ]  # fmt: skip


def test_json_is_versioned_and_complete() -> None:
    body = json.loads(run_report.to_json(made()))
    assert body["format"] == "patchkit-run-report/1"
    assert body["status"] == "halted" and body["seconds"] == 1800.0
    assert body["approvals"] == ["alice at 2026-11-28 09:00:00 UTC (CHG-1234); used by run-1"]
    assert {h["host"]: h["outcome"] for h in body["hosts"]}["web2"] == "rolled back"
    assert body["hosts"][0]["phases"][0] == {
        "phase": "precheck", "status": "ok", "seconds": 2.0, "message": "precheck ok"
    }  # fmt: skip


def test_csv_has_a_row_per_planned_host() -> None:
    rows = list(csv.DictReader(io.StringIO(run_report.to_csv(made()))))
    assert [r["host"] for r in rows] == ["web1", "db1", "web2", "web3"]
    web2 = rows[2]
    assert web2["outcome"] == "rolled back" and web2["verify"] == "failed 2.0s"
    assert web2["changes"] == "libssl3 1.0 -> 1.1, tzdata (new) -> 1.1"
    assert rows[3]["precheck"] == "-" and rows[3]["left_why"].startswith("batch 3 not-started")


def test_markdown_escapes_what_came_from_hosts() -> None:
    record = json.loads(json.dumps(RECORD, default=str))
    record["phases"][4]["message"] = "<script>alert(1)</script> | *x*"  # web1 verify
    text = run_report.to_markdown(run_report.build(record, PLAN, APPROVALS))
    assert "<script>" not in text and "\\<script\\>" in text
    assert "\\| \\*x\\*" in text
    assert text.startswith("# Patch run run-1: halted\n")
    assert "## Left for the next window" in text


def test_a_run_without_phases_reports_every_host_not_started() -> None:
    record = dict(RECORD, phases=[], changes=[], status="interrupted", reason="stopped")
    report = run_report.build(record, PLAN)
    assert {h.outcome for h in report.hosts} == {"not started"}
    assert report.approvals == ()
