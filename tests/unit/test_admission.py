"""Unit: admission, the pure decision whether a plan may start now on the approvals it has."""

from __future__ import annotations

import dataclasses
import json
from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest

from patchkit.errors import ExitCode, RefusedError
from patchkit.execution.admission import (
    EMERGENCY_EXPIRY,
    Admission,
    Approval,
    NotOpenYet,
    admit,
    approval_expiry,
    approval_statement,
    frozen,
    reboots_needing_approval,
)
from patchkit.model import Finding, Host, PendingUpdate
from patchkit.planning.plan import make_plan
from patchkit.planning.types import FreezeSpan, Plan
from patchkit.policy import loads

AT = datetime(2026, 11, 25, 10, 0, tzinfo=UTC)  # the plan is made on a Wednesday morning

POLICY = """\
name: admission
roles:
  owner: ops
  approvers: [alice, bob, carol]
  emergency_approvers: [erin]
classification: {updates: all}
windows:
  - name: nightly
    rrule: FREQ=DAILY;BYHOUR=22;BYMINUTE=0;BYSECOND=0
    timezone: Europe/Berlin
    duration: 4h
    cutoff: 30m
    freeze:
      - {start: 2026-12-24, end: 2026-12-26, reason: holidays}
rollout: {batch_size: 2, concurrency: 2}
downtime:
  reboot_packages: [linux-image-*]
  reboot_approval: [db]
"""


def make(*names: str) -> Plan:
    """The plan of the test policy for ``names`` (db* hosts need their reboot approved)."""
    hosts = [Host(n, ("db",) if n.startswith("db") else ("web",)) for n in names]
    kernel = (PendingUpdate("linux-image-amd64", "6.1.1", "6.1.2", "stable"),)
    found = {h.name: Finding(h.name, AT - timedelta(hours=1), True, kernel) for h in hosts}
    return make_plan(loads(POLICY), hosts, found, AT)


PLAN = make("db1", "web1")
# The window opens 2026-11-25 22:00 Berlin (21:00 UTC), cutoff 01:30, ends 02:00.
OPEN = PLAN.window.start.astimezone(UTC)
INSIDE = OPEN + timedelta(hours=1)
AFTER_CUTOFF = PLAN.window.cutoff.astimezone(UTC) + timedelta(minutes=5)
BEFORE = OPEN - timedelta(hours=3)


def rules(plan: Plan, **changes: Any) -> Plan:
    """``plan`` with its approval rules changed (admission does not check the hash itself)."""
    approval = dataclasses.replace(plan.settings.approval, **changes)
    return dataclasses.replace(plan, settings=dataclasses.replace(plan.settings, approval=approval))


def approval(number: int, by: str, plan: Plan = PLAN, **fields: Any) -> Approval:
    values: dict[str, Any] = {
        "id": number,
        "plan_id": plan.id,
        "plan_hash": plan.hash,
        "by": by,
        "at": BEFORE,
    }
    return Approval(**(values | fields))


def refusal(plan: Plan, approvals: list[Approval], now: datetime, **kw: Any) -> RefusedError:
    with pytest.raises(RefusedError) as refused:
        admit(plan, "mia", approvals, now, **kw)
    assert refused.value.exit_code == ExitCode.REFUSED
    return refused.value


# ---------------------------------------------------------------- approvals


def test_an_approved_plan_is_admitted_inside_its_window() -> None:
    admitted = admit(PLAN, "mia", [approval(1, "alice")], INSIDE)
    assert admitted == Admission(
        approvals=(1,), emergency=False, reboots_approved=False, approved_by=("alice",)
    )


def test_an_unapproved_plan_is_refused_with_the_approve_command() -> None:
    refused = refusal(PLAN, [], INSIDE)
    assert refused.message == f"plan {PLAN.id} is not approved"
    assert refused.hint == f"patchkit approve {PLAN.id} --by NAME (approvers: alice, bob, carol)"


def test_an_approval_by_someone_who_is_no_approver_does_not_count() -> None:
    refused = refusal(PLAN, [approval(4, "mallory")], INSIDE)
    assert "approval 4 by mallory does not count: mallory is not an approver" in refused.message


def test_an_approval_of_another_plan_hash_is_ignored() -> None:
    edited = approval(2, "alice", plan_hash="f" * 64)
    refused = refusal(PLAN, [edited], INSIDE)
    assert "approval 2 by alice is for another version of the plan (hash ffff" in refused.message
    other = approval(3, "alice", plan_id="plan-000000000000")
    assert "is for plan plan-000000000000" in refusal(PLAN, [other], INSIDE).message
    assert admit(PLAN, "mia", [edited, approval(5, "bob")], INSIDE).approvals == (5,)


