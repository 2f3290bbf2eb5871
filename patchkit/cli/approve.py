"""``patchkit approve``: record who approved which plan, for what, until when (signed if asked)."""

from __future__ import annotations

import dataclasses
import json
from datetime import UTC, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import click
from rich.text import Text

from patchkit import signing
from patchkit.cli.consoles import err_console
from patchkit.cli.window import _ledger
from patchkit.errors import PlanningError, RefusedError
from patchkit.execution import admission
from patchkit.ledger import Ledger
from patchkit.model import Approval
from patchkit.planning import codec
from patchkit.planning.types import Plan


def _not_blank(_ctx: click.Context, _param: click.Parameter, value: str) -> str:
    """``--by``: an approval must say who gave it."""
    if not value.strip():
        raise click.BadParameter("give a name, not a blank")  # click names the option
    return value


@click.command()
@click.argument("plan_id")
@click.option(
    "--by",
    "by",
    required=True,
    callback=_not_blank,
    help="Who approves (must be one of the approvers).",
)
@click.option("--comment", default="", help="Why, or under which change ticket.")
@click.option(
    "--reboots",
    is_flag=True,
    help="Also approve the downtime: the reboots the plan marks as needing approval.",
)
@click.option(
    "--emergency",
    is_flag=True,
    help="Approve running the plan now, outside its window (emergency approvers only). "
    "Change freezes still hold.",
)
@click.option(
    "--sign",
    "key",
    type=click.Path(path_type=Path, dir_okay=False),
    help="Sign the approval with this SSH private key (ssh-keygen -Y sign); it must be listed "
    "for --by in the policy's allowed_signers.",
)
@click.option("--json", "as_json", is_flag=True, help="Print the approval record as JSON.")
@click.pass_context
def approve(
    ctx: click.Context,
    plan_id: str,
    by: str,
    comment: str,
    reboots: bool,
    emergency: bool,
    key: Path | None,
    as_json: bool,
) -> None:
    """Record approval of PLAN_ID (who, when, until when, and the plan hash approved).

    When the plan reboots hosts whose downtime the policy wants approved
    (downtime.reboot_approval), `run` reboots them only with an approval given with --reboots;
    without one it patches them and leaves the reboot pending. An approval starts one run and
    lapses at the end of the window occurrence (or after roles.approval_expires).
    """
    ledger = _ledger(ctx)
    plan, made_by = _stored_plan(ledger, plan_id)
    _check_approver(plan, by, made_by, emergency=emergency)
    rules = plan.settings.approval
    if rules.signatures_required and key is None:
        raise RefusedError(
            f"plan {plan.id} needs signed approvals (policy roles.signatures)",
            hint=f"patchkit approve {plan.id} --by {by} --sign ~/.ssh/id_ed25519 (the private "
            f"key listed for {by} in the policy's allowed_signers)",
        )
    now = datetime.now(UTC)
    # An approval that lapses at once is still recorded (who approved what is history), and
    # _tell says that run will not start on it.
    expires = admission.approval_expiry(plan, now, emergency=emergency)
    signature = None
    if key is not None:
        statement = admission.approval_statement(
            plan.id, plan.hash, by, reboots, emergency, expires
        )
        signature = _signed(plan, statement, by, key)
    approval = ledger.approve(
        plan.id,
        plan.hash,
        by=by,
        at=now,
        comment=comment,
        reboots=reboots,
        emergency=emergency,
        expires=expires,
        signature=signature,
    )
    _tell(plan, approval, key, now)
    if as_json:
        click.echo(json.dumps(_record(approval), sort_keys=True))


def _stored_plan(ledger: Ledger, plan_id: str) -> tuple[Plan, str]:
    """The typed plan ``plan_id`` (its body checked against its hash) and who made it."""
    stored = ledger.stored_plan(plan_id)
    if stored is None:
        raise PlanningError(f"no plan {plan_id} in {ledger.url}", hint="patchkit plan saves one")
    codec.verify(stored.body, stored.hash)  # an edited body is never approved
    return codec.decode(stored.body), stored.made_by


