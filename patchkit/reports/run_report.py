"""The run report: what the plan said against what happened, batch by batch and host by host.

Pure: built from the ledger's record of a run, the plan body it ran and the plan's approvals
(plain data), so that the same ledger gives the same report. Renderers (text, JSON, CSV,
Markdown) are below the model; ``docs/run-report-format.md`` documents the JSON.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Any

from rich.console import Group
from rich.text import Text

from patchkit.model import Approval
from patchkit.reports import charts
from patchkit.reports.plan import md, md_table, template_environment
from patchkit.reports.terminal import Fit, FittedTable, shown, visible

FORMAT = "patchkit-run-report/1"
PHASES = ("precheck", "backup", "snapshot", "patch", "reboot", "verify", "rollback")
BAD = ("failed", "unreachable")
COLOURS = {
    "ok": "green",
    "patched": "green",
    "failed": "red",
    "unreachable": "red",
    "rollback failed": "red",
    "rolled back": "yellow",
    "pending": "yellow",
    "reboot pending": "yellow",
    "held": "yellow",
    "not started": "yellow",
    "skipped": "yellow",
}


@dataclass(frozen=True)
class PhaseOutcome:
    phase: str
    status: str  # ok / failed / unreachable / skipped / pending
    seconds: float | None
    message: str


@dataclass(frozen=True)
class Change:
    package: str
    before: str | None  # None: the run installed it
    after: str | None  # None: the run removed it


@dataclass(frozen=True)
class HostOutcome:
    host: str
    batch: int
    outcome: str  # patched / failed / unreachable / rolled back / rollback failed / skipped / …
    planned: tuple[str, ...]  # "package candidate" the plan selected
    phases: tuple[PhaseOutcome, ...]
    changes: tuple[Change, ...]
    rebooted: bool | None  # None: the reboot phase did not run
    checks: tuple[str, ...]  # verification checks with their result, e.g. "http …: ok"
    message: str  # the message that explains a failure, or the last phase's
    attempts: int = 1  # tries of the patch phase (failure_handling.retries); phases: the last
    controller: str = ""  # the controller (host:pid) that recorded its last phase
    via: str = ""  # the execution node its last phase went through ("": none)

    @property
    def ran(self) -> str:
        """Where it was patched from: ``ctl:123``, ``ctl:123 via ops@node``, or ``-``."""
        if not self.controller and not self.via:
            return "-"
        return (self.controller or "?") + (f" via {self.via}" if self.via else "")


@dataclass(frozen=True)
class BatchOutcome:
    number: int
    status: str
    hosts: tuple[str, ...]
    failed: int
    started: datetime | None
    ended: datetime | None
    seconds: float | None
    reason: str
    estimate: float | None = None  # seconds the plan expected


@dataclass(frozen=True)
class LeftOver:
    """A host (or an update) the window did not patch, and why: for the next window."""

    host: str
    batch: int | None  # None: the plan left it out
    what: str  # "all its updates" or the held packages
    why: str


@dataclass(frozen=True)
class RunReport:
    run: str
    plan: str
    policy: str
    window: str
    window_end: datetime | None
    status: str
    reason: str
    started: datetime
    ended: datetime | None
    seconds: float | None
    approvals: tuple[str, ...]  # "by at (comment)"
    batches: tuple[BatchOutcome, ...]
    hosts: tuple[HostOutcome, ...]
    left: tuple[LeftOver, ...]
    counts: Mapping[str, int]  # outcome -> hosts
    emergency: bool = False  # run outside its window on an emergency approval


def _when(value: Any) -> datetime | None:
    if value is None or isinstance(value, datetime):
        return value
    return datetime.fromisoformat(str(value))


def stamp(when: datetime | None) -> str:
    """A time for people: to the second, with its zone."""
    return "" if when is None else f"{when:%Y-%m-%d %H:%M:%S %Z}".strip()


def _seconds(start: datetime | None, end: datetime | None) -> float | None:
    return round((end - start).total_seconds(), 1) if start and end else None


def host_outcome(phases: Sequence[PhaseOutcome], reboot_pending: bool = False) -> str:
    """One word for what became of a host, from its recorded phases (its last try's)."""
    by = {p.phase: p.status for p in phases}
    if by.get("rollback") == "ok":
        return "rolled back"
    if by.get("rollback") in BAD:
        return "rollback failed"
    # a rollback still "pending" (scope none, or not yet run): the failure below stands
    for p in phases:
        if p.status in BAD:
            return p.status
    if by.get("precheck") == "skipped":
        return "skipped"
    if by.get("precheck") == "not-run":
        return "held"  # the quorum rule kept it from starting
    if by.get("verify") == "ok":
        return "reboot pending" if reboot_pending else "patched"
    return "not started" if not phases else "incomplete"


def _explain(phases: Sequence[PhaseOutcome]) -> str:
    bad = [p for p in phases if p.status in BAD]
    if bad:
        first = bad[0]
        text = f"{first.phase} {first.status}" + (f": {first.message}" if first.message else "")
        rollback = [p for p in phases if p.phase == "rollback"]
        if rollback and rollback[-1] is not first:
            last = rollback[-1]
            said = last.message and last.status != "pending"  # a pending row repeats the failure
            text += f"; rollback {last.status}" + (f": {last.message}" if said else "")
        return text
    return phases[-1].message if phases else ""


def build(
    record: Mapping[str, Any],
    plan: Mapping[str, Any],
    approvals: Sequence[Approval] = (),
) -> RunReport:
    """The run report of ``record`` (``Ledger.run_record``) against ``plan`` (its body)."""
    planned_batch: dict[str, int] = {}
    estimates = {b["number"]: b.get("duration") for b in plan.get("batches", [])}
    planned: dict[str, tuple[str, ...]] = {}
    held: dict[str, list[str]] = {}
    for batch in plan.get("batches", []):
        for h in batch["hosts"]:
            planned_batch[h["host"]] = batch["number"]
            planned[h["host"]] = tuple(f"{u['package']} {u['candidate']}" for u in h["updates"])
            held[h["host"]] = [f"{u['package']} {u['candidate']}: {u['reason']}" for u in h["held"]]

    phases: dict[str, list[PhaseOutcome]] = {}
    data: dict[tuple[str, str], Mapping[str, Any]] = {}
    tries: dict[str, int] = {}
    ran: dict[str, tuple[str, str]] = {}  # host -> its last phase's controller and node
    for p in record["phases"]:
        if p.get("controller") or p.get("via"):
            ran[p["host"]] = (str(p.get("controller") or ""), str(p.get("via") or ""))
        tries[p["host"]] = max(tries.get(p["host"], 1), int(p.get("attempt", 1)))
    for p in record["phases"]:
        if p["phase"] != "rollback" and int(p.get("attempt", 1)) != tries[p["host"]]:
            continue  # an earlier try: counted in attempts, its verdict replaced by the last
        phases.setdefault(p["host"], []).append(
            PhaseOutcome(p["phase"], p["status"], p.get("seconds"), p["message"])
        )
        data[(p["host"], p["phase"])] = p.get("data") or {}
    changes: dict[str, list[Change]] = {}
    for c in record["changes"]:
        changes.setdefault(c["host"], []).append(Change(c["package"], c["before"], c["after"]))

    batches = tuple(
        BatchOutcome(
            number=b["number"],
            status=b["status"],
            hosts=tuple(h for h, n in planned_batch.items() if n == b["number"]),
            failed=b["failed"],
            started=_when(b["started"]),
            ended=_when(b["ended"]),
            seconds=_seconds(_when(b["started"]), _when(b["ended"])),
            reason=b["reason"] or "",
            estimate=estimates.get(b["number"]),
        )
        for b in record["batches"]
    )
    batch_reason = {b.number: (b.status, b.reason) for b in batches}

    hosts: list[HostOutcome] = []
    left: list[LeftOver] = []
    for name in sorted(planned_batch, key=lambda h: (planned_batch[h], h)):
        mine = phases.get(name, [])
        reboot = data.get((name, "reboot"), {})
        outcome = host_outcome(mine, bool(reboot.get("pending")))
        verify = data.get((name, "verify"), {})
        checks = tuple(
            f"{c['name']}: {c['status']} ({c['detail']})" for c in verify.get("checks", [])
        )
        hosts.append(
            HostOutcome(
                host=name,
                batch=planned_batch[name],
                outcome=outcome,
                planned=planned[name],
                phases=tuple(mine),
                changes=tuple(changes.get(name, [])),
                rebooted=reboot.get("rebooted") if reboot else None,
                checks=checks,
                message=_explain(mine),
                attempts=tries.get(name, 1),
                controller=ran.get(name, ("", ""))[0],
                via=ran.get(name, ("", ""))[1],
            )
        )
        if outcome == "reboot pending":
            why = str(reboot.get("message") or "reboot pending")
            left.append(LeftOver(name, planned_batch[name], "its reboot", why))
        elif outcome != "patched":
            status, reason = batch_reason.get(planned_batch[name], ("not-started", ""))
            if outcome == "not started":
                why = f"batch {planned_batch[name]} {status}" + (
                    f": {reason or record['reason']}" if reason or record["reason"] else ""
                )
            else:
                why = f"{outcome}: {_explain(mine)}"
            left.append(LeftOver(name, planned_batch[name], "all its updates", why))
        if held.get(name):
            left.append(LeftOver(name, planned_batch[name], "; ".join(held[name]), "held back"))
    for skipped in plan.get("skipped", []):
        what = "; ".join(f"{u['package']} {u['candidate']}" for u in skipped.get("held", []))
        left.append(
            LeftOver(skipped["host"], None, what or "all its updates", f"{skipped['kind']}: "
                     f"{skipped['reason']}")
        )  # fmt: skip

    counts: dict[str, int] = {}
    for h in hosts:
        counts[h.outcome] = counts.get(h.outcome, 0) + 1
    started = _when(record["started"]) or datetime.fromtimestamp(0)  # a run always has one
    ended = _when(record["ended"])
    window = plan.get("window") or {}
    return RunReport(
        run=record["id"],
        plan=record["plan"],
        policy=str(plan.get("policy", "")),
        window=str(window.get("name", "")),
        window_end=_when(window.get("end")),
        status=record["status"],
        reason=record["reason"] or "",
        started=started,
        ended=ended,
        seconds=_seconds(started, ended),
        approvals=tuple(_approval(a) for a in approvals),
        emergency=bool(record.get("emergency")),
        batches=batches,
        hosts=tuple(hosts),
        left=tuple(left),
        counts=counts,
    )


def _approval(a: Approval) -> str:
    marks = [m for m, on in (("EMERGENCY", a.emergency), ("signed", bool(a.signature)),
                             ("with reboots", a.reboots)) if on]  # fmt: skip
    used = f"; used by {a.consumed_by}" if a.consumed_by else ""
    return (
        f"{a.by} at {stamp(a.at)}"
        + (f" [{', '.join(marks)}]" if marks else "")
        + (f" ({a.comment})" if a.comment else "")
        + used
    )


# ---------------------------------------------------------------- renderers


def _num(seconds: float | None) -> str:
    return "" if seconds is None else f"{seconds:.0f}"


def to_json(report: RunReport) -> str:
    return json.dumps({"format": FORMAT, **asdict(report)}, indent=2, default=str)


def _changes(h: HostOutcome) -> str:
    return ", ".join(
        f"{c.package} {c.before or '(new)'} -> {c.after or '(removed)'}" for c in h.changes
    )


def _phase(h: HostOutcome, phase: str) -> str:
    found = [p for p in h.phases if p.phase == phase]
    if not found:
        return "-"
    p = found[-1]
    return p.status + (f" {p.seconds:.1f}s" if p.seconds is not None else "")


def to_csv(report: RunReport) -> str:
    """One row per planned host (spreadsheets, change tickets)."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(
        [
            "run",
            "batch",
            "host",
            "outcome",
            *PHASES,
            "rebooted",
            "changes",
            "message",
            "left_why",
            "controller",
            "via",
        ]
    )
    why = {x.host: x.why for x in report.left if x.what == "all its updates"}
    for h in report.hosts:
        writer.writerow(
            [
                report.run, h.batch, h.host, h.outcome, *(_phase(h, p) for p in PHASES),
                "" if h.rebooted is None else str(h.rebooted).lower(),
                _changes(h), h.message, why.get(h.host, ""), h.controller, h.via,
            ]
        )  # fmt: skip
    return visible(out.getvalue())  # control characters shown escaped: a CSV gets cat too


def _outcome(h: HostOutcome) -> str:
    return h.outcome + (f" after {h.attempts} tries" if h.attempts > 1 else "")


def _total(report: RunReport) -> str:
    return ", ".join(f"{n} {outcome}" for outcome, n in sorted(report.counts.items()))


def to_markdown(report: RunReport) -> str:
    lines = [
        f"# Patch run {md(report.run)}: {md(report.status)}",
        "",
        f"- plan: {md(report.plan)} (policy {md(report.policy)}, window {md(report.window)})",
        f"- started {report.started:%Y-%m-%d %H:%M:%S %Z}, "
        + (f"ended {report.ended:%Y-%m-%d %H:%M:%S %Z}" if report.ended else "not ended"),
        f"- approved by: {md('; '.join(report.approvals) or 'nobody')}",
        *(["- **EMERGENCY run outside its window**"] if report.emergency else []),
        f"- hosts: {md(_total(report))}",
    ]
    if report.reason:
        lines.append(f"- why: {md(report.reason)}")
    lines += ["", "## Batches", ""]
    lines += md_table(
        ["batch", "status", "hosts", "failed", "estimate s", "actual s", "why"],
        [
            [
                b.number,
                b.status,
                " ".join(b.hosts),
                b.failed,
                _num(b.estimate),
                _num(b.seconds),
                b.reason,
            ]
            for b in report.batches
        ],
    )
    lines += ["", "## Hosts", ""]
    lines += md_table(
        ["host", "batch", "outcome", *PHASES, "packages", "ran from", "message"],
        [
            [
                h.host,
                h.batch,
                _outcome(h),
                *(_phase(h, p) for p in PHASES),
                _changes(h),
                h.ran,
                h.message,
            ]
            for h in report.hosts
        ],
    )
    if report.left:
        lines += ["", "## Left for the next window", ""]
        lines += md_table(
            ["host", "batch", "what", "why"],
            [[x.host, x.batch or "-", x.what, x.why] for x in report.left],
        )
    return "\n".join(lines) + "\n"


def to_text(report: RunReport) -> Group:
    head = Text.assemble(
        (f"{report.run}", "bold"),
        visible(f" (plan {report.plan}, policy {report.policy}): "),
        (report.status, COLOURS.get(report.status, "bold")),
        visible(f": {report.reason}") if report.reason else "",
        f"\nhosts: {_total(report)}",
        visible(f"; approved by {'; '.join(report.approvals)}") if report.approvals else "",
        ("\nEMERGENCY run outside its window", "bold red") if report.emergency else "",
    )
    batches = FittedTable("batches")
    batches.add_column("batch", Fit.WHOLE)
    batches.add_column("status", Fit.WHOLE)
    batches.add_column("hosts", Fit.WORDS)
    for column in ("failed", "estimate s", "actual s"):
        batches.add_column(column, Fit.WHOLE)
    batches.add_column("why", Fit.FREE)
    for b in report.batches:
        batches.add_row(
            str(b.number), b.status, shown(" ".join(b.hosts)), str(b.failed), _num(b.estimate),
            _num(b.seconds), shown(b.reason),
        )  # fmt: skip
    hosts = FittedTable("hosts")
    hosts.add_column("host", Fit.WHOLE)
    hosts.add_column("batch", Fit.WHOLE)
    for column in ("outcome", *PHASES):  # "rolled back", "ok 2.0s"
        hosts.add_column(column, Fit.WORDS)
    hosts.add_column("ran from", Fit.WORDS)
    hosts.add_column("message", Fit.FREE)
    for h in report.hosts:
        cells = []
        for phase in PHASES:
            shown_phase = _phase(h, phase)
            cells.append(Text(shown_phase, style=COLOURS.get(shown_phase.split(" ")[0], "")))
        hosts.add_row(
            shown(h.host), str(h.batch),
            Text(_outcome(h), style=COLOURS.get(h.outcome, "")),
            *cells, shown(h.ran), shown(h.message[:160]),
        )  # fmt: skip
    parts: list[Any] = [head, batches, hosts]
    changed = [h for h in report.hosts if h.changes]
    if changed:
        table = FittedTable("package changes")
        for column in ("host", "package", "before", "after"):
            table.add_column(column, Fit.WHOLE)
        for h in changed:
            for c in h.changes:
                table.add_row(
                    shown(h.host), shown(c.package), shown(c.before or "-"), shown(c.after or "-")
                )
        parts.append(table)
    if report.left:
        table = FittedTable("left for the next window")
        table.add_column("host", Fit.WHOLE)
        table.add_column("batch", Fit.WHOLE)
        table.add_column("what", Fit.WORDS)  # "all its updates", or held "package version"s
        table.add_column("why", Fit.FREE)
        for x in report.left:
            table.add_row(shown(x.host), str(x.batch or "-"), shown(x.what), shown(x.why))
        parts.append(table)
    return Group(*parts)


def outcomes_chart(report: RunReport) -> charts.BarChart:
    """Outcomes per batch, one stacked bar each."""
    rows = []
    for b in report.batches:
        counts: dict[str, int] = {}
        for h in report.hosts:
            if h.batch == b.number:
                counts[h.outcome] = counts.get(h.outcome, 0) + 1
        rows.append((f"batch {b.number}", counts))
    order = ("patched", "skipped", "incomplete", "rolled back", "failed", "unreachable")
    return charts.stacked_bars("Host outcomes per batch", rows, order)


def to_html(report: RunReport) -> str:
    """The report as one self-contained page (inline CSS and SVG; nothing fetched)."""
    template = template_environment().get_template("run.html.j2")
    return template.render(
        report=report, chart=outcomes_chart(report), phases=PHASES, phase_of=_phase
    )
