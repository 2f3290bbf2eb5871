"""The three seams of the batch loop: who patches (runner), who records (journal), who watches
(observer). The loop (``loop.py``) knows only these; ``ansible.py`` is the runner on real hosts,
the ledger is the journal, the CLI's live view and webhooks are the observer, and the unit tests
put fakes in each place.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

from patchkit.execution.events import HostOutcome, PhaseOutcome
from patchkit.execution.rollback import Result, Target
from patchkit.execution.runner import TaskResult
from patchkit.execution.state import RebootMode
from patchkit.planning.types import Batch, HostPlan, Settings


@dataclass(frozen=True)
class PatchJob:
    """One try of playbooks/patch.yml on some hosts of a batch."""

    run_id: str
    batch: Batch
    hosts: tuple[HostPlan, ...]
    attempt: int
    reboot: Mapping[str, RebootMode]
    settings: Settings


@dataclass(frozen=True)
class RollbackJob:
    """playbooks/rollback.yml on some hosts: back to their snapshots, reboot, verify."""

    run_id: str
    targets: tuple[Target, ...]
    checks: Mapping[str, tuple[Mapping[str, Any], ...]]  # host -> its verification checks
    settings: Settings


@dataclass(frozen=True)
class RunnerResult:
    tasks: tuple[TaskResult, ...]
    canceled: bool = False  # stopped by the operator: hosts mid-phase have no verdict
    # an execution node's stream broke mid-job (what happened, for the run's reason): its hosts
    # mid-phase have no verdict either, as when canceled, and resume runs them again
    lost: str = ""


TaskSink = Callable[[TaskResult], None]
Cancel = Callable[[], bool]


class Runner(Protocol):
    def patch(self, job: PatchJob, on_task: TaskSink, cancel: Cancel) -> RunnerResult: ...

    def roll_back(self, job: RollbackJob, on_task: TaskSink, cancel: Cancel) -> RunnerResult: ...


class Journal(Protocol):
    """What the loop records; the ledger stores it and decides nothing."""

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
    ) -> None: ...

    def record_phase(
        self, run_id: str, batch: int, host: str, phase: PhaseOutcome, *, at: datetime
    ) -> None: ...

    def record_outcomes(
        self,
        run_id: str,
        batch: int,
        outcomes: Sequence[HostOutcome],
        *,
        started: datetime,
        ended: datetime,
        final: bool = True,
    ) -> None: ...

    def record_rollback(
        self, run_id: str, result: Result, *, started: datetime, ended: datetime, who: str
    ) -> None: ...

    def finish_run(self, run_id: str, *, status: str, reason: str, at: datetime) -> None: ...


class Observer(Protocol):
    """The people and machines watching: live view, JSON lines, webhooks, Ctrl-C."""

    def task(self, task: TaskResult) -> None: ...

    def batch(self, number: int, state: str) -> None: ...

    def event(self, name: str, data: Mapping[str, Any]) -> None: ...

    def cancelled(self) -> bool: ...

    def wait(self, seconds: float, why: str) -> bool:
        """Hold the run ``seconds`` (showing a countdown); False when stopped meanwhile."""
        ...
