"""``patchkit runs`` and ``patchkit report``: what the ledger proves about past windows."""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any, TypeVar

import click

from patchkit import policy as policy_lib
from patchkit.advisories.files import bulk
from patchkit.advisories.matching import host_releases
from patchkit.cli.consoles import console, emit_pieces, err_console, output_option, write_output
from patchkit.cli.planning import inventory_option, load_inventory, parse_time, required_policy
from patchkit.errors import PlanningError
from patchkit.ledger import Ledger
from patchkit.model import Host
from patchkit.policy.model import Policy
from patchkit.reports import compliance, run_report
from patchkit.reports.terminal import Fit, FittedTable, plain_text, shown

FC = TypeVar("FC", bound=Callable[..., Any] | click.Command)

RUN_FORMATS: dict[str, Callable[[run_report.RunReport], str]] = {
    "json": run_report.to_json,
    "csv": run_report.to_csv,
    "markdown": run_report.to_markdown,
    "html": run_report.to_html,
}


def _ledger(ctx: click.Context) -> Ledger:
    return Ledger(ctx.obj.get("ledger") if ctx.obj else None)


def report_of(ledger: Ledger, run_id: str | None) -> run_report.RunReport:
    """The run report of ``run_id`` (default: the newest run) from the ledger alone."""
    record = ledger.run_record(run_id)
    if record is None:
        raise PlanningError(
            f"no run {run_id} in {ledger.url}" if run_id else f"no run recorded in {ledger.url}",
            hint="'patchkit runs' lists the runs there are",
        )
    body = ledger.plan(record["plan"]) or {}
    return run_report.build(record, body, ledger.approvals(record["plan"]))


def compliance_of(
    ledger: Ledger, policy: Policy, hosts: Sequence[Host], at: datetime
) -> compliance.ComplianceReport:
    """The compliance report of ``hosts`` from what the ledger knows (policy runs only)."""
    found = ledger.latest_findings([h.name for h in hosts])
    return compliance.build(
        policy,
        hosts,
        found,
        ledger.installed_updates(),
        ledger.runs(policy=policy.name),
        at,
        ledger.advisories(host_releases(found.values())),
    )


RUN_STATUSES = (
    "completed", "incomplete", "failed", "halted", "stopped-at-cutoff", "interrupted", "running",
)  # fmt: skip
MAX_LIMIT = 100_000  # far more runs than a screen holds, and well inside a database integer


@click.command()
@click.option(
    "--status",
    "statuses",
    multiple=True,
    type=click.Choice(RUN_STATUSES),
    help="Only runs that ended so (repeat for several).",
)
@click.option("--policy", "policy_name", help="Only runs of plans of this policy (its name).")
@click.option("--since", help="Only runs started at or after this ISO 8601 time.")
@click.option(
    "--limit",
    type=click.IntRange(min=1, max=MAX_LIMIT),
    default=50,
    show_default=True,
    help="At most this many runs.",
)
@click.option("--json", "as_json", is_flag=True, help="Print as JSON.")
@click.pass_context
def runs(
    ctx: click.Context,
    statuses: tuple[str, ...],
    policy_name: str | None,
    since: str | None,
    limit: int,
    as_json: bool,
) -> None:
    """List the recorded runs, newest first, with their outcome."""
    found = _ledger(ctx).runs(
        statuses=statuses,
        policy=policy_name,
        since=parse_time(since, "--since") if since else None,
        limit=limit,
    )
    if as_json:
        click.echo(json.dumps(found, default=str, indent=2))
        return
    if not found:
        err_console.print("no runs match")
        return
    table = FittedTable(f"{len(found)} run(s), newest first")
    for column in ("run", "policy", "window"):
        table.add_column(column, Fit.WHOLE)
    table.add_column("started", Fit.WORDS)  # "2026-11-20 12:00" may break at its space
    for column in ("minutes", "status", "hosts", "failed"):
        table.add_column(column, Fit.WHOLE)
    table.add_column("ran from", Fit.WORDS)
    table.add_column("why", Fit.FREE)
    for r in found:
        minutes = f"{(r['ended'] - r['started']).total_seconds() / 60:.1f}" if r["ended"] else "-"
        table.add_row(
            shown(r["id"]), shown(r["policy"]), shown(r["window"]),
            f"{r['started']:%Y-%m-%d %H:%M}", minutes, r["status"], str(r["hosts"]),
            str(r["failed"]), shown(_ran_from(r)), shown(r["reason"][:100]),
        )  # fmt: skip
    console.print(table)


