"""The plan preview: text for a terminal, JSON for machines, Markdown and HTML for a CAB."""

from __future__ import annotations

import dataclasses
import re
from collections import Counter, defaultdict
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta, tzinfo
from functools import cache
from typing import Any

from jinja2 import Environment, PackageLoader, StrictUndefined, select_autoescape
from rich.console import Group, RenderableType
from rich.table import Table
from rich.text import Text

from patchkit.model import Severity
from patchkit.planning import codec
from patchkit.planning.pieces import JsonPieces
from patchkit.planning.plan import STALE_FINDINGS, plan_body
from patchkit.planning.types import (
    Batch,
    CveRef,
    HostPlan,
    Plan,
    Settings,
    SkipKind,
    SkippedHost,
)
from patchkit.reports.terminal import Fit, FittedTable, plain_text, shown, visible

FORMAT = codec.FORMAT

# Hosts whose state nobody knows come first: they are the ones a reader must not overlook.
SKIP_TITLES: Mapping[SkipKind, str] = {
    SkipKind.NOT_ASSESSED: "never assessed: what they need is unknown, so they are not patched",
    SkipKind.UNREACHABLE: "unreachable when last assessed: not patched",
    SkipKind.QUORUM: "held back to keep their cluster's quorum (max_unavailable): not patched",
    SkipKind.EXCEPTION: "held back by a policy exception",
    SkipKind.OTHER_WINDOW: "served by another window",
    SkipKind.NOTHING_TO_DO: "nothing to install",
    SkipKind.EXCLUDED: "excluded by the policy's scope",
    SkipKind.OUT_OF_SCOPE: "outside the policy's scope",
}
SEVERITY_STYLE = {Severity.CRITICAL: "bold red", Severity.HIGH: "red", Severity.MEDIUM: "yellow"}
# Hosts whose state is unknown: a plan must show them, never let them drop out of sight.
_UNKNOWN = (SkipKind.NOT_ASSESSED, SkipKind.UNREACHABLE)


# ---------------------------------------------------------------- what the documents share


@dataclass(frozen=True)
class SkipGroup:
    kind: SkipKind
    title: str
    hosts: tuple[SkippedHost, ...]


@dataclass(frozen=True)
class PackageRow:
    """One update (package at a candidate version) and every planned host that gets it."""

    package: str
    candidate: str
    installed: tuple[str, ...]  # distinct versions replaced ("none" when newly installed)
    severity: Severity
    security: bool
    reboot: bool
    hosts: tuple[str, ...]
    rated_by: tuple[str, ...] = ()  # distinct: hosts may differ in the CVEs an update fixes
    cves: tuple[CveRef, ...] = ()  # every CVE it fixes on any of them, known-exploited first


@dataclass(frozen=True)
class HeldRow:
    package: str
    candidate: str
    reason: str
    hosts: tuple[str, ...]
    cves: tuple[CveRef, ...] = ()  # what stays open while it is held


@dataclass(frozen=True)
class CveRow:
    """One CVE the planned updates fix, with the updates and hosts it is fixed by."""

    ref: CveRef
    packages: tuple[str, ...]
    hosts: tuple[str, ...]


@dataclass(frozen=True)
class Risk:
    level: str  # "high" or "medium"
    text: str


