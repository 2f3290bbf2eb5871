"""Admission: may this plan start (or resume) now, on the approvals the ledger holds? Pure.

``admit`` is the one place that judges approvals against the rules the plan carries (who, how
many, signed, unexpired, unused) and the time against the plan's window occurrence and its
freezes. It reads no clock and no database: the run passes ``now`` and the approvals, and then
consumes the approvals the ``Admission`` names inside the transaction that starts the run.

Resume: ``admit(..., resuming=True)`` with the approvals that are unused or were consumed by the
run being resumed (the caller filters on ``consumed_by``; approvals of another run are a caller
bug and raise ValueError). Approvals that run consumed count again, so a run interrupted inside
its window continues on the approvals it started with; any approval that is still unused counts
too, and the resumed run consumes it (how an expired approval is renewed for a resume). A resume
may also start between the cutoff and the end of the window, to finish the hosts it left
mid-phase: the batch gate still starts no new batch after the cutoff.
"""

from __future__ import annotations

import json
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from patchkit.errors import RefusedError
from patchkit.execution.state import frozen
from patchkit.model import Approval
from patchkit.planning.types import Plan, WindowSlot

__all__ = [
    "EMERGENCY_EXPIRY",
    "STATEMENT_FORMAT",
    "Admission",
    "Approval",
    "NotOpenYet",
    "admit",
    "approval_expiry",
    "approval_statement",
    "frozen",
    "reboots_needing_approval",
]

# An emergency approval lets a plan start outside its window, so when the policy sets no
# roles.approval_expires it must still lapse soon: four hours is enough to start a run on the
# night it was given, and too short to be found and reused a day later.
EMERGENCY_EXPIRY = timedelta(hours=4)

# The first key of every signed statement: a signature made for another statement format (or
# another program using the same SSH namespace) never verifies against this one.
STATEMENT_FORMAT = "patchkit-approval/1"


class NotOpenYet(RefusedError):  # noqa: N818 (the name others code against)
    """The plan's window occurrence has not opened yet; ``opens_at`` says when it does."""

    def __init__(self, message: str, *, opens_at: datetime, hint: str | None = None) -> None:
        super().__init__(message, hint=hint)
        self.opens_at = opens_at


@dataclass(frozen=True)
class Admission:
    """What admission allows: the approvals the run consumes, and what they approve."""

    approvals: tuple[int, ...]  # ids of the approvals the run consumes (every one that counts)
    emergency: bool  # an emergency approval counts: the run is not held to the window
    reboots_approved: bool  # the reboots that need approval may happen (or none needs it)
    approved_by: tuple[str, ...]  # the approvers whose approvals count, in order of approval


def reboots_needing_approval(plan: Plan) -> tuple[str, ...]:
    """Hosts the plan reboots in this window whose downtime the policy wants approved."""
    return tuple(sorted(h.host for b in plan.planned for h in b.hosts if h.reboot_needs_approval))


def approval_expiry(plan: Plan, at: datetime, *, emergency: bool) -> datetime:
    """When an approval given at ``at`` lapses (UTC, whole seconds).

    ``at`` plus the policy's roles.approval_expires when set; otherwise the end of the window
    occurrence the plan targets, or ``EMERGENCY_EXPIRY`` after ``at`` for an emergency approval
    (which is for running outside that occurrence). Whole seconds, so that the time a signature
    covers is the time every database stores.
    """
    after = plan.settings.approval.expires_after
    if after is not None:
        until = at.astimezone(UTC) + after  # elapsed time, right across DST changes
    elif emergency:
        until = at.astimezone(UTC) + EMERGENCY_EXPIRY
    else:
        until = plan.window.end
    return until.astimezone(UTC).replace(microsecond=0)


def approval_statement(
    plan_id: str,
    plan_hash: str,
    by: str,
    reboots: bool,
    emergency: bool,
    expires: datetime | None,
) -> bytes:
    """The exact bytes an approver signs: everything the approval lets a run do.

    Canonical JSON (sorted keys, no spaces, UTF-8) of the statement format, plan id and hash,
    approver, the reboot and emergency flags and the expiry in UTC to the second: a row edited
    to say more (emergency or reboots set by hand, a later expiry, another plan) no longer
    matches its signature. JSON quoting keeps a name holding a newline or quote from posing as
    another field.
    """
    data = {
        "format": STATEMENT_FORMAT,
        "plan": plan_id,
        "hash": plan_hash,
        "by": by,
        "reboots": reboots,
        "emergency": emergency,
        "expires": None if expires is None else f"{expires.astimezone(UTC):%Y-%m-%dT%H:%M:%SZ}",
    }
    return json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def admit(
    plan: Plan,
    made_by: str,
    approvals: Sequence[Approval],
    now: datetime,
    *,
    verified: Collection[int] = (),
    resuming: bool = False,
) -> Admission:
    """Whether ``plan`` may start at ``now``; RefusedError (or NotOpenYet) saying why not.

    ``made_by`` is who made the plan (separation of duties); ``verified`` the ids of the
    approvals whose signature the caller checked (``patchkit.signing.verify``) against the
    plan's allowed_signers; ``resuming`` see the module's docstring. An approval counts when it
    is for this plan id and hash, by someone entitled to give it, not by the plan's maker under
    separation of duties, signed when signatures are required, unused, and unexpired at ``now``.
    """
    rules = plan.settings.approval
    if resuming and len({a.consumed_by for a in approvals if a.consumed_by}) > 1:
        raise ValueError("resuming: pass the approvals of the run being resumed and unused ones")
    counted: list[Approval] = []
    ignored: list[str] = []
    used_by: set[str] = set()
    for approval in sorted(approvals, key=lambda a: a.id):
        left_out = _why_not(approval, plan, made_by, now, verified, resuming)
        if left_out is None:
            counted.append(approval)
            continue
        ignored.append(left_out.reason)
        if left_out.used_by is not None:
            used_by.add(left_out.used_by)
    approved_by = tuple(dict.fromkeys(a.by for a in counted))
    if rules.required and len(approved_by) < rules.needed:
        _refuse_approvals(plan, made_by, approved_by, ignored, used_by)
    emergency = any(a.emergency for a in counted)
    _check_time(plan, now, emergency=emergency, resuming=resuming)
    downtime = reboots_needing_approval(plan)
    return Admission(
        approvals=tuple(a.id for a in counted),
        emergency=emergency,
        reboots_approved=not downtime or any(a.reboots for a in counted),
        approved_by=approved_by,
    )


