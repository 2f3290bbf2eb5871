"""Decisions between batches (pure): halt on too many failures, start nothing past the cutoff."""

from __future__ import annotations

from datetime import UTC, datetime

from patchkit.policy.model import Amount


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