@dataclass(frozen=True)
class Facts:
    """What the documents say about a plan beyond its own fields: groupings, counts, risks."""

    planned: tuple[HostPlan, ...]  # hosts in batches of this window
    deferred: tuple[HostPlan, ...]  # hosts in batches left for the next window
    batch_of: Mapping[str, Batch]
    skipped: tuple[SkipGroup, ...]
    packages: tuple[PackageRow, ...]  # of planned hosts
    held: tuple[HeldRow, ...]
    reboots: tuple[HostPlan, ...]  # planned hosts that reboot
    reboot_why: Mapping[str, str]
    approvals: tuple[HostPlan, ...]  # planned hosts whose reboot needs explicit approval
    stale: tuple[HostPlan, ...]
    envs: tuple[tuple[str, int], ...]
    updates: int
    security: int
    estimates: str = ""  # where the host estimates come from, e.g. "4 host(s): p90 of …"
    quorum: tuple[str, ...] = ()  # max_unavailable, then one line per cluster (plan.clusters)
    # what the run enforces beyond the batches: approval rules, canary, backup, retries, reboots
    enforced: tuple[tuple[str, str], ...] = ()
    risks: tuple[Risk, ...] = ()
    risk: str = "low"  # "high" when a risk is high, else "medium" when there is one
    cves: tuple[CveRow, ...] = ()  # fixed by this window's planned updates, known-exploited first


def facts(plan: Plan) -> Facts:
    """Everything the renderers derive from a plan, computed once and in a stable order."""
    planned = tuple(h for b in plan.planned for h in b.hosts)
    reboots = tuple(h for h in planned if h.reboot)
    base = Facts(
        planned=planned,
        deferred=tuple(h for b in plan.deferred for h in b.hosts),
        batch_of={h.host: b for b in plan.batches for h in b.hosts},
        skipped=tuple(
            SkipGroup(kind, title, hosts)
            for kind, title in SKIP_TITLES.items()
            if (hosts := tuple(s for s in plan.skipped if s.kind is kind))
        ),
        packages=_packages(planned),
        held=_held(plan),
        reboots=reboots,
        reboot_why={h.host: _reboot_why(h, plan.settings.reboot) for h in reboots},
        approvals=tuple(h for h in planned if h.reboot_needs_approval),
        stale=tuple(h for h in planned if plan.made_at - h.assessed_at > STALE_FINDINGS),
        envs=tuple(sorted(Counter(h.env or "no env" for h in planned).items())),
        updates=sum(len(h.updates) for h in planned),
        security=sum(1 for h in planned for u in h.updates if u.security),
        estimates="; ".join(
            f"{n} host(s): {basis}"
            for basis, n in sorted(Counter(h.estimate_basis for h in planned).items())
        ),
        quorum=_quorum(plan),
        enforced=_enforced(plan),
        cves=_cves(planned),
    )
    risks = _risks(plan, base)
    levels = {r.level for r in risks}
    risk = "high" if "high" in levels else "medium" if levels else "low"
    return dataclasses.replace(base, risks=risks, risk=risk)


def _packages(hosts: Sequence[HostPlan]) -> tuple[PackageRow, ...]:
    by_update: dict[tuple[str, str], list[Any]] = defaultdict(list)
    for h in hosts:
        for u in h.updates:
            by_update[(u.package, u.candidate)].append((h.host, u))
    rows = [
        PackageRow(
            package=package,
            candidate=candidate,
            installed=tuple(sorted({u.installed or "none" for _, u in pairs})),
            severity=max((u.severity for _, u in pairs), key=lambda s: s.rank),
            security=any(u.security for _, u in pairs),
            reboot=any(u.reboot for _, u in pairs),
            hosts=tuple(name for name, _ in pairs),
            rated_by=tuple(sorted({u.rated_by for _, u in pairs if u.rated_by})),
            cves=_merged(ref for _, u in pairs for ref in u.cves),
        )
        for (package, candidate), pairs in by_update.items()
    ]
    return tuple(sorted(rows, key=lambda r: (-r.severity.rank, r.package, r.candidate)))


def cve_order(ref: CveRef) -> tuple[bool, float, str]:
    """Known-exploited first, then by CVSS score (highest first), then by id."""
    return (not ref.kev, -(ref.cvss if ref.cvss is not None else -1.0), ref.cve)


def _merged(refs: Iterable[CveRef]) -> tuple[CveRef, ...]:
    return tuple(sorted({r.cve: r for r in refs}.values(), key=cve_order))


