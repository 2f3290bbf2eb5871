"""Terminal tables for a run, built from the ledger's record of it."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from rich.console import Group
from rich.table import Table
from rich.text import Text

PHASES = ("precheck", "snapshot", "patch", "reboot", "verify", "rollback")
COLOURS = {"ok": "green", "failed": "red", "unreachable": "red", "pending": "yellow"}


def run_tables(record: Mapping[str, Any]) -> Group:
    """Batches, then hosts by phases, then package changes."""
    head = Text(
        f"{record['id']} (plan {record['plan']}): {record['status']}"
        + (f": {record['reason']}" if record["reason"] else "")
    )
    batches = Table(title="batches", title_justify="left")
    for column in ("batch", "status", "hosts", "failed", "why"):
        batches.add_column(column)
    for b in record["batches"]:
        batches.add_row(
            str(b["number"]), b["status"], str(b["hosts"]), str(b["failed"]), Text(b["reason"])
        )
    hosts = Table(title="hosts", title_justify="left")
    hosts.add_column("host")
    hosts.add_column("batch")
    for phase in PHASES:
        hosts.add_column(phase)
    hosts.add_column("message")
    rows: dict[str, dict[str, Any]] = {}
    for p in record["phases"]:
        row = rows.setdefault(p["host"], {"batch": p["batch"], "message": ""})
        row[p["phase"]] = p["status"]
        if p["status"] in ("failed", "unreachable") and not row["message"]:
            row["message"] = f"{p['phase']}: {p['message']}"
    for host, row in rows.items():
        cells = [Text(row.get(ph, "-"), style=COLOURS.get(row.get(ph, ""), "")) for ph in PHASES]
        hosts.add_row(Text(host), str(row["batch"]), *cells, Text(row["message"][:120]))
    changes = Table(title="package changes", title_justify="left")
    for column in ("host", "package", "before", "after"):
        changes.add_column(column)
    for c in record["changes"]:
        changes.add_row(
            Text(c["host"]), Text(c["package"]), str(c["before"] or "-"), str(c["after"] or "-")
        )
    return Group(head, batches, hosts, changes)
