"""``patchkit run``, ``resume`` and ``status``: from an approved plan to a recorded window."""

from __future__ import annotations

import json
import signal
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click
from rich.live import Live

from patchkit import policy as policy_lib
from patchkit import signing
from patchkit.cli.consoles import console, err_console
from patchkit.cli.observer import TerminalObserver, count_down, utc_now
from patchkit.cli.planning import inventory_option, load_inventory, required_policy
from patchkit.cli.report import report_of
from patchkit.errors import ExitCode, PlanningError, RefusedError
from patchkit.execution import admission, window
from patchkit.execution.runner import ansible_env
from patchkit.ledger import Ledger
from patchkit.notify import Notifier
from patchkit.planning import codec
from patchkit.planning.plan import input_hashes
from patchkit.planning.types import Plan
from patchkit.reports import run_report
from patchkit.reports.run import RunProgress


def _ledger(ctx: click.Context) -> Ledger:
    return Ledger(ctx.obj.get("ledger") if ctx.obj else None)


def run_record(ledger: Ledger, run_id: str) -> dict[str, Any]:
    """The recorded run ``run_id``, or a PlanningError saying there is none."""
    record = ledger.run_record(run_id)
    if record is None:
        raise PlanningError(f"no run {run_id} in {ledger.url}", hint="patchkit status lists runs")
    return record


def _plan(ledger: Ledger, plan_id: str) -> dict[str, Any]:
    body = ledger.plan(plan_id)
    if body is None:
        raise PlanningError(f"no plan {plan_id} in {ledger.url}", hint="patchkit plan saves one")
    return body


def stored_plan(ledger: Ledger, plan_id: str) -> tuple[Plan, str]:
    """The typed plan ``plan_id`` and who made it, once its body is checked against its hash."""
    stored = ledger.stored_plan(plan_id)
    if stored is None:
        raise PlanningError(f"no plan {plan_id} in {ledger.url}", hint="patchkit plan saves one")
    codec.verify(stored.body, stored.hash)
    return codec.decode(stored.body), stored.made_by


def _run_options(command: Callable[..., None]) -> Callable[..., None]:
    for option in reversed(
        [
            required_policy,
            inventory_option,
            click.option(
                "--json", "as_json", is_flag=True, help="One JSON line per event, for machines."
            ),
            click.option(
                "--mitogen/--no-mitogen",
                default=False,
                envvar="PATCHKIT_MITOGEN",
                help="Run the playbooks with mitogen's strategy (pip install "
                "'patchkit[mitogen]'); fewer round trips per task. Env: PATCHKIT_MITOGEN.",
            ),
            click.option(
                "--take-over",
                is_flag=True,
                help="Take over the hosts' locks from a run whose controller is dead "
                "(its process is gone, or its heartbeat is older than 2 minutes).",
            ),
            click.option(
                "--wait",
                is_flag=True,
                help="If the plan's window has not opened yet, wait for it (with a countdown) "
                "instead of refusing.",
            ),
        ]
    ):
        command = option(command)
    return command


@click.command()
@click.argument("plan_id")
@_run_options
@click.pass_context
def run(
    ctx: click.Context,
    plan_id: str,
    policy_path: Path,
    inventory_path: Path,
    as_json: bool,
    mitogen: bool,
    take_over: bool,
    wait: bool,
) -> None:
    """Run the approved plan PLAN_ID batch by batch and record every outcome.

    Refuses (exit 3): a plan whose stored body does not match its hash; one not approved as
    the policy wants (approvers, how many, separation of duties, signatures, expiry); one
    already run (its approvals are used: resume the run, or make a new plan); one whose window
    has not opened (--wait waits for it) or has closed, unless an emergency approval says so;
    one whose policy or inventory changed since it was made; and hosts another holder has.
    Exits 0 when every host was patched, 1 when hosts failed, were left unpatched or with a
    reboot pending, or the window halted.
    """
    ledger = _ledger(ctx)
    _drive(ledger, plan_id, policy_path, inventory_path, as_json, mitogen, take_over, wait, None)


@click.command()
@click.argument("run_id")
@_run_options
@click.pass_context
def resume(
    ctx: click.Context,
    run_id: str,
    policy_path: Path,
    inventory_path: Path,
    as_json: bool,
    mitogen: bool,
    take_over: bool,
    wait: bool,
) -> None:
    """Continue the interrupted run RUN_ID (Ctrl-C, a killed controller) inside its window.

    Batches that ended are kept; hosts that reached a verdict are not patched again; a host
    stopped mid-phase runs again, its roles checking the host first (what is installed now,
    the snapshot already taken); batches not started run as planned, unless the window's
    cutoff has passed. Refuses (exit 3) a run that ended, and hosts a live run holds; a dead
    controller's locks need --take-over.
    """
    ledger = _ledger(ctx)
    record = run_record(ledger, run_id)
    if record["status"] not in ("interrupted", "running"):
        raise RefusedError(
            f"run {run_id} ended {record['status']}; there is nothing to resume",
            hint="make and approve a new plan for what is left (patchkit plan)",
        )
    _drive(
        ledger, record["plan"], policy_path, inventory_path, as_json, mitogen, take_over, wait,
        record,
    )  # fmt: skip