def _cves(hosts: Sequence[HostPlan]) -> tuple[CveRow, ...]:
    refs: dict[str, CveRef] = {}
    packages: dict[str, set[str]] = defaultdict(set)
    fixed_on: dict[str, set[str]] = defaultdict(set)
    for h in hosts:
        for u in h.updates:
            for ref in u.cves:
                refs[ref.cve] = ref
                packages[ref.cve].add(u.package)
                fixed_on[ref.cve].add(h.host)
    return tuple(
        CveRow(ref, tuple(sorted(packages[ref.cve])), tuple(sorted(fixed_on[ref.cve])))
        for ref in sorted(refs.values(), key=cve_order)
    )


def cve_label(ref: CveRef) -> str:
    """``CVE-2026-1 (CVSS 9.8, KEV, EPSS 0.94)``: what a reader needs to weigh it."""
    parts = [f"CVSS {ref.cvss:.1f}" if ref.cvss is not None else "no CVSS"]
    if ref.kev:
        parts.append("KEV")
    if ref.epss is not None:
        parts.append(f"EPSS {ref.epss:.2f}")
    return f"{ref.cve} ({', '.join(parts)})"


def _held(plan: Plan) -> tuple[HeldRow, ...]:
    by_reason: dict[tuple[str, str, str], list[str]] = defaultdict(list)
    refs: dict[tuple[str, str, str], list[CveRef]] = defaultdict(list)
    owners = [(h.host, h.held) for h in plan.hosts()] + [(s.host, s.held) for s in plan.skipped]
    for host, held in owners:
        for u in held:
            by_reason[(u.package, u.candidate, u.reason)].append(host)
            refs[(u.package, u.candidate, u.reason)].extend(u.cves)
    return tuple(
        HeldRow(p, c, r, tuple(sorted(hs)), _merged(refs[(p, c, r)]))
        for (p, c, r), hs in sorted(by_reason.items())
    )


def _quorum(plan: Plan) -> tuple[str, ...]:
    limit = plan.settings.rules.max_unavailable
    if limit is None:
        return ()
    lines = [f"max {limit} down per cluster, counting members already down"]
    for c in plan.clusters:
        down = f" ({names(c.down)})" if c.down else ""
        room = f"{c.budget} at a time" if c.budget > 0 else "none patched"
        lines.append(f"{c.name}: {len(c.down)} of {c.size} down{down}, limit {c.limit}: {room}")
    return tuple(lines)


def _enforced(plan: Plan) -> tuple[tuple[str, str], ...]:
    """What ``run`` enforces, in words for the approver (every item acts: see the tests named
    in docs/policy-reference.md)."""
    a, ph, r = plan.settings.approval, plan.settings.phases, plan.settings.rules
    who = ", ".join(a.approvers) or "anyone"
    approval = (
        f"{a.needed} approval(s) by different approvers ({who})"
        + ("; whoever made the plan may not approve it" if a.separation_of_duties else "")
        + (
            "; each signed with an SSH key listed in allowed_signers"
            if a.signatures_required
            else ""
        )
        + "; valid "
        + (
            f"for {span(a.expires_after)} after approval"
            if a.expires_after
            else "until the window ends"
        )
        + ", for one run only"
        if a.required
        else "not required"
    )
    emergency = (
        f"outside the window only with an emergency approval by {', '.join(a.emergency_approvers)}"
        if a.emergency_approvers
        else "never outside the window (no emergency approvers named)"
    )
    lines = [
        ("approval", approval),
        ("when", f"only inside the window, before its cutoff; {emergency}; never in a freeze"),
        ("retries", f"a host whose patch phase fails is tried {r.retries} more time(s)"
                    if r.retries else "none: a failed patch counts at once"),
        ("backup", f"`{ph.backup_command}` on the controller before each host (timeout "
                   f"{span(ph.backup_timeout)}); a failed backup leaves the host unpatched"
                   if ph.backup_command else "no backup hook"),
    ]  # fmt: skip
    if any(b.canary for b in plan.planned):
        halt = "halts the window" if r.canary_on_failure == "halt" else "is judged by the threshold"
        soak = f"; the next batch waits {span(r.canary_soak)}" if r.canary_soak else ""
        lines.append(("canary", f"a canary host not patched {halt}{soak}"))
    lines.append(("where", _where(plan)))
    if any(h.node_group for b in plan.planned for h in b.hosts):
        lost = (
            "its hosts wait without a verdict and the rest of the window goes on through the "
            "group's next node"
            if r.on_node_lost == "continue"
            else "the run stops there, interrupted"
        )
        lines.append(("node lost", f"a node lost mid-job: {lost}; resume reruns its hosts"))
    waves = [b for b in plan.planned if len(b.hosts) > b.concurrency]
    if waves:
        lines.append(("waves", "batches larger than their concurrency run in waves; the error "
                      "threshold is judged after each wave"))  # fmt: skip
    return tuple(lines)