def test_an_expired_approval_does_not_count() -> None:
    hour = rules(PLAN, expires_after=timedelta(hours=1))
    stale = approval(
        1, "alice", hour, at=OPEN - timedelta(hours=2), expires=OPEN - timedelta(hours=1)
    )
    refused = refusal(hour, [stale], INSIDE)
    assert "approval 1 by alice expired at 2026-11-25 21:00 CET" in refused.message
    exactly = approval(2, "bob", hour, expires=INSIDE)  # expires <= now: lapsed
    assert "approval 2 by bob expired" in refusal(hour, [exactly], INSIDE).message


def test_an_approval_without_expiry_lapses_with_its_default() -> None:
    """Rows of older ledgers carry no expiry: the plan's default applies (here: 1 hour)."""
    hour = rules(PLAN, expires_after=timedelta(hours=1))
    old = approval(1, "alice", hour, at=OPEN, expires=None)
    assert admit(hour, "mia", [old], OPEN + timedelta(minutes=59)).approvals == (1,)
    assert "expired" in refusal(hour, [old], OPEN + timedelta(hours=1)).message


def test_n_approvals_by_different_approvers_and_the_same_approver_twice_counts_once() -> None:
    two = rules(PLAN, needed=2)
    twice = [approval(1, "alice"), approval(2, "alice")]
    refused = refusal(two, twice, INSIDE)
    assert refused.message.startswith(
        f"plan {PLAN.id} has approvals by 1 of the 2 different approvers it needs (alice)"
    )
    admitted = admit(two, "mia", [*twice, approval(3, "bob")], INSIDE)
    assert admitted.approved_by == ("alice", "bob")
    assert admitted.approvals == (1, 2, 3)  # every approval that counts is used by the run


def test_separation_of_duties_the_plans_maker_does_not_count() -> None:
    separated = rules(PLAN, separation_of_duties=True)
    with pytest.raises(RefusedError) as refused:
        admit(separated, "alice", [approval(1, "alice")], INSIDE)
    message = refused.value.message
    assert "approval 1 by alice does not count: alice made the plan (separation of duties)" in (
        message
    )
    assert "alice made the plan and may not approve it" in str(refused.value.hint)
    assert admit(separated, "alice", [approval(2, "bob")], INSIDE).approved_by == ("bob",)
    # without separation of duties the maker may approve
    assert admit(PLAN, "alice", [approval(1, "alice")], INSIDE).approved_by == ("alice",)


def test_signatures_required_an_unverified_row_is_refused_by_name() -> None:
    signed = rules(PLAN, signatures_required=True, allowed_signers="alice ssh-ed25519 AAAA")
    by_hand = approval(7, "alice")  # no signature: written into the ledger by hand
    forged = approval(8, "bob", signature="-----BEGIN SSH SIGNATURE-----")
    refused = refusal(signed, [by_hand, forged], INSIDE, verified={99})
    assert "approval 7 by alice is not signed" in refused.message
    assert "approval 8 by bob has no valid signature" in refused.message
    assert "--sign KEY" in str(refused.hint)
    assert admit(signed, "mia", [by_hand, forged], INSIDE, verified={8}).approvals == (8,)
    # without required signatures, ``verified`` is not consulted
    assert admit(PLAN, "mia", [by_hand], INSIDE).approvals == (7,)


# ---------------------------------------------------------------- one run per approval


def test_a_consumed_approval_refuses_a_second_run_and_points_at_resume() -> None:
    used = approval(1, "alice", consumed_by="run-20261125-210000-abcdef")
    refused = refusal(PLAN, [used], INSIDE)
    assert refused.message.startswith(
        f"plan {PLAN.id} already ran: run run-20261125-210000-abcdef used its approvals"
    )
    assert "approval 1 by alice was used by run run-20261125-210000-abcdef" in refused.message
    assert "patchkit resume run-20261125-210000-abcdef" in str(refused.hint)
    assert "new plan" in str(refused.hint)
    # a new approval given after that run lets the plan run again
    assert admit(PLAN, "mia", [used, approval(2, "bob")], INSIDE).approvals == (2,)


