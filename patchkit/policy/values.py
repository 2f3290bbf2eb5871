"""The policy's value types and their bounds: text, durations, dates, counts and percentages.

Each parser turns what a person wrote into a typed value or a ValueError that says what is
allowed; pydantic places the error at its field and the loader at its line.
"""

from __future__ import annotations

import copy
import math
import re
import unicodedata
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Annotated, Any
from urllib.parse import urlsplit

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
    model_validator,
)
from pydantic.json_schema import JsonSchemaValue
from pydantic_core import CoreSchema, core_schema

# ---------------------------------------------------------------- limits

SHORT_TEXT = 256  # names, owners, patterns, variables
LONG_TEXT = 4000  # descriptions, reasons, commands
URL_LENGTH = 2048
MAX_DURATION = timedelta(days=366)  # any duration; fields set tighter bounds where sensible
FIRST_DAY, LAST_DAY = date(2000, 1, 1), date(2200, 12, 31)
MAX_HOSTS = 1_000_000  # a count of hosts beyond this is a typo, not a fleet


def show_value(value: Any) -> str:
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


def word(value: str) -> str:
    """One line, not blank, no spaces around it: names, patterns, owners."""
    if not value.strip():
        raise ValueError("is blank: give a value")
    if value != value.strip():
        raise ValueError(f"{show_value(value)} has spaces around it: remove them")
    return _printable(value, lines=False)


def _label(value: str) -> str:
    return _printable(value, lines=False)


def _prose(value: str) -> str:
    return _printable(value, lines=True)


def _paragraph(value: str) -> str:
    if not value.strip():
        raise ValueError("is blank: say it in words")
    return _printable(value, lines=True)


Text = Annotated[str, StringConstraints(min_length=1, max_length=SHORT_TEXT), AfterValidator(word)]
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
        raise ValueError(f"{show_value(value)}: the URL starts with http:// or https://")
    if re.search(r"\s", value) or _CONTROL.search(value):
        raise ValueError(f"{show_value(value)}: a URL has no spaces or control characters")
    try:
        parts = urlsplit(value)
        host, _ = parts.hostname, parts.port  # .port raises on a port that is not a number
    except ValueError as exc:
        raise ValueError(f"{show_value(value)} is not a URL: {exc}") from None
    if not host:
        raise ValueError(f"{show_value(value)} names no host, as in https://host.example.org/path")
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
            f"{show_value(value)} is not a duration: use e.g. 30m, 4h, 1h30m, 1:30, 90s or 2d"
        )
    if seconds < 0:
        raise ValueError(f"{show_value(value)}: a duration cannot be negative")
    if seconds > MAX_DURATION.total_seconds():
        raise ValueError(
            f"{show_value(value)} is longer than {format_duration(MAX_DURATION)}, "
            "the longest allowed"
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
            raise ValueError(f"{show_value(value)} is not a date: {exc}") from None
    else:
        raise ValueError(f"{show_value(value)} is not a date: write YYYY-MM-DD, e.g. 2027-01-31")
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
    raise ValueError(f"{show_value(value)} is neither a count (5) nor a percentage ('20%')")


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


# An execution node as a policy and the command line name it: [user@]host[:port], an IPv6
# address in brackets. (patchkit.execution.nodes.parse_node makes one of it.)
NODE_ADDRESS = re.compile(
    r"^(?:(?P<user>[A-Za-z0-9._-]+)@)?"
    r"(?P<host>\[[0-9A-Fa-f:.]+\]|[^\s:@\[\]]+)"
    r"(?::(?P<port>[0-9]{1,5}))?$"
)


def node_address_parts(text: str) -> tuple[str, str, int] | None:
    """(user, address, port) of ``[user@]host[:port]`` (user root, port 22), or None."""
    found = NODE_ADDRESS.match(text.strip())
    if found is None:
        return None
    port = int(found.group("port")) if found.group("port") else 22
    if not 0 < port < 65536:
        return None
    return found.group("user") or "root", found.group("host").strip("[]"), port


def _node_address(value: str) -> str:
    if node_address_parts(value) is None:
        raise ValueError(f"{show_value(value)}: name a node as user@host, user@host:port or host")
    return value


NodeAddress = Annotated[
    str, StringConstraints(max_length=SHORT_TEXT), AfterValidator(_node_address)
]