def _where(plan: Plan) -> str:
    """Which hosts the run patches through which execution nodes (policy execution.*)."""
    placed: dict[str, list[str]] = {}
    for b in plan.planned:
        for h in b.hosts:
            placed.setdefault(h.node_group, []).append(h.host)
    if set(placed) <= {""}:
        return "every host from this controller"
    groups = {g.name: g for g in plan.settings.node_groups}
    parts = [
        f"{names(tuple(hosts))} through node group {group} "
        f"(one of {', '.join(groups[group].nodes)})"
        for group, hosts in sorted(placed.items())
        if group
    ]
    if "" in placed:
        parts.append(f"{names(tuple(placed['']))} from this controller")
    return "; ".join(parts)


def _reboot_why(host: HostPlan, policy_reboot: str) -> str:
    why = [u.package for u in host.updates if u.reboot]
    if host.reboot_pending:
        why.append("a reboot was already pending")
    if policy_reboot == "always" or not why:
        why.append(f"reboot policy: {policy_reboot}")
    return ", ".join(why)


def _risks(plan: Plan, f: Facts) -> tuple[Risk, ...]:
    settings = plan.settings
    out = []
    if f.approvals:
        out.append(Risk("high", f"rebooting {names(f.approvals)} needs explicit approval"))
    for b in (b for b in plan.planned if b.end > plan.window.end):
        late = span(b.end - plan.window.end)
        out.append(Risk("high", f"batch {b.number} is estimated to end {late} after the window"))
    if not settings.host_key_checking:
        text = "SSH host keys are not checked (connection.host_key_checking: false): any host "
        out.append(Risk("high", text + "answering at an address is trusted with root"))
    if settings.rollback == "none":
        out.append(Risk("high", "failed hosts are not rolled back (rollback: none)"))
    if settings.on_threshold == "continue":
        text = f"the window goes on past the error threshold ({settings.error_threshold})"
        out.append(Risk("high", text))
    if f.reboots:
        out.append(Risk("medium", f"{len(f.reboots)} host(s) reboot during the window"))
    if f.stale:
        days = STALE_FINDINGS.days
        text = f"{names(f.stale)}: assessed more than {days} days before the plan was made"
        out.append(Risk("medium", text))
    if len(plan.planned) > 1 and not any(b.canary for b in plan.planned):
        out.append(Risk("medium", "no canary batch: a bad update reaches a full batch first"))
    if f.deferred:
        out.append(Risk("medium", f"{len(f.deferred)} host(s) are left for the next window"))
    unknown = [s for g in f.skipped if g.kind in _UNKNOWN for s in g.hosts]
    if unknown:
        text = f"{len(unknown)} host(s) could not be assessed and stay unpatched"
        out.append(Risk("medium", text))
    if not settings.verification:
        out.append(Risk("medium", "no verification checks: success means the patch ran"))
    return tuple(out)


