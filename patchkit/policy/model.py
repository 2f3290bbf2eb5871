"""The patch policy as typed data: one model per section of a written patch-management policy.

Validated once, at the edge (``patchkit.policy.loader``); past the loader nothing re-checks. Every
model forbids unknown keys, so a typo is an error, never a silently ignored setting. Every value
is bounded to what an operator can mean (a count of hosts is at least 1 where 0 would do nothing,
a timeout is above 0, a date lies in 2000-2200, a window opens at all): a mistake is refused here
with a message, rather than surfacing as a crash or a silent no-op halfway through a window.
"""

from __future__ import annotations

import copy
import math
import re
import unicodedata
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from itertools import islice, pairwise, takewhile
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from croniter import CroniterBadDateError, croniter
from dateutil import rrule
from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    GetCoreSchemaHandler,
    GetJsonSchemaHandler,
    PlainSerializer,
    StringConstraints,
    WithJsonSchema,
    field_validator,
    model_validator,
)
from pydantic.json_schema import GenerateJsonSchema, JsonSchemaValue
from pydantic_core import CoreSchema, core_schema

from patchkit.model import Severity

# ---------------------------------------------------------------- limits

SHORT_TEXT = 256  # names, owners, patterns, variables
LONG_TEXT = 4000  # descriptions, reasons, commands
URL_LENGTH = 2048
MAX_DURATION = timedelta(days=366)  # any duration; fields set tighter bounds where sensible
FIRST_DAY, LAST_DAY = date(2000, 1, 1), date(2200, 12, 31)
MAX_HOSTS = 1_000_000  # a count of hosts beyond this is a typo, not a fleet


def _show(value: Any) -> str:
    """``repr`` short enough for one line of an error message, whatever the input."""
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


# ---------------------------------------------------------------- text

_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")  # tab and newline are text in prose


def _printable(value: str, *, lines: bool) -> str:
    found = _CONTROL.search(value)
    bad = found[0] if found else None
    if bad is None and not lines:
        # Tabs and newlines in a name, and zero-width or direction marks pasted along with
        # it (Unicode format characters), make it match nothing.
        bad = next((c for c in value if c in "\t\n" or unicodedata.category(c) == "Cf"), None)
    if bad is not None:
        raise ValueError(f"contains the control or invisible character U+{ord(bad):04X}: remove it")
    return value


def _word(value: str) -> str:
    """One line, not blank, no spaces around it: names, patterns, owners."""
    if not value.strip():
        raise ValueError("is blank: give a value")
    if value != value.strip():
        raise ValueError(f"{_show(value)} has spaces around it: remove them")
    return _printable(value, lines=False)


def _label(value: str) -> str:
    return _printable(value, lines=False)


def _prose(value: str) -> str:
    return _printable(value, lines=True)


def _paragraph(value: str) -> str:
    if not value.strip():
        raise ValueError("is blank: say it in words")
    return _printable(value, lines=True)


Text = Annotated[str, StringConstraints(min_length=1, max_length=SHORT_TEXT), AfterValidator(_word)]
Label = Annotated[str, StringConstraints(max_length=SHORT_TEXT), AfterValidator(_label)]
Prose = Annotated[str, StringConstraints(max_length=LONG_TEXT), AfterValidator(_prose)]
Paragraph = Annotated[
    str, StringConstraints(min_length=1, max_length=LONG_TEXT), AfterValidator(_paragraph)
]
Patterns = list[Text]


def _some(value: list[str]) -> list[str]:
    if not value:
        raise ValueError("names no hosts: leave the key out to mean all hosts")
    return value


SomeHosts = Annotated[Patterns, AfterValidator(_some), Field(json_schema_extra={"minItems": 1})]


def _http_url(value: str) -> str:
    if not value.startswith(("http://", "https://")):
        raise ValueError(f"{_show(value)}: the URL starts with http:// or https://")
    if re.search(r"\s", value) or _CONTROL.search(value):
        raise ValueError(f"{_show(value)}: a URL has no spaces or control characters")
    try:
        parts = urlsplit(value)
        host, _ = parts.hostname, parts.port  # .port raises on a port that is not a number
    except ValueError as exc:
        raise ValueError(f"{_show(value)} is not a URL: {exc}") from None
    if not host:
        raise ValueError(f"{_show(value)} names no host, as in https://host.example.org/path")
    return value


