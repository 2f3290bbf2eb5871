"""The batch loop's observer on a terminal: the live view, JSON lines, webhooks and Ctrl-C."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

import click
from rich.live import Live

from patchkit.cli.consoles import err_console
from patchkit.execution.runner import TaskResult
from patchkit.notify import Notify
from patchkit.reports.run import RunProgress


class TerminalObserver:
    """Shows the run in ``live``, echoes JSON lines with ``as_json``, sends webhook events."""

    def __init__(
        self,
        progress: RunProgress,
        live: Live,
        *,
        as_json: bool,
        notify: Notify,
        stop: threading.Event,
    ) -> None:
        self.progress, self.live, self.as_json = progress, live, as_json
        self.notify, self.stop = notify, stop

    def task(self, task: TaskResult) -> None:
        self.progress.task(task.host, task.task, task.status)
        self.live.update(self.progress.render())
        if self.as_json:
            line = {"event": "task", "host": task.host, "task": task.task, "status": task.status}
            click.echo(json.dumps(line))

    def batch(self, number: int, state: str) -> None:
        self.progress.batch_changed(number, str(state))
        self.live.update(self.progress.render())
        if self.as_json:
            click.echo(json.dumps({"event": "batch", "batch": number, "status": str(state)}))

    def event(self, name: str, data: Mapping[str, Any]) -> None:
        self.notify(name, dict(data))

    def cancelled(self) -> bool:
        return self.stop.is_set()

    def wait(self, seconds: float, why: str) -> bool:
        until = time.monotonic() + seconds
        if self.as_json:
            click.echo(json.dumps({"event": "wait", "seconds": seconds, "why": why}))
        while not self.stop.is_set():
            left = until - time.monotonic()
            if left <= 0:
                self.progress.waiting(None)
                return True
            self.progress.waiting(f"{why}: {_clock(left)} left")
            self.live.update(self.progress.render())
            self.stop.wait(min(1.0, left))
        return False


def count_down(
    until: datetime, why: str, stop: threading.Event, now: Callable[[], datetime]
) -> bool:
    """Wait on the terminal until ``until`` with a countdown (run --wait); False on Ctrl-C."""
    with err_console.status(why) as status:
        while not stop.is_set():
            left = (until - now()).total_seconds()
            if left <= 0:
                return True
            status.update(f"{why}: opens in {_clock(left)} (at {until:%Y-%m-%d %H:%M %Z})")
            stop.wait(min(1.0, left))
    return False


def _clock(seconds: float) -> str:
    whole = int(max(0.0, seconds))
    return str(timedelta(seconds=whole))


def utc_now() -> datetime:
    return datetime.now(UTC)


class PrintObserver:
    """For work without a live view (rollback by hand): one line per phase result."""

    def __init__(self, notify: Notify) -> None:
        self.notify = notify

    def task(self, task: TaskResult) -> None:
        if task.task.startswith("patchkit ") and task.task.endswith(" result"):
            err_console.print(f"{task.host}: {task.task.split()[1]} {task.status}")

    def batch(self, number: int, state: str) -> None:
        pass

    def event(self, name: str, data: Mapping[str, Any]) -> None:
        self.notify(name, dict(data))

    def cancelled(self) -> bool:
        return False

    def wait(self, seconds: float, why: str) -> bool:  # noqa: ARG002 - the port's signature
        return True  # a rollback by hand holds nothing back
