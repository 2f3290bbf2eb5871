"""Terminal tables for the lab commands."""

from __future__ import annotations

from collections.abc import Sequence

from rich.table import Table

from patchkit.lab.check import HostCheck
from patchkit.lab.lifecycle import LabStatus


def status_table(status: LabStatus) -> Table:
    table = Table(
        title=f"lab {status.name} ({status.subnet}) — repository "
        f"{'serving' if status.repo_serving else 'down'} at {status.repo_url}",
        title_justify="left",
    )
    for column in ("host", "address", "state", "network", "env", "tier", "cluster"):
        table.add_column(column)
    for host in status.hosts:
        state = "[green]running[/]" if host.state == "running" else "[red]off[/]"
        net = "up" if host.network == "up" else "[red]down[/]"
        table.add_row(host.name, host.address, state, net, host.env, str(host.tier), host.cluster)
    return table


def check_table(rows: Sequence[HostCheck]) -> Table:
    names = sorted({name for row in rows for name in row.packages})
    table = Table(title="reached through ansible-runner", title_justify="left")
    table.add_column("host")
    table.add_column("ansible")
    table.add_column("boot id")
    for name in names:
        table.add_column(name)
    for row in rows:
        if row.reachable:
            versions = [row.packages.get(name, "-") for name in names]
            table.add_row(row.host, "[green]ok[/]", (row.boot_id or "")[:8], *versions)
        else:
            table.add_row(row.host, "[red]unreachable[/]", "-", *["" for _ in names])
    return table


def check_problems(rows: Sequence[HostCheck]) -> list[str]:
    """One line per unreachable host with Ansible's reason, in full (tables would cut it)."""
    return [f"{row.host}: {row.message}" for row in rows if not row.reachable]