HttpUrl = Annotated[
    str,
    StringConstraints(max_length=URL_LENGTH),
    AfterValidator(_http_url),
    WithJsonSchema({"type": "string", "pattern": r"^https?://[^/\s?#]+", "maxLength": URL_LENGTH}),
]


# ---------------------------------------------------------------- durations

_UNITS = re.compile(
    r"^\s*(?:([0-9]+)\s*d)?\s*(?:([0-9]+)\s*h)?\s*(?:([0-9]+)\s*m)?\s*(?:([0-9]+)\s*s)?\s*$"
)
_CLOCK = re.compile(r"^\s*([0-9]+):([0-5][0-9])(?::([0-5][0-9]))?\s*$")  # h:mm or h:mm:ss
_MINUTES = re.compile(r"^\s*([0-9]+)\s*$")


def _seconds(value: Any) -> float | None:
    """The length of ``value`` in seconds, None when it is not a duration at all."""
    if isinstance(value, timedelta):
        return value.total_seconds()
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value * 60
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError(f"{value} is not a duration: use e.g. 30m, 4h, 1h30m or 2d")
        return value * 60
    if not isinstance(value, str):
        return None
    forms = ((_UNITS, (86400, 3600, 60, 1)), (_CLOCK, (3600, 60, 1)), (_MINUTES, (60,)))
    matched = [
        (m, sizes) for pattern, sizes in forms if (m := pattern.match(value)) and any(m.groups())
    ]
    if not matched:
        return None
    found, sizes = matched[0]
    digits = [g or "0" for g in found.groups()]
    if any(len(d) > 12 for d in digits):  # int() of thousands of digits raises; this is huge
        return math.inf
    return sum(int(d) * size for d, size in zip(digits, sizes, strict=True))


def parse_duration(value: Any) -> timedelta:
    """``"4h"``, ``"1h30m"``, ``"90s"``, ``"2d"``, ``"1:30"`` (h:mm), ``"1:30:00"``; a bare
    number is minutes. Never negative and at most :data:`MAX_DURATION`, so that arithmetic on
    it cannot overflow."""
    seconds = _seconds(value)
    if seconds is None:
        raise ValueError(
            f"{_show(value)} is not a duration: use e.g. 30m, 4h, 1h30m, 1:30, 90s or 2d"
        )
    if seconds < 0:
        raise ValueError(f"{_show(value)}: a duration cannot be negative")
    if seconds > MAX_DURATION.total_seconds():
        raise ValueError(
            f"{_show(value)} is longer than {format_duration(MAX_DURATION)}, the longest allowed"
        )
    return timedelta(seconds=seconds)


def format_duration(value: timedelta) -> str:
    seconds = int(value.total_seconds())
    parts = []
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        if seconds >= size:
            parts.append(f"{seconds // size}{unit}")
            seconds %= size
    return "".join(parts) or "0m"


_DURATION_TEXT = "30m, 4h, 1h30m, 1:30 (h:mm), 90s or 2d"
Duration = Annotated[
    timedelta,
    BeforeValidator(parse_duration),
    PlainSerializer(format_duration, return_type=str),
    WithJsonSchema(
        {
            "anyOf": [
                {
                    "type": "string",
                    "pattern": r"^(?=[0-9])([0-9]+d)?([0-9]+h)?([0-9]+m)?([0-9]+s)?$"
                    r"|^[0-9]+:[0-5][0-9](:[0-5][0-9])?$",
                },
                {
                    "type": "number",
                    "minimum": 0,
                    "maximum": int(MAX_DURATION.total_seconds()) // 60,
                    "description": "minutes",
                },
            ],
            "description": f"a duration: {_DURATION_TEXT} (a bare number is minutes)",
        }
    ),
]


