"""Run an approved plan: batch by batch through ansible-runner, every outcome into the ledger.

Between batches the pure rules decide: the error threshold halts the window, the cutoff stops
new batches. Each batch's outcomes are committed before the next batch starts.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from patchkit import content
from patchkit.errors import LedgerError, PatchkitError, RefusedError
from patchkit.execution import events, locks, rollback, rules
from patchkit.execution.runner import TaskResult, run_playbook
from patchkit.ledger import Ledger
from patchkit.model import Host
from patchkit.notify import Notify
from patchkit.planning import scope as scoping
from patchkit.policy.model import Policy

log = logging.getLogger(__name__)

Clock = Callable[[], datetime]


@dataclass(frozen=True)
class RunSummary:
    run_id: str
    status: str  # completed / incomplete / failed / halted / stopped-at-cutoff / interrupted
    reason: str
    patched: int
    failed: int
    not_patched: int


def new_run_id(at: datetime) -> str:
    return f"run-{at.astimezone(UTC):%Y%m%d-%H%M%S}-{uuid.uuid4().hex[:6]}"


def check_may_run(
    ledger: Ledger, body: Mapping[str, Any], policy: Policy, inputs: Mapping[str, str]
) -> None:
    """Refuse a plan that is unapproved (when the policy wants approval) or whose inputs moved."""
    for what in ("policy", "hosts"):
        if body["inputs"][what] != inputs[what]:
            noun = "policy" if what == "policy" else "inventory"
            raise RefusedError(
                f"the {noun} changed since plan {body['id']} was made",
                hint="make a new plan (patchkit plan) and have it approved",
            )
    if not policy.roles.approval_required:
        return
    approved = [a for a in ledger.approvals(body["id"]) if a["hash"] == body["hash"]]
    if not approved:
        raise RefusedError(
            f"plan {body['id']} is not approved",
            hint=f"patchkit approve {body['id']} --by NAME (approvers: "
            f"{', '.join(policy.roles.approvers)})",
        )
    downtime = reboots_needing_approval(body)
    if downtime and not any(a["reboots"] for a in approved):
        raise RefusedError(
            f"plan {body['id']} reboots {', '.join(downtime)}, whose downtime the policy wants "
            "approved, and no approval of it includes the reboots",
            hint=f"patchkit approve {body['id']} --by NAME --reboots",
        )


def reboots_needing_approval(body: Mapping[str, Any]) -> list[str]:
    """Hosts the plan reboots in this window whose reboot needs explicit approval."""
    return sorted(
        h["host"]
        for b in body["batches"]
        if not b["next_window"]
        for h in b["hosts"]
        if h.get("reboot_needs_approval")
    )


def checks_by_host(policy: Policy, hosts: Sequence[Host]) -> dict[str, list[dict[str, Any]]]:
    """The policy's verification checks that apply to each host, as the playbook takes them."""
    match = scoping.matcher(hosts)
    out: dict[str, list[dict[str, Any]]] = {h.name: [] for h in hosts}
    for check in policy.verification:
        wanted = match(check.hosts)
        body = check.model_dump(mode="json", exclude={"hosts"})
        for host in hosts:
            if host.name in wanted:
                out[host.name].append(body)
    return out


def finished_hosts(record: Mapping[str, Any]) -> set[str]:
    """Hosts of a recorded run whose batch reached a verdict for them (every phase recorded)."""
    seen: dict[str, set[str]] = {}
    for row in record["phases"]:
        seen.setdefault(row["host"], set()).add(row["phase"])
    return {host for host, phases in seen.items() if set(events.PHASES) <= phases}


def _failed_in_record(record: Mapping[str, Any], names: Sequence[str]) -> int:
    """How many of ``names`` failed after being changed, per the record (for resume)."""
    return len(
        {
            p["host"]
            for p in record["phases"]
            if p["host"] in names
            and p["phase"] in events.CHANGING
            and p["status"] in ("failed", "unreachable")
        }
    )


