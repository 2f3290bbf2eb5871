"""JSON text in pieces: byte for byte what ``json.dumps(..., sort_keys=True)`` writes, without
ever holding the whole text.

A plan of 50,000 hosts is hundreds of megabytes of JSON. Hashing it, or writing it to a file,
needs its text once, in order, not all at once: :class:`JsonPieces` walks the containers near
the top (the plan, its batches, their hosts) itself and has ``json.dumps`` encode each deeper
value whole. Values a document repeats (the planner shares one update between the hosts of an
image) can be encoded once and their text reused: with an indent, ``json.dumps`` encodes in
pure Python, and that reuse is most of the time saved.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from typing import Any

_SCALARS = frozenset({str, int, float, bool, type(None)})


class JsonPieces:
    """Pieces of ``json.dumps(data, sort_keys=True, indent=…, separators=…, ensure_ascii=…,
    default=…)``; joined, they are that text exactly.

    Containers nested fewer than ``whole_at`` levels deep are written piece by piece; deeper
    ones are encoded whole, and with ``reuse`` the text of each is kept by object and written
    again where the same object recurs (for documents whose deep values are shared and few;
    the data must stay unchanged while it is written).
    """

    def __init__(
        self,
        *,
        indent: int | None = None,
        separators: tuple[str, str] | None = None,
        ensure_ascii: bool = True,
        default: Callable[[Any], Any] | None = None,
        whole_at: int = 4,
        reuse: bool = False,
    ) -> None:
        if separators is None:  # json.dumps's own defaults
            separators = (",", ": ") if indent is not None else (", ", ": ")
        self.item, self.colon = separators
        self.indent = indent
        self.whole_at = whole_at
        self.reuse = reuse
        options: dict[str, Any] = {"ensure_ascii": ensure_ascii, "default": default}
        self._scalar = json.JSONEncoder(**options).encode  # a scalar's text has no layout
        self._whole = json.JSONEncoder(
            **options, indent=indent, separators=separators, sort_keys=True
        ).encode
        self._texts: dict[tuple[int, int], str] = {}

    def pieces(self, data: Any) -> Iterator[str]:
        """The text of ``data``, in pieces."""
        return self._value(data, 0)

    def _newline(self, level: int) -> str:
        return "" if self.indent is None else "\n" + " " * (self.indent * level)

    def _value(self, value: Any, level: int) -> Iterator[str]:
        kind = type(value)
        walked = level < self.whole_at and bool(value) if kind in (dict, list, tuple) else False
        if kind in _SCALARS:
            yield self._scalar(value)
        elif walked and kind is dict and all(type(k) is str for k in value):
            yield from self._mapping(value, level)
        elif walked and kind is not dict:
            yield from self._sequence(value, level)
        else:
            yield self._encoded(value, level)

    def _mapping(self, value: dict[str, Any], level: int) -> Iterator[str]:
        inner = self._newline(level + 1)
        lead = "{" + inner
        for key in sorted(value):
            yield lead + self._scalar(key) + self.colon
            yield from self._value(value[key], level + 1)
            lead = self.item + inner
        yield self._newline(level) + "}"

    def _sequence(self, value: list[Any] | tuple[Any, ...], level: int) -> Iterator[str]:
        inner = self._newline(level + 1)
        lead = "[" + inner
        for item in value:
            yield lead
            yield from self._value(item, level + 1)
            lead = self.item + inner
        yield self._newline(level) + "]"

    def _encoded(self, value: Any, level: int) -> str:
        """``value`` encoded whole, laid out for its depth (its lines indented ``level`` more)."""
        key = (id(value), level)
        text = self._texts.get(key) if self.reuse else None
        if text is None:
            text = self._whole(value)
            if self.indent is not None and level:
                # JSON text never holds a raw line break: each is the encoder's layout
                text = text.replace("\n", self._newline(level))
            if self.reuse:
                self._texts[key] = text
        return text
