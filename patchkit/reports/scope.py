"""Terminal tables for ``patchkit scope`` and ``patchkit assess``."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from rich.console import Group
from rich.text import Text

from patchkit.model import Finding
from patchkit.reports.terminal import Fit, FittedTable, shown


def _cell(value: Any) -> Text:
    return Text("-") if value is None else shown(value)


def scope_tables(rows: Sequence[Mapping[str, Any]], policy: str | None) -> Group:
    """Hosts in scope with the variables the policy uses, then every host left out and why."""
    inside = [r for r in rows if r["in_scope"]]
    outside = [r for r in rows if not r["in_scope"]]
    title = f"in scope of policy {policy}" if policy else "in scope (no policy: every host)"
    table = FittedTable(shown(f"{len(inside)} host(s) {title}"))
    table.add_column("host", Fit.WHOLE)
    for column in ("env", "tier", "cluster", "criticality"):  # inventory values, any length
        table.add_column(column, Fit.WORDS)
    for r in inside:
        crit = f"{r['criticality']} ({r['criticality_label']})" if "criticality" in r else "-"
        table.add_row(
            shown(r["host"]), _cell(r["env"]), _cell(r["tier"]), _cell(r["cluster"]), shown(crit)
        )
    parts: list[Any] = [table]
    if outside:
        left = FittedTable(f"{len(outside)} host(s) left out")
        left.add_column("host", Fit.WHOLE)
        left.add_column("why", Fit.FREE)
        for r in outside:
            left.add_row(shown(r["host"]), shown(f"{r['kind']}: {r['reason']}"))
        parts.append(left)
    return Group(*parts)


def findings_table(found: Sequence[Finding], at: datetime) -> FittedTable:
    """One row per assessed host: reachable, pending updates, reboot already pending."""
    table = FittedTable(f"assessment at {at:%Y-%m-%d %H:%M %Z}")
    table.add_column("host", Fit.WHOLE)
    table.add_column("reachable", Fit.WHOLE)
    table.add_column("pending", Fit.WHOLE)
    # "package version, …", or why the host could not be reached: wraps, but between words
    table.add_column("packages", Fit.WORDS)
    table.add_column("reboot pending", Fit.WHOLE)
    for f in found:
        if not f.reachable:
            table.add_row(shown(f.host), Text("no", style="red"), "-", shown(f.message[:100]), "-")
            continue
        names = ", ".join(f"{u.package} {u.candidate}" for u in f.updates)
        table.add_row(
            shown(f.host),
            Text("yes", style="green"),
            str(len(f.updates)),
            shown(names or "up to date"),
            "yes" if f.reboot_pending else "no",
        )
    return table