def _admit(
    ledger: Ledger,
    plan: Plan,
    made_by: str,
    record: dict[str, Any] | None,
    wait: bool,
    stop: threading.Event,
) -> admission.Admission:
    """Admission now; with ``wait``, after a countdown to the window's opening."""
    while True:
        approvals = ledger.approvals(plan.id)
        if record is not None:  # resume: the approvals its run consumed, and unused ones
            approvals = [a for a in approvals if a.consumed_by in (None, record["id"])]
        verified = _verified(plan, approvals)
        try:
            return admission.admit(
                plan, made_by, approvals, utc_now(), verified=verified,
                resuming=record is not None,
            )  # fmt: skip
        except admission.NotOpenYet as exc:
            if not wait:
                raise
            why = f"plan {plan.id}: window {plan.window.name}"
            if not count_down(exc.opens_at, why, stop, utc_now):
                raise RefusedError(
                    f"stopped waiting for the window of plan {plan.id}", hint="run it again"
                ) from None


def _verified(plan: Plan, approvals: Any) -> set[int]:
    """The approvals whose signature verifies against the plan's allowed signers."""
    rules = plan.settings.approval
    if not rules.allowed_signers:
        return set()
    return {
        a.id
        for a in approvals
        if a.signature
        and signing.verify(
            admission.approval_statement(
                a.plan_id, a.plan_hash, a.by, a.reboots, a.emergency, a.expires
            ),
            a.signature,
            a.by,
            rules.allowed_signers,
        )
    }


def _drive(
    ledger: Ledger,
    plan_id: str,
    policy_path: Path,
    inventory_path: Path,
    as_json: bool,
    mitogen: bool,
    take_over: bool,
    wait: bool,
    record: dict[str, Any] | None,
) -> None:
    """Check and admit, then run (or resume) the plan with the live view; exit 1 unless it
    completed."""
    plan, made_by = stored_plan(ledger, plan_id)
    loaded = policy_lib.load(policy_path)
    hosts = load_inventory(inventory_path)
    _same_inputs(plan, input_hashes(loaded, hosts, {}))
    if mitogen:
        ansible_env(mitogen=True)  # not installed: say so before anything starts
    stop = threading.Event()

    def interrupted(_signum: int, _frame: object) -> None:
        # Ctrl-C: let ansible-runner stop the batch, then record what is known.
        stop.set()
        err_console.print("stopping after recording what is known (Ctrl-C again to abort)…")
        signal.signal(signal.SIGINT, signal.default_int_handler)

    previous = signal.signal(signal.SIGINT, interrupted)
    notifier = Notifier(loaded.notifications.webhooks, clock=utc_now)
    try:
        admitted = _admit(ledger, plan, made_by, record, wait, stop)
        if admitted.emergency:
            err_console.print(
                f"EMERGENCY run of plan {plan.id} outside its window, approved by "
                f"{', '.join(admitted.approved_by)}"
            )
        progress = RunProgress(plan, utc_now)
        live = Live(progress.render(), console=err_console, refresh_per_second=4, transient=True)
        observer = TerminalObserver(
            progress, live, as_json=as_json, notify=notifier.send, stop=stop
        )
        with live:
            summary = window.execute(
                plan, admitted, inventory_path, ledger, clock=utc_now, observer=observer,
                mitogen=mitogen, resume=record, take_over=take_over, release=(loaded, hosts),
            )  # fmt: skip
    finally:
        signal.signal(signal.SIGINT, previous)
        notifier.close()  # a bounded wait: a receiver that is down never holds the run
    done = ledger.run_record(summary.run_id)
    if as_json:
        click.echo(json.dumps({"event": "end", "run": done}, default=str))
    elif done is not None:
        console.print(run_report.to_text(report_of(ledger, summary.run_id)))
    if summary.status != "completed":
        sys.exit(ExitCode.FAILURES)


def _same_inputs(plan: Plan, inputs: dict[str, str]) -> None:
    """Refuse a plan whose policy or inventory moved since it was made."""
    for what, noun in (("policy", "policy"), ("hosts", "inventory")):
        if plan.inputs[what] != inputs[what]:
            raise RefusedError(
                f"the {noun} changed since plan {plan.id} was made",
                hint="make a new plan (patchkit plan) and have it approved",
            )


@click.command()
@click.argument("run_id", required=False)
@click.option("--json", "as_json", is_flag=True, help="Print as JSON.")
@click.pass_context
def status(ctx: click.Context, run_id: str | None, as_json: bool) -> None:
    """Show a run (default: the newest) from the ledger alone.

    The same tables as 'patchkit report run'; --json prints the ledger's record of the run.
    """
    ledger = _ledger(ctx)
    if as_json:
        record = ledger.run_record(run_id)
        if record is None:
            raise PlanningError(
                f"no run {run_id}" if run_id else "no run recorded yet",
                hint="patchkit run PLAN_ID",
            )
        click.echo(json.dumps(record, default=str, indent=2))
    else:
        console.print(run_report.to_text(report_of(ledger, run_id)))
