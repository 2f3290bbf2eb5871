"""Run an admitted plan: lock its hosts, consume its approvals, drive the batch loop over the
ledger and ansible-runner, release what retention lets go, unlock.

The decisions are elsewhere (``admission.py`` before the run, ``state.py`` during it); the batch
loop is ``loop.py``. This module wires them to the real runner, ledger and observer.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from patchkit.errors import LedgerError, PatchkitError
from patchkit.execution import locks, rules, state
from patchkit.execution.admission import Admission
from patchkit.execution.ansible import AnsibleRunner, phase_vars
from patchkit.execution.loop import BatchLoop, RunSummary, roll_back
from patchkit.execution.placed import Job, Placement
from patchkit.execution.ports import Observer
from patchkit.execution.rollback import Result, Target
from patchkit.execution.status import BatchStatus
from patchkit.ledger import Ledger
from patchkit.model import Host
from patchkit.planning.plan import phases_of
from patchkit.planning.types import Plan
from patchkit.policy.model import Policy

log = logging.getLogger(__name__)

Clock = Callable[[], datetime]


def new_run_id(at: datetime) -> str:
    return f"run-{at.astimezone(UTC):%Y%m%d-%H%M%S}-{uuid.uuid4().hex[:6]}"


def execute(
    plan: Plan,
    admission: Admission,
    inventory: Path,
    ledger: Ledger,
    *,
    clock: Clock,
    observer: Observer,
    mitogen: bool = False,
    resume: dict[str, Any] | None = None,
    take_over: bool = False,
    release: tuple[Policy, Sequence[Host]] | None = None,
) -> RunSummary:
    """Run every batch of the plan that the rules allow; return how the window ended.

    The run locks its hosts in the ledger for its whole length (RefusedError when another
    holder has one; a dead holder's lock is taken only with ``take_over``) and, in the same
    transaction, consumes the approvals admission counted. With ``resume`` (the ledger's
    record of an interrupted run of this plan), batches that ended are kept and hosts that
    reached a verdict are not run again. ``release`` (the live policy and inventory) lets the
    run release the snapshots its retention rule lets go once the window is over.
    """
    started = clock()
    holder = locks.holder()
    wanted = [h.host for b in plan.planned for h in b.hosts]
    may_take = locks.taker(take_over, started)
    if resume is None:
        run_id = new_run_id(started)
        ledger.start_run(
            run_id, plan.id, plan.hash, at=started, holder=holder, hosts=wanted,
            may_take=may_take, approvals=admission.approvals, emergency=admission.emergency,
        )  # fmt: skip
        point = state.ResumePoint()
    else:
        run_id = str(resume["id"])
        ledger.reopen_run(run_id, at=started, holder=holder, hosts=wanted, may_take=may_take)
        point = resume_point(resume, plan)
    observer.event(
        "window-started",
        {"run": run_id, "plan": plan.id, "policy": plan.policy, "window": plan.window.name,
         "batches": len(plan.batches), "hosts": len(wanted), "resumed": resume is not None,
         "emergency": admission.emergency},
    )  # fmt: skip
    try:
        with locks.Heartbeat(ledger, run_id):
            loop = BatchLoop(
                plan, run_id,
                runner=AnsibleRunner.for_plan(
                    plan, inventory, run_id, mitogen=mitogen,
                    hosts=release[1] if release is not None else None,
                ),
                journal=ledger, observer=observer, clock=clock, who=f"patchkit run ({holder})",
                emergency=admission.emergency, reboots_approved=admission.reboots_approved,
                resume=point,
            )  # fmt: skip
            summary = loop.run()
            observer.event(
                "window-finished",
                {"run": run_id, "plan": plan.id, "policy": plan.policy,
                 "status": summary.status, "reason": summary.reason,
                 "patched": summary.patched, "failed": summary.failed,
                 "not_patched": summary.not_patched},
            )  # fmt: skip
            if summary.status != "interrupted" and release is not None:
                try:  # the retention rule: this run's snapshots when retention is 0, older ones
                    policy, hosts = release
                    released = release_snapshots(
                        ledger, policy, hosts, inventory, clock=clock, mitogen=mitogen,
                        seed=run_id,
                    )  # fmt: skip
                    log.info("released %d snapshot(s)", len(released))
                except PatchkitError as exc:  # the window's outcome stands; release later
                    log.warning("snapshots not released (patchkit release retries): %s", exc)
    finally:
        try:
            ledger.unlock(run_id)
        except LedgerError as exc:  # the error that stopped the run says what to do
            log.warning("the hosts stay locked by %s: %s", run_id, exc.message)
    return summary


def roll_back_run(
    plan: Plan,
    targets: Sequence[Target],
    inventory: Path,
    ledger: Ledger,
    run_id: str,
    *,
    clock: Clock,
    who: str,
    observer: Observer,
    mitogen: bool = False,
) -> list[Result]:
    """Roll back ``targets`` of run ``run_id`` (by hand) with the settings of its plan."""
    return roll_back(
        plan, tuple(targets), run_id,
        runner=AnsibleRunner.for_plan(plan, inventory, run_id, mitogen=mitogen),
        journal=ledger, observer=observer, clock=clock, who=who,
    )  # fmt: skip


def resume_point(record: dict[str, Any], plan: Plan) -> state.ResumePoint:
    """Where the recorded run ``record`` (Ledger.run_record) picks up."""
    batches = [
        state.RecordedBatch(int(b["number"]), BatchStatus(b["status"]), int(b["failed"]))
        for b in record["batches"]
    ]
    phases = [
        state.RecordedPhase(
            int(p["batch"]), p["host"], p["phase"], p["status"], int(p.get("attempt", 1))
        )
        for p in record["phases"]
    ]
    return state.resume_point(batches, phases, plan.settings.rules)


def release_snapshots(
    ledger: Ledger,
    policy: Policy,
    hosts: Sequence[Host],
    inventory: Path,
    *,
    clock: Clock,
    dry_run: bool = False,
    mitogen: bool = False,
    seed: str = "",
) -> list[dict[str, Any]]:
    """Delete the snapshots the retention rule lets go (one playbook run); mark them released.

    Returns the snapshots released (or, with ``dry_run``, that would be). Hosts that are not in
    the inventory, or that another controller holds, are left for a later release. Hosts on
    execution nodes are released through them, ``seed`` (a run's id: its nodes) choosing the
    node of each group.
    """
    now = clock()
    known = {h.name for h in hosts}
    retention = policy.preparation.snapshot.retention
    due = [
        s
        for s in ledger.unreleased_snapshots()
        if s["host"] in known and rules.releasable(s, now, retention)
    ]
    if dry_run or not due:
        return due
    # a host another controller holds (its run, assessment or release) is left for later: two
    # controllers on one ledger must not run playbooks on one host at once
    mine = locks.holder()
    busy = {lk["host"] for lk in ledger.locks({s["host"] for s in due}) if lk["holder"] != mine}
    if busy:
        log.info("snapshots of %s not released now: held by another controller", sorted(busy))
        due = [s for s in due if s["host"] not in busy]
        if not due:
            return []
    by_host: dict[str, list[dict[str, str]]] = {}
    for snap in due:
        by_host.setdefault(snap["host"], []).append({"backend": snap["backend"], "id": snap["id"]})
    job = Job(
        release_vars(policy) | {"patchkit_release_by_host": by_host},
        timeout=600,
        host_key_checking=policy.connection.host_key_checking,
        pass_env=policy.connection.environment,
        mitogen=mitogen,
    )
    placement = Placement.of_policy(policy, hosts, inventory, seed or now.isoformat())
    result = placement.run("release.yml", sorted(by_host), job)
    released = {
        (t.host, str(t.result.get("msg", {}).get("id")))
        for t in result.tasks
        if t.task == "patchkit release result" and t.status == "ok"
    }
    done = [s for s in due if (s["host"], s["id"]) in released]
    for snap in done:
        ledger.mark_released(snap["run"], snap["host"], at=clock())
    return done


def release_vars(policy: Policy) -> dict[str, Any]:
    """The roles' settings for release.yml, from the live policy (release runs without a plan:
    from cron, or at the end of a run for older runs' snapshots)."""
    return phase_vars(phases_of(policy))
