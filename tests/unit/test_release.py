"""Unit: when a snapshot may be released (the retention rule)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from patchkit.execution.rules import releasable

NOW = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)
DAY = timedelta(days=1)


def snap(**changes: Any) -> dict[str, Any]:
    base = {"run_status": "completed", "taken": NOW - 2 * DAY, "verify": "ok", "rollback": None}
    return base | changes


@pytest.mark.parametrize(
    ("snapshot", "expected"),
    [
        (snap(), True),
        (snap(taken=NOW - DAY + timedelta(seconds=1)), False),  # retention not over yet
        (snap(taken=NOW - DAY), True),  # exactly the retention
        (snap(run_status="interrupted"), False),  # resume may need it
        (snap(run_status="running"), False),
        (snap(run_status="halted"), True),  # a halted run's verified hosts
        (snap(verify="failed", rollback="pending"), False),  # still to roll back
        (snap(verify="failed", rollback="failed"), False),  # rollback to retry
        (snap(verify="failed", rollback="ok"), True),  # rolled back: done with it
        (snap(verify=None), False),  # never verified (lost mid-window)
    ],
)
def test_releasable(snapshot: dict[str, Any], expected: bool) -> None:
    assert releasable(snapshot, NOW, DAY) is expected
