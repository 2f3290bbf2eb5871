"""Unit: which hosts a rollback targets, per scope and from a recorded run; folding its results."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from patchkit.execution import rollback
from patchkit.execution.events import HostOutcome, PackageChange, PhaseOutcome, result_task
from patchkit.execution.runner import TaskResult
from patchkit.execution.status import HostStatus, Phase
from patchkit.model import Severity, freeze
from patchkit.planning.types import SelectedUpdate


def phase_rows(host: str, batch: int, *statuses: tuple[str, str]) -> list[dict[str, Any]]:
    return [
        {"batch": batch, "host": host, "phase": phase, "status": status, "message": ""}
        for phase, status in statuses
    ]


RECORD: dict[str, Any] = {
    "id": "run-1",
    "phases": [
        *phase_rows("h1", 1, ("patch", "ok"), ("verify", "failed"), ("rollback", "pending")),
        *phase_rows("h2", 2, ("patch", "ok"), ("verify", "ok")),
        *phase_rows("h3", 2, ("precheck", "unreachable")),
        *phase_rows("h4", 2, ("patch", "ok"), ("verify", "failed"), ("rollback", "ok")),
        *phase_rows("h5", 2, ("patch", "ok"), ("verify", "ok")),
    ],
    "changes": [
        {"host": "h1", "package": "demo-svc", "before": "1.0", "after": "1.1"},
        {"host": "h1", "package": "demo-new", "before": None, "after": "2.0"},
        {"host": "h2", "package": "demo-lib", "before": "1.0", "after": "1.1"},
        {"host": "h4", "package": "demo-lib", "before": "1.0", "after": "1.1"},
        {"host": "h5", "package": "demo-lib", "before": "1.0", "after": "1.1"},
    ],
    "snapshots": [
        {"host": "h1", "backend": "package", "id": "run-1"},
        {"host": "h2", "backend": "lab", "id": "run-1"},
        {"host": "h4", "backend": "lab", "id": "run-1"},
    ],
}


def test_whole_run_targets_every_changed_host_and_says_why_others_are_left() -> None:
    targets, skipped = rollback.from_record(RECORD)
    assert [(t.host, t.batch, t.backend) for t in targets] == [
        ("h1", 1, "package"),
        ("h2", 2, "lab"),
    ]
    assert [c.undo() for c in targets[0].changes] == [
        "demo-svc 1.1 -> 1.0",
        "demo-new 2.0 -> (remove)",
    ]
    assert {s.host: s.reason for s in skipped} == {
        "h3": "never patched: the run changed nothing on it",
        "h4": "already rolled back",
        "h5": "no snapshot was taken (backend none): roll back by hand",
    }


def test_batch_and_host_filters() -> None:
    targets, _ = rollback.from_record(RECORD, batch=1)
    assert [t.host for t in targets] == ["h1"]
    targets, skipped = rollback.from_record(RECORD, hosts=["h2", "nope"])
    assert [t.host for t in targets] == ["h2"]
    assert [(s.host, s.reason) for s in skipped] == [("nope", "not in run run-1")]


def test_extravars_carry_what_to_undo() -> None:
    (target,), _ = rollback.from_record(RECORD, hosts=["h1"])
    assert target.extravars() == {
        "backend": "package",
        "snapshot_id": "run-1",
        "changes": [
            {"package": "demo-svc", "before": "1.0", "after": "1.1"},
            {"package": "demo-new", "before": None, "after": "2.0"},
        ],
    }


def outcome(host: str, status: HostStatus, failed_phase: Phase | None = None) -> HostOutcome:
    changed = status != HostStatus.NOT_PATCHED
    return HostOutcome(
        host,
        status,
        failed_phase,
        "",
        (),
        (PackageChange("demo-lib", "1.0", "1.1"),) if changed else (),
        ("lab", "run-1") if changed else None,
    )


BATCH = [
    outcome("a", HostStatus.FAILED, Phase.VERIFY),
    outcome("b", HostStatus.PATCHED),
    outcome("c", HostStatus.NOT_PATCHED, Phase.PRECHECK),
    outcome("d", HostStatus.UNREACHABLE, Phase.REBOOT),
]


def test_scope_host_takes_the_failed_changed_hosts() -> None:
    chosen = rollback.scope("host", BATCH, threshold_crossed=True)
    assert [o.host for o in chosen] == ["a", "d"]


def test_scope_batch_takes_the_whole_batch_that_crossed_the_threshold() -> None:
    assert [o.host for o in rollback.scope("batch", BATCH, threshold_crossed=True)] == [
        "a",
        "b",
        "d",
    ]
    # a batch with failures that did not cross the threshold: only its failed hosts
    assert [o.host for o in rollback.scope("batch", BATCH, threshold_crossed=False)] == ["a", "d"]


def test_scope_none_and_a_clean_batch() -> None:
    assert rollback.scope("none", BATCH, threshold_crossed=True) == []
    assert (
        rollback.scope("batch", [outcome("b", HostStatus.PATCHED)], threshold_crossed=False) == []
    )


def test_targets_from_outcomes_need_a_snapshot_and_changes() -> None:
    targets = rollback.from_outcomes(3, BATCH)
    assert [(t.host, t.batch, t.snapshot_id) for t in targets] == [
        ("a", 3, "run-1"),
        ("b", 3, "run-1"),
        ("d", 3, "run-1"),
    ]


def test_a_host_lost_while_patching_is_put_back_over_every_planned_update() -> None:
    lost = HostOutcome(
        "e", HostStatus.UNREACHABLE, Phase.PATCH, "gone", (), (), ("package", "run-1")
    )
    seen = datetime(2026, 11, 25, tzinfo=UTC)
    update = SelectedUpdate("demo-lib", "1.0", "1.1", "lab", True, Severity.HIGH, False, seen)
    planned = {"e": [update]}
    (target,) = rollback.from_outcomes(2, [lost], planned)
    assert [c.undo() for c in target.changes] == ["demo-lib 1.1 -> 1.0"]
    assert rollback.from_outcomes(2, [lost]) == []  # nothing known, nothing planned


def result_of(host: str, phase: str, status: str, message: str = "") -> TaskResult:
    msg = {"phase": phase, "status": status, "message": message}
    return TaskResult(host, result_task(phase), "debug", "ok", freeze({"msg": msg}), 0.5)


def test_result_rolled_back_when_every_phase_is_ok() -> None:
    (target,), _ = rollback.from_record(RECORD, hosts=["h1"])
    tasks = [
        result_of("h1", "rollback", "ok", "restored 2 package(s)"),
        result_of("h1", "reboot", "ok", "no reboot needed"),
        result_of("h1", "verify", "ok", "all 4 checks passed"),
    ]
    res = rollback.result(target, tasks)
    assert res.status == "rolled-back" and res.batch == 1
    assert res.message == "restored 2 package(s); no reboot needed; all 4 checks passed"
    assert res.data["verify"]["status"] == "ok"


def test_result_names_the_phase_that_failed() -> None:
    (target,), _ = rollback.from_record(RECORD, hosts=["h1"])
    tasks = [
        result_of("h1", "rollback", "ok"),
        result_of("h1", "reboot", "ok"),
        result_of("h1", "verify", "failed", "http check failed"),
    ]
    res = rollback.result(target, tasks)
    assert res.status == "failed" and res.message == "verify: http check failed"


def test_result_of_a_host_lost_during_rollback() -> None:
    (target,), _ = rollback.from_record(RECORD, hosts=["h1"])
    lost = TaskResult(
        "h1", "Install the kept versions", "command", "unreachable", freeze({"msg": "gone"})
    )
    res = rollback.result(target, [lost])
    assert res.status == "unreachable" and res.message == "rollback: gone"
    assert [p.status for p in res.phases] == ["unreachable", "not-run", "not-run"]
    assert isinstance(res.phases[0], PhaseOutcome)
