"""Unit: batch results → host outcomes, and the rules between batches (no hosts, no runner)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest

from patchkit.execution.events import batch_outcomes, host_outcome, result_task
from patchkit.execution.rules import fits, may_start, threshold_crossed
from patchkit.execution.runner import TaskResult
from patchkit.model import freeze
from patchkit.policy.values import Amount


def result(host: str, phase: str, status: str = "ok", **data: Any) -> TaskResult:
    msg = {"phase": phase, "status": status, "message": data.pop("message", "")} | data
    return TaskResult(host, result_task(phase), "debug", "ok", freeze({"msg": msg}), 0.5)


def task(host: str, status: str, msg: str = "", name: str = "Some task") -> TaskResult:
    return TaskResult(host, name, "command", status, freeze({"msg": msg}), 1.0)


PATCH: dict[str, Any] = {
    "updates": [
        {"package": "demo-lib", "candidate": "1.1", "before": "1.0", "after": "1.1"},
        {"package": "demo-app", "candidate": "1.1", "before": "1.1", "after": "1.1"},
    ],
    "extra_changes": [{"package": "demo-new", "before": None, "after": "2.0"}],
}


def full_run(host: str, verify: str = "ok") -> list[TaskResult]:
    return [
        task(host, "ok"),
        result(host, "precheck"),
        result(host, "backup", "skipped", message="no backup hook"),
        result(host, "snapshot", backend="lab", id="run-1"),
        result(host, "patch", **PATCH),
        result(host, "reboot", rebooted=True),
        result(host, "verify", verify, message="" if verify == "ok" else "http check failed"),
    ]


def test_a_clean_host_is_patched_with_its_changes_and_snapshot() -> None:
    out = host_outcome("h1", full_run("h1"))
    assert out.status == "patched" and out.failed_phase is None
    assert [p.status for p in out.phases] == ["ok", "skipped", "ok", "ok", "ok", "ok"]
    assert [(c.package, c.before, c.after) for c in out.changes] == [
        ("demo-lib", "1.0", "1.1"),
        ("demo-new", None, "2.0"),
    ]
    assert out.snapshot == ("lab", "run-1")
    assert out.phases[0].seconds == pytest.approx(1.5)  # its task and its result task
    assert not out.counts_as_failure


def test_failed_verify_counts_and_needs_rollback() -> None:
    out = host_outcome("h1", full_run("h1", verify="failed"))
    assert out.status == "failed" and out.failed_phase == "verify"
    assert out.message == "http check failed"
    assert out.counts_as_failure and out.needs_rollback


def test_unhealthy_before_patching_is_not_patched_and_not_a_failure() -> None:
    tasks = [result("h1", "precheck", "failed", message="not patched: unhealthy before patching")]
    out = host_outcome("h1", tasks)
    assert out.status == "not-patched" and out.failed_phase == "precheck"
    assert [p.status for p in out.phases] == ["failed"] + ["not-run"] * 5
    assert not out.counts_as_failure


def test_host_lost_mid_phase_is_unreachable_in_that_phase() -> None:
    tasks = [*full_run("h1")[:5], task("h1", "unreachable", "Failed to connect")]
    out = host_outcome("h1", tasks)
    assert out.status == "unreachable" and out.failed_phase == "reboot"
    assert out.message == "Failed to connect"
    assert out.counts_as_failure


def test_a_failed_backup_leaves_the_host_unpatched_and_is_no_failure() -> None:
    tasks = [
        result("h1", "precheck"),
        result("h1", "backup", "failed", message="timed out after 600 s"),
    ]
    out = host_outcome("h1", tasks)
    assert out.status == "not-patched" and out.failed_phase == "backup"
    assert out.message == "timed out after 600 s" and not out.counts_as_failure
    assert [p.status for p in out.phases][2:] == ["not-run"] * 4


def test_a_reboot_left_pending_is_its_own_outcome() -> None:
    tasks = full_run("h1")
    tasks[5] = result("h1", "reboot", pending=True, message="reboot pending: downtime not approved")
    out = host_outcome("h1", tasks)
    assert out.status == "reboot-pending" and out.done and not out.counts_as_failure
    assert out.message == "reboot pending: downtime not approved"


def test_unreachable_from_the_start() -> None:
    out = host_outcome("h1", [task("h1", "unreachable", "No route to host")])
    assert out.status == "unreachable" and out.failed_phase == "precheck"
    assert not out.counts_as_failure  # nothing was changed


def test_precheck_that_could_not_reach_the_host_is_unreachable() -> None:
    # the precheck role catches the unreachable host itself and reports reachable: false
    precheck = result("h1", "precheck", "failed", message="unreachable: timed out", reachable=False)
    out = host_outcome("h1", [precheck])
    assert out.phases[0].status == "unreachable" and out.phases[0].message.startswith("unreach")
    assert out.status == "unreachable" and out.failed_phase == "precheck"
    assert not out.counts_as_failure


def test_refused_settings_fail_before_any_phase() -> None:
    tasks = [task("h1", "failed", "value of patchkit_reboot_policy must be one of")]
    out = host_outcome("h1", tasks)
    assert out.status == "not-patched" and "patchkit_reboot_policy" in out.message


def test_skip_host_pending_reboot_stops_the_host() -> None:
    out = host_outcome("h1", [result("h1", "precheck", "skipped", message="reboot pending")])
    assert out.status == "not-patched" and out.phases[1].status == "not-run"


def test_every_host_of_the_batch_gets_an_outcome() -> None:
    outs = batch_outcomes(["h1", "h2"], full_run("h1"))
    assert [o.host for o in outs] == ["h1", "h2"]
    assert outs[1].status == "not-patched" and outs[1].message == "no result from the playbook"


@pytest.mark.parametrize(
    ("failures", "attempted", "threshold", "halt"),
    [
        (0, 10, Amount(value=1), False),
        (1, 10, Amount(value=1), True),
        (1, 10, Amount(value=2), False),
        (2, 10, Amount(value=2), True),
        (1, 10, Amount(value=10, percent=True), True),
        (1, 11, Amount(value=10, percent=True), False),
        (1, 5, Amount(value=0), True),
    ],
)
def test_error_threshold(failures: int, attempted: int, threshold: Amount, halt: bool) -> None:
    assert threshold_crossed(failures, attempted, threshold) is halt


def test_no_batch_starts_at_or_after_the_cutoff() -> None:
    cutoff = datetime(2026, 11, 28, 21, 15, tzinfo=UTC)
    assert may_start(cutoff - timedelta(seconds=1), cutoff)
    assert not may_start(cutoff, cutoff)


def test_a_batch_starts_only_if_its_estimate_ends_inside_the_window() -> None:
    end = datetime(2026, 11, 28, 23, 0, tzinfo=UTC)
    ten = timedelta(minutes=10)
    assert fits(end - ten, ten, end)  # ends exactly at the end
    assert not fits(end - ten + timedelta(seconds=1), ten, end)
    other_zone = end.astimezone(timezone(timedelta(hours=1)))
    assert fits(end - ten, ten, other_zone)  # compared as real time