def names(hosts: Iterable[HostPlan | SkippedHost | str], limit: int = 8) -> str:
    """``a, b, c and 5 more``: a list of hosts short enough for one sentence."""
    every = [h if isinstance(h, str) else h.host for h in hosts]
    if len(every) <= limit:
        return ", ".join(every)
    return f"{', '.join(every[:limit])} and {len(every) - limit} more"


def span(delta: timedelta) -> str:
    """``1 h 05 min`` or ``35 min``: durations as people read them (rounded to the minute)."""
    minutes = round(delta.total_seconds() / 60)
    return f"{minutes // 60} h {minutes % 60:02d} min" if minutes >= 60 else f"{minutes} min"


_DAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")


@dataclass(frozen=True)
class Clock:
    """Formats times in the window's own zone, the one the people in the window live in."""

    zone: tzinfo | None

    def stamp(self, when: datetime) -> str:
        return when.astimezone(self.zone).strftime("%Y-%m-%d %H:%M %Z").strip()

    def short(self, when: datetime) -> str:
        # Day names by hand: strftime's %a follows the process locale, and the bytes must not.
        local = when.astimezone(self.zone)
        return f"{_DAYS[local.weekday()]} {local:%H:%M}"


def _clock(plan: Plan) -> Clock:
    return Clock(plan.window.start.tzinfo)


# ---------------------------------------------------------------- terminal


def plan_text(plan: Plan, *, detail: bool = True) -> Group:
    """The preview for a terminal; ``detail=False`` leaves out the row per host and update."""
    f = facts(plan)
    t = _clock(plan)
    parts: list[RenderableType] = [_header(plan, f, t)]
    parts += [shown(f"warning: {w}", style="bold yellow") for w in plan.warnings]
    parts.append(_batch_table(plan, t))
    parts.append(_host_updates(plan, f) if detail else _package_table(f))
    if f.cves:
        parts.append(_cve_table(f))
    if f.held:
        held = _table(
            f"{len(f.held)} update(s) held back",
            ("package", Fit.WHOLE),
            ("candidate", Fit.WHOLE),
            ("why", Fit.FREE),
            ("hosts", Fit.WORDS),
            ("leaves open", Fit.WORDS),
        )
        for r in f.held:
            held.add_row(
                shown(r.package),
                shown(r.candidate),
                shown(r.reason),
                shown(names(r.hosts)),
                _cve_cell(r.cves),
            )
        parts.append(held)
    for group in f.skipped:
        table = _table(
            f"{len(group.hosts)} host(s) {group.title}", ("host", Fit.WHOLE), ("reason", Fit.FREE)
        )
        style = "red" if group.kind in _UNKNOWN else ""
        for s in group.hosts:
            table.add_row(shown(s.host, style=style), shown(s.reason))
        parts.append(table)
    if plan.exceptions:
        parts.append(_exception_table(plan))
    parts.append(_settings(plan))
    return Group(*parts)


def plan_plain_text(plan: Plan, *, detail: bool = True, width: int = 120) -> str:
    """``plan_text`` as plain text without colour, for a file."""
    return plain_text(plan_text(plan, detail=detail), width=width)


def _table(title: str, *columns: tuple[str, Fit]) -> FittedTable:
    # As wide as its title at least, so that the title is never folded over the columns.
    table = FittedTable(title, title_style="bold", min_width=len(title))
    for header, fit in columns:
        table.add_column(header, fit)
    return table


def _grid(rows: Iterable[tuple[str, Text | str]], title: str | None = None) -> Table:
    grid = Table.grid(padding=(0, 2))
    if title:
        grid.title, grid.title_justify, grid.title_style = title, "left", "bold"
    grid.add_column(style="bold")
    grid.add_column(overflow="fold")  # a hash wider than the terminal folds, never cut
    for key, value in rows:
        grid.add_row(key, value if isinstance(value, Text) else shown(value))
    return grid