@dataclass(frozen=True)
class Within:
    """Bounds of one duration field (pydantic metadata): checked after parsing, and written
    into the field's JSON Schema."""

    most: timedelta
    above_zero: bool = False  # where 0 means nothing: a timeout of 0 expires at once

    def check(self, value: timedelta) -> timedelta:
        if self.above_zero and value <= timedelta(0):
            raise ValueError("must be longer than 0")
        if value > self.most:
            raise ValueError(
                f"{format_duration(value)} is too long here: at most {format_duration(self.most)}"
            )
        return value

    def __get_pydantic_core_schema__(
        self, source: Any, handler: GetCoreSchemaHandler
    ) -> CoreSchema:
        return core_schema.no_info_after_validator_function(self.check, handler(source))

    def __get_pydantic_json_schema__(
        self, schema: CoreSchema, handler: GetJsonSchemaHandler
    ) -> JsonSchemaValue:
        body = copy.deepcopy(handler(schema))
        low = "longer than 0" if self.above_zero else "0 or longer"
        for branch in body.get("anyOf", []):
            if branch.get("type") == "number":
                branch["maximum"] = int(self.most.total_seconds()) // 60
                if self.above_zero:
                    branch["exclusiveMinimum"] = 0
            else:
                branch["description"] = f"{low}, at most {format_duration(self.most)}"
        return body


# ---------------------------------------------------------------- dates

_ISO_DAY = re.compile(r"^[0-9]{4}-[0-9]{2}-[0-9]{2}$")


def parse_day(value: Any) -> date:
    """A calendar day written ``YYYY-MM-DD``, from 2000-01-01 to 2200-12-31."""
    if isinstance(value, date) and not isinstance(value, datetime):
        day = value
    elif isinstance(value, str) and _ISO_DAY.match(value.strip()):
        try:
            day = date.fromisoformat(value.strip())
        except ValueError as exc:
            raise ValueError(f"{_show(value)} is not a date: {exc}") from None
    else:
        raise ValueError(f"{_show(value)} is not a date: write YYYY-MM-DD, e.g. 2027-01-31")
    if not FIRST_DAY <= day <= LAST_DAY:
        raise ValueError(f"{day} is not between {FIRST_DAY} and {LAST_DAY}")
    return day


Day = Annotated[
    date,
    BeforeValidator(parse_day),
    WithJsonSchema(
        {
            "type": "string",
            "format": "date",
            "pattern": r"^[0-9]{4}-[0-9]{2}-[0-9]{2}$",
            "description": f"a date, YYYY-MM-DD, from {FIRST_DAY} to {LAST_DAY}",
        }
    ),
]


# ---------------------------------------------------------------- counts and percentages


def _amount_problem(value: float, percent: bool) -> str | None:
    """What is wrong with this amount in any field, or None; fields may ask for more."""
    if math.isnan(value):
        return "not a number: give a count (5) or a percentage ('20%')"
    if percent:
        if not 0 < value <= 100:
            return f"{value:g}%: a percentage must be above 0% and at most 100%"
    elif value < 0:
        return "a count cannot be negative"
    elif value > MAX_HOSTS:
        return f"more than {MAX_HOSTS} hosts: give fewer, or a percentage such as '100%'"
    elif value != int(value):
        return f"{value:g}: a count of hosts is a whole number"
    return None


class Amount(BaseModel):
    """A count of hosts, or a percentage of some total (``5`` or ``"20%"``)."""

    model_config = ConfigDict(frozen=True, extra="forbid", allow_inf_nan=False)
    value: float
    percent: bool = False

    @model_validator(mode="after")
    def _in_range(self) -> Amount:
        problem = _amount_problem(self.value, self.percent)
        if problem:
            raise ValueError(problem)
        return self

    def of(self, total: int, *, minimum: int = 1) -> int:
        """Resolve against ``total`` hosts: a percentage rounds up, never below ``minimum``."""
        if not self.percent:
            return max(minimum, int(self.value))
        return max(minimum, math.ceil(total * self.value / 100))

    def __str__(self) -> str:
        return f"{self.value:g}%" if self.percent else str(int(self.value))


_PERCENT = re.compile(r"^\s*([0-9]+(?:\.[0-9]+)?)\s*%\s*$")
_COUNT = re.compile(r"^\s*([0-9]+)\s*$")


def _parse_amount(value: Any) -> Any:
    if isinstance(value, Amount | dict):
        return value  # the dict form is checked by Amount itself, the same way
    if isinstance(value, bool):
        raise ValueError("a count (5) or a percentage ('20%')")
    if isinstance(value, int):
        # Checked before float(), which raises OverflowError on a huge int.
        problem = _amount_problem(max(-1, min(value, MAX_HOSTS + 1)), False)
        if problem:
            raise ValueError(problem)
        return Amount(value=value)
    if isinstance(value, str):
        for pattern, percent in ((_PERCENT, True), (_COUNT, False)):
            found = pattern.match(value)
            if found:
                number = float(found[1])  # digits only: inf at worst, never an error
                problem = _amount_problem(number, percent)
                if problem:
                    raise ValueError(problem)
                return Amount(value=number, percent=percent)
    raise ValueError(f"{_show(value)} is neither a count (5) nor a percentage ('20%')")


