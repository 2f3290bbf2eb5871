"""``patchkit audit``: which governed hosts a CVE (or every known-exploited CVE) affects."""

from __future__ import annotations

import sys
from collections.abc import Callable
from datetime import datetime
from pathlib import Path

import click

from patchkit import policy as policy_lib
from patchkit.advisories.files import bulk
from patchkit.advisories.fleet import FleetMatcher
from patchkit.advisories.matching import host_releases, updates_reaching
from patchkit.advisories.types import CVE_ID
from patchkit.cli.consoles import console, err_console, output_option, write_output
from patchkit.cli.planning import inventory_option, load_inventory, parse_time, required_policy
from patchkit.errors import ExitCode, PlanningError
from patchkit.ledger import Ledger
from patchkit.reports import audit as audit_report
from patchkit.reports.terminal import plain_text

FORMATS: dict[str, Callable[[audit_report.AuditReport], str]] = {
    "json": audit_report.to_json,
    "csv": audit_report.to_csv,
    "html": audit_report.to_html,
}


@click.command()
@click.argument("cves", nargs=-1, metavar="[CVE]...")
@click.option("--kev", is_flag=True, help="Audit every KEV entry that affects a governed host.")
@required_policy
@inventory_option
@click.option("--at", "at_text", help="Audit as of this ISO 8601 time (default: now).")
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["text", *FORMATS]),
    default="text",
    show_default=True,
    help="text for the terminal; json (docs/advisories.md), csv (one row per CVE and host), "
    "html (one self-contained page).",
)
@output_option("the audit")
@click.pass_context
def audit(
    ctx: click.Context,
    cves: tuple[str, ...],
    kev: bool,
    policy_path: Path,
    inventory_path: Path,
    at_text: str | None,
    fmt: str,
    output: Path | None,
) -> None:
    """The state of every host the policy governs for each CVE given (or --kev).

    Per host: affected with the fix pending (and the window that installs it), affected with
    no fix in its repositories, affected with no fix released yet, not affected, or unknown
    (never assessed, unreachable, assessed more than 7 days ago, or without a software
    inventory). Built from the ledger's newest assessments and imported advisories: run
    'patchkit assess' and 'patchkit advisories import' first.

    Exit codes: 0 no governed host is affected or unknown; 1 some host is affected or its
    state unknown; 2 bad input (a malformed CVE id, no advisories imported, neither CVEs nor
    --kev given).
    """
    wanted = [c.strip().upper() for c in cves]
    bad = [c for c in wanted if not CVE_ID.match(c)]
    if bad:
        raise click.BadParameter(
            f"not a CVE id: {', '.join(bad)} (CVE-YYYY-NNNN)", param_hint="'CVE'"
        )
    if not wanted and not kev:
        raise click.UsageError("name one or more CVEs, or --kev")
    at = parse_time(at_text)
    loaded = policy_lib.load(policy_path)
    # a fleet's hosts, findings and audit rows are millions of small objects in no cycle: the
    # collector would walk them again and again as they are made (a third of the time)
    with bulk():
        made, unknown = _audit(ctx, loaded, inventory_path, at, wanted, kev)
        _show(made, fmt, output)
    if made.affected or made.unknown or unknown:
        sys.exit(ExitCode.FAILURES)


def _show(made: audit_report.AuditReport, fmt: str, output: Path | None) -> None:
    if fmt == "text" and output is None:
        console.print(audit_report.to_text(made))
        return
    text = FORMATS[fmt](made) if fmt != "text" else plain_text(audit_report.to_text(made))
    if output is None:
        click.echo(text, nl=False)
    else:
        write_output(output, text)
        err_console.print(f"wrote {output}")


def _audit(
    ctx: click.Context,
    loaded: policy_lib.Policy,
    inventory_path: Path,
    at: datetime,
    wanted: list[str],
    kev: bool,
) -> tuple[audit_report.AuditReport, dict[str, str]]:
    """The audit of ``wanted`` (and of the KEV CVEs touching the fleet, with ``kev``), and the
    governed hosts whose KEV exposure could not be judged."""
    hosts = load_inventory(inventory_path)
    ledger = Ledger(ctx.obj.get("ledger") if ctx.obj else None)
    governed = audit_report.governed(loaded, hosts, at)
    with err_console.status("reading the ledger…"):
        names = [h.name for h in governed]
        if kev:  # which CVEs are asked about comes from the fixes: they are read whole
            found = ledger.latest_findings(names)
            knowledge = ledger.advisories(host_releases(found.values()))
        else:
            # named CVEs: only what the feeds say of them, and only the pending updates of
            # the packages they are in, are read (a fleet has half a million update rows)
            said = ledger.advisories(None, wanted)
            touched = frozenset(fix.package for feed in said.feeds for fix in feed.fixes)
            found = ledger.latest_findings(
                names, lambda sets: updates_reaching(touched, (s.packages for s in sets))
            )
            knowledge = said.of_releases(host_releases(found.values()))
    if knowledge.empty:
        raise PlanningError(
            f"no advisories imported in {ledger.url}",
            hint="patchkit advisories import FILE (the Debian tracker JSON, OSV, KEV, EPSS)",
        )
    unknown: dict[str, str] = {}
    if kev:
        if knowledge.kev is None:
            raise PlanningError(
                "--kev: no KEV catalog imported",
                hint="patchkit advisories import known_exploited_vulnerabilities.json",
            )
        if not knowledge.feeds:
            raise PlanningError(
                "--kev: the KEV catalog names CVEs, but which hosts they touch needs the Debian "
                "tracker or OSV advisories, and none is imported",
                hint="patchkit advisories import FILE (the tracker JSON or an OSV export)",
            )
        matcher = FleetMatcher(knowledge)
        touching = audit_report.kev_touching(found.values(), knowledge, matcher)
        wanted = [*wanted, *(c for c in touching if c not in wanted)]
        unknown = audit_report.unjudged(governed, found, matcher, at)
        if not touching:
            err_console.print(
                f"no KEV entry ({len(knowledge.kev.entries)} in the catalog) affects a "
                "governed host that could be judged"
            )
        if unknown:
            err_console.print(
                f"{len(unknown)} governed host(s) could not be judged, so their KEV exposure is "
                f"unknown: {', '.join(sorted(unknown)[:10])}" + (", …" if len(unknown) > 10 else "")
            )
    with err_console.status(f"auditing {len(names)} host(s)…"):
        made = audit_report.build(
            loaded, hosts, found, knowledge, wanted, at, ledger.installed_updates(), governed
        )
    return made, unknown
