"""Decisions of a run (pure): halt on too many failures, start nothing past the cutoff, release
snapshots no longer needed."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

from patchkit.policy.values import Amount


def threshold_crossed(failures: int, attempted: int, threshold: Amount) -> bool:
    """True once the window's failures reach the policy's error threshold.

    A count is absolute ("halt at the 2nd failed host"); a percentage is of the hosts attempted
    so far in this run. A threshold of 0 means any failure halts.
    """
    if failures <= 0:
        return False
    if threshold.percent:
        return failures * 100 >= threshold.value * max(attempted, 1)
    return failures >= max(1, int(threshold.value))


def may_start(now: datetime, cutoff: datetime) -> bool:
    """A batch may start only before the window's cutoff (compared as real time)."""
    return now.astimezone(UTC) < cutoff.astimezone(UTC)


def fits(now: datetime, estimate: timedelta, end: datetime) -> bool:
    """A batch starting now is expected to end by the window's end (the plan's estimate)."""
    return now.astimezone(UTC) + estimate <= end.astimezone(UTC)


def releasable(snapshot: Mapping[str, Any], now: datetime, retention: timedelta) -> bool:
    """Whether a snapshot may be deleted: its run is over, the host no longer needs it (it
    verified and has no rollback outstanding, or it was rolled back), and retention passed."""
    if snapshot["run_status"] in ("running", "interrupted"):
        return False  # resume may still need it
    if snapshot["taken"] + retention > now:
        return False
    if snapshot["rollback"] == "ok":
        return True
    return bool(snapshot["verify"] == "ok" and snapshot["rollback"] is None)