def _at_least_one_host(value: Amount) -> Amount:
    if not value.percent and value.value < 1:
        raise ValueError("0 hosts does nothing: give at least 1, or a percentage")
    return value


def _amount_schema(minimum: int, description: str) -> WithJsonSchema:
    return WithJsonSchema(
        {
            "anyOf": [
                {"type": "integer", "minimum": minimum, "maximum": MAX_HOSTS},
                {
                    "type": "string",
                    "pattern": r"^[0-9]+(\.[0-9]+)?%$",
                    "description": "above 0% and at most 100%",
                },
                {
                    "type": "object",
                    "properties": {
                        "value": {"type": "number", "minimum": minimum},
                        "percent": {"type": "boolean", "default": False},
                    },
                    "required": ["value"],
                    "additionalProperties": False,
                },
            ],
            "description": description,
        }
    )


CountOrPercent = Annotated[
    Amount,
    BeforeValidator(_parse_amount),
    PlainSerializer(str, return_type=str),
    _amount_schema(0, "a count of hosts (5) or a percentage ('20%')"),
]
HostsOrPercent = Annotated[
    Amount,
    BeforeValidator(_parse_amount),
    AfterValidator(_at_least_one_host),
    PlainSerializer(str, return_type=str),
    _amount_schema(1, "a count of hosts, at least 1 (5), or a percentage ('20%')"),
]


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


def _rrule_parts(text: str) -> dict[str, str]:
    """The ``NAME=VALUE`` parts of a rule, upper-cased; ValueError names the first bad one."""
    if not re.fullmatch(r"[A-Za-z0-9=;,+\-]+", text):
        raise ValueError("write only NAME=VALUE parts joined by ';', e.g. FREQ=WEEKLY;BYDAY=SA")
    parts: dict[str, str] = {}
    for part in text.upper().split(";"):
        name, _, value = part.partition("=")
        if not name or not value:
            raise ValueError(f"{_show(part)} is not a NAME=VALUE part")
        if name not in _PARTS:
            raise ValueError(f"{name} is not supported; the parts are {', '.join(_PARTS)}")
        if name in parts:
            raise ValueError(f"{name} is given twice")
        parts[name] = value
    return parts


def _check_parts(parts: dict[str, str]) -> None:
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


def _some_day(parts: dict[str, str]) -> bool:
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


def _openings(rule: str | None, cron: str | None, count: int) -> list[datetime]:
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


def _never_opens(rule: str | None, cron: str | None) -> str | None:
    try:
        found = _openings(rule, cron, 1)
    except Exception as exc:  # third-party iteration fails in many ways
        return f"cannot compute when it opens: {exc or type(exc).__name__}"
    if found:
        return None
    parts = "UNTIL and the BY… parts" if rule is not None else "the day-of-month and month"
    return f"never opens (no opening from {ANCHOR:%Y-%m-%d} to {LAST_DAY}): check {parts}"


# ---------------------------------------------------------------- base


class Section(BaseModel):
    # str_max_length is a backstop for any text field without a tighter limit of its own.
    model_config = ConfigDict(
        extra="forbid", frozen=True, allow_inf_nan=False, str_max_length=LONG_TEXT
    )


# ---------------------------------------------------------------- sections


class Scope(Section):
    """Which inventory hosts the policy governs (Ansible host patterns or group names)."""

    include: SomeHosts = Field(default_factory=lambda: ["all"])
    exclude: Patterns = Field(default_factory=list)


class Roles(Section):
    owner: Text = Field(description="Who owns this policy (a team or person).")
    approvers: list[Text] = Field(
        default_factory=list, description="Who may approve a plan made under this policy."
    )
    approval_required: bool = Field(
        default=True, description="A plan must be approved before it runs."
    )
    contacts: dict[Text, Text] = Field(
        default_factory=dict, description="Contact per inventory group (group: address)."
    )

    @model_validator(mode="after")
    def _approvers_when_required(self) -> Roles:
        if self.approval_required and not self.approvers:
            raise ValueError("approval_required is true but no approvers are named")
        return self


