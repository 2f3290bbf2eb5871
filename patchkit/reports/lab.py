"""Terminal tables for the lab commands (styles as ``Text``: the consoles read no markup)."""

from __future__ import annotations

from collections.abc import Sequence

from rich.table import Table
from rich.text import Text

from patchkit.lab.check import HostCheck
from patchkit.lab.lifecycle import LabStatus
from patchkit.reports.terminal import shown


def status_table(status: LabStatus) -> Table:
    """One row per lab host: address, power, network and fleet role."""
    table = Table(
        title=f"lab {status.name} ({status.subnet}) — repository "
        f"{'serving' if status.repo_serving else 'down'} at {status.repo_url}",
        title_justify="left",
    )
    for column in ("host", "address", "state", "network", "env", "tier", "cluster"):
        table.add_column(column)
    for host in status.hosts:
        state = (
            Text("running", style="green") if host.state == "running" else Text("off", style="red")
        )
        net = Text(host.network, style="red" if host.network == "down" else "")
        table.add_row(host.name, host.address, state, net, host.env, str(host.tier), host.cluster)
    return table


def check_table(rows: Sequence[HostCheck]) -> Table:
    """One row per host Ansible tried to reach, with the demo packages' versions."""
    names = sorted({name for row in rows for name in row.packages})
    table = Table(title="reached through ansible-runner", title_justify="left")
    table.add_column("host")
    table.add_column("ansible")
    table.add_column("boot id")
    for name in names:
        table.add_column(name)
    for row in rows:
        if row.reachable:
            versions = [shown(row.packages.get(name, "-")) for name in names]
            table.add_row(
                shown(row.host), Text("ok", style="green"), (row.boot_id or "")[:8], *versions
            )
        else:
            table.add_row(
                shown(row.host), Text("unreachable", style="red"), "-", *["" for _ in names]
            )
    return table


def check_problems(rows: Sequence[HostCheck]) -> list[str]:
    """One line per unreachable host with Ansible's reason, in full (tables would cut it)."""
    return [f"{row.host}: {row.message}" for row in rows if not row.reachable]
