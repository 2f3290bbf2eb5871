"""The live progress display of a run (the report afterwards: run_report.py)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta

from rich.console import Group
from rich.table import Table
from rich.text import Text

from patchkit.planning.types import Plan
from patchkit.reports.terminal import shown


class RunProgress:
    """Live view of a running window: batch, each host's phase, counts, time left."""

    def __init__(self, plan: Plan, now: Callable[[], datetime]) -> None:
        self.plan = plan
        self.now = now
        self.started = now()
        self.end = plan.window.end
        self.batch = 0
        self.batch_state = ""
        self.hosts: dict[str, str] = {}
        self.done: dict[str, str] = {}
        self.note: str | None = None  # e.g. the canary soak's countdown

    def waiting(self, note: str | None) -> None:
        self.note = note

    def task(self, host: str, name: str, status: str) -> None:
        if name.startswith("patchkit ") and name.endswith(" result"):
            phase = name.removeprefix("patchkit ").removesuffix(" result")
            self.hosts[host] = f"{phase} {status}"
            if status in ("failed", "unreachable") or phase == "verify":
                self.done[host] = status
        elif status == "unreachable":
            self.hosts[host] = "unreachable"
            self.done[host] = status
        else:
            self.hosts[host] = name

    def batch_changed(self, number: int, state: str) -> None:
        first = number != self.batch  # "running" again after a rollback keeps the hosts
        self.batch, self.batch_state = number, state
        if state == "running" and first:
            current = next(b for b in self.plan.batches if b.number == number)
            self.hosts = {h.host: "waiting" for h in current.hosts}

    def render(self) -> Group:
        elapsed = self.now() - self.started
        left = self.end - self.now()
        total = len(self.plan.batches)
        title = (
            f"batch {self.batch}/{total} {self.batch_state} · elapsed {_mmss(elapsed)} · "
            f"window closes in {_mmss(left)}"
        )
        table = Table()
        table.add_column("host")
        table.add_column("now")
        for host, phase in self.hosts.items():
            style = "red" if "failed" in phase or "unreachable" in phase else ""
            table.add_row(shown(host), shown(phase, style=style))
        return Group(Text(title), *([Text(self.note)] if self.note else []), table)


def _mmss(delta: timedelta) -> str:
    seconds = int(delta.total_seconds())
    sign = "-" if seconds < 0 else ""
    seconds = abs(seconds)
    return f"{sign}{seconds // 3600:d}:{seconds % 3600 // 60:02d}:{seconds % 60:02d}"