class SeverityRule(Section):
    """Give updates matching every condition set here a severity (first matching rule wins)."""

    severity: Severity
    packages: Patterns = Field(default_factory=list, description="Package name globs.")
    origins: Patterns = Field(default_factory=list, description="Origin (suite) globs.")
    security: bool | None = Field(default=None, description="Only security (or non-security).")

    @model_validator(mode="after")
    def _has_condition(self) -> SeverityRule:
        if not self.packages and not self.origins and self.security is None:
            raise ValueError("a severity rule needs packages, origins or security to match on")
        return self


class Classification(Section):
    """Which updates are in, and how severe each is."""

    updates: Literal["security", "all"] = Field(
        default="all", description="security: only updates from a security origin."
    )
    allow: Patterns = Field(
        default_factory=list, description="If set, only packages matching these globs."
    )
    deny: Patterns = Field(default_factory=list, description="Packages never patched (globs).")
    minimum_age: Annotated[Duration, Within(timedelta(days=90))] = Field(
        default=timedelta(0), description="An update is applied only once known this long."
    )
    security_origins: Patterns = Field(
        default_factory=lambda: ["*-security", "*security*"],
        description="Origins whose updates count as security updates.",
    )
    severity_rules: list[SeverityRule] = Field(default_factory=list)
    security_severity: Severity = Severity.HIGH
    default_severity: Severity = Severity.MEDIUM


def _tier_value(value: str | int) -> str | int:
    return _word(value) if isinstance(value, str) else value


class TierRule(Section):
    """Asset criticality from a host variable's value or from group membership."""

    criticality: int = Field(ge=1, le=10, description="Weight: 10 the most critical asset.")
    label: Label = ""
    groups: Patterns = Field(default_factory=list)
    values: list[Annotated[str | int, AfterValidator(_tier_value)]] = Field(
        default_factory=list, description="Values of the criticality variable."
    )

    @model_validator(mode="after")
    def _has_condition(self) -> TierRule:
        if not self.groups and not self.values:
            raise ValueError("a tier rule needs groups or values to match on")
        return self


class Criticality(Section):
    variable: Text = Field(default="tier", description="Host variable holding the asset tier.")
    tiers: list[TierRule] = Field(default_factory=list, description="First matching rule wins.")
    default: int = Field(default=1, ge=1, le=10)


class Freeze(Section):
    start: Day
    end: Day
    reason: Prose = ""

    @model_validator(mode="after")
    def _ordered(self) -> Freeze:
        if self.end < self.start:
            raise ValueError("a freeze ends before it starts")
        return self


_ZONE = re.compile(r"[A-Za-z0-9_+\-]+(?:/[A-Za-z0-9_+\-]+)*")


