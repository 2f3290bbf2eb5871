"""Runner results of one batch → what happened to each host, phase by phase (pure).

Reads the ``patchkit <phase> result`` tasks of ``playbooks/patch.yml`` as described in
``docs/playbook-contract.md``: a failed or skipped phase ends the host's play; a phase whose
result is missing after a clean previous one is where the host was lost (unreachable) or where
the settings were refused.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from patchkit.execution.runner import TaskResult

PHASES = ("precheck", "snapshot", "patch", "reboot", "verify")
# A failure in these phases changed the host: it counts against the error threshold and is a
# rollback candidate. Precheck and snapshot failures leave the host as it was.
CHANGING = frozenset({"patch", "reboot", "verify"})


def result_task(phase: str) -> str:
    return f"patchkit {phase} result"


def thaw(value: Any) -> Any:
    """Plain dicts and lists again (runner results are frozen), for JSON and the ledger."""
    if isinstance(value, Mapping):
        return {str(k): thaw(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [thaw(v) for v in value]
    return value


@dataclass(frozen=True)
class PhaseOutcome:
    phase: str
    status: str  # ok / failed / skipped / unreachable / not-run
    message: str
    seconds: float  # sum of the durations of the phase's tasks on this host
    data: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class PackageChange:
    package: str
    before: str | None
    after: str | None


@dataclass(frozen=True)
class HostOutcome:
    """One host after its batch."""

    host: str
    status: str  # patched / failed / unreachable / not-patched
    failed_phase: str | None
    message: str
    phases: tuple[PhaseOutcome, ...]
    changes: tuple[PackageChange, ...] = ()
    snapshot: tuple[str, str] | None = None  # (backend, id)

    @property
    def counts_as_failure(self) -> bool:
        """A failure the error threshold counts: the host was changed, or lost while changing."""
        return self.status in ("failed", "unreachable") and self.failed_phase in CHANGING

    @property
    def needs_rollback(self) -> bool:
        return self.counts_as_failure


def host_outcome(host: str, tasks: Sequence[TaskResult]) -> HostOutcome:
    """Fold one host's task results (in event order) into phase outcomes and a verdict."""
    return _verdict(host, fold_phases(host, tasks, PHASES))


def fold_phases(host: str, tasks: Sequence[TaskResult], order: Sequence[str]) -> list[PhaseOutcome]:
    """One outcome per phase of ``order`` (a playbook's roles, in order) for ``host``.

    A phase's outcome is its result task; a phase without one is where the host was lost
    (unreachable) or failed outside the role; after a failed phase the rest are ``not-run``.
    """
    results: dict[str, Mapping[str, Any]] = {}
    seconds: dict[str, float] = dict.fromkeys(order, 0.0)
    current = 0
    unreachable = ""
    for task in tasks:
        if task.host != host:
            continue
        if task.status == "unreachable":
            unreachable = task.message or "unreachable"
        if current < len(order):
            seconds[order[current]] += float(task.duration or 0.0)
        for index, phase in enumerate(order):
            if task.task == result_task(phase):
                msg = task.result.get("msg")
                results[phase] = msg if isinstance(msg, Mapping) else {"message": str(msg)}
                current = index + 1
    phases: list[PhaseOutcome] = []
    stopped: PhaseOutcome | None = None
    for phase in order:
        if stopped is not None:
            phases.append(PhaseOutcome(phase, "not-run", f"{stopped.phase} {stopped.status}", 0.0))
            continue
        data = results.get(phase)
        if data is None:
            if unreachable:
                outcome = PhaseOutcome(phase, "unreachable", unreachable, seconds[phase])
            else:
                failed = [t for t in tasks if t.host == host and t.status == "failed"]
                why = failed[-1].message if failed else "no result from the playbook"
                outcome = PhaseOutcome(phase, "failed", why, seconds[phase])
            phases.append(outcome)
            stopped = outcome
            continue
        status = str(data.get("status", "failed"))
        if status == "failed" and data.get("reachable") is False:
            status = "unreachable"  # the precheck caught the unreachable host itself
        outcome = PhaseOutcome(
            phase, status, str(data.get("message", "")), seconds[phase], thaw(data)
        )
        phases.append(outcome)
        if status in ("failed", "unreachable") or (status == "skipped" and phase == "precheck"):
            stopped = outcome
    return phases


def _verdict(host: str, phases: list[PhaseOutcome]) -> HostOutcome:
    changes = _changes(phases)
    snapshot = _snapshot(phases)
    bad = next((p for p in phases if p.status in ("failed", "unreachable")), None)
    if bad is not None:
        status = "unreachable" if bad.status == "unreachable" else "failed"
        if bad.phase not in CHANGING and status == "failed":
            status = "not-patched"
        return HostOutcome(host, status, bad.phase, bad.message, tuple(phases), changes, snapshot)
    if phases[0].status == "skipped":
        return HostOutcome(
            host, "not-patched", "precheck", phases[0].message, tuple(phases), changes, snapshot
        )
    return HostOutcome(host, "patched", None, "", tuple(phases), changes, snapshot)


def _changes(phases: Sequence[PhaseOutcome]) -> tuple[PackageChange, ...]:
    patch = next((p for p in phases if p.phase == "patch"), None)
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
    snap = next((p for p in phases if p.phase == "snapshot"), None)
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
