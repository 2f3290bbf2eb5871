"""Unit: the batch loop driven through its ports by a fake runner (no ansible-runner, no host).

Each test plans a small fleet with the real planner, runs the loop with a FakeRunner that fails
chosen hosts in chosen phases and tries, and reads what the loop journalled. The lab tests
(tests/integration/test_run_lab.py and others) prove the same on real hosts.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from patchkit.execution import state
from patchkit.execution.loop import BatchLoop, RunSummary
from patchkit.execution.state import RebootMode, RecordedBatch, RecordedPhase
from patchkit.execution.status import PATCH_PHASES, HostStatus, RunStatus
from patchkit.planning.types import FreezeSpan, Plan
from tests.unit.fake_runner import Clock, FakeRunner, Notes
from tests.unit.plans import OPEN, make


def drive(
    plan: Plan,
    runner: FakeRunner,
    *,
    at: datetime = OPEN,
    notes: Notes | None = None,
    **options: object,
) -> tuple[RunSummary, Notes]:
    notes = notes or Notes()
    loop = BatchLoop(
        plan,
        "run-1",
        runner=runner,
        journal=notes,
        observer=notes,
        clock=Clock(at),
        who="test",
        **options,  # type: ignore[arg-type]
    )
    return loop.run(), notes


def test_a_clean_window_patches_every_host_in_its_batches() -> None:
    plan = make()
    runner = FakeRunner()
    summary, notes = drive(plan, runner)
    assert summary.status is RunStatus.COMPLETED and summary.patched == 4
    assert runner.hosts_run() == [["h1", "h2"], ["h3", "h4"]]
    assert [s for _, s, _ in notes.batches if s != "running"] == ["completed", "completed"]
    assert {o.status for o in notes.final().values()} == {HostStatus.PATCHED}


def test_a_batch_larger_than_its_concurrency_runs_in_waves_and_halts_at_the_first_bad_one() -> None:
    plan = make("rollout: {batch_size: 6, concurrency: 2, error_threshold: 1}", hosts=6)
    assert len(plan.batches) == 1 and plan.batches[0].concurrency == 2
    runner = FakeRunner(fail={("h1", 0): "patch"})
    summary, notes = drive(plan, runner)
    assert runner.hosts_run() == [["h1", "h2"]]  # the other two waves never start
    assert summary.status is RunStatus.HALTED and "error threshold 1" in summary.reason
    assert notes.last_batch(1)[0] == "halted"
    assert [e for e, _ in notes.events] == ["rollback-done", "batch-halted"]


def test_on_threshold_continue_runs_every_wave_and_batch_past_the_threshold() -> None:
    halting = "rollout: {batch_size: 3, concurrency: 1, error_threshold: 1}"
    going_on = halting + "\nfailure_handling: {on_threshold: continue}"
    fail = {("h1", 0): "patch", ("h4", 0): "patch"}
    halted, _ = drive(make(halting, hosts=6), FakeRunner(fail=fail))
    assert halted.status is RunStatus.HALTED
    runner = FakeRunner(fail=fail)
    summary, notes = drive(make(going_on, hosts=6), runner)
    # every wave of both batches ran although the first wave already crossed the threshold
    assert runner.hosts_run() == [["h1"], ["h2"], ["h3"], ["h4"], ["h5"], ["h6"]]
    assert summary.status is RunStatus.FAILED and summary.failed == 2 and summary.patched == 4
    assert [s for _, s, _ in notes.batches if s != "running"] == ["failed", "failed"]
    assert "batch-halted" not in [e for e, _ in notes.events]


def test_the_threshold_lets_a_wave_through_when_it_is_not_reached() -> None:
    plan = make("rollout: {batch_size: 6, concurrency: 2, error_threshold: 2}", hosts=6)
    summary, _ = drive(plan, FakeRunner(fail={("h1", 0): "patch"}))
    assert summary.status is RunStatus.FAILED and summary.failed == 1 and summary.patched == 5


def test_a_failed_canary_halts_the_window() -> None:
    plan = make("rollout: {canary: {size: 1}, error_threshold: 5}")
    assert plan.batches[0].canary
    runner = FakeRunner(fail={("h1", 0): "precheck"})  # not changed: the threshold ignores it
    summary, notes = drive(plan, runner)
    assert summary.status is RunStatus.HALTED and "canary batch 1 failed on h1" in summary.reason
    assert runner.hosts_run() == [["h1"]]
    assert all(s == "not-started" for n, s, _ in notes.batches if n > 1)


def test_a_canary_failure_goes_on_when_the_policy_says_so() -> None:
    plan = make("rollout: {canary: {size: 1, on_failure: continue}, error_threshold: 5}")
    summary, _ = drive(plan, FakeRunner(fail={("h1", 0): "precheck"}))
    assert summary.status is RunStatus.INCOMPLETE and summary.patched == 3


def test_a_good_canary_holds_the_next_batch_for_its_soak() -> None:
    plan = make("rollout: {canary: {size: 1, soak: 30m}}")
    summary, notes = drive(plan, FakeRunner())
    assert summary.status is RunStatus.COMPLETED
    assert notes.waits == [(1800.0, "canary soak before batch 2")]


def test_stopping_during_the_soak_interrupts_the_run() -> None:
    plan = make("rollout: {canary: {size: 1, soak: 30m}}")
    notes = Notes()
    runner = FakeRunner()
    notes.stop_now = False

    def stop_on_wait(seconds: float, why: str) -> bool:
        notes.waits.append((seconds, why))
        return False

    notes.wait = stop_on_wait  # type: ignore[method-assign]
    summary, _ = drive(plan, runner, notes=notes)
    assert summary.status is RunStatus.INTERRUPTED and len(runner.jobs) == 1


def test_no_batch_starts_after_the_cutoff() -> None:
    plan = make()
    clock_at = datetime(2026, 11, 26, 1, 31, tzinfo=UTC)  # cutoff 01:30
    summary, notes = drive(plan, FakeRunner(), at=clock_at)
    assert summary.status is RunStatus.STOPPED_AT_CUTOFF and "cutoff" in summary.reason
    assert all(s == "not-started" for _, s, _ in notes.batches)


def test_a_batch_that_would_overrun_the_window_does_not_start() -> None:
    plan = make("rollout: {estimate: {base: 50m, per_package: 0s, reboot: 0s}}")
    late = datetime(2026, 11, 26, 1, 15, tzinfo=UTC)  # before the cutoff, 50 min to go past 02:00
    summary, _ = drive(plan, FakeRunner(), at=late)
    assert summary.status is RunStatus.STOPPED_AT_CUTOFF and "would end after" in summary.reason


def test_no_batch_starts_inside_a_freeze_even_in_an_emergency() -> None:
    plan = make()
    frozen = plan.window.__class__(
        **{**plan.window.__dict__, "freezes": (FreezeSpan(OPEN.date(), OPEN.date(), "x"),)}
    )
    plan = plan.__class__(**{**plan.__dict__, "window": frozen})
    summary, _ = drive(plan, FakeRunner(), emergency=True)
    assert summary.status is RunStatus.STOPPED_AT_CUTOFF and "change freeze" in summary.reason


def test_an_emergency_run_is_not_bound_by_the_cutoff() -> None:
    plan = make()
    summary, _ = drive(plan, FakeRunner(), at=OPEN + timedelta(days=3), emergency=True)
    assert summary.status is RunStatus.COMPLETED


def test_a_patch_that_fails_once_is_tried_again_and_the_host_completes() -> None:
    plan = make("failure_handling: {retries: 1}")
    runner = FakeRunner(fail={("h1", 1): "patch"})
    summary, notes = drive(plan, runner)
    assert summary.status is RunStatus.COMPLETED and summary.patched == 4
    assert runner.hosts_run() == [["h1", "h2"], ["h1"], ["h3", "h4"]]
    assert [j.attempt for j in runner.jobs] == [1, 2, 1]
    tries = [(o.status, final) for o, final in notes.outcomes if o.host == "h1"]
    assert tries == [(HostStatus.FAILED, False), (HostStatus.PATCHED, True)]
    assert notes.final()["h1"].attempts == 2
    assert ("h1", "patch", "failed", 1) in notes.phases and ("h1", "patch", "ok", 2) in notes.phases
    # the first try installed demo-lib: the change is kept from before the first try
    changes = {c.package: (c.before, c.after) for c in notes.final()["h1"].changes}
    assert changes["demo-lib"] == ("1.0", "1.1")
    assert not notes.rollbacks


def test_retries_run_out_and_the_host_counts_as_failed_and_is_rolled_back() -> None:
    plan = make("failure_handling: {retries: 2}")
    runner = FakeRunner(fail={("h1", 0): "patch"})
    summary, notes = drive(plan, runner)
    assert [j.attempt for j in runner.jobs if "h1" in [h.host for h in j.hosts]] == [1, 2, 3]
    assert summary.failed == 1 and notes.final()["h1"].attempts == 3
    assert [r.host for r in notes.rollbacks] == ["h1"]


def test_a_verify_failure_is_not_tried_again() -> None:
    plan = make("failure_handling: {retries: 1}")
    runner = FakeRunner(fail={("h1", 0): "verify"})
    drive(plan, runner)
    assert [j.attempt for j in runner.jobs] == [1, 1]


@pytest.mark.parametrize(
    ("scope", "threshold", "rolled"),
    [
        ("host", 5, ["h1"]),
        ("batch", 1, ["h1", "h2"]),  # the batch crossed the threshold: all it changed
        ("batch", 5, ["h1"]),  # no threshold crossed: only the failed host
        ("none", 5, []),
    ],
)
def test_rollback_scopes(scope: str, threshold: int, rolled: list[str]) -> None:
    plan = make(
        f"failure_handling: {{rollback: {scope}}}\nrollout: {{error_threshold: {threshold}}}"
    )
    _, notes = drive(plan, FakeRunner(fail={("h1", 0): "verify"}))
    assert sorted(r.host for r in notes.rollbacks) == rolled


def test_a_reboot_needing_approval_is_held_without_it_and_the_host_is_reported() -> None:
    plan = make("downtime: {reboot_approval: [h1]}")
    runner = FakeRunner(flagged={"h1"})  # the update left /run/reboot-required
    summary, notes = drive(plan, runner, reboots_approved=False)
    assert runner.jobs[0].reboot["h1"] is RebootMode.HELD
    assert runner.jobs[0].reboot["h2"] is RebootMode.IF_NEEDED
    assert notes.final()["h1"].status is HostStatus.REBOOT_PENDING
    assert summary.status is RunStatus.INCOMPLETE and "h1 (reboot pending" in summary.reason
    _, approved = drive(plan, FakeRunner(flagged={"h1"}), reboots_approved=True)
    assert approved.final()["h1"].status is HostStatus.PATCHED


def test_reboot_modes_follow_the_plan() -> None:
    always = make("downtime: {reboot: always}")
    never = make("downtime: {reboot: never}")
    runner = FakeRunner()
    drive(always, runner)
    drive(never, runner)
    assert runner.jobs[0].reboot["h1"] is RebootMode.ALWAYS
    assert runner.jobs[2].reboot["h1"] is RebootMode.NEVER


def test_an_operator_stop_interrupts_the_batch_and_keeps_only_finished_hosts() -> None:
    plan = make()
    runner = FakeRunner(cancel_after=1)
    summary, notes = drive(plan, runner)
    assert summary.status is RunStatus.INTERRUPTED
    assert notes.final() == {}  # stopped mid-patch: no verdict recorded for h1 or h2
    assert notes.last_batch(1)[0] == "interrupted" and notes.last_batch(2)[0] == "not-started"


def recorded_up_to(host: str, last: int, batch: int = 1) -> list[RecordedPhase]:
    return [RecordedPhase(batch, host, p, "ok") for p in PATCH_PHASES[: last + 1]]


@pytest.mark.parametrize("last", range(len(PATCH_PHASES)))
def test_resume_after_a_crash_at_every_phase(last: int) -> None:
    plan = make()
    rows = recorded_up_to("h1", last) + recorded_up_to("h2", len(PATCH_PHASES) - 1)
    point = state.resume_point([RecordedBatch(1, "running", 0)], rows, plan.settings.rules)
    finished = last == len(PATCH_PHASES) - 1  # verify recorded: h1 has its verdict
    assert ("h1" in point.finished) is finished and "h2" in point.finished
    runner = FakeRunner()
    summary, _ = drive(plan, runner, resume=point)
    ran = [h for job in runner.hosts_run() for h in job]
    assert "h2" not in ran and ("h1" in ran) is not finished
    assert summary.status is RunStatus.COMPLETED


def test_resume_keeps_batches_that_ended_and_their_failures() -> None:
    plan = make("rollout: {error_threshold: 2}")
    point = state.resume_point(
        [RecordedBatch(1, "failed", 1)],
        recorded_up_to("h1", 5) + recorded_up_to("h2", 5),
        plan.settings.rules,
    )
    runner = FakeRunner(fail={("h3", 0): "patch"})
    summary, _ = drive(plan, runner, resume=point)
    assert runner.hosts_run() == [["h3", "h4"]]
    assert summary.status is RunStatus.HALTED and summary.failed == 2  # 1 recorded + h3


def test_resume_between_two_tries_owes_the_next_try() -> None:
    plan = make("failure_handling: {retries: 1}")
    rows = [
        RecordedPhase(1, "h1", p, "failed" if p == "patch" else "ok" if i < 3 else "not-run")
        for i, p in enumerate(PATCH_PHASES)
    ]
    point = state.resume_point([RecordedBatch(1, "running", 0)], rows, plan.settings.rules)
    assert "h1" not in point.finished
    rows2 = [RecordedPhase(r.batch, r.host, r.phase, r.status, 2) for r in rows]
    done = state.resume_point([RecordedBatch(1, "running", 0)], rows2, plan.settings.rules)
    assert "h1" in done.finished and "h1" in done.failed


def test_a_cluster_member_lost_in_the_run_keeps_the_next_member_from_starting() -> None:
    etcd = {"cluster": "etcd"}
    plan = make(
        "rollout: {batch_size: 1, error_threshold: 5, anti_affinity: "
        "{variable: cluster, max_per_batch: 1, max_unavailable: 1}}",
        hosts=3,
        h1=etcd,
        h2=etcd,
        h3=etcd,
    )
    assert [len(b.hosts) for b in plan.batches] == [1, 1, 1]
    runner = FakeRunner(fail={("h1", 0): "verify"})  # patched, then broken: down
    summary, notes = drive(plan, runner)
    assert runner.hosts_run() == [["h1"]]  # h2 and h3 are held: one more down breaks quorum
    held = notes.final()
    assert held["h2"].status is HostStatus.HELD and held["h3"].status is HostStatus.HELD
    assert "etcd" in held["h2"].message
    assert summary.status is RunStatus.FAILED and "held" in summary.reason


# ---------------------------------------------------------------- a lost execution node


def _recorded(notes: Notes) -> tuple[list[RecordedBatch], list[RecordedPhase]]:
    """What the ledger would hold of the run ``notes`` saw, as resume reads it."""
    last = {number: status for number, status, _ in notes.batches}
    batches = [RecordedBatch(n, s, 0) for n, s in sorted(last.items())]
    phases = [RecordedPhase(1, h, p, s, a) for h, p, s, a in notes.phases]
    return batches, phases


def test_a_lost_node_ends_the_run_interrupted_by_default() -> None:
    plan = make()
    runner = FakeRunner(lose={1: {"h2"}})
    summary, notes = drive(plan, runner)
    assert summary.status is RunStatus.INTERRUPTED
    assert summary.reason.startswith("execution node ops@n1 (group dc2) was lost mid-job during")
    assert "patchkit resume run-1 runs them again" in summary.reason
    assert runner.hosts_run() == [["h1", "h2"]]  # no later batch
    assert set(notes.final()) == {"h1"}  # h2 has no verdict: not failed, not rolled back
    assert notes.last_batch(1)[0] == "interrupted" and notes.last_batch(2)[0] == "not-started"
    assert runner.rollbacks == []


def test_on_node_lost_continue_goes_on_and_resume_finishes_the_hosts_left_without_verdict() -> None:
    plan = make("execution: {on_node_lost: continue}", hosts=6)
    assert plan.settings.rules.on_node_lost == "continue"
    runner = FakeRunner(lose={1: {"h2"}})
    summary, notes = drive(plan, runner)
    assert runner.hosts_run() == [["h1", "h2"], ["h3", "h4"], ["h5", "h6"]]
    assert summary.status is RunStatus.INTERRUPTED and summary.patched == 5
    assert summary.reason == (
        "execution node ops@n1 (group dc2) was lost mid-job during batch 1: h2 have no verdict "
        "(not failed, not rolled back); the rest of the window went on "
        "(execution.on_node_lost: continue); patchkit resume run-1 runs them again"
    )
    assert set(notes.final()) == {"h1", "h3", "h4", "h5", "h6"} and runner.rollbacks == []
    # the batch of the lost host stays open for resume; the others ended
    assert [notes.last_batch(n)[0] for n in (1, 2, 3)] == ["interrupted", "completed", "completed"]
    batches, phases = _recorded(notes)
    point = state.resume_point(batches, phases, plan.settings.rules)
    again = FakeRunner()
    resumed, _ = drive(plan, again, resume=point)
    assert again.hosts_run() == [["h2"]]
    assert resumed.status is RunStatus.COMPLETED and resumed.patched == 1  # this run: h2


def test_a_node_lost_in_a_canary_batch_stops_the_run_even_with_continue() -> None:
    plan = make("execution: {on_node_lost: continue}\nrollout: {canary: {size: 1}}")
    runner = FakeRunner(lose={1: {"h1"}})
    summary, notes = drive(plan, runner)
    assert summary.status is RunStatus.INTERRUPTED and "during batch 1" in summary.reason
    assert runner.hosts_run() == [["h1"]]  # the window waits for the canary's verdict
    assert all(s == "not-started" for n, s, _ in notes.batches if n > 1)


def test_an_operator_stop_with_a_node_lost_stops_the_run_even_with_continue() -> None:
    plan = make("execution: {on_node_lost: continue}")
    notes = Notes()
    runner = FakeRunner(lose={1: {"h2"}})
    patch = runner.patch

    def ctrl_c_too(job: Any, on_task: Any, cancel: Any) -> Any:
        notes.stop_now = True  # the operator's Ctrl-C came while the node went away
        return patch(job, on_task, cancel)

    runner.patch = ctrl_c_too  # type: ignore[method-assign]
    summary, _ = drive(plan, runner, notes=notes)
    assert summary.status is RunStatus.INTERRUPTED and len(runner.jobs) == 1
    assert summary.reason.startswith("execution node ops@n1 (group dc2) was lost mid-job")
    assert "went on" not in summary.reason


def test_a_halt_after_a_lost_node_keeps_its_status_and_names_the_hosts_without_verdict() -> None:
    plan = make("execution: {on_node_lost: continue}\nrollout: {error_threshold: 1}", hosts=6)
    runner = FakeRunner(lose={1: {"h2"}}, fail={("h3", 0): "patch"})
    summary, _ = drive(plan, runner)
    assert runner.hosts_run() == [["h1", "h2"], ["h3", "h4"]]
    assert summary.status is RunStatus.HALTED
    assert (
        "; before that, execution node ops@n1 (group dc2) was lost mid-job during batch 1: h2"
        in (summary.reason)
    )
    assert "h2 have no verdict" in summary.reason and "error threshold" in summary.reason
