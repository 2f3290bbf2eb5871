"""``patchkit rollback`` and ``release``: snapshots after a run, from the ledger."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import click
from rich.table import Table
from rich.text import Text

from patchkit import policy as policy_lib
from patchkit.cli.consoles import console, err_console
from patchkit.cli.observer import PrintObserver
from patchkit.cli.planning import (
    inventory_option,
    load_inventory,
    optional_policy,
    required_policy,
)
from patchkit.cli.window import run_record, stored_plan
from patchkit.errors import ExitCode, PlanningError
from patchkit.execution import locks, window
from patchkit.execution import rollback as rb
from patchkit.ledger import Ledger
from patchkit.notify import Notifier


def lock_options(command: Callable[..., None]) -> Callable[..., None]:
    """``--wait`` and ``--take-over``: what to do about hosts another controller holds."""
    for option in reversed(
        [
            click.option(
                "--wait",
                is_flag=True,
                help="When another controller holds one of the hosts, wait until it lets go "
                f"(looking every {locks.WAIT_EVERY:.0f} s; Ctrl-C gives up) instead of refusing.",
            ),
            click.option(
                "--take-over",
                is_flag=True,
                help="Take over the hosts' locks from a holder whose controller is dead "
                "(its process is gone, or its heartbeat is older than 2 minutes).",
            ),
        ]
    ):
        command = option(command)
    return command


def take_locks(lease: locks.Lease, *, take_over: bool, wait: bool) -> None:
    """Lock the lease's hosts (exit 3 when held); with ``wait``, show on stderr who holds
    them and the countdown to the next look until they are free."""
    with err_console.status(f"locking {len(lease.hosts)} host(s)…") as status:
        waiting = locks.Wait(
            say=lambda text: err_console.print(Text(text)),
            tick=lambda text: status.update(Text(text)),
        )
        lease.take(take_over=take_over, wait=waiting if wait else None)


@click.command("rollback")
@click.argument("run_id")
@click.option("--batch", type=click.IntRange(min=1), help="Only the hosts of this batch.")
@click.option("--host", "only_hosts", multiple=True, help="Only this host (repeatable).")
@click.option("--dry-run", is_flag=True, help="Show what would be restored; touch nothing.")
@optional_policy
@click.option(
    "-i",
    "--inventory",
    "inventory_path",
    envvar="PATCHKIT_INVENTORY",
    type=click.Path(path_type=Path),
    help="Ansible inventory to reach the hosts (not needed with --dry-run).",
)
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
@lock_options
@click.pass_context
def rollback(
    ctx: click.Context,
    run_id: str,
    batch: int | None,
    only_hosts: tuple[str, ...],
    dry_run: bool,
    policy_path: Path | None,
    inventory_path: Path | None,
    as_json: bool,
    wait: bool,
    take_over: bool,
) -> None:
    """Put the hosts RUN_ID changed back to the snapshots it took, then reboot and verify.

    Which hosts, which snapshot and which package versions come from the ledger alone: every
    host the run changed, or those of --batch / --host. The package backend downgrades exactly
    what the run changed, from the .deb files its snapshot kept on the host, and removes what it
    installed; the lab backend restores the btrfs snapshot. A host already rolled back, or never
    changed, is left alone with the reason. Exit 0 when every selected host is back (or there
    was nothing to do), 1 when one could not be rolled back.

    The hosts to roll back are locked in the ledger first, as a run locks its hosts: held by
    another controller, the rollback is refused (exit 3) unless --wait waits for them.
    """
    ledger = Ledger(ctx.obj.get("ledger") if ctx.obj else None)
    record = run_record(ledger, run_id)
    if batch is not None and batch not in {b["number"] for b in record["batches"]}:
        raise PlanningError(f"run {run_id} has no batch {batch}")
    targets, skipped = rb.from_record(record, batch=batch, hosts=only_hosts)
    strangers = [s.host for s in skipped if s.reason.startswith("not in run")]
    if strangers:
        raise PlanningError(
            f"not in run {run_id}: {', '.join(strangers)}",
            hint=f"patchkit status {run_id} shows the run's hosts",
        )
    if dry_run or not targets:
        _show_plan(run_id, targets, skipped, as_json, dry_run)
        return
    if policy_path is None or inventory_path is None:
        raise click.UsageError("rollback needs --policy and --inventory (or use --dry-run)")
    loaded = policy_lib.load(policy_path)
    hosts = load_inventory(inventory_path)
    known = {h.name for h in hosts}
    missing = [t.host for t in targets if t.host not in known]
    if missing:
        raise PlanningError(
            f"not in inventory {inventory_path}: {', '.join(missing)}",
            hint="use the inventory the run used",
        )
    for skip in skipped:
        err_console.print(f"{skip.host}: left alone: {skip.reason}")

    plan, _ = stored_plan(ledger, record["plan"])  # its checks and phase settings
    notifier = Notifier(loaded.notifications.webhooks, clock=lambda: datetime.now(UTC))
    held = [t.host for t in targets]
    with locks.Lease(ledger, held, locks.Purpose.ROLLBACK, run_id=run_id) as lease:
        take_locks(lease, take_over=take_over, wait=wait)
        with err_console.status(f"rolling back {len(targets)} host(s) of {run_id}…"):
            try:
                results = window.roll_back_run(
                    plan,
                    targets,
                    inventory_path,
                    ledger,
                    run_id,
                    clock=lambda: datetime.now(UTC),
                    who=f"patchkit rollback ({lease.holder})",
                    observer=PrintObserver(notifier.send),
                )
            finally:
                notifier.close()
    rows = [
        {"host": r.host, "batch": r.batch, "status": r.status, "message": r.message}
        for r in results
    ]
    if as_json:
        out = {"run": run_id, "results": rows, "skipped": [s.__dict__ for s in skipped]}
        click.echo(json.dumps(out, indent=2))
    else:
        table = Table(title=f"rollback of {run_id}")
        for column in ("host", "batch", "status", "message"):
            table.add_column(column, overflow="fold")
        for row in rows:
            table.add_row(*(str(row[k]) for k in ("host", "batch", "status", "message")))
        console.print(table)
    if any(r.status != "rolled-back" for r in results):
        sys.exit(ExitCode.FAILURES)


def _show_plan(
    run_id: str, targets: list[rb.Target], skipped: list[rb.Skipped], as_json: bool, dry: bool
) -> None:
    if as_json:
        out: dict[str, Any] = {
            "run": run_id,
            "dry_run": dry,
            "targets": [{"host": t.host, "batch": t.batch} | t.extravars() for t in targets],
            "skipped": [{"host": s.host, "reason": s.reason} for s in skipped],
        }
        click.echo(json.dumps(out, indent=2))
        return
    if targets:
        table = Table(
            title=f"rollback of {run_id}" + (" (dry run: nothing touched)" if dry else "")
        )
        for column in ("host", "batch", "backend", "snapshot", "would restore"):
            table.add_column(column, overflow="fold")
        for t in targets:
            undo = ", ".join(c.undo() for c in t.changes)
            table.add_row(t.host, str(t.batch), t.backend, t.snapshot_id, undo)
        console.print(table)
    for skip in skipped:
        err_console.print(f"{skip.host}: left alone: {skip.reason}")
    if not targets:
        err_console.print(f"nothing to roll back in {run_id}")


@click.command("release")
@required_policy
@inventory_option
@click.option("--dry-run", is_flag=True, help="List what would be released; touch nothing.")
@click.option("--json", "as_json", is_flag=True, help="Print the snapshots as JSON.")
@lock_options
@click.pass_context
def release(
    ctx: click.Context,
    policy_path: Path,
    inventory_path: Path,
    dry_run: bool,
    as_json: bool,
    wait: bool,
    take_over: bool,
) -> None:
    """Delete the snapshots no longer needed, per the policy's snapshot retention.

    A snapshot goes once its run has ended, the host verified without a rollback outstanding
    (or was rolled back), and preparation.snapshot.retention has passed since it was taken.
    `run` does this at its end too; run this from cron for the rest. The hosts with snapshots
    to release are locked first (exit 3 when another controller holds one, unless --wait).
    """
    ledger = Ledger(ctx.obj.get("ledger") if ctx.obj else None)
    loaded = policy_lib.load(policy_path)
    hosts = load_inventory(inventory_path)
    due = window.release_snapshots(
        ledger, loaded, hosts, inventory_path, clock=lambda: datetime.now(UTC), dry_run=True
    )
    done = due
    if due and not dry_run:
        names = {snap["host"] for snap in due}
        with locks.Lease(ledger, names, locks.Purpose.RELEASE) as lease:
            take_locks(lease, take_over=take_over, wait=wait)
            # only the hosts locked: a snapshot due meanwhile on another host waits its turn
            mine = [h for h in hosts if h.name in names]
            with err_console.status("releasing snapshots…"):
                done = window.release_snapshots(
                    ledger, loaded, mine, inventory_path, clock=lambda: datetime.now(UTC)
                )
    if as_json:
        click.echo(json.dumps({"dry_run": dry_run, "snapshots": done}, default=str, indent=2))
        return
    verb = "would release" if dry_run else "released"
    for snap in done:
        console.print(f"{verb} {snap['backend']} snapshot {snap['id']} of {snap['host']}")
    if not done:
        err_console.print("no snapshot is due for release")