def _header(plan: Plan, f: Facts, t: Clock) -> Table:
    w = plan.window
    counts = Counter(s.kind for s in plan.skipped)
    skipped = ", ".join(f"{counts[g.kind]} {g.kind}" for g in f.skipped)
    hosts = (
        f"{len(f.planned)} planned in {len(plan.planned)} batch(es) · "
        f"{len(f.deferred)} deferred to the next window · {len(plan.skipped)} skipped"
        + (f" ({skipped})" if skipped else "")
    )
    window = f"{w.name}: {t.stamp(w.start)} to {t.short(w.end)}, no batch starts after "
    rows: list[tuple[str, Text | str]] = [
        ("plan", f"{plan.id}  (hash {plan.hash})"),
        ("policy", plan.policy),
        *([("owner", plan.owner)] if plan.owner else []),
        *([("description", plan.description)] if plan.description else []),
        ("window", window + t.short(w.cutoff)),
        ("made at", t.stamp(plan.made_at)),
        ("hosts", hosts),
        ("updates", f"{f.updates} ({f.security} security) of {len(f.packages)} package(s)"),
        ("reboots", f"{len(f.reboots)} host(s), {len(f.approvals)} need approval"),
        ("estimates", f.estimates or "-"),
        ("risk", _risk_text(f)),
    ]
    rows += [("passed over", frozen) for frozen in w.frozen]
    return _grid(rows)


def _risk_text(f: Facts) -> Text:
    styles = {"high": "bold red", "medium": "yellow"}
    text = Text(f.risk, style=styles.get(f.risk, ""))
    for r in f.risks:
        text.append(f"\n{r.level}: ", style=styles[r.level])
        text.append(visible(r.text))  # risks name hosts
    return text


def _batch_table(plan: Plan, t: Clock) -> FittedTable:
    # Short columns never wrap, so when the table is too wide the host names give way and a
    # batch of 25 hosts wraps into a few wide lines instead of a column one name wide.
    table = _table(
        f"{len(plan.batches)} batch(es), times estimated",
        ("batch", Fit.WHOLE),
        ("start to end", Fit.WHOLE),
        ("hosts", Fit.WORDS),
        ("severity", Fit.WHOLE),
        ("updates", Fit.WHOLE),
        ("reboot", Fit.WORDS),
    )
    for b in plan.batches:
        number = Text(str(b.number))
        if b.canary:
            number.append("\ncanary", style="cyan")
        if b.next_window:
            number.append("\nnext window", style="bold magenta")
        top = max(b.hosts, key=lambda h: h.priority)
        low = min(b.hosts, key=lambda h: h.priority)
        severity = Text(
            f"{top.severity} {top.priority}", style=SEVERITY_STYLE.get(top.severity, "")
        )
        if low.priority != top.priority:
            severity.append(f"\nto {low.severity} {low.priority}")
        rebooting = [h for h in b.hosts if h.reboot]
        reboot = Text(f"yes ({len(rebooting)})" if rebooting else "no")
        approval = [h.host for h in rebooting if h.reboot_needs_approval]
        if approval:
            reboot.append(visible(f"\nneeds approval: {', '.join(approval)}"), style="bold red")
        table.add_row(
            number,
            f"{t.short(b.start)}-{b.end.astimezone(t.zone):%H:%M}",
            shown(f"{len(b.hosts)}: " + ", ".join(h.host for h in b.hosts)),
            severity,
            str(sum(len(h.updates) for h in b.hosts)),
            reboot,
            style="dim" if b.next_window else None,
        )
    return table


