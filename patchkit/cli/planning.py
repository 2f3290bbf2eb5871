"""``patchkit scope``, ``assess`` and ``plan``: everything up to, not including, touching a host."""

from __future__ import annotations

import getpass
import json
import logging
import sys
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

import click

from patchkit import alerts
from patchkit import findings as findings_file
from patchkit import policy as policy_lib
from patchkit.advisories.matching import host_releases
from patchkit.cli.consoles import console, emit_pieces, err_console, output_option, write_output
from patchkit.errors import ExitCode, PlanningError, PolicyError
from patchkit.ledger import Ledger
from patchkit.model import Finding
from patchkit.notify import Notifier
from patchkit.planning import plan as planning
from patchkit.planning import scope as scoping
from patchkit.planning.patterns import PatternError
from patchkit.planning.priority import criticality_of
from patchkit.planning.types import Plan
from patchkit.planning.windows import EARLIEST, LATEST
from patchkit.policy.model import Policy
from patchkit.reports import plan as plan_report
from patchkit.reports import scope as scope_report

log = logging.getLogger(__name__)
FC = TypeVar("FC", bound=Callable[..., Any] | click.Command)

inventory_option = click.option(
    "-i",
    "--inventory",
    "inventory_path",
    envvar="PATCHKIT_INVENTORY",
    required=True,
    type=click.Path(path_type=Path),
    help="Ansible inventory (file, directory, script or plugin config). Env: PATCHKIT_INVENTORY.",
)


def _policy_option(required: bool) -> Callable[[FC], FC]:
    return click.option(
        "-p",
        "--policy",
        "policy_path",
        envvar="PATCHKIT_POLICY",
        required=required,
        type=click.Path(path_type=Path),
        help="Patch policy YAML file. Env: PATCHKIT_POLICY.",
    )


required_policy = _policy_option(required=True)
optional_policy = _policy_option(required=False)


def parse_time(text: str | None, option: str = "--at") -> datetime:
    """An ISO 8601 time option; one without an offset is in this machine's local zone.

    Times outside the planner's range (patchkit.planning.windows) are refused here, naming
    ``option``: nothing patchkit records or plans lies there, and the date arithmetic on them
    would leave the calendar.
    """
    if text is None:
        return datetime.now(UTC)
    try:
        value = datetime.fromisoformat(text)
    except ValueError:
        raise click.BadParameter(
            f"{text!r} is not an ISO 8601 time, e.g. 2026-11-28T21:00+01:00",
            param_hint=f"'{option}'",
        ) from None
    try:
        value = value if value.tzinfo else value.astimezone()
        in_range = EARLIEST <= value < LATEST
    except (OverflowError, ValueError):  # a local time at the very edge of the calendar
        in_range = False
    if not in_range:
        raise click.BadParameter(
            f"{text} is out of range: give a time from {EARLIEST:%Y-%m-%d} to before "
            f"{LATEST:%Y-%m-%d}",
            param_hint=f"'{option}'",
        )
    return value


def _ledger(ctx: click.Context) -> Ledger:
    url: str | None = ctx.obj.get("ledger") if ctx.obj else None
    return Ledger(url)


# ---------------------------------------------------------------- scope


@click.command()
@inventory_option
@optional_policy
@click.option("--at", "at_text", help="Judge exception expiry at this time (default: now).")
@click.option("--json", "as_json", is_flag=True, help="Print as JSON.")
def scope(
    inventory_path: Path, policy_path: Path | None, at_text: str | None, as_json: bool
) -> None:
    """List the hosts a policy governs, and for every host left out, why.

    Without a policy every host of the inventory is in scope.
    """
    at = parse_time(at_text)
    loaded = policy_lib.load(policy_path) if policy_path else None
    # no spinner around the read: its refresh thread may hold the terminal's lock when the
    # inventory reader forks (patchkit.inventory), and the child would wait on it for ever
    hosts = load_inventory(inventory_path)
    match = scoping.matcher(hosts)
    entries = scoping.resolve(hosts, loaded, at.date(), match)
    rows = [_scope_row(e, loaded, match) for e in entries]
    if as_json:
        click.echo(json.dumps(rows, indent=2, sort_keys=True, default=str))
        return
    console.print(scope_report.scope_tables(rows, policy=loaded.name if loaded else None))