def _check_approver(plan: Plan, by: str, made_by: str, *, emergency: bool) -> None:
    """Refuse an approver the plan's rules do not allow to give this approval."""
    rules = plan.settings.approval
    if emergency and by not in rules.emergency_approvers:
        named = ", ".join(rules.emergency_approvers)
        raise RefusedError(
            f"{by} may not give emergency approvals for plans of policy {plan.policy}",
            hint=f"emergency approvers: {named}"
            if named
            else "the policy names no emergency approvers (roles.emergency_approvers)",
        )
    if not emergency and rules.approvers and by not in rules.approvers:
        raise RefusedError(
            f"{by} may not approve plans of policy {plan.policy}",
            hint=f"approvers: {', '.join(rules.approvers)}",
        )
    if rules.separation_of_duties and made_by and by == made_by:
        others = [a for a in rules.approvers if a != by]
        raise RefusedError(
            f"{by} made plan {plan.id} and may not approve it (the policy separates duties)",
            hint=f"ask another approver: {', '.join(others)}"
            if others
            else "ask someone else to make the plan (patchkit plan --by NAME)",
        )


def _signed(plan: Plan, statement: bytes, by: str, key: Path) -> str:
    """The signature of ``statement`` by ``key``, refused unless it verifies for ``by``."""
    signers = plan.settings.approval.allowed_signers
    if not signers.strip():
        raise RefusedError(
            f"plan {plan.id} names no allowed signers, so a signed approval cannot be checked",
            hint="approve without --sign, or set roles.signatures.allowed_signers in the policy "
            "and make a new plan",
        )
    signature = signing.sign(statement, key)
    if not signing.verify(statement, signature, by, signers):
        raise RefusedError(
            f"the key {key} is not listed for {by} in the allowed_signers plan {plan.id} "
            "carries; nothing was recorded",
            hint=f"sign with the key listed for {by}, or add {by}'s public key to the policy's "
            "allowed_signers file and make a new plan",
        )
    return signature


def _tell(plan: Plan, approval: Approval, key: Path | None, now: datetime) -> None:
    """What was approved, by whom, until when; loud for an emergency."""
    downtime = admission.reboots_needing_approval(plan)
    with_reboots = (
        f", with the reboots of {', '.join(downtime)}" if approval.reboots and downtime else ""
    )
    until = _when(approval.expires or now, plan)
    err_console.print(
        f"plan {plan.id} approved by {approval.by} (hash {plan.hash[:16]}…){with_reboots}, "
        f"valid until {until}"
    )
    if key is not None:
        err_console.print(f"signed with {key}: the signature verifies for {approval.by}")
    if approval.emergency:
        err_console.print(
            Text(
                f"EMERGENCY: plan {plan.id} may start now, outside its window {plan.window.name} "
                f"({_when(plan.window.start, plan)} to {_when(plan.window.cutoff, plan)}), "
                f"until {until}; change freezes still hold",
                style="bold red",
            )
        )
    if approval.expires is not None and approval.expires <= now:
        # only an ordinary approval can: an emergency one holds for a while from now
        err_console.print(
            Text(
                f"note: this approval lapsed at once (at {until}, when the window occurrence "
                "ended): run will not start on it; make a new plan (patchkit plan), or get an "
                "emergency approval (--emergency)",
                style="bold",
            )
        )
    elif not approval.emergency and now >= plan.window.cutoff:
        err_console.print(
            f"note: the cutoff of window {plan.window.name} passed at "
            f"{_when(plan.window.cutoff, plan)}; run no longer starts this plan"
        )
    if plan.settings.approval.needed > 1:
        err_console.print(
            f"note: run needs approvals by {plan.settings.approval.needed} different approvers"
        )
    if downtime and not approval.reboots:
        err_console.print(
            f"note: the reboots of {', '.join(downtime)} need approval too; unless someone "
            "approves with --reboots, run patches them and leaves the reboot pending"
        )


def _record(approval: Approval) -> dict[str, object]:
    """The approval as JSON data (times in ISO 8601, UTC)."""
    data = dataclasses.asdict(approval)
    for name in ("at", "expires"):
        value = data[name]
        data[name] = value.isoformat() if isinstance(value, datetime) else value
    return data


def _when(at: datetime, plan: Plan) -> str:
    """A time as the window's people read it: local to the window, with its zone."""
    return f"{at.astimezone(ZoneInfo(plan.window.timezone)):%Y-%m-%d %H:%M %Z}"