def _host_updates(plan: Plan, f: Facts) -> FittedTable:
    table = _table(
        "updates per host",
        *(("host", Fit.WHOLE), ("batch", Fit.WORDS), ("severity / priority", Fit.WORDS)),
        *(("package", Fit.WORDS), ("installed → candidate", Fit.WORDS)),
        *(("update severity", Fit.WORDS), ("origin", Fit.FREE), ("security", Fit.WHOLE)),
        *(("rated by", Fit.FREE), ("fixes", Fit.WORDS)),
    )
    for h in plan.hosts():
        b = f.batch_of[h.host]
        where = f"{b.number}" + (" (next window)" if b.next_window else "")
        first = [shown(h.host), Text(where), Text(f"{h.severity} / {h.priority}")]
        for u in h.updates:
            change = f"{u.installed or 'none'} → {u.candidate}"
            table.add_row(
                *first,
                shown(u.package + (f" ({u.note})" if u.note else "")),
                shown(change),
                Text(u.severity, style=SEVERITY_STYLE.get(u.severity, "")),
                shown(u.origin),
                "yes" if u.security else "no",
                shown(u.rated_by or "-"),
                _cve_cell(u.cves),
            )
            first = [Text(""), Text(""), Text("")]  # the host's own cells only on its first row
    return table


def _package_table(f: Facts) -> FittedTable:
    table = _table(
        f"{len(f.packages)} update(s) on the planned hosts",
        *(("package", Fit.WHOLE), ("installed → candidate", Fit.WORDS)),
        *(("severity", Fit.WORDS), ("security", Fit.WHOLE), ("reboot", Fit.WHOLE)),
        *(("hosts", Fit.WORDS), ("rated by", Fit.FREE), ("fixes", Fit.WORDS)),
    )
    for r in f.packages:
        table.add_row(
            shown(r.package),
            shown(f"{', '.join(r.installed)} → {r.candidate}"),
            Text(r.severity, style=SEVERITY_STYLE.get(r.severity, "")),
            "yes" if r.security else "no",
            "yes" if r.reboot else "no",
            shown(f"{len(r.hosts)}: {names(r.hosts, limit=6)}"),
            shown("; ".join(r.rated_by) or "-"),
            _cve_cell(r.cves),
        )
    return table


def _cve_cell(refs: Sequence[CveRef]) -> Text:
    if not refs:
        return Text("-")
    text = Text()
    for i, ref in enumerate(refs):
        text.append(("\n" if i else "") + cve_label(ref), style="bold red" if ref.kev else "")
    return text


def _cve_table(f: Facts) -> FittedTable:
    table = _table(
        f"{len(f.cves)} CVE(s) fixed by this window, known exploited first",
        *(("CVE", Fit.WHOLE), ("CVSS", Fit.WHOLE), ("KEV", Fit.WHOLE), ("EPSS", Fit.WHOLE)),
        *(("urgency", Fit.WORDS), ("updates", Fit.WORDS), ("hosts", Fit.WORDS)),
    )
    for row in f.cves:
        ref = row.ref
        cvss = f"{ref.cvss:.1f} (v{ref.cvss_version})" if ref.cvss is not None else "-"
        table.add_row(
            Text(ref.cve, style="bold red" if ref.kev else ""),
            cvss,
            "yes" if ref.kev else "no",
            f"{ref.epss:.2f}" if ref.epss is not None else "-",
            shown(ref.urgency or "-"),
            shown(", ".join(row.packages)),
            shown(f"{len(row.hosts)}: {names(row.hosts, limit=6)}"),
        )
    return table


def _exception_table(plan: Plan) -> FittedTable:
    table = _table(
        "policy exceptions",
        *(("owner", Fit.WORDS), ("covers", Fit.WORDS), ("reason", Fit.FREE)),
        *(("expires", Fit.WHOLE), ("status", Fit.WORDS)),
    )
    for e in plan.exceptions:
        covers = ", ".join([*e.hosts, *e.packages])
        if e.expired:
            status = Text("EXPIRED: no longer applies", style="bold yellow")
        elif e.applied_to:
            status = shown(f"applied to {names(e.applied_to)}")
        else:
            status = Text("in force, matched nothing here")
        table.add_row(shown(e.owner), shown(covers), shown(e.reason), str(e.expires), status)
    return table