def _scope_row(entry: scoping.ScopeEntry, loaded: Policy | None, match: Any) -> dict[str, Any]:
    host = entry.host
    tier_var = loaded.criticality.variable if loaded else "tier"
    cluster_var = (
        loaded.rollout.anti_affinity.variable
        if loaded and loaded.rollout.anti_affinity
        else "cluster"
    )
    env_var = loaded.promotion.variable if loaded and loaded.promotion else "env"
    row: dict[str, Any] = {
        "host": host.name,
        "in_scope": entry.in_scope,
        "reason": entry.reason,
        "kind": entry.kind.value if entry.kind else None,
        "env": host.var(env_var),
        "tier": host.var(tier_var),
        "cluster": host.var(cluster_var),
        "groups": list(host.groups),
    }
    if loaded is not None:
        weight, label = criticality_of(host, loaded, match)
        row["criticality"] = weight
        row["criticality_label"] = label
    return row


# ---------------------------------------------------------------- assess


@click.command()
@required_policy
@inventory_option
@click.option("--limit", help="Only these hosts (an Ansible pattern), within the policy's scope.")
@click.option(
    "--export",
    "export_path",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Also write the findings to this JSON file (docs/findings-format.md).",
)
@click.option("--json", "as_json", is_flag=True, help="Print the findings as JSON.")
@click.option(
    "--wait",
    is_flag=True,
    help="When another controller holds one of the hosts, wait until it lets go (looking "
    "every few seconds; Ctrl-C gives up) instead of refusing.",
)
@click.option(
    "--take-over",
    is_flag=True,
    help="Take over the hosts' locks from a holder whose controller is dead (its process is "
    "gone, or its heartbeat is older than 2 minutes).",
)
@click.option(
    "--no-alerts",
    is_flag=True,
    help="Do not send the new-updates event (e.g. when assessing again during a window).",
)
@click.pass_context
def assess(
    ctx: click.Context,
    policy_path: Path,
    inventory_path: Path,
    limit: str | None,
    export_path: Path | None,
    as_json: bool,
    wait: bool,
    take_over: bool,
    no_alerts: bool,
) -> None:
    """Ask the in-scope hosts which updates are pending (check mode: nothing is changed).

    Results go to the ledger for 'patchkit plan'. Exits 1 when a host could not be assessed.
    The hosts are locked in the ledger while they are asked, as a run locks its hosts: held
    by another controller, the assessment is refused (exit 3) unless --wait waits for them.

    Updates a host did not have pending at its last assessment that reached it are sent to
    the policy's webhooks as one new-updates event, with the CVEs they fix (known exploited
    first); a host assessed for the first time is the baseline and sends nothing. A receiver
    that is down costs a warning, never the exit status. --no-alerts sends nothing.
    """
    # here, not at the top: patchkit.cli.rollback imports this module
    from patchkit.cli.rollback import take_locks
    from patchkit.execution import locks
    from patchkit.execution.placed import Placement

    loaded = policy_lib.load(policy_path)
    at = datetime.now(UTC)
    hosts = load_inventory(inventory_path)
    match = scoping.matcher(hosts)
    names = [e.host.name for e in scoping.resolve(hosts, loaded, at.date(), match) if e.in_scope]
    if limit:
        try:
            wanted = match([limit])
        except PatternError as exc:
            raise click.BadParameter(str(exc), param_hint="'--limit'") from None
        names = [n for n in names if n in wanted]
    if not names:
        raise PlanningError(
            "no in-scope host to assess", hint="check the policy's scope and --limit"
        )
    ledger = _ledger(ctx)
    done = 0

    def progress(finding: Finding) -> None:
        nonlocal done
        done += 1
        log.debug("assessed %s", finding.host)
        status.update(f"assessing {len(names)} host(s) in check mode… {done} done")

    with locks.Lease(ledger, names, locks.Purpose.ASSESS) as lease:
        take_locks(lease, take_over=take_over, wait=wait)
        # what each host had pending when last reached: read before this assessment is recorded
        before = {} if no_alerts else ledger.latest_reachable_findings(names)
        at = datetime.now(UTC)  # after any wait for the locks
        with err_console.status(f"assessing {len(names)} host(s) in check mode…") as status:
            found = _assess(
                inventory_path,
                limit=",".join(names),
                at=at,
                on_host=progress,
                host_key_checking=loaded.connection.host_key_checking,
                pass_env=loaded.connection.environment,
                placement=Placement.of_policy(loaded, hosts, inventory_path, at.isoformat()),
            )
    stored = ledger.record_assessment(found, source=str(inventory_path), started=at)
    if export_path is not None:
        write_output(export_path, findings_file.dumps(stored), option="'--export'")
        err_console.print(f"findings written to {export_path}")
    if as_json:
        click.echo(findings_file.dumps(stored))
    else:
        console.print(scope_report.findings_table(stored, at))
    if not no_alerts:
        _alert_new_updates(ledger, loaded, before, stored)
    if not all(f.reachable for f in stored):
        sys.exit(ExitCode.FAILURES)