def _changes_made_earlier(
    outcome: events.HostOutcome, planned: Mapping[str, Any]
) -> events.HostOutcome:
    """A host run again by resume: updates its first attempt installed show no change now, so
    take the change from the plan (installed -> candidate) when the host has the candidate."""
    patch = next((p for p in outcome.phases if p.phase == "patch"), None)
    if patch is None or patch.status != "ok":
        return outcome
    now = {str(row.get("package")): row.get("after") for row in (patch.data.get("updates") or [])}
    known = {c.package for c in outcome.changes}
    extra = tuple(
        events.PackageChange(u["package"], u["installed"], u["candidate"])
        for u in planned["updates"]
        if u["package"] not in known
        and now.get(u["package"]) == u["candidate"]
        and u.get("installed") != u["candidate"]
    )
    return dataclasses.replace(outcome, changes=outcome.changes + extra) if extra else outcome


def execute(
    body: Mapping[str, Any],
    policy: Policy,
    hosts: Sequence[Host],
    inventory: Path,
    ledger: Ledger,
    *,
    clock: Clock,
    on_task: Callable[[TaskResult], None] | None = None,
    on_batch: Callable[[int, str], None] | None = None,
    cancel: Callable[[], bool] | None = None,
    mitogen: bool = False,
    resume: Mapping[str, Any] | None = None,
    take_over: bool = False,
    notify: Notify | None = None,
) -> RunSummary:
    """Run every batch of the plan that the rules allow; return how the window ended.

    The run locks its hosts in the ledger for its whole length (RefusedError when another run
    holds one; a dead holder's lock is taken only with ``take_over``). Each phase is committed
    as the playbook reports it. With ``resume`` (a recorded run), batches that ended are kept,
    hosts that reached a verdict are not run again, and the others run as planned.
    """
    started = clock()
    holder = locks.holder()
    wanted = [h["host"] for b in body["batches"] if not b["next_window"] for h in b["hosts"]]
    may_take = locks.taker(take_over, started)
    if resume is None:
        run_id = new_run_id(started)
        ledger.start_run(
            run_id, body["id"], body["hash"], at=started, holder=holder, hosts=wanted,
            may_take=may_take,
        )  # fmt: skip
        prior: dict[int, Mapping[str, Any]] = {}
        done: set[str] = set()
    else:
        run_id = str(resume["id"])
        ledger.reopen_run(run_id, at=started, holder=holder, hosts=wanted, may_take=may_take)
        prior = {int(b["number"]): b for b in resume["batches"]}
        done = finished_hosts(resume)
    tell = notify or (lambda _event, _data: None)
    tell(
        "window-started",
        {
            "run": run_id, "plan": body["id"], "policy": body["policy"],
            "window": body["window"]["name"], "batches": len(body["batches"]),
            "hosts": len(wanted), "resumed": resume is not None,
        },
    )  # fmt: skip
    try:
        with locks.Heartbeat(ledger, run_id):
            summary = _batches(
                body, policy, hosts, inventory, ledger, run_id, holder, prior, done, resume,
                clock=clock, on_task=on_task, on_batch=on_batch, cancel=cancel, mitogen=mitogen,
                tell=tell,
            )  # fmt: skip
            tell(
                "window-finished",
                {
                    "run": run_id, "plan": body["id"], "policy": body["policy"],
                    "status": summary.status, "reason": summary.reason,
                    "patched": summary.patched, "failed": summary.failed,
                    "not_patched": summary.not_patched,
                },
            )  # fmt: skip
            if summary.status != "interrupted":
                try:  # the retention rule: this run's snapshots when retention is 0, older ones
                    released = release_snapshots(
                        ledger, policy, hosts, inventory, clock=clock, mitogen=mitogen
                    )
                    log.info("released %d snapshot(s)", len(released))
                except PatchkitError as exc:  # the window's outcome stands; release later
                    log.warning("snapshots not released (patchkit release retries): %s", exc)
    finally:
        try:
            ledger.unlock(run_id)
        except LedgerError as exc:  # the error that stopped the run says what to do
            log.warning("the hosts stay locked by %s: %s", run_id, exc.message)
    return summary


