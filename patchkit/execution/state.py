"""The run's decisions, pure: may a batch start, how it splits into waves, what its outcomes add
up to, whether the window halts, which hosts get another try, how each host reboots, and where
a resumed run picks up.

Nothing here reads the clock, the ledger or a host: the batch loop (``loop.py``) feeds in the
time and the outcomes and acts on the answers.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from zoneinfo import ZoneInfo

from patchkit.execution.events import HostOutcome, PackageChange
from patchkit.execution.rules import fits, may_start, threshold_crossed
from patchkit.execution.status import (
    PATCH_PHASES,
    BatchStatus,
    HostStatus,
    Phase,
    PhaseStatus,
    RunStatus,
)
from patchkit.planning.types import Batch, FreezeSpan, HostPlan, Phases, RunRules, WindowSlot

# ---------------------------------------------------------------- may a batch start


@dataclass(frozen=True)
class Gate:
    """Whether a batch may start now; when not, how the run ends and why."""

    start: bool
    status: RunStatus = RunStatus.RUNNING
    reason: str = ""


def frozen(slot: WindowSlot, at: datetime) -> FreezeSpan | None:
    """The freeze of the window that ``at`` (its date in the window's timezone) falls in."""
    day = at.astimezone(ZoneInfo(slot.timezone)).date()
    return next((f for f in slot.freezes if f.start <= day <= f.end), None)


def gate(batch: Batch, now: datetime, slot: WindowSlot, *, emergency: bool = False) -> Gate:
    """May ``batch`` start at ``now``?

    Never inside a freeze. Inside its window: only before the cutoff, and only if its estimate
    ends by the window's end. An emergency run (approved to run outside the window) has no
    cutoff, but still stops for a freeze.
    """
    freeze = frozen(slot, now)
    if freeze is not None:
        why = f": {freeze.reason}" if freeze.reason else ""
        return Gate(
            False,
            RunStatus.STOPPED_AT_CUTOFF,
            f"change freeze {freeze.start} to {freeze.end}{why}; batch {batch.number} not started",
        )
    if emergency:
        return Gate(True)
    if not may_start(now, slot.cutoff):
        return Gate(
            False, RunStatus.STOPPED_AT_CUTOFF, f"window cutoff {slot.cutoff:%H:%M %Z} reached"
        )
    if not fits(now, batch.duration, slot.end):
        return Gate(
            False,
            RunStatus.STOPPED_AT_CUTOFF,
            f"batch {batch.number} would end after the window ({slot.end:%H:%M %Z}): estimated "
            f"{batch.duration.total_seconds() / 60:.0f} min",
        )
    return Gate(True)


def waves(hosts: Sequence[HostPlan], concurrency: int) -> list[tuple[HostPlan, ...]]:
    """A batch's hosts in groups of its concurrency: the threshold is judged after each."""
    size = max(1, concurrency)
    return [tuple(hosts[i : i + size]) for i in range(0, len(hosts), size)]


# ---------------------------------------------------------------- what the outcomes add up to


@dataclass(frozen=True)
class Tally:
    """The run so far: every outcome folded in, in order."""

    attempted: int = 0
    failures: int = 0  # hosts that failed after being changed (the threshold counts these)
    patched: int = 0
    left_alone: tuple[str, ...] = ()  # "host (status in phase)": not patched, not changed
    reboot_pending: tuple[str, ...] = ()
    down: frozenset[str] = frozenset()  # failed or left unpatched: down for quorum


def fold(tally: Tally, outcomes: Iterable[HostOutcome]) -> Tally:
    """``tally`` with ``outcomes`` (the final outcome of each host of a wave) added."""
    out = tally
    for o in outcomes:
        out = dataclasses.replace(out, attempted=out.attempted + 1)
        if o.counts_as_failure:
            out = dataclasses.replace(out, failures=out.failures + 1, down=out.down | {o.host})
        elif o.status is HostStatus.PATCHED:
            out = dataclasses.replace(out, patched=out.patched + 1)
        elif o.status is HostStatus.REBOOT_PENDING:
            out = dataclasses.replace(
                out,
                patched=out.patched + 1,
                reboot_pending=(*out.reboot_pending, f"{o.host} ({o.message or 'reboot pending'})"),
            )
        else:
            where = o.failed_phase or Phase.PRECHECK
            label = f"{o.host} ({o.status} in {where})"
            if o.status is HostStatus.HELD:
                label = f"{o.host} (held: {o.message})"
            down = out.down | {o.host} if o.status is not HostStatus.HELD else out.down
            out = dataclasses.replace(out, left_alone=(*out.left_alone, label), down=down)
    return out


def crossed(tally: Tally, rules: RunRules) -> bool:
    return threshold_crossed(tally.failures, tally.attempted, rules.error_threshold)


def halt_reason(tally: Tally, rules: RunRules) -> str | None:
    """Why the window halts now, if the error threshold says so."""
    if crossed(tally, rules) and rules.on_threshold == "halt":
        limit = rules.error_threshold
        return f"{tally.failures} failed host(s) reached the error threshold {limit}"
    return None


def canary_failed(batch: Batch, outcomes: Sequence[HostOutcome], rules: RunRules) -> str | None:
    """Why a canary batch halts the window: any of its hosts not patched (policy permitting)."""
    if not batch.canary or rules.canary_on_failure != "halt":
        return None
    bad = [o for o in outcomes if not o.done and o.status is not HostStatus.HELD]
    if not bad:
        return None
    named = ", ".join(f"{o.host} ({o.status} in {o.failed_phase or Phase.PRECHECK})" for o in bad)
    return f"the canary batch {batch.number} failed on {named}"


def batch_status(outcomes: Sequence[HostOutcome], *, halted: bool, canceled: bool) -> BatchStatus:
    if canceled:
        return BatchStatus.INTERRUPTED
    if halted:
        return BatchStatus.HALTED
    if any(o.counts_as_failure for o in outcomes):
        return BatchStatus.FAILED
    return BatchStatus.COMPLETED


def verdict(tally: Tally, stop: tuple[RunStatus, str] | None) -> tuple[RunStatus, str]:
    """How the run ended: a stop (halt, cutoff, freeze, interruption) or what the hosts say."""
    if stop is not None:
        return stop
    alone = list(tally.left_alone) + list(tally.reboot_pending)
    if tally.failures:
        reason = f"{tally.failures} host(s) failed"
        if alone:
            reason += f"; {len(alone)} left unpatched or unrebooted: {', '.join(alone)}"
        return RunStatus.FAILED, reason
    if alone:
        return RunStatus.INCOMPLETE, f"{len(alone)} host(s) left unfinished: {', '.join(alone)}"
    return RunStatus.COMPLETED, ""


# ---------------------------------------------------------------- retries


def to_retry(outcomes: Sequence[HostOutcome], attempt: int, rules: RunRules) -> list[str]:
    """Hosts whose patch phase failed in try ``attempt`` and that have a try left."""
    if attempt > rules.retries:
        return []
    return [o.host for o in outcomes if o.retryable]


def merge_attempts(first: HostOutcome, later: HostOutcome) -> HostOutcome:
    """The outcome of a host tried again: the later try's verdict, with the package changes of
    both (each package from what it was before the first try) and the first try's snapshot."""
    before = {c.package: c.before for c in first.changes}
    merged: dict[str, PackageChange] = {c.package: c for c in first.changes}
    for c in later.changes:
        merged[c.package] = PackageChange(c.package, before.get(c.package, c.before), c.after)
    return dataclasses.replace(
        later,
        changes=tuple(merged[p] for p in sorted(merged) if merged[p].before != merged[p].after),
        snapshot=later.snapshot or first.snapshot,
        attempts=first.attempts + later.attempts,
    )


# ---------------------------------------------------------------- reboots


class RebootMode(StrEnum):
    """What the reboot phase does on one host (playbook var patchkit_reboot_by_host)."""

    ALWAYS = "always"
    IF_NEEDED = "if-needed"  # the host's flag, or the plan's prediction
    NEVER = "never"
    HELD = "held"  # a reboot needs downtime approval that the plan's approvals lack


def reboot_mode(host: HostPlan, phases: Phases, *, reboots_approved: bool) -> RebootMode:
    if phases.reboot == "never":
        return RebootMode.NEVER
    if host.reboot_needs_approval and not reboots_approved:
        return RebootMode.HELD
    return RebootMode.ALWAYS if phases.reboot == "always" else RebootMode.IF_NEEDED


# ---------------------------------------------------------------- resume


@dataclass(frozen=True)
class RecordedPhase:
    """A phase row of a recorded run (what resume needs of it)."""

    batch: int
    host: str
    phase: Phase | str  # rollback rows too
    status: PhaseStatus | str
    attempt: int = 1


@dataclass(frozen=True)
class RecordedBatch:
    number: int
    status: BatchStatus | str
    failed: int


@dataclass(frozen=True)
class ResumePoint:
    """Where a resumed run picks up: batches that ended, hosts whose verdict is recorded."""

    ended: Mapping[int, RecordedBatch] = field(default_factory=dict)
    finished: frozenset[str] = frozenset()
    failed: frozenset[str] = frozenset()  # of the finished: failed after being changed


def resume_point(
    batches: Sequence[RecordedBatch], phases: Sequence[RecordedPhase], rules: RunRules
) -> ResumePoint:
    """A host is finished when its last try recorded every phase and is not one to try again;
    a batch ended when it completed, failed or halted."""
    last: dict[str, int] = {}
    for row in phases:
        if row.phase in PATCH_PHASES:
            last[row.host] = max(last.get(row.host, 0), row.attempt)
    seen: dict[str, dict[str, str]] = {}
    for row in phases:
        if row.phase in PATCH_PHASES and row.attempt == last[row.host]:
            seen.setdefault(row.host, {})[str(row.phase)] = str(row.status)
    finished: set[str] = set()
    failed: set[str] = set()
    for host, by_phase in seen.items():
        if not {str(p) for p in PATCH_PHASES} <= set(by_phase):
            continue
        patch_failed = by_phase[Phase.PATCH] in (PhaseStatus.FAILED, PhaseStatus.UNREACHABLE)
        if patch_failed and last[host] <= rules.retries:
            continue  # the crash came between two tries: the next try is still owed
        finished.add(host)
        if any(by_phase[p] in ("failed", "unreachable") for p in ("patch", "reboot", "verify")):
            failed.add(host)
    ended = {
        b.number: b
        for b in batches
        if b.status in (BatchStatus.COMPLETED, BatchStatus.FAILED, BatchStatus.HALTED)
    }
    return ResumePoint(ended, frozenset(finished), frozenset(failed))
