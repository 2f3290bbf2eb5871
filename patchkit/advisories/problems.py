"""Checked reads of parsed JSON: each wrong field becomes a problem naming its record and path.

A reader walks a whole file, collecting problems, and raises once at the end (listing the first
``MAX_LISTED``), so that a user fixes a file in one go and nothing half-read is ever returned.
"""

from __future__ import annotations

import enum
import re
from datetime import date, datetime
from typing import NoReturn, TypeVar

from patchkit.advisories.errors import AdvisoryError

E = TypeVar("E", bound=enum.Enum)

_DAY = re.compile(r"\d{4}-\d{2}-\d{2}\Z")
MAX_LISTED = 20  # past this many, a file is wrong in the same way throughout: stop listing


def describe(value: object) -> str:
    """A JSON value as a message names it: ``3 (a number)``, ``'x' (a string)``, ``a list``."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return f"{str(value).lower()} (true/false)"
    if isinstance(value, int | float):
        return f"{value!r} (a number)"
    if isinstance(value, str):
        shown = value if len(value) <= 60 else value[:57] + "…"
        return f"{shown!r} (a string)"
    if isinstance(value, list):
        return "a list"
    return "an object"


class Problems:
    """The problems found in one source (a file, or a directory or zip of records)."""

    def __init__(self, source: str) -> None:
        self.source = source
        self.listed: list[str] = []
        self.count = 0

    def add(self, record: str, path: str, what: str) -> None:
        """Note that ``path`` of ``record`` is wrong; either may be empty."""
        self.count += 1
        if len(self.listed) < MAX_LISTED:
            self.listed.append(": ".join([*(part for part in (record, path) if part), what]))

    def check(self) -> None:
        """Raise AdvisoryError if any problem was noted."""
        if self.count:
            raise AdvisoryError(self.source, self.listed, more=self.count - len(self.listed))

    def fail(self, what: str) -> NoReturn:
        """Raise at once: the file as a whole cannot be read (not JSON, too large, …)."""
        raise AdvisoryError(self.source, [what])


class Fields:
    """Typed reads of one JSON object's fields; a missing or wrongly typed field is a problem.

    JSON ``null`` reads as absent: the tracker drops null fields and OSV allows them.
    """

    __slots__ = ("data", "path", "problems", "record", "valid")

    def __init__(self, problems: Problems, record: str, path: str, value: object) -> None:
        self.problems = problems
        self.record = record
        self.path = path
        self.valid = isinstance(value, dict)
        self.data: dict[str, object] = value if isinstance(value, dict) else {}
        if not self.valid:
            problems.add(record, path, f"expected an object, found {describe(value)}")

    def at(self, key: str) -> str:
        """The path of ``key`` below this object."""
        return f"{self.path}.{key}" if self.path else key

    def problem(self, key: str, what: str) -> None:
        """Note a problem with field ``key`` of this object."""
        self.problems.add(self.record, self.at(key), what)

    def _get(self, key: str, required: bool) -> object:
        value = self.data.get(key)
        if value is None and required and self.valid:
            self.problem(key, "missing")
        return value

    def _wrong(self, key: str, expected: str, value: object) -> None:
        self.problem(key, f"expected {expected}, found {describe(value)}")

    def text(self, key: str, *, required: bool = False) -> str | None:
        """A string field."""
        value = self._get(key, required)
        if value is None or isinstance(value, str):
            return value
        self._wrong(key, "a string", value)
        return None

    def integer(self, key: str, *, required: bool = False) -> int | None:
        """An integer field (true and false are not integers here)."""
        value = self._get(key, required)
        if value is None or (isinstance(value, int) and not isinstance(value, bool)):
            return value
        self._wrong(key, "an integer", value)
        return None

    def flag(self, key: str) -> bool | None:
        """A true/false field."""
        value = self._get(key, False)
        if value is None or isinstance(value, bool):
            return value
        self._wrong(key, "true or false", value)
        return None

    def child(self, key: str, *, required: bool = False) -> Fields | None:
        """An object field, to read further."""
        value = self._get(key, required)
        if value is None:
            return None
        if isinstance(value, dict):
            return Fields(self.problems, self.record, self.at(key), value)
        self._wrong(key, "an object", value)
        return None

    def array(self, key: str, *, required: bool = False) -> list[object]:
        """A list field; a missing one reads as empty."""
        value = self._get(key, required)
        if value is None:
            return []
        if isinstance(value, list):
            return value
        self._wrong(key, "a list", value)
        return []

    def strings(self, key: str) -> tuple[str, ...]:
        """A list of strings (OSV's aliases, KEV's cwes)."""
        found: list[str] = []
        for index, item in enumerate(self.array(key)):
            if isinstance(item, str):
                found.append(item)
            else:
                where = f"{self.at(key)}[{index}]"
                self.problems.add(self.record, where, f"expected a string, found {describe(item)}")
        return tuple(found)

    def choice(self, key: str, kind: type[E], *, required: bool = False) -> E | None:
        """A string field that must be one of ``kind``'s values."""
        value = self.text(key, required=required)
        return None if value is None else self.value_of(key, value, kind)

    def value_of(self, key: str, value: str, kind: type[E]) -> E | None:
        """``value`` as a member of ``kind``, or a problem at ``key`` listing the known values."""
        try:
            return kind(value)
        except ValueError:
            known = ", ".join(repr(member.value) for member in kind)
            self.problem(key, f"unknown value {value!r} (known: {known})")
            return None

    def timestamp(self, key: str, *, required: bool = False) -> datetime | None:
        """An ISO 8601 date and time with a UTC offset (``2025-02-25T20:33:53.3676Z``)."""
        text = self.text(key, required=required)
        if text is None:
            return None
        try:
            value = datetime.fromisoformat(text)
        except ValueError:
            self.problem(key, f"not a date and time: {text!r}")
            return None
        if value.utcoffset() is None:
            self.problem(key, f"a time without a UTC offset: {text!r}")
            return None
        return value

    def day(self, key: str, *, required: bool = False) -> date | None:
        """A calendar date written YYYY-MM-DD."""
        text = self.text(key, required=required)
        if text is None:
            return None
        try:
            if _DAY.match(text):
                return date.fromisoformat(text)
        except ValueError:
            pass
        self.problem(key, f"not a date (YYYY-MM-DD): {text!r}")
        return None