class Window(Section):
    """A named, recurring maintenance window."""

    name: str = Field(pattern=r"^[a-z0-9][a-z0-9-]*$", max_length=64)
    hosts: SomeHosts = Field(
        default_factory=lambda: ["all"], description="Which in-scope hosts it serves."
    )
    rrule: str | None = Field(
        default=None,
        max_length=500,
        description="RFC 5545 RRULE, e.g. FREQ=WEEKLY;BYDAY=SA (HOURLY to YEARLY; no COUNT).",
        json_schema_extra={"pattern": r"^(RRULE:)?[A-Za-z0-9=;,+\-]+$"},
    )
    cron: str | None = Field(
        default=None, max_length=200, description="A 5-field cron expression of the start."
    )
    timezone: str = Field(
        default="UTC",
        description="IANA time zone, e.g. Europe/Berlin.",
        json_schema_extra={"pattern": f"^{_ZONE.pattern}$", "maxLength": 64},
    )
    duration: Annotated[Duration, Within(timedelta(days=7), above_zero=True)]
    cutoff: Annotated[Duration, Within(timedelta(days=7))] = Field(
        default=timedelta(minutes=30), description="No batch starts this close to the end."
    )
    freeze: list[Freeze] = Field(default_factory=list)

    @field_validator("rrule")
    @classmethod
    def _valid_rrule(cls, value: str | None) -> str | None:
        if value is None:
            return None
        text = value.removeprefix("RRULE:")
        if "COUNT=" in text.upper():
            raise ValueError("COUNT is not supported (rules are anchored in 2000): use UNTIL")
        if "DTSTART" in text.upper():
            raise ValueError("give the rule only (FREQ=…); the start time comes from BYHOUR etc.")
        try:
            parts = _rrule_parts(text)
            _check_parts(parts)
        except ValueError as exc:
            raise ValueError(f"{_show(value)} is not a usable RRULE: {exc}") from None
        try:
            rrule.rrulestr(text, dtstart=ANCHOR)
            some_day = parts["FREQ"] in ("MONTHLY", "YEARLY") or _some_day(parts)
        except Exception as exc:  # dateutil: ValueError, TypeError, KeyError…
            raise ValueError(f"{_show(value)} is not an RFC 5545 RRULE: {exc}") from None
        if not some_day:
            raise ValueError("never opens: no calendar day matches its BY… parts")
        problem = _never_opens(text, None)
        if problem:
            raise ValueError(problem)
        return text

    @field_validator("cron")
    @classmethod
    def _valid_cron(cls, value: str | None) -> str | None:
        if value is None:
            return None
        try:
            valid = len(value.split()) == 5 and bool(croniter.is_valid(value))
        except Exception:  # is_valid itself raises on some inputs
            valid = False
        if not valid:
            raise ValueError(
                f"{_show(value)} is not a 5-field cron expression (minute hour dom mon dow)"
            )
        if re.search(r"\bR\b", value, re.IGNORECASE):
            raise ValueError("R (a random time) is not allowed: a window opens at set times")
        problem = _never_opens(None, value)
        if problem:
            raise ValueError(problem)
        return value

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        if len(value) <= 64 and _ZONE.fullmatch(value):
            try:
                ZoneInfo(value)
            # Not found; not a TZif file (zone1970.tab); a directory (America); too long.
            except (ZoneInfoNotFoundError, ValueError, OSError):
                pass
            else:
                return value
        raise ValueError(f"{_show(value)} is not a time zone name (e.g. UTC, Europe/Berlin)")

    @model_validator(mode="after")
    def _one_recurrence(self) -> Window:
        if (self.rrule is None) == (self.cron is None):
            raise ValueError("give exactly one of rrule or cron")
        if self.cutoff >= self.duration:
            raise ValueError("cutoff must be shorter than the duration")
        try:
            starts = _openings(self.rrule, self.cron, 64)
        except Exception:  # the field checks passed; the planner reports it
            starts = []
        gap = min((b - a for a, b in pairwise(starts)), default=None)
        if gap is not None and gap < self.duration:
            raise ValueError(
                f"two openings are {format_duration(gap)} apart but it lasts "
                f"{format_duration(self.duration)}: they would overlap (shorten duration, or "
                "open less often)"
            )
        return self


class Canary(Section):
    size: HostsOrPercent = Field(description="Hosts in the canary batch.")
    hosts: Patterns = Field(
        default_factory=lambda: ["all"], description="Hosts preferred for the canary."
    )


class AntiAffinity(Section):
    variable: Text = Field(default="cluster", description="Host variable naming the cluster.")
    max_per_batch: int = Field(default=1, ge=1, le=MAX_HOSTS)


class Estimate(Section):
    """Time per host when there is no history: used to fit batches into the window."""

    base: Annotated[Duration, Within(timedelta(days=1))] = Field(default=timedelta(minutes=3))
    per_package: Annotated[Duration, Within(timedelta(hours=1))] = Field(
        default=timedelta(seconds=20)
    )
    reboot: Annotated[Duration, Within(timedelta(hours=2))] = Field(default=timedelta(minutes=3))


class Rollout(Section):
    batch_size: HostsOrPercent = Field(default_factory=lambda: Amount(value=25, percent=True))
    concurrency: HostsOrPercent = Field(
        default_factory=lambda: Amount(value=10),
        description="Hosts patched at the same time within a batch (Ansible forks).",
    )
    canary: Canary | None = None
    order: Literal["priority", "name"] = "priority"
    anti_affinity: AntiAffinity | None = Field(default_factory=AntiAffinity)
    # 0 stays allowed: execution.rules.threshold_crossed reads it as "the first failure
    # halts", the same as 1, and lab policies and tests use it that way.
    error_threshold: CountOrPercent = Field(
        default_factory=lambda: Amount(value=10, percent=True),
        description="Failures (count, or % of the hosts run so far) that halt the window; "
        "0 and 1 both halt at the first failed host.",
    )
    estimate: Estimate = Field(default_factory=Estimate)


