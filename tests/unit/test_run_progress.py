"""Unit: the live view of a running window (rendered to text, no terminal)."""

from __future__ import annotations

import io
from datetime import timedelta

from rich.console import Console

from patchkit.reports.run import RunProgress
from tests.unit.plans import make

# batches h1 h2 | h3 in a window that ends at 02:00 the night after the plan
PLAN = make("rollout: {batch_size: 2}", hosts=3)
END = PLAN.window.end


def text(progress: RunProgress) -> str:
    console = Console(record=True, width=120, file=io.StringIO())
    console.print(progress.render())
    return console.export_text()


def test_progress_follows_batches_and_phases() -> None:
    now = END - timedelta(hours=1)
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


def test_a_wait_shows_its_countdown_and_going_on_after_a_rollback_keeps_the_hosts() -> None:
    progress = RunProgress(PLAN, lambda: END - timedelta(hours=1))
    progress.batch_changed(1, "running")
    progress.task("h1", "patchkit patch result", "ok")
    progress.batch_changed(1, "rolling back")
    progress.batch_changed(1, "running")
    assert "patch ok" in text(progress)
    progress.waiting("canary soak before batch 2: 0:29:59 left")
    assert "canary soak before batch 2: 0:29:59 left" in text(progress)


def test_overrun_shows_negative_time_left() -> None:
    late = END + timedelta(minutes=5, seconds=3)
    assert "window closes in -0:05:03" in text(RunProgress(PLAN, lambda: late))
