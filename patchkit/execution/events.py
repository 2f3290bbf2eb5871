"""Runner results of one batch → what happened to each host, phase by phase (pure).

Reads the ``patchkit <phase> result`` tasks of ``playbooks/patch.yml`` as described in
``docs/playbook-contract.md``: a failed or skipped phase ends the host's play; a phase whose
result is missing after a clean previous one is where the host was lost (unreachable) or where
the settings were refused.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from patchkit.execution.runner import TaskResult
from patchkit.execution.status import (
    CHANGING,
    PATCH_PHASES,
    HostStatus,
    Phase,
    PhaseStatus,
)

PHASES = PATCH_PHASES


def result_task(phase: str) -> str:
    return f"patchkit {phase} result"


def result_phase(task_name: str) -> Phase | None:
    """The phase whose result task ``task_name`` is, if it is one."""
    if not (task_name.startswith("patchkit ") and task_name.endswith(" result")):
        return None
    try:
        return Phase(task_name.removeprefix("patchkit ").removesuffix(" result"))
    except ValueError:
        return None


def thaw(value: Any) -> Any:
    """Plain dicts and lists again (runner results are frozen), for JSON and the ledger."""
    if isinstance(value, Mapping):
        return {str(k): thaw(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [thaw(v) for v in value]
    return value


@dataclass(frozen=True)
class PhaseOutcome:
    phase: Phase
    status: PhaseStatus
    message: str
    seconds: float  # sum of the durations of the phase's tasks on this host
    data: Mapping[str, Any] = field(default_factory=dict)
    attempt: int = 1  # failure_handling.retries: the patch phase's try this comes from
    via: str = ""  # the execution node that ran it; "": the controller

    def __post_init__(self) -> None:  # plain strings (ledger rows, tests) become the enums
        object.__setattr__(self, "phase", Phase(self.phase))
        object.__setattr__(self, "status", PhaseStatus(self.status))


@dataclass(frozen=True)
class PackageChange:
    package: str
    before: str | None
    after: str | None


@dataclass(frozen=True)
class HostOutcome:
    """One host after its batch."""

    host: str
    status: HostStatus
    failed_phase: Phase | None
    message: str
    phases: tuple[PhaseOutcome, ...]
    changes: tuple[PackageChange, ...] = ()
    snapshot: tuple[str, str] | None = None  # (backend, id)
    attempts: int = 1  # tries of the patch phase it took (failure_handling.retries)

    def __post_init__(self) -> None:
        object.__setattr__(self, "status", HostStatus(self.status))
        if self.failed_phase is not None:
            object.__setattr__(self, "failed_phase", Phase(self.failed_phase))

    @property
    def counts_as_failure(self) -> bool:
        """A failure the error threshold counts: the host was changed, or lost while changing."""
        return (
            self.status in (HostStatus.FAILED, HostStatus.UNREACHABLE)
            and self.failed_phase in CHANGING
        )

    @property
    def done(self) -> bool:
        """Patched, or patched with its reboot left pending: nothing more to do in this run."""
        return self.status in (HostStatus.PATCHED, HostStatus.REBOOT_PENDING)

    @property
    def retryable(self) -> bool:
        """Its patch phase failed (or the host was lost during it): worth another try."""
        return self.failed_phase is Phase.PATCH and self.status in (
            HostStatus.FAILED,
            HostStatus.UNREACHABLE,
        )

    @property
    def needs_rollback(self) -> bool:
        return self.counts_as_failure


def host_outcome(host: str, tasks: Sequence[TaskResult]) -> HostOutcome:
    """Fold one host's task results (in event order) into phase outcomes and a verdict."""
    return _verdict(host, fold_phases(host, tasks, PHASES))