def _alert_new_updates(
    ledger: Ledger, loaded: Policy, before: Mapping[str, Finding], stored: Sequence[Finding]
) -> None:
    """Send ``new-updates`` for what ``stored`` has pending that ``before`` did not (see
    patchkit.alerts), and say on stderr what was sent.

    As in a run, delivery never decides the outcome: a receiver that is down or refuses is
    retried, then logged as a warning (Notifier.close), and the exit status stays the
    assessment's.
    """
    compared = alerts.compare(before, stored)
    first = (
        f"{len(compared.baseline)} host(s) assessed for the first time: their pending updates "
        "are the baseline, not new"
        if compared.baseline
        else ""
    )
    if not compared.anything_new:
        if first:
            err_console.print(f"{first}; no {alerts.EVENT} event")
        return
    # the advisories of the releases the hosts with news run, nothing more
    knowledge = ledger.advisories(host_releases(n.finding for n in compared.news))
    found = alerts.new_updates(compared, knowledge)
    said = alerts.summary(found) + (f" ({first})" if first else "")
    hooks = [h for h in loaded.notifications.webhooks if alerts.EVENT in h.events]
    if not hooks:
        err_console.print(f"{said}; no webhook of the policy takes {alerts.EVENT}")
        return
    notifier = Notifier(hooks, clock=lambda: datetime.now(UTC))
    notifier.send(alerts.EVENT, alerts.event_data(found, loaded.name))
    missed = notifier.close()  # a bounded wait; each delivery missed is logged as a warning
    sent = len(notifier.deliveries) - len(missed)
    err_console.print(f"{alerts.EVENT} sent to {sent} of {len(hooks)} webhook(s): {said}")


# ---------------------------------------------------------------- plan

FORMATS = ("text", "json", "markdown", "html")


