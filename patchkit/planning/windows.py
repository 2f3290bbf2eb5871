"""When a maintenance window next opens: recurrence, timezone, duration, cutoff, freezes.

Pure: the time to plan from is an argument. Rules are read as wall-clock times in the window's
timezone (22:00 every Saturday stays 22:00 across daylight-saving changes); durations are real
elapsed time (a 4h window across a change still lasts four hours).

Choices that make results deterministic:
- RRULEs are anchored (DTSTART) at Monday 2000-01-03 00:00 local time, so ``INTERVAL=2`` means
  the same fortnights whatever day the plan is made, and fields a rule leaves out (hour, minute)
  default to midnight. For rules whose anchor cannot matter (interval 1, frequency at most
  weekly) a recent Monday is used instead, which gives the same times without iterating 26
  years of hourly starts.
- A start in a spring-forward gap (02:30 that day does not exist) moves forward by the gap; an
  ambiguous start (fall-back) is the first of the two, both as zoneinfo does with ``fold=0``.
- An occurrence touching a freeze (any local calendar day of it inside a freeze period, both
  ends inclusive) is passed over and reported.
- Plans are made between ``EARLIEST`` and ``LATEST``, far from the ends of Python's calendar
  (years 1 and 9999), so that the arithmetic on a window and on the batches estimated after it
  never leaves the calendar; a window whose times cannot be computed is a ``PlanningError``.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from croniter import croniter
from dateutil import rrule

from patchkit.errors import PlanningError
from patchkit.policy.model import Window

EARLIEST = datetime(1970, 1, 1, tzinfo=UTC)  # a plan time must be at or after this
LATEST = datetime(9000, 1, 1, tzinfo=UTC)  # and before this; no window opening after it is used
ANCHOR = datetime(2000, 1, 3)  # a Monday, midnight (naive: local wall-clock time)
_CHEAP = {"SECONDLY", "MINUTELY", "HOURLY", "DAILY", "WEEKLY"}


@dataclass(frozen=True)
class SkippedOccurrence:
    start: datetime
    reason: str


@dataclass(frozen=True)
class Occurrence:
    """One opening of a window: no batch may start at or after ``cutoff``."""

    window: str
    start: datetime
    end: datetime
    cutoff: datetime
    skipped: tuple[SkippedOccurrence, ...] = ()


def _anchor(rule: str, begin: datetime) -> datetime:
    parts = dict(p.split("=", 1) for p in rule.upper().split(";") if "=" in p)
    interval = int(parts.get("INTERVAL", "1"))
    if parts.get("FREQ") in _CHEAP and interval == 1 and "COUNT" not in parts:
        monday = begin.date() - timedelta(days=begin.weekday() + 7)
        return datetime(monday.year, monday.month, monday.day)
    return ANCHOR


def _starts(window: Window, begin: datetime) -> Iterator[datetime]:
    """Naive local start times strictly after ``begin`` (naive local), in order."""
    if window.rrule is not None:
        rule = rrule.rrulestr(window.rrule, dtstart=_anchor(window.rrule, begin))
        yield from rule.xafter(begin, inc=False)
        return
    assert window.cron is not None  # noqa: S101 - the model guarantees rrule xor cron
    cron = croniter(window.cron, begin)
    while True:
        yield cron.get_next(datetime)


def _local(naive: datetime, zone: ZoneInfo) -> datetime:
    """Attach the zone, normalising a time in a DST gap to the real instant (fold=0)."""
    return naive.replace(tzinfo=zone).astimezone(UTC).astimezone(zone)


def _frozen(window: Window, start: datetime, end: datetime) -> str | None:
    first = start.date()
    last = (end - timedelta(microseconds=1)).date()
    for freeze in window.freeze:
        if first <= freeze.end and last >= freeze.start:
            return freeze.reason or f"freeze {freeze.start} to {freeze.end}"
    return None


def _occurrences(window: Window, at: datetime) -> Iterator[tuple[datetime, datetime, datetime]]:
    zone = ZoneInfo(window.timezone)
    begin = (at.astimezone(zone) - window.duration).replace(tzinfo=None) - timedelta(seconds=1)
    for naive in _starts(window, begin):
        start = _local(naive, zone)
        end = (start.astimezone(UTC) + window.duration).astimezone(zone)
        cutoff = (end.astimezone(UTC) - window.cutoff).astimezone(zone)
        yield start, end, cutoff


def next_occurrence(window: Window, at: datetime, *, horizon_days: int = 400) -> Occurrence | None:
    """The occurrence a plan made at ``at`` targets: the open one (before its cutoff) or the next.

    None when there is none within ``horizon_days`` (a rule that ended, or all of it frozen).
    """
    found = upcoming(window, at, 1, horizon_days=horizon_days)
    return found[0] if found else None


def upcoming(
    window: Window, at: datetime, count: int, *, horizon_days: int = 400
) -> tuple[Occurrence, ...]:
    """Up to ``count`` usable occurrences from ``at`` on, each with the frozen ones before it.

    A PlanningError when ``at`` is outside EARLIEST..LATEST or the window's times leave the
    calendar (a duration of millennia); openings after LATEST are not looked for.
    """
    if at.tzinfo is None:
        raise PlanningError("the plan time must carry a timezone")
    if not EARLIEST <= at < LATEST:
        raise PlanningError(
            f"cannot plan at {at.isoformat()}: plans are made from {EARLIEST:%Y-%m-%d} "
            f"until {LATEST:%Y-%m-%d}",
            hint="give a plan time in that range",
        )
    try:
        return _upcoming(window, at, count, horizon_days)
    except (OverflowError, ValueError) as exc:
        raise PlanningError(
            f"window {window.name}: its openings after {at.isoformat()} cannot be computed ({exc})",
            hint="check the window's recurrence, duration and cutoff",
        ) from None


def _upcoming(
    window: Window, at: datetime, count: int, horizon_days: int
) -> tuple[Occurrence, ...]:
    if count < 1:
        return ()
    # Compare in UTC: Python compares two times of the same zone by their wall clocks, which is
    # wrong across a daylight-saving change.
    now = at.astimezone(UTC)
    limit = min(now + timedelta(days=horizon_days), LATEST)
    out: list[Occurrence] = []
    skipped: list[SkippedOccurrence] = []
    for start, end, cutoff in _occurrences(window, at):
        if start.astimezone(UTC) > limit:
            break
        if cutoff.astimezone(UTC) <= now:
            continue  # over, or too late to start anything in it
        reason = _frozen(window, start, end)
        if reason is not None:
            skipped.append(SkippedOccurrence(start, reason))
            continue
        out.append(Occurrence(window.name, start, end, cutoff, tuple(skipped)))
        skipped = []
        if len(out) == count:
            break  # before asking the rule for one more, which may lie past the calendar
    return tuple(out)


def describe(window: Window) -> str:
    """The recurrence in the words of the policy file, for previews."""
    rule = window.rrule if window.rrule is not None else f"cron {window.cron}"
    return re.sub(r"\s+", " ", f"{rule} ({window.timezone})")