def _batches(
    body: Mapping[str, Any],
    policy: Policy,
    hosts: Sequence[Host],
    inventory: Path,
    ledger: Ledger,
    run_id: str,
    holder: str,
    prior: Mapping[int, Mapping[str, Any]],
    done: set[str],
    resume: Mapping[str, Any] | None,
    *,
    clock: Clock,
    on_task: Callable[[TaskResult], None] | None,
    on_batch: Callable[[int, str], None] | None,
    cancel: Callable[[], bool] | None,
    mitogen: bool,
    tell: Notify,
) -> RunSummary:
    cutoff = datetime.fromisoformat(body["window"]["cutoff"])
    slot = body["window"]
    window_end = datetime.fromisoformat(slot["end"]) if slot.get("end") else None
    checks = checks_by_host(policy, hosts)
    settings = phase_settings(policy)
    threshold = policy.rollout.error_threshold
    failures = attempted = patched = not_patched = 0
    left_alone: list[str] = []  # not patched and not changed: unreachable, unhealthy, ...
    status, reason = "completed", ""
    for batch in body["batches"]:
        number, names = batch["number"], [h["host"] for h in batch["hosts"]]
        before = prior.get(number)
        if before is not None and before["status"] in ("completed", "failed"):
            # resumed: this batch ended before the interruption; count it, do not repeat it
            failures += int(before["failed"])
            attempted += len(names)
            continue
        if batch["next_window"]:
            ledger.record_batch(
                run_id,
                number,
                status="not-started",
                hosts=len(names),
                reason="left for the next window by the plan",
            )
            continue
        if status != "completed":
            ledger.record_batch(
                run_id, number, status="not-started", hosts=len(names), reason=reason
            )
            continue
        now = clock()
        estimate = timedelta(seconds=float(batch.get("duration", 0)))
        if not rules.may_start(now, cutoff):
            status, reason = "stopped-at-cutoff", f"window cutoff {cutoff:%H:%M %Z} reached"
            ledger.record_batch(
                run_id, number, status="not-started", hosts=len(names), reason=reason
            )
            continue
        if window_end is not None and not rules.fits(now, estimate, window_end):
            status = "stopped-at-cutoff"
            reason = (
                f"batch {number} would end after the window ({window_end:%H:%M %Z}): estimated "
                f"{estimate.total_seconds() / 60:.0f} min"
            )
            ledger.record_batch(
                run_id, number, status="not-started", hosts=len(names), reason=reason
            )
            continue
        todo = [n for n in names if n not in done]
        earlier = [n for n in names if n in done]  # resumed: their verdict is recorded
        begin = clock()
        ledger.record_batch(run_id, number, status="running", hosts=len(names), started=begin)
        if on_batch is not None:
            on_batch(number, "running")
        seen: dict[str, list[TaskResult]] = {}
        broken: list[LedgerError] = []  # the ledger refused a write: stop, do not go on blind

        def record_as_it_happens(
            task: TaskResult,
            number: int = number,
            seen: dict[str, list[TaskResult]] = seen,
            broken: list[LedgerError] = broken,
        ) -> None:
            seen.setdefault(task.host, []).append(task)
            phase = task.task.removeprefix("patchkit ").removesuffix(" result")
            if phase in events.PHASES and task.task == events.result_task(phase) and not broken:
                folded = events.fold_phases(task.host, seen[task.host], events.PHASES)
                reported = next(p for p in folded if p.phase == phase)
                try:
                    ledger.record_phase(run_id, number, task.host, reported, at=clock())
                except LedgerError as exc:
                    broken.append(exc)
            if on_task is not None:
                on_task(task)

        def stop_asked(broken: list[LedgerError] = broken) -> bool:
            return bool(broken) or (cancel is not None and cancel())

        planned_batch = dict(batch) | {"hosts": [h for h in batch["hosts"] if h["host"] in todo]}
        result = run_playbook(
            content.playbook("patch.yml"),
            inventory,
            limit=",".join(todo),
            extravars=batch_extravars(planned_batch, run_id, settings, checks),
            forks=max(1, int(batch["concurrency"])),
            timeout=_job_timeout(policy),
            on_task=record_as_it_happens,
            cancel=stop_asked,
            mitogen=mitogen,
            host_key_checking=policy.connection.host_key_checking,
            pass_env=policy.connection.environment,
        )
        if broken:  # outcomes that cannot be recorded must not pile up: end the run here
            raise LedgerError(
                f"{broken[0].message}; the run stopped during batch {number}",
                hint=f"{broken[0].hint}; then patchkit resume {run_id} --take-over "
                "(the hosts keep the lock of this run)",
            )
        canceled = result.status == "canceled"
        outcomes = list(events.batch_outcomes(todo, result.tasks))
        if canceled:  # hosts stopped mid-phase keep what they reported; resume runs them again
            outcomes = [o for o in outcomes if events.finished(o.host, result.tasks)]
        if resume is not None:
            plan_of = {h["host"]: h for h in batch["hosts"]}
            outcomes = [_changes_made_earlier(o, plan_of[o.host]) for o in outcomes]
        end = clock()
        ledger.record_outcomes(run_id, number, outcomes, started=begin, ended=end)
        failed_here = sum(1 for o in outcomes if o.counts_as_failure)
        if resume is not None:
            failed_here += _failed_in_record(resume, earlier)
        crossed_before = rules.threshold_crossed(failures, attempted, threshold)
        failures += failed_here
        attempted += len(names)
        crossed = rules.threshold_crossed(failures, attempted, threshold)
        patched += sum(1 for o in outcomes if o.status == "patched")
        alone = [o for o in outcomes if o.status != "patched" and not o.counts_as_failure]
        not_patched += len(alone)
        left_alone += [f"{o.host} ({o.status} in {o.failed_phase or 'precheck'})" for o in alone]
        batch_status = "interrupted" if canceled else "failed" if failed_here else "completed"
        ledger.record_batch(
            run_id,
            number,
            status=batch_status,
            hosts=len(names),
            failed=failed_here,
            started=begin,
            ended=end,
        )
        if on_batch is not None:
            on_batch(number, batch_status)
        if canceled:
            status, reason = "interrupted", f"stopped by the operator during batch {number}"
            continue
        chosen = rollback.scope(
            policy.failure_handling.rollback,
            outcomes,
            threshold_crossed=crossed and not crossed_before,
        )
        planned = {h["host"]: h["updates"] for h in batch["hosts"]}
        targets = rollback.from_outcomes(number, chosen, planned)
        if targets:
            if on_batch is not None:
                on_batch(number, "rolling back")
            roll_back(
                targets, policy, hosts, inventory, ledger, run_id,
                clock=clock, who=f"patchkit run ({holder})", on_task=on_task, cancel=cancel,
                mitogen=mitogen, notify=tell,
            )  # fmt: skip
            if on_batch is not None:
                on_batch(number, batch_status)
        if crossed and policy.failure_handling.on_threshold == "halt":
            status = "halted"
            reason = f"{failures} failed host(s) reached the error threshold {threshold}"
            tell(
                "batch-halted",
                {"run": run_id, "batch": number, "failed": failures, "reason": reason,
                 "batches_left": sum(1 for b in body["batches"] if b["number"] > number)},
            )  # fmt: skip
    if status == "completed" and failures:
        status, reason = "failed", f"{failures} host(s) failed"
        if left_alone:
            reason += f"; {len(left_alone)} left unpatched: {', '.join(left_alone)}"
    elif status == "completed" and left_alone:
        status = "incomplete"
        reason = f"{len(left_alone)} host(s) left unpatched: {', '.join(left_alone)}"
    ledger.finish_run(run_id, status=status, reason=reason, at=clock())
    return RunSummary(run_id, status, reason, patched, failures, not_patched)