@click.command()
@required_policy
@inventory_option
@click.option("--window", help="Plan for this window (default: the next window with work).")
@click.option("--at", "at_text", help="Plan as if it were this time (ISO 8601; default: now).")
@click.option(
    "--findings",
    "findings_path",
    type=click.Path(path_type=Path),
    help="Use this findings file instead of the ledger's latest assessments.",
)
@click.option("--format", "fmt", type=click.Choice(FORMATS), default="text", show_default=True)
@click.option("--detail/--no-detail", default=True, help="List every update per host (text).")
@output_option("the preview")
@click.option("--no-save", is_flag=True, help="Do not store the plan in the ledger.")
@click.option(
    "--by",
    "made_by",
    default=getpass.getuser,
    show_default="the OS user",
    help="Who makes the plan (kept with it: under separation of duties they may not approve it).",
)
@click.pass_context
def plan(
    ctx: click.Context,
    policy_path: Path,
    inventory_path: Path,
    window: str | None,
    at_text: str | None,
    findings_path: Path | None,
    fmt: str,
    detail: bool,
    output: Path | None,
    no_save: bool,
    made_by: str,
) -> None:
    """The dry-run preview: batches for the next window, for change approval.

    Nothing on any host changes. The plan is saved in the ledger under its id, so that it can
    be approved and run later. The id comes from what the plan decides, not from when it was
    made: planning again from the same inputs gives the same plan.
    """
    loaded = policy_lib.load(policy_path)
    signers = allowed_signers(loaded, policy_path)
    at = parse_time(at_text)
    hosts = load_inventory(inventory_path)
    ledger = None if (no_save and findings_path) else _ledger(ctx)
    if findings_path is not None:
        found = {f.host: f for f in findings_file.load(findings_path)}
    elif ledger is not None:
        found = ledger.latest_findings({h.name for h in hosts})
    # past runs: what is promoted where, and how long hosts really take
    history = ledger.history({h.name for h in hosts}) if ledger is not None else None
    # the imported advisories, only the fixes for the releases these hosts run
    knowledge = ledger.advisories(host_releases(found.values())) if ledger is not None else None
    made = planning.make_plan(loaded, hosts, found, at, window, history, signers, knowledge)
    save = ledger is not None and not no_save
    # encoded once for both: the body of a big fleet's plan is hundreds of megabytes of JSON
    body = planning.plan_body(made) if save or fmt == "json" else None
    if ledger is not None and body is not None and save:
        ledger.save_plan(body, saved_at=datetime.now(UTC), made_by=made_by)
    if fmt == "text" and output is None:
        console.print(plan_report.plan_text(made, detail=detail))
        return
    if body is not None and fmt == "json":  # written as it is made, never whole in memory
        # ended by a newline on stdout, as click.echo ends the other formats
        emit_pieces(plan_report.body_json_pieces(body), output, end="\n")
        if output is not None:
            err_console.print(f"plan {made.id} written to {output}")
        return
    renderers: dict[str, Callable[[Plan], str]] = {
        "markdown": plan_report.plan_markdown,
        "html": plan_report.plan_html,
        "text": lambda p: plan_report.plan_plain_text(p, detail=detail),
    }
    rendered = renderers[fmt](made)
    if output is None:
        click.echo(rendered)
    else:
        write_output(output, rendered)
        err_console.print(f"plan {made.id} written to {output}")


def allowed_signers(loaded: Policy, policy_path: Path) -> str:
    """The content of the policy's allowed_signers file ("" when approvals are not signed).

    A relative path is relative to the policy file. The plan carries the content, so the
    signers checked at run time are the ones the plan was made with.
    """
    if loaded.roles.signatures is None:
        return ""
    path = policy_path.parent / loaded.roles.signatures.allowed_signers
    try:
        return path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise PolicyError(
            [
                f"{policy_path}: roles.signatures.allowed_signers: cannot read {path}: "
                f"{getattr(exc, 'strerror', None) or exc}"
            ],
            hint="name an OpenSSH allowed_signers file (one 'NAME KEYTYPE KEY' line per approver)",
        ) from None


def load_inventory(path: Path) -> Any:
    # ansible-core is imported only by the commands that read inventories: importing it sets up
    # its directories, which must not break 'patchkit --help' or the lab's own checks.
    from patchkit import inventory, inventory_cache

    settings = click.get_current_context().find_root().obj or {}
    timeout = settings.get("inventory_timeout") or inventory.TIMEOUT
    chosen = settings.get("inventory_cache")
    cache = (
        None if chosen == "off" else Path(chosen) if chosen else inventory_cache.default_directory()
    )
    return inventory.load(path, timeout=timeout, cache=cache)


def _assess(inventory_path: Path, **kwargs: Any) -> Any:
    from patchkit import assess as assessing

    return assessing.assess(inventory_path, **kwargs)
