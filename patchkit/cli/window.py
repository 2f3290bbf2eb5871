"""``patchkit approve``, ``run`` and ``status``: from an approved plan to a recorded window."""

from __future__ import annotations

import json
import signal
import sys
import threading
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import click
from rich.live import Live

from patchkit import policy as policy_lib
from patchkit.cli.consoles import console, err_console
from patchkit.cli.planning import inventory_option, load_inventory, required_policy
from patchkit.cli.report import report_of
from patchkit.errors import ExitCode, PlanningError, RefusedError
from patchkit.execution import window
from patchkit.execution.runner import TaskResult, ansible_env
from patchkit.ledger import Ledger
from patchkit.notify import Notifier
from patchkit.planning.plan import input_hashes
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


def _not_blank(_ctx: click.Context, _param: click.Parameter, value: str) -> str:
    """``--by``: an approval must say who gave it."""
    if not value.strip():
        raise click.BadParameter("give a name, not a blank")  # click names the option
    return value


def _plan(ledger: Ledger, plan_id: str) -> dict[str, Any]:
    body = ledger.plan(plan_id)
    if body is None:
        raise PlanningError(f"no plan {plan_id} in {ledger.url}", hint="patchkit plan saves one")
    return body


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
@click.pass_context
def approve(ctx: click.Context, plan_id: str, by: str, comment: str, reboots: bool) -> None:
    """Record approval of PLAN_ID (who, when, and the plan hash approved).

    When the plan reboots hosts whose downtime the policy wants approved
    (downtime.reboot_approval), `run` also needs an approval given with --reboots.
    """
    ledger = _ledger(ctx)
    body = _plan(ledger, plan_id)
    approvers = body["settings"]["approvers"]
    if approvers and by not in approvers:
        raise RefusedError(
            f"{by} may not approve plans of policy {body['policy']}",
            hint=f"approvers: {', '.join(approvers)}",
        )
    ledger.approve(
        plan_id, body["hash"], by=by, at=datetime.now(UTC), comment=comment, reboots=reboots
    )
    downtime = window.reboots_needing_approval(body)
    with_reboots = f", with the reboots of {', '.join(downtime)}" if reboots and downtime else ""
    err_console.print(f"plan {plan_id} approved by {by} (hash {body['hash'][:16]}…){with_reboots}")
    if downtime and not reboots:
        err_console.print(
            f"note: the reboots of {', '.join(downtime)} need approval too; 'run' refuses the "
            "plan until someone approves it with --reboots"
        )


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
) -> None:
    """Run the approved plan PLAN_ID batch by batch and record every outcome.

    Refuses (exit 3) an unapproved plan, one whose policy or inventory changed since it was
    made, and hosts another run holds. Exits 0 when every host was patched, 1 when hosts
    failed, were left unpatched or the window halted.
    """
    ledger = _ledger(ctx)
    body = _plan(ledger, plan_id)
    _drive(ledger, body, policy_path, inventory_path, as_json, mitogen, take_over, None)


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
    body = _plan(ledger, record["plan"])
    _drive(ledger, body, policy_path, inventory_path, as_json, mitogen, take_over, record)


def _drive(
    ledger: Ledger,
    body: dict[str, Any],
    policy_path: Path,
    inventory_path: Path,
    as_json: bool,
    mitogen: bool,
    take_over: bool,
    record: dict[str, Any] | None,
) -> None:
    """Check, then run (or resume) the plan with the live view; exit 1 unless it completed."""
    loaded = policy_lib.load(policy_path)
    hosts = load_inventory(inventory_path)
    window.check_may_run(ledger, body, loaded, input_hashes(loaded, hosts, {}))
    if mitogen:
        ansible_env(mitogen=True)  # not installed: say so before anything starts

    progress = RunProgress(body, lambda: datetime.now(UTC))
    stop = threading.Event()

    live = Live(progress.render(), console=err_console, refresh_per_second=4, transient=True)

    def on_task(task: TaskResult) -> None:
        progress.task(task.host, task.task, task.status)
        live.update(progress.render())
        if as_json:
            line = {"event": "task", "host": task.host, "task": task.task, "status": task.status}
            click.echo(json.dumps(line))

    def on_batch(number: int, state: str) -> None:
        progress.batch_changed(number, state)
        live.update(progress.render())
        if as_json:
            click.echo(json.dumps({"event": "batch", "batch": number, "status": state}))

    def interrupted(_signum: int, _frame: object) -> None:
        # Ctrl-C: let ansible-runner stop the batch, then record what is known.
        stop.set()
        err_console.print("stopping after recording what is known (Ctrl-C again to abort)…")
        signal.signal(signal.SIGINT, signal.default_int_handler)

    notifier = Notifier(loaded.notifications.webhooks, clock=lambda: datetime.now(UTC))
    previous = signal.signal(signal.SIGINT, interrupted)
    try:
        with live:
            summary = window.execute(
                body,
                loaded,
                hosts,
                inventory_path,
                ledger,
                clock=lambda: datetime.now(UTC),
                on_task=on_task,
                on_batch=on_batch,
                cancel=stop.is_set,
                mitogen=mitogen,
                resume=record,
                take_over=take_over,
                notify=notifier.send,
            )
    finally:
        signal.signal(signal.SIGINT, previous)
        notifier.close()  # a bounded wait: a receiver that is down never holds the run
    record = ledger.run_record(summary.run_id)
    if as_json:
        click.echo(json.dumps({"event": "end", "run": record}, default=str))
    elif record is not None:
        console.print(run_report.to_text(report_of(ledger, summary.run_id)))
    if summary.status != "completed":
        sys.exit(ExitCode.FAILURES)


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