def fold_phases(
    host: str, tasks: Sequence[TaskResult], order: Sequence[Phase]
) -> list[PhaseOutcome]:
    """One outcome per phase of ``order`` (a playbook's roles, in order) for ``host``.

    A phase's outcome is its result task; a phase without one is where the host was lost
    (unreachable) or failed outside the role; after a failed phase the rest are ``not-run``.
    """
    results: dict[Phase, Mapping[str, Any]] = {}
    seconds: dict[Phase, float] = dict.fromkeys(order, 0.0)
    current = 0
    unreachable = ""
    for task in tasks:
        if task.host != host:
            continue
        if task.status == "unreachable":
            unreachable = task.message or "unreachable"
        if current < len(order):
            seconds[order[current]] += float(task.duration or 0.0)
        reported = result_phase(task.task)
        if reported is not None and reported in order:
            msg = task.result.get("msg")
            results[reported] = msg if isinstance(msg, Mapping) else {"message": str(msg)}
            current = list(order).index(reported) + 1
    phases: list[PhaseOutcome] = []
    stopped: PhaseOutcome | None = None
    for phase in order:
        if stopped is not None:
            why = f"{stopped.phase} {stopped.status}"
            phases.append(PhaseOutcome(phase, PhaseStatus.NOT_RUN, why, 0.0))
            continue
        data = results.get(phase)
        if data is None:
            if unreachable:
                outcome = PhaseOutcome(phase, PhaseStatus.UNREACHABLE, unreachable, seconds[phase])
            else:
                failed = [t for t in tasks if t.host == host and t.status == "failed"]
                why = failed[-1].message if failed else "no result from the playbook"
                outcome = PhaseOutcome(phase, PhaseStatus.FAILED, why, seconds[phase])
            phases.append(outcome)
            stopped = outcome
            continue
        status = _status(data)
        outcome = PhaseOutcome(
            phase, status, str(data.get("message", "")), seconds[phase], thaw(data)
        )
        phases.append(outcome)
        if status in (PhaseStatus.FAILED, PhaseStatus.UNREACHABLE) or (
            status is PhaseStatus.SKIPPED and phase is Phase.PRECHECK
        ):
            stopped = outcome  # a skipped backup (no hook configured) is a pass
    via = next((t.via for t in reversed(tasks) if t.host == host), "")
    return [dataclasses.replace(p, via=via) for p in phases] if via else phases


def _status(data: Mapping[str, Any]) -> PhaseStatus:
    """A result task's status; one a role does not report (or none) counts as failed."""
    try:
        status = PhaseStatus(str(data.get("status", "failed")))
    except ValueError:
        return PhaseStatus.FAILED
    if status is PhaseStatus.FAILED and data.get("reachable") is False:
        return PhaseStatus.UNREACHABLE  # the precheck caught the unreachable host itself
    return status


def _verdict(host: str, phases: list[PhaseOutcome]) -> HostOutcome:
    changes = _changes(phases)
    snapshot = _snapshot(phases)
    bad = next((p for p in phases if p.status in ("failed", "unreachable")), None)
    if bad is not None:
        status = HostStatus.UNREACHABLE if bad.status == "unreachable" else HostStatus.FAILED
        if bad.phase not in CHANGING and status is HostStatus.FAILED:
            status = HostStatus.NOT_PATCHED
        return HostOutcome(host, status, bad.phase, bad.message, tuple(phases), changes, snapshot)
    if phases[0].status == "skipped":
        return HostOutcome(
            host,
            HostStatus.NOT_PATCHED,
            Phase.PRECHECK,
            phases[0].message,
            tuple(phases),
            changes,
            snapshot,
        )
    reboot = next((p for p in phases if p.phase is Phase.REBOOT), None)
    if reboot is not None and reboot.data.get("pending"):
        return HostOutcome(
            host, HostStatus.REBOOT_PENDING, None, reboot.message, tuple(phases), changes, snapshot
        )
    return HostOutcome(host, HostStatus.PATCHED, None, "", tuple(phases), changes, snapshot)


def _changes(phases: Sequence[PhaseOutcome]) -> tuple[PackageChange, ...]:
    patch = next((p for p in phases if p.phase is Phase.PATCH), None)
    if patch is None or not patch.data:
        return ()
    rows = list(patch.data.get("updates") or []) + list(patch.data.get("extra_changes") or [])
    out = []
    for row in rows:
        before, after = row.get("before"), row.get("after")
        if before != after:
            out.append(PackageChange(str(row["package"]), before, after))
    return tuple(out)


def _snapshot(phases: Sequence[PhaseOutcome]) -> tuple[str, str] | None:
    snap = next((p for p in phases if p.phase is Phase.SNAPSHOT), None)
    if snap is None or snap.status != "ok" or not snap.data.get("id"):
        return None
    return str(snap.data.get("backend")), str(snap.data["id"])


def batch_outcomes(hosts: Sequence[str], tasks: Sequence[TaskResult]) -> tuple[HostOutcome, ...]:
    """Every host of the batch gets an outcome, even one the playbook never mentioned."""
    by_host: dict[str, list[TaskResult]] = {h: [] for h in hosts}
    for task in tasks:
        if task.host in by_host:
            by_host[task.host].append(task)
    return tuple(host_outcome(h, by_host[h]) for h in hosts)


def finished(host: str, tasks: Sequence[TaskResult]) -> bool:
    """Whether the playbook reached a verdict for ``host`` (not cut short by a stop).

    True once the host was lost, a phase ended it (failed, or a precheck that skipped it), or
    verify reported; a host stopped mid-phase by Ctrl-C or a killed controller is not finished.
    """
    for task in tasks:
        if task.host != host:
            continue
        if task.status == "unreachable":
            return True
        for phase in PHASES:
            if task.task != result_task(phase):
                continue
            msg = task.result.get("msg")
            status = msg.get("status") if isinstance(msg, Mapping) else None
            if (
                phase == "verify"
                or status == "failed"
                or (phase, status) == ("precheck", "skipped")
            ):
                return True
    return False
