"""Terminal tables for ``patchkit scope`` and ``patchkit assess``."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from rich.console import Group
from rich.table import Table
from rich.text import Text

from patchkit.model import Finding
from patchkit.reports.terminal import shown


def _cell(value: Any) -> Text:
    return Text("-") if value is None else shown(value)


def scope_tables(rows: Sequence[Mapping[str, Any]], policy: str | None) -> Group:
    """Hosts in scope with the variables the policy uses, then every host left out and why."""
    inside = [r for r in rows if r["in_scope"]]
    outside = [r for r in rows if not r["in_scope"]]
    title = f"in scope of policy {policy}" if policy else "in scope (no policy: every host)"
    table = Table(title=shown(f"{len(inside)} host(s) {title}"), title_justify="left")
    for column in ("host", "env", "tier", "cluster", "criticality"):
        table.add_column(column)
    for r in inside:
        crit = f"{r['criticality']} ({r['criticality_label']})" if "criticality" in r else "-"
        table.add_row(
            shown(r["host"]), _cell(r["env"]), _cell(r["tier"]), _cell(r["cluster"]), shown(crit)
        )
    parts: list[Any] = [table]
    if outside:
        left = Table(title=f"{len(outside)} host(s) left out", title_justify="left")
        left.add_column("host")
        left.add_column("why")
        for r in outside:
            left.add_row(shown(r["host"]), shown(f"{r['kind']}: {r['reason']}"))
        parts.append(left)
    return Group(*parts)


def findings_table(found: Sequence[Finding], at: datetime) -> Table:
    """One row per assessed host: reachable, pending updates, reboot already pending."""
    table = Table(title=f"assessment at {at:%Y-%m-%d %H:%M %Z}", title_justify="left")
    for column in ("host", "reachable", "pending", "packages", "reboot pending"):
        table.add_column(column)
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
