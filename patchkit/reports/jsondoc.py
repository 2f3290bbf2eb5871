"""JSON documents of typed report values, written straight from the values, in pieces.

The bytes are those of ``json.dumps(dataclasses.asdict(value), indent=2, default=str)``: the
reports' documented formats were defined by it. ``asdict`` deep-copies every value and
``json.dumps`` with an indent runs the encoder in pure Python; for a fleet of 50,000 hosts that
took seconds for the audit and more memory than a controller has for the compliance report,
whose hosts repeat their image's list of open CVEs (the same tuple object: encoded once here).
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable, Iterator
from typing import Any

_STRING: Callable[[str], str] = json.encoder.encode_basestring_ascii  # json.dumps' (ASCII)
_FLUSH = 4096  # pieces held before they go to the writer
_SHARED = 32  # a tuple at least this long, met again, is given as written the first time
_LONG = 1 << 16  # characters: a piece this long goes to the writer alone

# How a value is written, by its type (decided once per type, in the order asdict and then
# json's encoder test them: a dataclass is a dict, whatever else it is)
_DATA, _STR, _CONST, _INT, _FLOAT, _SEQ, _DICT, _OTHER = range(8)
_KINDS: dict[type, int] = {}
_CONSTANTS = {None: "null", True: "true", False: "false"}


def fields(value: Any) -> dict[str, Any]:
    """A dataclass instance's fields by name, in order, not copied (to build a document's top
    level: ``{"format": FORMAT, **fields(report)}``)."""
    return {f.name: getattr(value, f.name) for f in dataclasses.fields(value)}


def dumps(value: Any) -> str:
    """``json.dumps(asdict(value), indent=2, default=str)`` (dataclasses at any depth)."""
    parts: list[str] = []
    encoder = _Encoder(parts.append, {})
    encoder.value(value, 0)
    encoder.flush()
    return "".join(parts)


def pieces(value: Any, walk: int = 2) -> Iterator[str]:
    """:func:`dumps` of ``value`` in pieces, for writing as they come: a document bigger than
    memory is never held whole. Containers fewer than ``walk`` levels deep are walked an item
    at a time; deeper values come whole (a report's hosts: one piece or a few each)."""
    parts: list[str] = []
    yield from _Encoder(parts.append, {}).walk(value, 0, walk, parts)


def _kind(cls: type) -> int:
    kind = _KINDS.get(cls)
    if kind is None:
        kind = _KINDS[cls] = _classify(cls)
    return kind


def _classify(cls: type) -> int:
    if dataclasses.is_dataclass(cls):
        return _DATA
    if issubclass(cls, str):
        return _STR
    if cls is bool or cls is type(None):
        return _CONST
    if issubclass(cls, int):
        return _INT
    if issubclass(cls, float):
        return _FLOAT
    if issubclass(cls, (list, tuple)):
        return _SEQ
    if issubclass(cls, dict):
        return _DICT
    return _OTHER  # default=str: datetimes, dates


# (dataclass, depth) → its field names, what goes before each value, what closes it
_LAYOUTS: dict[tuple[type, int], tuple[tuple[str, ...], tuple[str, ...], str]] = {}


def _layout_of(cls: type, level: int) -> tuple[tuple[str, ...], tuple[str, ...], str]:
    layout = _LAYOUTS.get((cls, level))
    if layout is None:
        layout = _LAYOUTS[(cls, level)] = _layout(cls, level)
    return layout


def _layout(cls: type, level: int) -> tuple[tuple[str, ...], tuple[str, ...], str]:
    names = tuple(f.name for f in dataclasses.fields(cls))
    inner = "\n" + "  " * (level + 1)
    heads = tuple(
        ("{" if i == 0 else ",") + inner + _STRING(name) + ": " for i, name in enumerate(names)
    )
    return names, heads, "\n" + "  " * level + "}"


def _float(value: float) -> str:
    if value != value:
        return "NaN"
    if value == float("inf"):
        return "Infinity"
    if value == -float("inf"):
        return "-Infinity"
    return float.__repr__(value)


def _key(key: Any) -> str:
    """A dict key as json writes it (keys that are no strings are turned into strings)."""
    if isinstance(key, str):
        return _STRING(key)
    if isinstance(key, float):
        return _STRING(_float(key))
    if key is True or key is False or key is None:
        return f'"{_CONSTANTS[key]}"'
    if isinstance(key, int):
        return _STRING(int.__repr__(key))
    raise TypeError(f"keys must be str, int, float, bool or None, not {type(key).__name__}")


class _Encoder:
    def __init__(
        self, write: Callable[[str], object], shared: dict[tuple[int, int], str | None]
    ) -> None:
        self._write = write
        self._out: list[str] = []
        # (id of a dataclass instance or a long tuple, depth) → its JSON once met twice, None
        # when met once: hosts of one image share their CVE lists and update rows; the value
        # encoded holds them all for as long as the encoding runs (an id stays theirs)
        self._shared = shared

    def flush(self) -> None:
        if self._out:
            self._write("".join(self._out))
            self._out.clear()

    def walk(self, value: Any, level: int, depth: int, parts: list[str]) -> Iterator[str]:
        """The text of ``value`` in pieces (``pieces``); ``parts``: what this encoder writes."""
        kind = _kind(type(value))
        walked = level < depth and (
            (kind in (_DICT, _SEQ) and len(value) > 0)
            or (kind == _DATA and bool(_layout_of(type(value), level)[0]))
        )
        if not walked:
            self.value(value, level)
            self.flush()
            yield from parts
            parts.clear()
            return
        inner = "\n" + "  " * (level + 1)
        if kind == _SEQ:
            lead = "[" + inner
            for item in value:
                yield lead
                yield from self.walk(item, level + 1, depth, parts)
                lead = "," + inner
            yield "\n" + "  " * level + "]"
            return
        if kind == _DATA:
            names, heads, close = _layout_of(type(value), level)
            for name, head in zip(names, heads, strict=True):
                yield head
                yield from self.walk(getattr(value, name), level + 1, depth, parts)
            yield close
            return
        lead = "{"
        for key, item in value.items():
            yield lead + inner + _key(key) + ": "
            yield from self.walk(item, level + 1, depth, parts)
            lead = ","
        yield "\n" + "  " * level + "}"

    def value(self, value: Any, level: int) -> None:
        kind = _KINDS.get(type(value))
        if kind is None:
            kind = _kind(type(value))
        if kind == _STR:
            self._out.append(_STRING(value))
        elif kind == _DATA:
            self.data(value, level)
        elif kind == _CONST:
            self._out.append(_CONSTANTS[value])
        elif kind == _INT:
            self._out.append(int.__repr__(value))
        elif kind == _FLOAT:
            self._out.append(_float(value))
        elif kind == _SEQ:
            self.sequence(value, level)
        elif kind == _DICT:
            self.mapping(value, level)
        else:
            self._out.append(_STRING(str(value)))

    def _reused(self, value: Any, level: int, encode: Callable[[_Encoder, Any, int], None]) -> bool:
        """Whether ``value`` went out as written before: a value met a second time (by
        identity, at the same depth) is kept as written and given again from then on."""
        key = (id(value), level)
        if key not in self._shared:
            self._shared[key] = None  # met once: most values are (the list of hosts, a host)
            return False
        text = self._shared[key]
        if text is None:
            parts: list[str] = []
            alone = _Encoder(parts.append, self._shared)
            encode(alone, value, level)
            alone.flush()
            text = self._shared[key] = "".join(parts)
        if len(text) > _LONG:  # given as it is, not copied into a joined piece
            self.flush()
            self._write(text)
        else:
            self._out.append(text)
        return True

    def data(self, value: Any, level: int) -> None:
        if not self._reused(value, level, _Encoder.fields):
            self.fields(value, level)

    def fields(self, value: Any, level: int) -> None:
        names, heads, close = _layout_of(type(value), level)
        if not names:
            self._out.append("{}")
            return
        out = self._out
        for name, head in zip(names, heads, strict=True):
            out.append(head)
            self.value(getattr(value, name), level + 1)
        out.append(close)

    def mapping(self, value: dict[Any, Any], level: int) -> None:
        if not value:
            self._out.append("{}")
            return
        out = self._out
        inner = "\n" + "  " * (level + 1)
        opened = "{"
        for key, item in value.items():
            out.append(opened + inner + _key(key) + ": ")
            opened = ","
            self.value(item, level + 1)
        out.append("\n" + "  " * level + "}")

    def sequence(self, items: list[Any] | tuple[Any, ...], level: int) -> None:
        if not items:
            self._out.append("[]")
            return
        long = isinstance(items, tuple) and len(items) >= _SHARED
        if not (long and self._reused(items, level, _Encoder.items)):
            self.items(items, level)

    def items(self, items: list[Any] | tuple[Any, ...], level: int) -> None:
        out = self._out
        inner = "\n" + "  " * (level + 1)
        out.append("[" + inner)
        between = "," + inner
        for i, item in enumerate(items):
            if i:
                out.append(between)
            self.value(item, level + 1)
            if len(out) > _FLUSH:
                self.flush()
        out.append("\n" + "  " * level + "]")
