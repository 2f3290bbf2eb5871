"""Unit: the live view of a running window (rendered to text, no terminal)."""

from __future__ import annotations

import io
from datetime import UTC, datetime, timedelta

from rich.console import Console

from patchkit.reports.run import RunProgress

PLAN = {
    "window": {"end": "2026-11-25T12:00:00+00:00"},
    "batches": [
        {"number": 1, "hosts": [{"host": "h1"}, {"host": "h2"}]},
        {"number": 2, "hosts": [{"host": "h3"}]},
    ],
}


def text(progress: RunProgress) -> str:
    console = Console(record=True, width=120, file=io.StringIO())
    console.print(progress.render())
    return console.export_text()


def test_progress_follows_batches_and_phases() -> None:
    now = datetime(2026, 11, 25, 11, 0, tzinfo=UTC)
    progress = RunProgress(PLAN, lambda: now)
    progress.batch_changed(1, "running")
    assert "waiting" in text(progress)
    progress.task("h1", "Refresh the package lists", "ok")
    progress.task("h2", "patchkit verify result", "failed")
    shown = text(progress)
    assert "batch 1/2 running" in shown and "window closes in 1:00:00" in shown
    assert "Refresh the package lists" in shown and "verify failed" in shown
    assert progress.done == {"h2": "failed"}
    progress.batch_changed(2, "running")
    assert "h3" in text(progress) and "h1" not in text(progress)


def test_overrun_shows_negative_time_left() -> None:
    late = datetime(2026, 11, 25, 12, 5, tzinfo=UTC) + timedelta(seconds=3)
    assert "window closes in -0:05:03" in text(RunProgress(PLAN, lambda: late))