def _ran_from(run: Mapping[str, Any]) -> str:
    """``ctl:12`` or ``ctl:12 via node1 node2``: who ran a run's hosts (its holder if no phase
    says)."""
    controllers = " ".join(run["controllers"]) or run["holder"]
    return controllers + (" via " + " ".join(run["nodes"]) if run["nodes"] else "")


COMPLIANCE_FORMATS: dict[str, Callable[[compliance.ComplianceReport], str]] = {
    "json": compliance.to_json,
    "csv": compliance.to_csv,
    "markdown": compliance.to_markdown,
    "html": compliance.to_html,
}


def _format_option(formats: dict[str, Any], what: str) -> Callable[[FC], FC]:
    return click.option(
        "--format",
        "fmt",
        type=click.Choice(["text", *formats]),
        default="text",
        show_default=True,
        help=f"text for the terminal; json ({what}), csv, markdown (for a change ticket), html "
        "(one self-contained page with charts, nothing fetched).",
    )


def _emit(text: str, output: Path | None) -> None:
    if output is None:
        click.echo(text, nl=False)
    else:
        write_output(output, text)
        err_console.print(f"wrote {output}")


@click.group()
def report() -> None:
    """Reports from the ledger: a run planned against what happened; compliance."""


@report.command("run")
@click.argument("run_id", required=False)
@_format_option(RUN_FORMATS, "docs/run-report-format.md")
@output_option("the report")
@click.pass_context
def run_command(ctx: click.Context, run_id: str | None, fmt: str, output: Path | None) -> None:
    """What RUN_ID (default: the newest run) planned against what happened.

    Per batch and host: phases with durations, package versions before and after, reboots,
    verification, the message of every failure, rollbacks, and what was left for the next
    window and why (halted, cutoff, held back, out of the plan).
    """
    made = report_of(_ledger(ctx), run_id)
    if fmt == "text" and output is None:
        console.print(run_report.to_text(made))
        return
    _emit(
        RUN_FORMATS[fmt](made)
        if fmt != "text"
        else plain_text(run_report.to_text(made), width=160),
        output,
    )


@report.command("compliance")
@required_policy
@inventory_option
@click.option("--at", "at_text", help="Judge compliance at this ISO 8601 time (default: now).")
@_format_option(COMPLIANCE_FORMATS, "docs/compliance-report-format.md")
@output_option("the report")
@click.pass_context
def compliance_command(
    ctx: click.Context,
    policy_path: Path,
    inventory_path: Path,
    at_text: str | None,
    fmt: str,
    output: Path | None,
) -> None:
    """Every in-scope host's outstanding updates against the policy's deadlines.

    Per host and update: severity, how long it has been known (from assessments), its deadline
    and whether it is compliant, due soon or overdue; exceptions with owner and expiry (expired
    ones flagged); totals per environment, tier and group; mean time to patch per severity; and
    how many windows completed, per month. Run 'patchkit assess' first for current findings.
    """
    at = parse_time(at_text)
    loaded = policy_lib.load(policy_path)
    # a fleet's hosts, findings and rows are millions of small objects in no cycle: the
    # collector would walk them again and again as they are made
    with bulk():
        hosts = load_inventory(inventory_path)  # outside the spinner: see cli/planning.py scope
        with err_console.status("reading the ledger…"):
            made = compliance_of(_ledger(ctx), loaded, hosts, at)
        if fmt == "text" and output is None:
            console.print(compliance.to_text(made))
        elif fmt == "json":  # written as it is made: for 50,000 hosts it is gigabytes
            emit_pieces(compliance.json_pieces(made), output)
            if output is not None:
                err_console.print(f"wrote {output}")
        else:
            _emit(
                COMPLIANCE_FORMATS[fmt](made)
                if fmt != "text"
                else plain_text(compliance.to_text(made), width=160),
                output,
            )
