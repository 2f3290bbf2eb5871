"""Fakes at the batch loop's three ports (unit tests: no ansible-runner, no host, no ledger).

``FakeRunner`` answers a patch job the way playbooks/patch.yml's result tasks would, failing the
hosts and phases a test chooses, per try; ``Notes`` records what the loop journals and shows.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from patchkit.execution.events import HostOutcome, PhaseOutcome, result_task
from patchkit.execution.ports import Cancel, PatchJob, RollbackJob, RunnerResult, TaskSink
from patchkit.execution.rollback import ROLLBACK_PHASES, Result
from patchkit.execution.runner import TaskResult
from patchkit.execution.status import PATCH_PHASES, Phase


def task(host: str, phase: str, status: str, **data: Any) -> TaskResult:
    msg = {"status": status, "message": data.pop("message", f"{phase} {status}")} | data
    return TaskResult(host, result_task(phase), "debug", "ok", {"msg": msg}, 1.0)


@dataclass
class FakeRunner:
    """Fails ``fail[(host, attempt)] = phase`` (attempt 0: every try); records every job."""

    fail: dict[tuple[str, int], str] = field(default_factory=dict)
    unreachable: set[str] = field(default_factory=set)
    flagged: set[str] = field(default_factory=set)  # /run/reboot-required after patching
    jobs: list[PatchJob] = field(default_factory=list)
    rollbacks: list[RollbackJob] = field(default_factory=list)
    cancel_after: int | None = None  # the job number whose run the operator stops midway
    # job number -> hosts whose execution node is lost in the middle of their patch phase
    lose: dict[int, set[str]] = field(default_factory=dict)

    def patch(self, job: PatchJob, on_task: TaskSink, cancel: Cancel) -> RunnerResult:
        self.jobs.append(job)
        out: list[TaskResult] = []
        stopped = self.cancel_after is not None and len(self.jobs) >= self.cancel_after
        gone = self.lose.get(len(self.jobs), set())
        for plan in job.hosts:
            host = plan.host
            bad = self.fail.get((host, job.attempt)) or self.fail.get((host, 0))
            for phase in PATCH_PHASES:
                if (stopped or host in gone) and phase is Phase.PATCH:
                    break  # Ctrl-C in the middle of the patch phase: no verdict for the host
                if host in self.unreachable and phase is Phase.PATCH:
                    out.append(TaskResult(host, "apt", "apt", "unreachable", {"msg": "gone"}))
                    break
                if bad == phase:
                    out.append(task(host, phase, "failed", **self._data(phase, plan, job, False)))
                    break
                out.append(task(host, phase, "ok", **self._data(phase, plan, job, True)))
            for t in out:
                if t.host == host:
                    on_task(t)
        lost = "execution node ops@n1 (group dc2) was lost mid-job" if gone else ""
        return RunnerResult(tuple(out), canceled=stopped or bool(gone), lost=lost)

    def roll_back(self, job: RollbackJob, on_task: TaskSink, cancel: Cancel) -> RunnerResult:
        self.rollbacks.append(job)
        out = [task(t.host, str(p), "ok") for t in job.targets for p in ROLLBACK_PHASES]
        for t in out:
            on_task(t)
        return RunnerResult(tuple(out))

    def hosts_run(self) -> list[list[str]]:
        return [[h.host for h in j.hosts] for j in self.jobs]

    def _data(self, phase: Phase, plan: Any, job: PatchJob, ok: bool) -> dict[str, Any]:
        if phase is Phase.SNAPSHOT and ok:
            return {"backend": "package", "id": f"{job.run_id}-{plan.host}"}
        if phase is Phase.PATCH:
            # a failed try installed the first update before dpkg gave up
            rows = plan.updates if ok else plan.updates[:1]
            return {
                "updates": [
                    {"package": u.package, "before": u.installed, "after": u.candidate}
                    for u in rows
                ]
            }
        if phase is Phase.REBOOT and ok:
            mode = str(job.reboot.get(plan.host, "if-needed"))
            needed = plan.reboot or plan.host in self.flagged or mode == "always"
            pending = needed and mode in ("held", "never")
            data: dict[str, Any] = {"rebooted": needed and not pending, "pending": pending}
            if pending:
                data["message"] = "reboot pending: downtime not approved"
            return data | {"mode": mode}
        return {}


@dataclass
class Notes:
    """The journal and the observer in one: everything the loop told them, in order."""

    batches: list[tuple[int, str, str]] = field(default_factory=list)  # number, status, reason
    phases: list[tuple[str, str, str, int]] = field(
        default_factory=list
    )  # host, phase, status, try
    outcomes: list[tuple[HostOutcome, bool]] = field(default_factory=list)  # outcome, final
    rollbacks: list[Result] = field(default_factory=list)
    events: list[tuple[str, Mapping[str, Any]]] = field(default_factory=list)
    waits: list[tuple[float, str]] = field(default_factory=list)
    finished: tuple[str, str] | None = None
    stop_now: bool = False

    # journal
    def record_batch(
        self,
        run_id: str,
        number: int,
        *,
        status: str,
        hosts: int,
        failed: int = 0,
        started: datetime | None = None,
        ended: datetime | None = None,
        reason: str = "",
    ) -> None:
        self.batches.append((number, str(status), reason))

    def record_phase(
        self, run_id: str, batch: int, host: str, phase: PhaseOutcome, *, at: datetime
    ) -> None:
        self.phases.append((host, str(phase.phase), str(phase.status), phase.attempt))

    def record_outcomes(
        self,
        run_id: str,
        batch: int,
        outcomes: Sequence[HostOutcome],
        *,
        started: datetime,
        ended: datetime,
        final: bool = True,
    ) -> None:
        self.outcomes += [(o, final) for o in outcomes]

    def record_rollback(
        self, run_id: str, result: Result, *, started: datetime, ended: datetime, who: str
    ) -> None:
        self.rollbacks.append(result)

    def finish_run(self, run_id: str, *, status: str, reason: str, at: datetime) -> None:
        self.finished = (str(status), reason)

    # observer
    def task(self, task: TaskResult) -> None:
        pass

    def batch(self, number: int, state: str) -> None:
        pass

    def event(self, name: str, data: Mapping[str, Any]) -> None:
        self.events.append((name, data))

    def cancelled(self) -> bool:
        return self.stop_now

    def wait(self, seconds: float, why: str) -> bool:
        self.waits.append((seconds, why))
        return not self.stop_now

    def last_batch(self, number: int) -> tuple[str, str]:
        rows = [(s, r) for n, s, r in self.batches if n == number]
        return rows[-1]

    def final(self) -> dict[str, HostOutcome]:
        return {o.host: o for o, final in self.outcomes if final}


class Clock:
    """A clock that moves only when told (or by ``step`` on every read)."""

    def __init__(self, start: datetime, step: timedelta = timedelta(0)) -> None:
        self.now, self.step = start, step

    def __call__(self) -> datetime:
        now = self.now
        self.now += self.step
        return now