def test_resume_of_the_consuming_run_is_admitted_on_its_approvals() -> None:
    used = approval(1, "alice", reboots=True, consumed_by="run-1")
    admitted = admit(PLAN, "mia", [used], INSIDE + timedelta(minutes=10), resuming=True)
    assert admitted.approvals == (1,) and admitted.reboots_approved
    # after the cutoff a resume may still finish what it left mid-phase, until the end
    late = admit(PLAN, "mia", [used], AFTER_CUTOFF, resuming=True)
    assert late.approvals == (1,) and not late.emergency
    # after the end it is refused, even on an approval that has not lapsed
    held = approval(1, "alice", consumed_by="run-1", expires=OPEN + timedelta(days=1))
    ended = refusal(PLAN, [held], PLAN.window.end.astimezone(UTC), resuming=True)
    assert ended.message == f"window nightly of plan {PLAN.id} ended at 2026-11-26 02:00 CET"


def test_resume_with_approvals_of_two_runs_is_a_caller_bug() -> None:
    runs = [approval(1, "alice", consumed_by="run-1"), approval(2, "bob", consumed_by="run-2")]
    with pytest.raises(ValueError, match="resuming"):
        admit(PLAN, "mia", runs, INSIDE, resuming=True)


# ---------------------------------------------------------------- window and freezes


def test_before_the_window_opens_it_is_not_open_yet_with_the_opening_time() -> None:
    with pytest.raises(NotOpenYet) as refused:
        admit(PLAN, "mia", [approval(1, "alice")], BEFORE)
    assert refused.value.opens_at == PLAN.window.start
    assert refused.value.exit_code == ExitCode.REFUSED
    assert isinstance(refused.value, RefusedError)
    assert refused.value.message == (
        f"window nightly of plan {PLAN.id} opens at 2026-11-25 22:00 CET"
    )
    assert "--wait" in str(refused.value.hint) and "--emergency" in str(refused.value.hint)


def test_after_the_cutoff_the_window_is_closed_and_a_new_plan_is_needed() -> None:
    refused = refusal(PLAN, [approval(1, "alice")], AFTER_CUTOFF)
    assert not isinstance(refused, NotOpenYet)
    assert refused.message == (
        f"window nightly of plan {PLAN.id} closed at 2026-11-26 01:30 CET (its cutoff: no run "
        "starts later)"
    )
    assert "make a new plan" in str(refused.hint)
    assert admit(PLAN, "mia", [approval(1, "alice")], AFTER_CUTOFF - timedelta(minutes=6))


def test_an_emergency_approval_by_an_emergency_approver_starts_outside_the_window() -> None:
    urgent = approval(1, "erin", emergency=True, expires=AFTER_CUTOFF + timedelta(hours=1))
    for now in (BEFORE, AFTER_CUTOFF):
        admitted = admit(PLAN, "mia", [urgent], now)
        assert admitted.emergency and admitted.approved_by == ("erin",)
    # the same flag set by someone who is no emergency approver counts for nothing
    refused = refusal(PLAN, [approval(2, "alice", emergency=True)], AFTER_CUTOFF)
    assert "approval 2 by alice is an emergency approval, and alice is no emergency approver" in (
        refused.message
    )
    # an ordinary approval next to it does not open the window
    assert "closed" in refusal(PLAN, [approval(3, "alice")], AFTER_CUTOFF).message


def test_an_emergency_approval_lapses_after_the_bounded_default() -> None:
    urgent = approval(1, "erin", emergency=True, at=AFTER_CUTOFF, expires=None)
    assert admit(PLAN, "mia", [urgent], AFTER_CUTOFF + EMERGENCY_EXPIRY - timedelta(seconds=1))
    later = AFTER_CUTOFF + EMERGENCY_EXPIRY
    assert "expired" in refusal(PLAN, [urgent], later).message


def test_no_start_inside_a_freeze_whatever_the_approval() -> None:
    christmas = datetime(2026, 12, 25, 9, 0, tzinfo=UTC)
    urgent = approval(
        1, "erin", emergency=True, at=christmas, expires=christmas + timedelta(hours=4)
    )
    refused = refusal(PLAN, [urgent], christmas)
    assert refused.message == (
        "2026-12-25 10:00 CET is inside the change freeze 2026-12-24 to 2026-12-26 (holidays) "
        "of window nightly: no run starts in a freeze, whatever its approval"
    )
    assert "after 2026-12-26" in str(refused.hint)


def test_a_freeze_inside_the_window_refuses_an_ordinary_start() -> None:
    # The planner passes over frozen occurrences; a freeze over this one stands for any freeze
    # the batch gate meets while the window is open.
    slot = dataclasses.replace(
        PLAN.window, freezes=(FreezeSpan(date(2026, 11, 26), date(2026, 11, 26), "audit"),)
    )
    plan = dataclasses.replace(PLAN, window=slot)
    assert admit(plan, "mia", [approval(1, "alice")], INSIDE)  # 23:00 on the 25th, Berlin
    refused = refusal(plan, [approval(1, "alice")], OPEN + timedelta(hours=3))  # 01:00
    assert "inside the change freeze 2026-11-26 to 2026-11-26 (audit)" in refused.message