def roll_back(
    targets: Sequence[rollback.Target],
    policy: Policy,
    hosts: Sequence[Host],
    inventory: Path,
    ledger: Ledger,
    run_id: str,
    *,
    clock: Clock,
    who: str,
    on_task: Callable[[TaskResult], None] | None = None,
    cancel: Callable[[], bool] | None = None,
    mitogen: bool = False,
    notify: Notify | None = None,
) -> list[rollback.Result]:
    """Put ``targets`` back to their snapshots (one playbook run), verify, record each host."""
    if not targets:
        return []
    begin = clock()
    checks = checks_by_host(policy, hosts)
    extravars = phase_settings(policy) | {
        "patchkit_rollback_by_host": {t.host: t.extravars() for t in targets},
        "patchkit_checks_by_host": {t.host: checks.get(t.host, []) for t in targets},
    }
    result = run_playbook(
        content.playbook("rollback.yml"),
        inventory,
        limit=",".join(t.host for t in targets),
        extravars=extravars,
        forks=max(1, len(targets)),
        timeout=_job_timeout(policy),
        on_task=on_task,
        cancel=cancel,
        mitogen=mitogen,
        host_key_checking=policy.connection.host_key_checking,
        pass_env=policy.connection.environment,
    )
    end = clock()
    results = [rollback.result(t, result.tasks) for t in targets]
    for res in results:
        ledger.record_rollback(run_id, res, started=begin, ended=end, who=who)
    if notify is not None:
        notify(
            "rollback-done",
            {
                "run": run_id,
                "by": who,
                "hosts": [
                    {"host": r.host, "batch": r.batch, "status": r.status, "message": r.message}
                    for r in results
                ],
            },
        )
    return results