def _host_keys(settings: Settings) -> str:
    return "checked" if settings.host_key_checking else "NOT checked (any key is accepted)"


def _settings(plan: Plan) -> Table:
    s = plan.settings
    approvers = ", ".join(s.approvers) or "nobody named"
    quorum = _quorum(plan)
    return _grid(
        [
            ("error threshold", f"{s.error_threshold} failed host(s), then {s.on_threshold}"),
            ("rollback", f"{s.rollback} (snapshot backend {s.snapshot_backend})"),
            ("retries", str(s.retries)),
            ("reboot policy", s.reboot),
            ("SSH host keys", _host_keys(s)),
            *([("quorum", "\n".join(quorum))] if quorum else []),
            *facts(plan).enforced,
            ("verification", "; ".join(s.verification) or "none"),
            ("approval", f"{'required' if s.approval_required else 'not required'}: {approvers}"),
        ],
        title="how the window runs",
    )


# ---------------------------------------------------------------- JSON


def plan_json(plan: Plan) -> str:
    """The plan as JSON for machines (docs/plan-format.md): stable keys, two-space indent."""
    return "".join(body_json_pieces(plan_body(plan)))


def body_json_pieces(body: Mapping[str, Any]) -> Iterator[str]:
    """``plan_json``'s text for a plan's body (``plan_body``), in pieces, for writing as it comes:
    a 50,000-host plan is hundreds of megabytes of it. Updates shared by many hosts are
    encoded once (six levels down: plan, batches, batch, hosts, host, updates)."""
    return JsonPieces(indent=2, whole_at=6, reuse=True).pieces(body)


# ---------------------------------------------------------------- Markdown and HTML


def plan_markdown(plan: Plan) -> str:
    """A change request a CAB can read, in Markdown (inventory strings escaped for tables)."""
    return _render("plan.md.j2", plan)


def plan_html(plan: Plan) -> str:
    """The same change request as one self-contained, printable HTML page (no scripts)."""
    return _render("plan.html.j2", plan)


# Characters that Markdown (CommonMark and GitHub tables) would read as syntax or raw HTML.
_MD_SYNTAX = re.compile(r"([\\`*_\[\]<>|&~])")


def md(value: object) -> str:
    """Inventory text as one Markdown table cell: syntax escaped, line breaks made spaces,
    control characters shown escaped."""
    return _MD_SYNTAX.sub(r"\\\1", visible(" ".join(str(value).split())))


def md_table(head: Sequence[str], rows: Sequence[Sequence[object]]) -> list[str]:
    """A Markdown table: the header as given, every cell through ``md``."""
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    lines += ["| " + " | ".join(md(c) for c in row) + " |" for row in rows]
    return lines


def _finalize(value: object) -> object:
    """Every ``{{ value }}`` of a template: control characters shown escaped (then HTML
    escaping, in HTML). Markup (a macro's output) keeps its type, so it is not escaped again."""
    if isinstance(value, str) and (escaped := visible(value)) != value:
        return type(value)(escaped)
    return value


@cache
def template_environment() -> Environment:
    """The Jinja environment of every report template (HTML autoescaped, Markdown not)."""
    env = Environment(
        loader=PackageLoader("patchkit.reports", "templates"),
        autoescape=select_autoescape(enabled_extensions=("html.j2",), default=False),
        finalize=_finalize,
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )
    env.filters["md"] = md
    env.filters["span"] = span
    env.filters["cve"] = cve_label
    env.filters["stamp"] = lambda when: "" if when is None else f"{when:%Y-%m-%d %H:%M:%S %Z}"
    return env


def _render(name: str, plan: Plan) -> str:
    template = template_environment().get_template(name)
    return template.render(
        plan=plan,
        f=facts(plan),
        t=_clock(plan),
        skip_unknown=_UNKNOWN,
        stale_days=STALE_FINDINGS.days,
    )
