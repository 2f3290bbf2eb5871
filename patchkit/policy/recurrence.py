"""Window recurrences (RRULE or cron) checked before anything iterates them, and whether they
open at all: a clock-independent, bounded search from a fixed anchor."""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import datetime, timedelta
from itertools import islice, takewhile

from croniter import CroniterBadDateError, croniter
from dateutil import rrule

from patchkit.policy.values import (
    LAST_DAY,
    show_value,
)

# ---------------------------------------------------------------- recurrences

# Rules are read from this Monday, as planning.windows.ANCHOR (a test keeps the two equal);
# openings are looked for up to LAST_START, so every search here is bounded.
ANCHOR = datetime(2000, 1, 3)
LAST_START = datetime(LAST_DAY.year, 12, 31, 23, 59, 59)
_FREQS = ("HOURLY", "DAILY", "WEEKLY", "MONTHLY", "YEARLY")
_NUMBERS = {  # part: (lowest, highest, whether negative values count from the end)
    "BYSECOND": (0, 59, False),
    "BYMINUTE": (0, 59, False),
    "BYHOUR": (0, 23, False),
    "BYMONTH": (1, 12, False),
    "BYMONTHDAY": (1, 31, True),
    "BYYEARDAY": (1, 366, True),
    "BYWEEKNO": (1, 53, True),
    "BYSETPOS": (1, 366, True),
    "BYEASTER": (-366, 366, False),
}
_DAYS = ("MO", "TU", "WE", "TH", "FR", "SA", "SU")
_PARTS = ("FREQ", "INTERVAL", "UNTIL", "BYDAY", "WKST", *_NUMBERS)
_DAY_FILTERS = ("BYMONTH", "BYMONTHDAY", "BYYEARDAY", "BYWEEKNO", "BYDAY", "BYEASTER")
_WEEKDAY = re.compile(r"^([+-]?[0-9]{1,2})?(MO|TU|WE|TH|FR|SA|SU)$")


def rrule_parts(text: str) -> dict[str, str]:
    """The ``NAME=VALUE`` parts of a rule, upper-cased; ValueError names the first bad one."""
    if not re.fullmatch(r"[A-Za-z0-9=;,+\-]+", text):
        raise ValueError("write only NAME=VALUE parts joined by ';', e.g. FREQ=WEEKLY;BYDAY=SA")
    parts: dict[str, str] = {}
    for part in text.upper().split(";"):
        name, _, value = part.partition("=")
        if not name or not value:
            raise ValueError(f"{show_value(part)} is not a NAME=VALUE part")
        if name not in _PARTS:
            raise ValueError(f"{name} is not supported; the parts are {', '.join(_PARTS)}")
        if name in parts:
            raise ValueError(f"{name} is given twice")
        parts[name] = value
    return parts


def check_parts(parts: dict[str, str]) -> None:
    """Range checks dateutil leaves out (it loops or raises IndexError on some of these)."""
    freq = parts.get("FREQ")
    if freq not in _FREQS:
        # SECONDLY and MINUTELY too: a window opens at most hourly, and iterating seconds
        # over two centuries would take hours.
        raise ValueError(f"FREQ must be one of {', '.join(_FREQS)}")
    interval = parts.get("INTERVAL", "1")
    if not re.fullmatch(r"\+?[0-9]{1,4}", interval) or not 1 <= int(interval) <= 1000:
        raise ValueError(f"INTERVAL={interval}: give a whole number from 1 to 1000")
    for name, (low, high, from_end) in _NUMBERS.items():
        for item in parts[name].split(",") if name in parts else ():
            ok = re.fullmatch(r"[+-]?[0-9]{1,3}", item) is not None
            number = int(item) if ok else 0
            if not ok or not (low <= abs(number) <= high if from_end else low <= number <= high):
                sign = "±" if from_end else ""
                raise ValueError(f"{name}={parts[name]}: each value is {sign}{low} to {high}")
    for item in parts["BYDAY"].split(",") if "BYDAY" in parts else ():
        found = _WEEKDAY.match(item)
        if not found or (found[1] and not 1 <= abs(int(found[1])) <= 53):
            raise ValueError(f"BYDAY={parts['BYDAY']}: each value is a day (MO … SU), -1FR etc.")
    if parts.get("WKST", "MO") not in _DAYS:
        raise ValueError(f"WKST={parts['WKST']}: one of {', '.join(_DAYS)}")
    if "BYSETPOS" in parts and freq not in ("MONTHLY", "YEARLY"):
        raise ValueError("BYSETPOS is supported with FREQ=MONTHLY or FREQ=YEARLY only")
    if parts.get("UNTIL", "").endswith("Z"):
        raise ValueError("UNTIL is local time in the window's timezone: drop the trailing Z")


def any_day_matches(parts: dict[str, str]) -> bool:
    """Whether any calendar day passes the rule's day filters, for HOURLY to WEEKLY rules.

    dateutil finds out that a rule never matches (BYMONTH=2;BYMONTHDAY=30) only by stepping
    through every period up to year 9999: seconds for an hourly rule. The same filters in a
    yearly rule match the same days (a BYDAY count is ignored below MONTHLY) and step by years.
    """
    filters = {k: v for k, v in parts.items() if k in _DAY_FILTERS}
    if not filters:
        return True
    if "BYDAY" in filters:
        filters["BYDAY"] = ",".join(_WEEKDAY.sub(r"\2", d) for d in filters["BYDAY"].split(","))
    text = ";".join(["FREQ=YEARLY", *(f"{k}={v}" for k, v in filters.items())])
    return rrule.rrulestr(text, dtstart=ANCHOR).after(ANCHOR, inc=True) is not None


def openings(rule: str | None, cron: str | None, count: int) -> list[datetime]:
    """The first ``count`` naive local start times from :data:`ANCHOR` up to LAST_START.

    Clock-independent (the planner reads the clock). May raise whatever dateutil or croniter
    raise for a rule they accepted but cannot iterate: callers catch it.
    """
    starts = (
        iter(rrule.rrulestr(rule, dtstart=ANCHOR).xafter(ANCHOR, inc=True))
        if rule is not None
        else _cron_starts(str(cron))
    )
    return list(islice(takewhile(lambda start: start <= LAST_START, starts), count))


def _cron_starts(expression: str) -> Iterator[datetime]:
    starts = croniter(expression, ANCHOR - timedelta(seconds=1))
    while True:
        try:
            yield starts.get_next(datetime)
        except CroniterBadDateError:
            return  # no start within croniter's own search bound (0 0 30 2 *): none at all


def never_opens(rule: str | None, cron: str | None) -> str | None:
    try:
        found = openings(rule, cron, 1)
    except Exception as exc:  # third-party iteration fails in many ways
        return f"cannot compute when it opens: {exc or type(exc).__name__}"
    if found:
        return None
    parts = "UNTIL and the BY… parts" if rule is not None else "the day-of-month and month"
    return f"never opens (no opening from {ANCHOR:%Y-%m-%d} to {LAST_DAY}): check {parts}"
