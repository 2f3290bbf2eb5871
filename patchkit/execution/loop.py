"""The batch loop: run an admitted plan batch by batch, wave by wave, over the three ports.

For each batch the pure rules (``state.py``) decide whether it may start; its hosts then run in
waves of the batch's concurrency, a failed patch phase is tried again up to the plan's retries,
every outcome is journalled as it comes, failed hosts are rolled back per the plan's scope, and
after each wave the error threshold may halt the window. A failed canary halts it; a good one
holds the next batch for the canary soak.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime

from patchkit.errors import LedgerError
from patchkit.execution import events, rollback, state
from patchkit.execution.events import HostOutcome, PhaseOutcome
from patchkit.execution.ports import Journal, Observer, PatchJob, RollbackJob, Runner
from patchkit.execution.runner import TaskResult
from patchkit.execution.state import RebootMode, ResumePoint, Tally
from patchkit.execution.status import BatchStatus, HostStatus, Phase, PhaseStatus, RunStatus
from patchkit.planning.quorum import held_for_quorum
from patchkit.planning.types import Batch, HostPlan, Plan

log = logging.getLogger(__name__)

Clock = Callable[[], datetime]


@dataclass(frozen=True)
class RunSummary:
    run_id: str
    status: RunStatus
    reason: str
    patched: int
    failed: int
    not_patched: int


@dataclass
class _Batch:
    """What one batch has done so far (the loop's working notes, not a decision)."""

    batch: Batch
    outcomes: list[HostOutcome] = field(default_factory=list)
    rolled_back: set[str] = field(default_factory=set)


class BatchLoop:
    """Runs the plan's batches of this window; ``run`` returns how the window ended."""

    def __init__(
        self,
        plan: Plan,
        run_id: str,
        *,
        runner: Runner,
        journal: Journal,
        observer: Observer,
        clock: Clock,
        who: str,
        emergency: bool = False,
        reboots_approved: bool = False,
        resume: ResumePoint | None = None,
    ) -> None:
        self.plan, self.run_id = plan, run_id
        self.runner, self.journal, self.observer, self.clock = runner, journal, observer, clock
        self.who, self.emergency = who, emergency
        self.resume = resume or ResumePoint()
        self.lost = ""  # why the last job stopped without the operator: a lost execution node
        # hosts a lost node left without a verdict while the run went on (on_node_lost:
        # continue): host -> (batch, why); the run ends interrupted so that resume reruns them
        self.stranded: dict[str, tuple[int, str]] = {}
        self.rules = plan.settings.rules
        self.reboot = {
            h.host: state.reboot_mode(h, plan.settings.phases, reboots_approved=reboots_approved)
            for h in plan.hosts()
        }

    # ------------------------------------------------------------ the window

    def run(self) -> RunSummary:
        tally = Tally()
        stop: tuple[RunStatus, str] | None = None
        batches = list(self.plan.batches)
        for index, batch in enumerate(batches):
            names = [h.host for h in batch.hosts]
            ended = self.resume.ended.get(batch.number)
            if ended is not None:  # resumed: this batch ended before; count it, do not repeat it
                tally = _recorded(tally, names, set(names[: ended.failed]))
                continue
            if batch.next_window or stop is not None:
                why = "left for the next window by the plan" if batch.next_window else stop[1]  # type: ignore[index]
                self._not_started(batch, why)
                continue
            verdict = state.gate(batch, self.clock(), self.plan.window, emergency=self.emergency)
            if not verdict.start:
                stop = (verdict.status, verdict.reason)
                self._not_started(batch, verdict.reason)
                continue
            tally, stop = self._batch(batch, tally)
            later = any(not b.next_window for b in batches[index + 1 :])
            if stop is None and batch.canary and later and self.rules.canary_soak:
                seconds = self.rules.canary_soak.total_seconds()
                if not self.observer.wait(seconds, f"canary soak before batch {batch.number + 1}"):
                    stop = (RunStatus.INTERRUPTED, "stopped by the operator during the canary soak")
        status, reason = state.verdict(tally, stop)
        if self.stranded:
            status, reason = self._stranded(stop, status, reason)
        self.journal.finish_run(self.run_id, status=status, reason=reason, at=self.clock())
        not_patched = len(tally.left_alone) + len(tally.reboot_pending)
        return RunSummary(self.run_id, status, reason, tally.patched, tally.failures, not_patched)

    def _stranded(
        self, stop: tuple[RunStatus, str] | None, status: RunStatus, reason: str
    ) -> tuple[RunStatus, str]:
        """How a run that went on past a lost node ends: interrupted, so that resume reruns the
        hosts without a verdict; a halt or a cutoff that came later keeps its status, and its
        reason names those hosts too."""
        by_loss: dict[tuple[int, str], list[str]] = {}
        for host, (number, why) in self.stranded.items():
            by_loss.setdefault((number, why), []).append(host)
        told = "; ".join(
            f"{why} during batch {number}: {', '.join(sorted(hosts))} have no verdict (not "
            "failed, not rolled back)"
            for (number, why), hosts in sorted(by_loss.items())
        )
        if stop is None:
            went_on = "the rest of the window went on (execution.on_node_lost: continue)"
            return RunStatus.INTERRUPTED, (
                f"{told}; {went_on}; patchkit resume {self.run_id} runs them again"
            )
        return status, f"{reason}; before that, {told}"

    def _not_started(self, batch: Batch, reason: str) -> None:
        self.journal.record_batch(
            self.run_id,
            batch.number,
            status=BatchStatus.NOT_STARTED,
            hosts=len(batch.hosts),
            reason=reason,
        )

    # ------------------------------------------------------------ one batch

    def _batch(self, batch: Batch, tally: Tally) -> tuple[Tally, tuple[RunStatus, str] | None]:
        earlier = [h.host for h in batch.hosts if h.host in self.resume.finished]
        tally = _recorded(tally, earlier, set(earlier) & self.resume.failed)
        todo = [h for h in batch.hosts if h.host not in self.resume.finished]
        begin = self.clock()
        self.journal.record_batch(
            self.run_id, batch.number, status=BatchStatus.RUNNING, hosts=len(batch.hosts),
            started=begin,
        )  # fmt: skip
        self.observer.batch(batch.number, BatchStatus.RUNNING)
        notes = _Batch(batch)
        stop: tuple[RunStatus, str] | None = None
        canceled = halted = False
        for wave in state.waves(todo, batch.concurrency):
            if self.observer.cancelled():
                canceled = True
                break
            held = held_for_quorum(wave, self.plan.clusters, tally.down)
            go = tuple(h for h in wave if h.host not in held)
            kept = [_held(h.host, held[h.host]) for h in wave if h.host in held]
            outcomes, canceled = self._wave(batch, go) if go else ([], False)
            outcomes = kept + outcomes
            if kept:
                self.journal.record_outcomes(
                    self.run_id, batch.number, kept, started=self.clock(), ended=self.clock()
                )
            crossed_before = state.crossed(tally, self.rules)
            tally = state.fold(tally, outcomes)
            notes.outcomes += outcomes
            if canceled:
                break
            newly = state.crossed(tally, self.rules) and not crossed_before
            self._roll_back(notes, newly_crossed=newly)
            why = state.halt_reason(tally, self.rules)
            if why is not None:
                halted, stop = True, (RunStatus.HALTED, why)
                self._halted(batch, tally, why)
                break
        if canceled and self.lost:
            stop = (
                RunStatus.INTERRUPTED,
                f"{self.lost} during batch {batch.number}: its hosts have no verdict (not "
                f"failed, not rolled back); patchkit resume {self.run_id} runs them again",
            )
        elif canceled:
            stop = (RunStatus.INTERRUPTED, f"stopped by the operator during batch {batch.number}")
        elif stop is None:
            why = state.canary_failed(batch, notes.outcomes, self.rules)
            if why is not None:
                stop = (RunStatus.HALTED, why)
                self._halted(batch, tally, why)
        # a batch with hosts left without a verdict stays open for resume, as an interrupted one
        stranded = any(h.host in self.stranded for h in todo)  # a host is in one batch
        status = state.batch_status(
            notes.outcomes, halted=halted, canceled=canceled or (stranded and not halted)
        )
        failed = sum(1 for o in notes.outcomes if o.counts_as_failure)
        failed += len(set(earlier) & self.resume.failed)
        self.journal.record_batch(
            self.run_id, batch.number, status=status, hosts=len(batch.hosts), failed=failed,
            started=begin, ended=self.clock(),
            reason=stop[1] if stop and status is BatchStatus.HALTED else "",
        )  # fmt: skip
        self.observer.batch(batch.number, status)
        return tally, stop

    def _halted(self, batch: Batch, tally: Tally, why: str) -> None:
        left = sum(1 for b in self.plan.batches if b.number > batch.number and not b.next_window)
        self.observer.event(
            "batch-halted",
            {"run": self.run_id, "batch": batch.number, "failed": tally.failures,
             "reason": why, "batches_left": left},
        )  # fmt: skip

    # ------------------------------------------------------------ one wave, with its retries

    def _wave(self, batch: Batch, hosts: Sequence[HostPlan]) -> tuple[list[HostOutcome], bool]:
        """Run ``hosts``; a host whose patch phase failed is tried again while retries last."""
        final: dict[str, HostOutcome] = {}
        tries: dict[str, HostOutcome] = {}
        attempt, left, canceled = 1, tuple(hosts), False
        begin = self.clock()
        while left and not canceled:
            outcomes, again, canceled = self._try(batch, left, attempt)
            for o in outcomes:
                merged = state.merge_attempts(tries[o.host], o) if o.host in tries else o
                if o.host in again:
                    tries[o.host] = merged
                else:
                    final[o.host] = merged
            left = tuple(h for h in left if h.host in again)
            attempt += 1
        done = [final[h.host] for h in hosts if h.host in final]
        if done:
            self.journal.record_outcomes(
                self.run_id, batch.number, done, started=begin, ended=self.clock()
            )
        return done, canceled

    def _try(
        self, batch: Batch, hosts: tuple[HostPlan, ...], attempt: int
    ) -> tuple[list[HostOutcome], set[str], bool]:
        """One try on ``hosts``: their outcomes, those to try again, whether it was stopped."""
        names = [h.host for h in hosts]
        seen: dict[str, list[TaskResult]] = {}
        broken: list[LedgerError] = []  # the ledger refused a write: stop, do not go on blind

        def record(task: TaskResult) -> None:
            seen.setdefault(task.host, []).append(task)
            phase = events.result_phase(task.task)
            if phase is not None and phase in events.PHASES and not broken:
                folded = events.fold_phases(task.host, seen[task.host], events.PHASES)
                reported = next(p for p in folded if p.phase is phase)
                try:
                    self.journal.record_phase(
                        self.run_id, batch.number, task.host,
                        dataclasses.replace(reported, attempt=attempt), at=self.clock(),
                    )  # fmt: skip
                except LedgerError as exc:
                    broken.append(exc)
            self.observer.task(task)

        begin = self.clock()
        job = PatchJob(
            self.run_id, batch, hosts, attempt,
            {h.host: self.reboot.get(h.host, RebootMode.IF_NEEDED) for h in hosts},
            self.plan.settings,
        )  # fmt: skip
        result = self.runner.patch(job, record, lambda: bool(broken) or self.observer.cancelled())
        if broken:  # outcomes that cannot be recorded must not pile up: end the run here
            raise LedgerError(
                f"{broken[0].message}; the run stopped during batch {batch.number}",
                hint=f"{broken[0].hint}; then patchkit resume {self.run_id} --take-over "
                "(the hosts keep the lock of this run)",
            )
        stopped = result.canceled
        if result.lost and self._goes_on(batch):  # only a node was lost: its hosts wait
            stopped = False
            for name in names:
                if not events.finished(name, result.tasks):
                    self.stranded[name] = (batch.number, result.lost)
            log.warning("%s during batch %s; the run goes on", result.lost, batch.number)
        self.lost = result.lost if stopped else ""
        outcomes = list(events.batch_outcomes(names, result.tasks))
        if result.canceled:  # hosts stopped mid-phase keep what they reported; resume reruns them
            outcomes = [o for o in outcomes if events.finished(o.host, result.tasks)]
        outcomes = [dataclasses.replace(o, attempts=1) for o in outcomes]
        if self.resume.finished or self.resume.ended or attempt > 1:
            planned = {h.host: h for h in hosts}
            outcomes = [_changes_made_earlier(o, planned[o.host]) for o in outcomes]
        outcomes = [_with_attempt(o, attempt) for o in outcomes]
        retrying = set() if stopped else set(state.to_retry(outcomes, attempt, self.rules))
        again = [o for o in outcomes if o.host in retrying]
        if again:  # recorded as a try; no rollback is pending for them
            self.journal.record_outcomes(
                self.run_id, batch.number, again, started=begin, ended=self.clock(), final=False
            )
        return outcomes, retrying, stopped

    def _goes_on(self, batch: Batch) -> bool:
        """Whether the run goes on past a lost node: the policy says so, the operator did not
        stop it too, and the batch is not a canary whose verdict the window waits for."""
        if self.rules.on_node_lost != "continue" or self.observer.cancelled():
            return False
        return not (batch.canary and self.rules.canary_on_failure == "halt")

    # ------------------------------------------------------------ rollback

    def _roll_back(self, notes: _Batch, *, newly_crossed: bool) -> None:
        pending = [o for o in notes.outcomes if o.host not in notes.rolled_back]
        chosen = rollback.scope(self.rules.rollback, pending, threshold_crossed=newly_crossed)
        planned = {h.host: h.updates for h in notes.batch.hosts}
        targets = rollback.from_outcomes(notes.batch.number, chosen, planned)
        if not targets:
            return
        notes.rolled_back |= {t.host for t in targets}
        self.observer.batch(notes.batch.number, "rolling back")
        roll_back(
            self.plan, tuple(targets), self.run_id,
            runner=self.runner, journal=self.journal, observer=self.observer,
            clock=self.clock, who=self.who,
        )  # fmt: skip
        self.observer.batch(notes.batch.number, BatchStatus.RUNNING)


def roll_back(
    plan: Plan,
    targets: tuple[rollback.Target, ...],
    run_id: str,
    *,
    runner: Runner,
    journal: Journal,
    observer: Observer,
    clock: Clock,
    who: str,
) -> list[rollback.Result]:
    """Put ``targets`` back to their snapshots (one playbook run), verify, record each host."""
    if not targets:
        return []
    begin = clock()
    checks = checks_of(plan)
    job = RollbackJob(
        run_id, targets, {t.host: checks.get(t.host, ()) for t in targets}, plan.settings
    )
    result = runner.roll_back(job, observer.task, observer.cancelled)
    end = clock()
    results = [rollback.result(t, result.tasks) for t in targets]
    for res in results:
        journal.record_rollback(run_id, res, started=begin, ended=end, who=who)
    observer.event(
        "rollback-done",
        {"run": run_id, "by": who,
         "hosts": [{"host": r.host, "batch": r.batch, "status": r.status, "message": r.message}
                   for r in results]},
    )  # fmt: skip
    return results


def checks_of(plan: Plan) -> dict[str, tuple[dict[str, object], ...]]:
    """Each planned host's verification checks, as the playbooks take them."""
    checks = plan.settings.phases.checks
    return {h.host: tuple(dict(checks[i]) for i in h.checks) for h in plan.hosts()}


def _recorded(tally: Tally, hosts: Sequence[str], failed: set[str]) -> Tally:
    """``tally`` with hosts whose verdict an earlier (interrupted) run of this plan recorded."""
    return dataclasses.replace(
        tally,
        attempted=tally.attempted + len(hosts),
        failures=tally.failures + len(failed),
        down=tally.down | failed,
    )


def _held(host: str, reason: str) -> HostOutcome:
    """A host the quorum rule kept from starting: no phase ran (resume may try it again)."""
    phase = PhaseOutcome(Phase.PRECHECK, PhaseStatus.NOT_RUN, f"held: {reason}", 0.0)
    return HostOutcome(host, HostStatus.HELD, None, reason, (phase,))


def _with_attempt(outcome: HostOutcome, attempt: int) -> HostOutcome:
    phases = tuple(dataclasses.replace(p, attempt=attempt) for p in outcome.phases)
    return dataclasses.replace(outcome, phases=phases)


def _changes_made_earlier(outcome: HostOutcome, planned: HostPlan) -> HostOutcome:
    """A host run again (resume, or another try): updates an earlier try installed show no
    change now, so take the change from the plan (installed -> candidate) when the host has the
    candidate."""
    patch = next((p for p in outcome.phases if p.phase is Phase.PATCH), None)
    if patch is None or patch.status != "ok":
        return outcome
    now = {str(row.get("package")): row.get("after") for row in (patch.data.get("updates") or [])}
    known = {c.package for c in outcome.changes}
    extra = tuple(
        events.PackageChange(u.package, u.installed, u.candidate)
        for u in planned.updates
        if u.package not in known and now.get(u.package) == u.candidate
        and u.installed != u.candidate
    )  # fmt: skip
    return dataclasses.replace(outcome, changes=outcome.changes + extra) if extra else outcome