def test_frozen_reads_the_date_in_the_windows_timezone() -> None:
    slot = PLAN.window
    span = slot.freezes[0]
    assert frozen(slot, datetime(2026, 12, 23, 22, 59, tzinfo=UTC)) is None  # 23:59 Berlin
    assert frozen(slot, datetime(2026, 12, 23, 23, 0, tzinfo=UTC)) == span  # 00:00 on the 24th
    assert frozen(slot, datetime(2026, 12, 26, 22, 59, tzinfo=UTC)) == span  # end inclusive
    assert frozen(slot, datetime(2026, 12, 26, 23, 0, tzinfo=UTC)) is None


def test_a_plan_without_required_approval_still_keeps_to_window_and_freeze() -> None:
    free = rules(PLAN, required=False)
    admitted = admit(free, "mia", [], INSIDE)
    assert admitted == Admission((), emergency=False, reboots_approved=False, approved_by=())
    with pytest.raises(NotOpenYet):
        admit(free, "mia", [], BEFORE)
    assert "closed" in refusal(free, [], AFTER_CUTOFF).message
    urgent = approval(1, "erin", emergency=True, at=AFTER_CUTOFF)
    assert admit(free, "mia", [urgent], AFTER_CUTOFF).emergency


# ---------------------------------------------------------------- downtime


def test_reboots_are_approved_only_by_an_approval_that_includes_them() -> None:
    assert reboots_needing_approval(PLAN) == ("db1",)
    assert not admit(PLAN, "mia", [approval(1, "alice")], INSIDE).reboots_approved
    with_reboots = [approval(1, "alice"), approval(2, "bob", reboots=True)]
    assert admit(PLAN, "mia", with_reboots, INSIDE).reboots_approved
    # an approval that does not count approves no downtime either
    stranger = [approval(1, "alice"), approval(2, "mallory", reboots=True)]
    assert not admit(PLAN, "mia", stranger, INSIDE).reboots_approved


def test_reboots_need_no_approval_when_no_host_asks_for_it() -> None:
    web = make("web1")
    assert reboots_needing_approval(web) == ()
    assert admit(web, "mia", [approval(1, "alice", web)], INSIDE).reboots_approved


# ---------------------------------------------------------------- expiry and statement


def test_approval_expiry_defaults_to_the_end_of_the_window_occurrence() -> None:
    assert approval_expiry(PLAN, BEFORE, emergency=False) == PLAN.window.end
    given = datetime(2026, 11, 25, 12, 0, 30, 999, tzinfo=UTC)
    assert approval_expiry(PLAN, given, emergency=True) == given.replace(microsecond=0) + timedelta(
        hours=4
    )
    two_days = rules(PLAN, expires_after=timedelta(days=2))
    assert approval_expiry(two_days, given, emergency=False) == datetime(
        2026, 11, 27, 12, 0, 30, tzinfo=UTC
    )
    assert approval_expiry(two_days, given, emergency=True).tzinfo == UTC


def test_the_statement_covers_every_meaning_of_the_approval() -> None:
    until = datetime(2026, 11, 26, 1, 0, tzinfo=UTC)
    base: dict[str, Any] = {
        "plan_id": PLAN.id,
        "plan_hash": PLAN.hash,
        "by": "alice",
        "reboots": False,
        "emergency": False,
        "expires": until,
    }
    statement = approval_statement(**base)
    assert json.loads(statement) == {
        "format": "patchkit-approval/1",
        "plan": PLAN.id,
        "hash": PLAN.hash,
        "by": "alice",
        "reboots": False,
        "emergency": False,
        "expires": "2026-11-26T01:00:00Z",
    }
    changes = {
        "plan_id": "plan-000000000000",
        "plan_hash": "0" * 64,
        "by": "bob",
        "reboots": True,
        "emergency": True,
        "expires": until + timedelta(seconds=1),
    }
    for name, value in changes.items():
        assert approval_statement(**(base | {name: value})) != statement, name
    # the same meaning in another zone or with sub-second noise gives the same bytes
    local = (until + timedelta(microseconds=5)).astimezone(PLAN.window.start.tzinfo)
    assert approval_statement(**(base | {"expires": local})) == statement
    # a name cannot pose as another field
    sneaky = approval_statement(**(base | {"by": 'alice","emergency":true,"x":"'}))
    assert json.loads(sneaky)["emergency"] is False
