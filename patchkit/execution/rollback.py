"""Rollback: which hosts of a run to put back to their snapshot, and what came of it (pure).

The targets come from the ledger's record of a run (``Ledger.run_record``) or, during a run,
from the batch's outcomes; the results from ``playbooks/rollback.yml``'s runner events.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from patchkit.execution.events import HostOutcome, PhaseOutcome, fold_phases
from patchkit.execution.runner import TaskResult
from patchkit.execution.status import Phase
from patchkit.planning.types import SelectedUpdate

ROLLBACK_PHASES = (Phase.ROLLBACK, Phase.REBOOT, Phase.VERIFY)


@dataclass(frozen=True)
class Change:
    package: str
    before: str | None  # None: the run installed it
    after: str | None  # None: the run removed it

    def undo(self) -> str:
        return f"{self.package} {self.after or '(removed)'} -> {self.before or '(remove)'}"


@dataclass(frozen=True)
class Target:
    """One host to put back: the snapshot to use and what the run changed."""

    host: str
    batch: int
    backend: str
    snapshot_id: str
    changes: tuple[Change, ...]

    def extravars(self) -> dict[str, Any]:
        return {
            "backend": self.backend,
            "snapshot_id": self.snapshot_id,
            "changes": [
                {"package": c.package, "before": c.before, "after": c.after} for c in self.changes
            ],
        }


@dataclass(frozen=True)
class Skipped:
    host: str
    reason: str


@dataclass(frozen=True)
class Result:
    """How one host's rollback went: its phases (rollback, reboot, verify) and a verdict."""

    host: str
    batch: int
    status: str  # rolled-back / failed / unreachable
    message: str
    phases: tuple[PhaseOutcome, ...]

    @property
    def data(self) -> dict[str, Any]:
        return {p.phase: dict(p.data) | {"status": p.status} for p in self.phases}


def from_record(
    record: Mapping[str, Any],
    *,
    batch: int | None = None,
    hosts: Collection[str] = (),
) -> tuple[list[Target], list[Skipped]]:
    """The hosts of a recorded run to roll back (all it changed, or those of ``batch``/``hosts``).

    A host that was never changed, or that is already rolled back, is skipped with the reason.
    """
    batch_of: dict[str, int] = {}
    for phase in record["phases"]:
        batch_of.setdefault(phase["host"], int(phase["batch"]))
    unknown = sorted(set(hosts) - set(batch_of))
    skipped = [Skipped(h, f"not in run {record['id']}") for h in unknown]
    wanted = [
        h for h in batch_of if (batch is None or batch_of[h] == batch) and (not hosts or h in hosts)
    ]
    done = {p["host"] for p in record["phases"] if p["phase"] == "rollback" and p["status"] == "ok"}
    snapshots = {s["host"]: (s["backend"], s["id"]) for s in record["snapshots"]}
    changes: dict[str, list[Change]] = {}
    for c in record["changes"]:
        changes.setdefault(c["host"], []).append(Change(c["package"], c["before"], c["after"]))
    targets: list[Target] = []
    for host in wanted:
        if host in done:
            skipped.append(Skipped(host, "already rolled back"))
        elif not changes.get(host):
            skipped.append(Skipped(host, "never patched: the run changed nothing on it"))
        elif host not in snapshots:
            skipped.append(Skipped(host, "no snapshot was taken (backend none): roll back by hand"))
        else:
            backend, snapshot_id = snapshots[host]
            targets.append(Target(host, batch_of[host], backend, snapshot_id, tuple(changes[host])))
    return targets, skipped


def from_outcomes(
    batch: int,
    outcomes: Sequence[HostOutcome],
    planned: Mapping[str, Sequence[SelectedUpdate]] | None = None,
) -> list[Target]:
    """Targets straight from a batch's outcomes (automatic rollback during a run).

    A host lost or failed in the middle of its patch phase reported no changes, yet some may
    have been made: it is put back over every update the plan selected for it (``planned``:
    host -> the plan's update objects), which its snapshot was taken to cover.
    """
    targets = []
    for o in outcomes:
        if o.snapshot is None:
            continue
        changes = tuple(Change(c.package, c.before, c.after) for c in o.changes)
        if not changes and o.failed_phase is Phase.PATCH:
            changes = tuple(
                Change(u.package, u.installed, u.candidate) for u in (planned or {}).get(o.host, ())
            )
        if changes:
            targets.append(Target(o.host, batch, o.snapshot[0], o.snapshot[1], changes))
    return targets


def scope(
    policy_scope: str, outcomes: Sequence[HostOutcome], *, threshold_crossed: bool
) -> list[HostOutcome]:
    """The outcomes the policy's rollback scope selects after a batch.

    ``host``: the hosts that failed after being changed. ``batch``: the same, and the whole
    batch (every host it changed) when this batch crossed the error threshold. ``none``: none.
    """
    if policy_scope == "none":
        return []
    failed = [o for o in outcomes if o.needs_rollback]
    if policy_scope == "batch" and threshold_crossed and failed:
        return [o for o in outcomes if o.changes]
    return failed


def result(target: Target, tasks: Sequence[TaskResult]) -> Result:
    phases = fold_phases(target.host, tasks, ROLLBACK_PHASES)
    bad = next((p for p in phases if p.status in ("failed", "unreachable")), None)
    if bad is None:
        message = "; ".join(p.message for p in phases if p.message)
        return Result(target.host, target.batch, "rolled-back", message, tuple(phases))
    status = "unreachable" if bad.status == "unreachable" else "failed"
    message = f"{bad.phase}: {bad.message}"
    return Result(target.host, target.batch, status, message, tuple(phases))