class Prechecks(Section):
    min_free_disk: int = Field(
        default=500, ge=0, le=1024 * 1024, description="MiB free on / before patching."
    )
    healthy_before: bool = Field(default=True, description="Run verification before patching.")
    pending_reboot: Literal["note", "reboot-first", "skip-host"] = "note"


class Snapshot(Section):
    backend: Text = Field(
        default="package", description="package or lab now; other names are accepted."
    )
    retention: Annotated[Duration, Within(MAX_DURATION)] = Field(default=timedelta(days=7))


class BackupHook(Section):
    command: Paragraph = Field(description="Run on the controller before a host is patched.")
    timeout: Annotated[Duration, Within(timedelta(days=1), above_zero=True)] = Field(
        default=timedelta(minutes=10)
    )


class Preparation(Section):
    prechecks: Prechecks = Field(default_factory=Prechecks)
    snapshot: Snapshot = Field(default_factory=Snapshot)
    backup: BackupHook | None = None


class Downtime(Section):
    reboot: Literal["if-needed", "always", "never"] = "if-needed"
    reboot_timeout: Annotated[Duration, Within(timedelta(hours=2), above_zero=True)] = Field(
        default=timedelta(minutes=10), description="How long a host may take to come back."
    )
    reboot_packages: Patterns = Field(
        default_factory=lambda: ["linux-image-*", "libc6", "systemd", "dbus", "demo-kernel"],
        description="Updates of these packages need a reboot (when reboot is if-needed).",
    )
    reboot_approval: Patterns = Field(
        default_factory=list, description="Hosts whose reboot needs explicit approval."
    )


class SystemdCheck(Section):
    type: Literal["systemd"]
    unit: Text
    hosts: Patterns = Field(default_factory=lambda: ["all"])


class TcpCheck(Section):
    type: Literal["tcp"]
    port: int = Field(ge=1, le=65535)
    host: Text = "127.0.0.1"
    hosts: Patterns = Field(default_factory=lambda: ["all"])


class HttpCheck(Section):
    type: Literal["http"]
    url: HttpUrl
    status: int = Field(default=200, ge=100, le=599)
    hosts: Patterns = Field(default_factory=lambda: ["all"])


class CommandCheck(Section):
    type: Literal["command"]
    command: Paragraph
    exit_code: int = Field(default=0, ge=0, le=255, description="Exit status when healthy.")
    hosts: Patterns = Field(default_factory=lambda: ["all"])


Check = Annotated[SystemdCheck | TcpCheck | HttpCheck | CommandCheck, Field(discriminator="type")]


class FailureHandling(Section):
    retries: int = Field(default=0, ge=0, le=5)
    rollback: Literal["host", "batch", "none"] = "host"
    on_threshold: Literal["halt", "continue"] = "halt"


class PolicyException(Section):
    """A host or package (or a package on some hosts) that is not patched, until it expires."""

    hosts: Patterns = Field(default_factory=list)
    packages: Patterns = Field(default_factory=list)
    owner: Text
    reason: Paragraph
    expires: Day

    @model_validator(mode="after")
    def _has_target(self) -> PolicyException:
        if not self.hosts and not self.packages:
            raise ValueError("an exception names hosts, packages, or both")
        return self


MAX_DEADLINE = 3650  # days; ten years is a typo, not a deadline


class Reporting(Section):
    deadlines: dict[Severity, Annotated[int, Field(ge=1, le=MAX_DEADLINE)]] = Field(
        default_factory=lambda: {
            Severity.CRITICAL: 7,
            Severity.HIGH: 14,
            Severity.MEDIUM: 30,
            Severity.LOW: 90,
        },
        description="Days from an update being known to it being installed, per severity.",
    )
    due_soon: int = Field(
        default=2,
        ge=0,
        le=MAX_DEADLINE,
        description="Days before its deadline from which an outstanding update is due soon "
        "(shorter than the shortest deadline).",
    )

    @model_validator(mode="after")
    def _sane(self) -> Reporting:
        given = sorted(self.deadlines.items(), key=lambda item: list(Severity).index(item[0]))
        for (worse, short), (milder, long) in pairwise(given):
            if short > long:
                raise ValueError(
                    f"deadlines: {worse} ({short} days) is longer than {milder} ({long} days);"
                    " a more severe update gets the shorter deadline"
                )
        if given and self.due_soon >= min(days for _, days in given):
            raise ValueError(
                f"due_soon ({self.due_soon} days) must be shorter than the shortest deadline"
                f" ({min(days for _, days in given)} days), or every update is due soon at once"
            )
        return self


