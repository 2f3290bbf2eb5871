"""Unit: maintenance window occurrences (recurrence, timezone, DST, cutoff, freezes)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from patchkit.errors import PolicyError
from patchkit.planning.windows import next_occurrence, upcoming
from patchkit.policy import loads
from patchkit.policy.model import Window

BERLIN = ZoneInfo("Europe/Berlin")
NEW_YORK = ZoneInfo("America/New_York")
WED = datetime(2026, 11, 25, 10, 0, tzinfo=UTC)


def window(**fields: Any) -> Window:
    base: dict[str, Any] = {"name": "w", "timezone": "Europe/Berlin", "duration": "4h"}
    return Window.model_validate(base | fields)


SATURDAY = window(rrule="FREQ=WEEKLY;BYDAY=SA;BYHOUR=22;BYMINUTE=0;BYSECOND=0", cutoff="45m")


def test_weekly_rrule_in_local_time() -> None:
    occ = next_occurrence(SATURDAY, WED)
    assert occ is not None
    assert occ.start == datetime(2026, 11, 28, 22, 0, tzinfo=BERLIN)
    assert occ.end == datetime(2026, 11, 29, 2, 0, tzinfo=BERLIN)
    assert occ.cutoff == datetime(2026, 11, 29, 1, 15, tzinfo=BERLIN)
    assert occ.skipped == ()


def test_cron_weekdays_at_noon() -> None:
    lunch = window(cron="0 12 * * 1-5", duration="1h30m", cutoff="15m")
    starts = [o.start for o in upcoming(lunch, datetime(2026, 11, 27, 12, 0, tzinfo=UTC), 3)]
    # Friday 12:00 Berlin is 11:00 UTC: over by 12:00 UTC? It ends 13:30 local = 12:30 UTC,
    # cutoff 13:15 local = 12:15 UTC, so it is still open; then Monday and Tuesday.
    assert starts == [
        datetime(2026, 11, 27, 12, 0, tzinfo=BERLIN),
        datetime(2026, 11, 30, 12, 0, tzinfo=BERLIN),
        datetime(2026, 12, 1, 12, 0, tzinfo=BERLIN),
    ]


def test_inside_the_window_before_and_after_cutoff() -> None:
    during = datetime(2026, 11, 28, 23, 30, tzinfo=BERLIN)
    occ = next_occurrence(SATURDAY, during)
    assert occ is not None and occ.start == datetime(2026, 11, 28, 22, 0, tzinfo=BERLIN)
    late = datetime(2026, 11, 29, 1, 20, tzinfo=BERLIN)  # past the cutoff
    occ = next_occurrence(SATURDAY, late)
    assert occ is not None and occ.start == datetime(2026, 12, 5, 22, 0, tzinfo=BERLIN)


def test_fortnightly_rule_does_not_depend_on_the_day_asked() -> None:
    fortnight = window(rrule="FREQ=WEEKLY;INTERVAL=2;BYDAY=SA;BYHOUR=22")
    first = next_occurrence(fortnight, WED)
    later = next_occurrence(fortnight, WED + timedelta(days=7))
    assert first is not None and later is not None
    assert (later.start - first.start) in (timedelta(0), timedelta(days=14))
    assert first.start.weekday() == 5


def test_frozen_occurrences_are_skipped_with_their_reason() -> None:
    frozen = window(
        rrule=SATURDAY.rrule,
        freeze=[{"start": "2026-12-19", "end": "2027-01-04", "reason": "year-end freeze"}],
    )
    occ = next_occurrence(frozen, datetime(2026, 12, 15, tzinfo=UTC))
    assert occ is not None and occ.start == datetime(2027, 1, 9, 22, 0, tzinfo=BERLIN)
    assert [s.reason for s in occ.skipped] == ["year-end freeze"] * 3
    assert occ.skipped[0].start == datetime(2026, 12, 19, 22, 0, tzinfo=BERLIN)


def test_a_window_past_midnight_touching_a_freeze_on_its_second_day() -> None:
    frozen = window(rrule=SATURDAY.rrule, freeze=[{"start": "2026-11-29", "end": "2026-11-29"}])
    occ = next_occurrence(frozen, WED)
    assert occ is not None and occ.start.date().isoformat() == "2026-12-05"
    assert len(occ.skipped) == 1


def test_everything_frozen_gives_none() -> None:
    frozen = window(rrule=SATURDAY.rrule, freeze=[{"start": "2026-01-01", "end": "2028-12-31"}])
    assert next_occurrence(frozen, WED) is None


def test_until_in_the_past_gives_none() -> None:
    ended = window(rrule="FREQ=WEEKLY;BYDAY=SA;BYHOUR=22;UNTIL=20260101T000000")
    assert next_occurrence(ended, WED) is None


def test_count_is_refused_by_the_policy() -> None:
    text = (
        "name: t\nroles: {owner: o, approvers: [a]}\n"
        "windows: [{name: w, rrule: 'FREQ=DAILY;COUNT=3', duration: 1h}]\n"
    )
    with pytest.raises(PolicyError, match="use UNTIL"):
        loads(text)


def test_spring_forward_gap_moves_the_start_forward() -> None:
    nightly = window(rrule="FREQ=DAILY;BYHOUR=2;BYMINUTE=30;BYSECOND=0", duration="1h")
    occ = next_occurrence(nightly, datetime(2027, 3, 27, 12, 0, tzinfo=BERLIN))
    assert occ is not None
    assert occ.start.astimezone(UTC) == datetime(2027, 3, 28, 1, 30, tzinfo=UTC)  # 03:30 CEST


def test_fall_back_takes_the_first_of_two_equal_wall_times() -> None:
    # 2026-11-01 01:30 happened twice in New York (EDT, then EST): the first one is taken.
    nightly = window(
        rrule="FREQ=DAILY;BYHOUR=1;BYMINUTE=30;BYSECOND=0",
        duration="1h",
        timezone="America/New_York",
    )
    occ = next_occurrence(nightly, datetime(2026, 10, 31, 12, 0, tzinfo=NEW_YORK))
    assert occ is not None
    assert occ.start.astimezone(UTC) == datetime(2026, 11, 1, 5, 30, tzinfo=UTC)  # EDT, fold 0


def test_duration_is_real_time_across_a_dst_change() -> None:
    occ = next_occurrence(SATURDAY, datetime(2027, 3, 25, tzinfo=UTC))
    assert occ is not None and occ.start == datetime(2027, 3, 27, 22, 0, tzinfo=BERLIN)
    assert occ.end.astimezone(UTC) - occ.start.astimezone(UTC) == timedelta(hours=4)
    assert occ.end.hour == 3  # 22:00 CET + 4h = 03:00 CEST


def test_time_given_in_another_zone() -> None:
    new_york_friday = datetime(2026, 11, 28, 15, 0, tzinfo=NEW_YORK)  # 21:00 Berlin
    occ = next_occurrence(SATURDAY, new_york_friday)
    assert occ is not None and occ.start == datetime(2026, 11, 28, 22, 0, tzinfo=BERLIN)


def test_naive_time_is_refused() -> None:
    with pytest.raises(ValueError, match="timezone"):
        next_occurrence(SATURDAY, datetime(2026, 11, 25))


RULES = [
    SATURDAY,
    window(cron="0 12 * * 1-5", duration="90m", cutoff="15m"),
    window(rrule="FREQ=HOURLY;BYMINUTE=0;BYSECOND=0", duration="60m", cutoff="5m", timezone="UTC"),
    window(
        rrule="FREQ=DAILY;BYHOUR=2;BYMINUTE=30",
        duration="3h",
        timezone="America/New_York",
        freeze=[{"start": "2027-01-10", "end": "2027-01-20"}],
    ),
]


@settings(max_examples=80, deadline=None)
@given(
    at=st.datetimes(
        min_value=datetime(2026, 1, 1), max_value=datetime(2028, 1, 1), timezones=st.just(UTC)
    ),
    index=st.integers(min_value=0, max_value=len(RULES) - 1),
)
def test_occurrence_invariants(at: datetime, index: int) -> None:
    rule = RULES[index]
    occ = next_occurrence(rule, at)
    assert occ is not None
    assert occ.start > at or occ.start <= at < occ.cutoff  # upcoming, or open and still usable
    assert occ.end.astimezone(UTC) - occ.start.astimezone(UTC) == rule.duration
    # same-zone subtraction in Python is wall-clock: compare real elapsed time in UTC
    assert occ.end.astimezone(UTC) - occ.cutoff.astimezone(UTC) == rule.cutoff
    for freeze in rule.freeze:
        assert occ.end.date() < freeze.start or occ.start.date() > freeze.end
    after = next_occurrence(rule, occ.end)
    assert after is not None and after.start > occ.start  # no repeats