def release_snapshots(
    ledger: Ledger,
    policy: Policy,
    hosts: Sequence[Host],
    inventory: Path,
    *,
    clock: Clock,
    dry_run: bool = False,
    mitogen: bool = False,
) -> list[dict[str, Any]]:
    """Delete the snapshots the retention rule lets go (one playbook run); mark them released.

    Returns the snapshots released (or, with ``dry_run``, that would be). Hosts that are not in
    the inventory are left for a run that knows them.
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
    by_host: dict[str, list[dict[str, str]]] = {}
    for snap in due:
        by_host.setdefault(snap["host"], []).append({"backend": snap["backend"], "id": snap["id"]})
    result = run_playbook(
        content.playbook("release.yml"),
        inventory,
        limit=",".join(sorted(by_host)),
        extravars=phase_settings(policy) | {"patchkit_release_by_host": by_host},
        timeout=600,
        mitogen=mitogen,
        host_key_checking=policy.connection.host_key_checking,
        pass_env=policy.connection.environment,
    )
    released = {
        (t.host, str(t.result.get("msg", {}).get("id")))
        for t in result.tasks
        if t.task == "patchkit release result" and t.status == "ok"
    }
    done = [s for s in due if (s["host"], s["id"]) in released]
    for snap in done:
        ledger.mark_released(snap["run"], snap["host"], at=clock())
    return done


def batch_extravars(
    batch: Mapping[str, Any],
    run_id: str,
    settings: Mapping[str, Any],
    checks: Mapping[str, list[dict[str, Any]]],
) -> dict[str, Any]:
    """The extra vars of playbooks/patch.yml for one batch of a plan (docs/playbook-contract.md)."""
    names = [h["host"] for h in batch["hosts"]]
    return dict(settings) | {
        "patchkit_run_id": run_id,
        "patchkit_batch": batch["number"],
        "patchkit_updates_by_host": {
            h["host"]: [
                {"package": u["package"], "candidate": u["candidate"]} for u in h["updates"]
            ]
            for h in batch["hosts"]
        },
        "patchkit_checks_by_host": {n: checks[n] for n in names if n in checks},
    }


def phase_settings(policy: Policy) -> dict[str, Any]:
    prep = policy.preparation
    return {
        "patchkit_snapshot_backend": prep.snapshot.backend,
        "patchkit_reboot_policy": policy.downtime.reboot,
        "patchkit_reboot_timeout": int(policy.downtime.reboot_timeout.total_seconds()),
        "patchkit_precheck_min_free_disk_mb": prep.prechecks.min_free_disk,
        "patchkit_precheck_healthy_before": prep.prechecks.healthy_before,
        "patchkit_precheck_pending_reboot": prep.prechecks.pending_reboot,
        "patchkit_lab_root": os.environ.get("PATCHKIT_LAB_ROOT", "/var/lib/patchkit/lab"),
    }


def _job_timeout(policy: Policy) -> int:
    """Two reboot waits plus room for the other phases (docs/playbook-contract.md)."""
    return int(2 * policy.downtime.reboot_timeout.total_seconds()) + 600