class PromotionExempt(Section):
    severities: list[Severity] = Field(
        default_factory=list, description="Updates of these severities skip the stages."
    )
    packages: Patterns = Field(
        default_factory=list,
        description="Package globs, optionally with a version glob: 'openssl' or 'openssl=3.0.1*'.",
    )


class Promotion(Section):
    """Updates reach an environment only once verified in the one before it."""

    variable: Text = Field(
        default="env", description="Host variable naming the environment (a group works too)."
    )
    order: list[Text] = Field(min_length=2, description="Environments, first to last.")
    min_hosts: int = Field(default=1, ge=1, le=MAX_HOSTS, description="Verified installs needed.")
    soak: Annotated[Duration, Within(timedelta(days=90))] = Field(
        default=timedelta(hours=24), description="Time after the last of those installs."
    )
    max_failure_rate: float = Field(
        default=0.0,
        ge=0.0,
        le=1.0,
        description="Share of failed verifications in lower environments still allowed.",
    )
    exempt: PromotionExempt = Field(default_factory=PromotionExempt)

    @field_validator("order")
    @classmethod
    def _distinct(cls, value: list[str]) -> list[str]:
        if len(set(value)) != len(value):
            raise ValueError("each environment appears once in the promotion order")
        return value


NotifyEvent = Literal["window-started", "batch-halted", "window-finished", "rollback-done"]
NOTIFY_EVENTS: tuple[NotifyEvent, ...] = (
    "window-started",
    "batch-halted",
    "window-finished",
    "rollback-done",
)


class Webhook(Section):
    """A receiver of notifications: JSON POSTed to ``url`` (with a Slack-compatible ``text``)."""

    url: HttpUrl = Field(description="http:// or https:// URL the JSON payload is POSTed to.")
    events: list[NotifyEvent] = Field(
        default_factory=lambda: list(NOTIFY_EVENTS), description="Events sent (default: all)."
    )
    timeout: Annotated[Duration, Within(timedelta(minutes=5), above_zero=True)] = Field(
        default=timedelta(seconds=5), description="Per attempt."
    )
    retries: int = Field(default=3, ge=0, le=10, description="Attempts after the first.")
    token_env: str | None = Field(
        default=None,
        pattern=r"^[A-Za-z_][A-Za-z0-9_]*$",
        max_length=SHORT_TEXT,
        description="Environment variable holding a bearer token (never the token itself).",
    )


class Notifications(Section):
    webhooks: list[Webhook] = Field(default_factory=list)


class Policy(Section):
    """A patch-management policy."""

    name: Text
    description: Prose = ""
    scope: Scope = Field(default_factory=Scope)
    roles: Roles
    classification: Classification = Field(default_factory=Classification)
    criticality: Criticality = Field(default_factory=Criticality)
    windows: list[Window] = Field(min_length=1)
    rollout: Rollout = Field(default_factory=Rollout)
    preparation: Preparation = Field(default_factory=Preparation)
    downtime: Downtime = Field(default_factory=Downtime)
    verification: list[Check] = Field(default_factory=list)
    failure_handling: FailureHandling = Field(default_factory=FailureHandling)
    exceptions: list[PolicyException] = Field(default_factory=list)
    reporting: Reporting = Field(default_factory=Reporting)
    notifications: Notifications = Field(default_factory=Notifications)
    promotion: Promotion | None = None

    @model_validator(mode="after")
    def _unique_windows(self) -> Policy:
        names = [w.name for w in self.windows]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"window names must be unique: {', '.join(dupes)}")
        return self

    def window(self, name: str) -> Window:
        for window in self.windows:
            if window.name == name:
                return window
        raise KeyError(name)


class PolicySchema(GenerateJsonSchema):
    """JSON Schema of policy files, with defaults written as a policy file writes them."""

    def encode_default(self, dft: Any) -> Any:
        if isinstance(dft, timedelta):
            return format_duration(dft)  # not pydantic's ISO 8601 "PT30M", which we refuse
        return super().encode_default(dft)