@dataclass(frozen=True)
class _LeftOut:
    """Why an approval does not count; ``used_by`` when only the run that used it stops it."""

    reason: str
    used_by: str | None = None


def _why_not(
    approval: Approval,
    plan: Plan,
    made_by: str,
    now: datetime,
    verified: Collection[int],
    resuming: bool,
) -> _LeftOut | None:
    """Why ``approval`` does not count for ``plan`` at ``now``, or None when it counts."""
    rules = plan.settings.approval
    who = f"approval {approval.id} by {approval.by}"
    if approval.plan_id != plan.id:
        return _LeftOut(f"{who} is for plan {approval.plan_id}")
    if approval.plan_hash != plan.hash:
        return _LeftOut(
            f"{who} is for another version of the plan (hash {approval.plan_hash[:16]}…)"
        )
    if approval.emergency and approval.by not in rules.emergency_approvers:
        return _LeftOut(
            f"{who} is an emergency approval, and {approval.by} is no emergency approver"
        )
    if not approval.emergency and rules.approvers and approval.by not in rules.approvers:
        return _LeftOut(f"{who} does not count: {approval.by} is not an approver")
    if rules.separation_of_duties and made_by and approval.by == made_by:
        return _LeftOut(f"{who} does not count: {made_by} made the plan (separation of duties)")
    if rules.signatures_required and approval.id not in verified:
        if approval.signature is None:
            return _LeftOut(f"{who} is not signed (a row not written by patchkit approve --sign?)")
        return _LeftOut(f"{who} has no valid signature by {approval.by} for what it approves")
    if approval.consumed_by is not None and not resuming:
        run = approval.consumed_by
        return _LeftOut(f"{who} was used by run {run} (an approval starts one run)", used_by=run)
    expires = approval.expires or approval_expiry(plan, approval.at, emergency=approval.emergency)
    if expires <= now:
        return _LeftOut(f"{who} expired at {_when(expires, plan.window)}")
    return None


def _refuse_approvals(
    plan: Plan,
    made_by: str,
    approved_by: tuple[str, ...],
    ignored: list[str],
    used_by: set[str],
) -> None:
    """Raise the refusal of a plan short of approvals, naming every approval left out."""
    rules = plan.settings.approval
    if used_by:
        runs = ", ".join(sorted(used_by))
        raise RefusedError(
            _with_reasons(f"plan {plan.id} already ran: run {runs} used its approvals", ignored),
            hint=f"to continue that run: patchkit resume {min(used_by)}; to patch again, make a "
            "new plan (patchkit plan) and have it approved",
        )
    if approved_by:
        head = (
            f"plan {plan.id} has approvals by {len(approved_by)} of the {rules.needed} different "
            f"approvers it needs ({', '.join(approved_by)})"
        )
    else:
        head = f"plan {plan.id} is not approved"
    sign = " --sign KEY" if rules.signatures_required else ""
    hint = f"patchkit approve {plan.id} --by NAME{sign} (approvers: {', '.join(rules.approvers)})"
    if rules.separation_of_duties and made_by:
        hint += f"; {made_by} made the plan and may not approve it"
    raise RefusedError(_with_reasons(head, ignored), hint=hint)


def _check_time(plan: Plan, now: datetime, *, emergency: bool, resuming: bool) -> None:
    """Refuse a start outside the window occurrence (unless ``emergency``) or in a freeze."""
    slot = plan.window
    # A resume may finish, until the window's end, what it left mid-phase after the cutoff.
    closes = slot.end if resuming else slot.cutoff
    again = (
        ", or have an emergency approver approve it with --emergency"
        if plan.settings.approval.emergency_approvers
        else ""
    )
    if not emergency and now < slot.start:
        raise NotOpenYet(
            f"window {slot.name} of plan {plan.id} opens at {_when(slot.start, slot)}",
            opens_at=slot.start,
            hint=f"run it then (patchkit run --wait waits for it){again}",
        )
    if not emergency and now >= closes:
        what = "ended" if resuming else "closed"
        why = "" if resuming else " (its cutoff: no run starts later)"
        raise RefusedError(
            f"window {slot.name} of plan {plan.id} {what} at {_when(closes, slot)}{why}",
            hint=f"make a new plan (patchkit plan) for the next window{again}",
        )
    span = frozen(slot, now)
    if span is not None:
        reason = f" ({span.reason})" if span.reason else ""
        raise RefusedError(
            f"{_when(now, slot)} is inside the change freeze {span.start} to {span.end}{reason} "
            f"of window {slot.name}: no run starts in a freeze, whatever its approval",
            hint=f"run it after {span.end}, when the freeze ends",
        )


def _with_reasons(head: str, reasons: list[str]) -> str:
    return head if not reasons else head + ":\n  " + "\n  ".join(reasons)


def _when(at: datetime, slot: WindowSlot) -> str:
    """A time as people of the window read it: local to the window, with its zone."""
    return f"{at.astimezone(ZoneInfo(slot.timezone)):%Y-%m-%d %H:%M %Z}"
