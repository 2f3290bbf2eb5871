"""Text from users and hosts shown as it is: never read as markup, emoji or terminal controls.

Host names, variables, package versions, policy and approver names and messages from hosts are
data. On a terminal they must appear exactly as written: ``[/]`` is not markup, ``:100:`` is
not an emoji, and an escape sequence in a host's message must not recolour or rewrite the
operator's terminal. Every console patchkit prints on is a ``PlainConsole``, and every
renderer builds user text with ``shown``; deliberate styling is a ``Style`` on a ``Text``, never
markup in a string.

Control characters are shown escaped, not stripped: ``\\x1b[31m`` appears as those seven
characters, so that the operator can see that the text carried them. Newlines and tabs stay.
"""

from __future__ import annotations

import io
import re
from collections.abc import Iterable
from typing import Any

from rich.console import (
    Console,
    ConsoleOptions,
    HighlighterType,
    JustifyMethod,
    OverflowMethod,
    RenderableType,
)
from rich.segment import Segment
from rich.style import Style, StyleType
from rich.text import Text

# C0 controls but tab and newline, DEL, C1 controls (0x9b is CSI on some terminals), and the
# bidirectional overrides that make text read differently from what it is ("trojan source").
_CONTROLS = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u200e\u200f\u202a-\u202e\u2066-\u2069]")


def _escape(found: re.Match[str]) -> str:
    code = ord(found.group())
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def visible(text: str) -> str:
    """``text`` with every control character written as an escape (``\\x1b``, ``\\u202e``)."""
    return _CONTROLS.sub(_escape, text) if _CONTROLS.search(text) else text


def shown(value: object, style: StyleType = "") -> Text:
    """User text (a host name, a message) as a ``Text``: literal, controls made visible."""
    return Text(visible(str(value)), style=style)


class PlainConsole(Console):
    """A rich console that interprets nothing it is given as text.

    Markup, emoji codes and highlighting are off, so a ``str`` printed or put in a table cell
    is shown as written (rich's ``Table`` renders ``str`` cells through ``render_str``, which
    follows the console's settings). Control characters in strings are escaped before rich
    measures them, and any left in a ``Text`` built elsewhere are escaped on the way out.
    """

    def __init__(self, **options: Any) -> None:
        options.setdefault("markup", False)
        options.setdefault("emoji", False)
        options.setdefault("highlight", False)
        super().__init__(**options)

    def render_str(
        self,
        text: str,
        *,
        style: str | Style = "",
        justify: JustifyMethod | None = None,
        overflow: OverflowMethod | None = None,
        emoji: bool | None = None,
        markup: bool | None = None,
        highlight: bool | None = None,
        highlighter: HighlighterType | None = None,
    ) -> Text:
        return super().render_str(
            visible(text),
            style=style,
            justify=justify,
            overflow=overflow,
            emoji=emoji,
            markup=markup,
            highlight=highlight,
            highlighter=highlighter,
        )

    def render(
        self, renderable: RenderableType, options: ConsoleOptions | None = None
    ) -> Iterable[Segment]:
        # The last line of defence: rich's own cursor moves are control segments and pass.
        for segment in super().render(renderable, options):
            if segment.control is None and _CONTROLS.search(segment.text):
                yield Segment(visible(segment.text), segment.style)
            else:
                yield segment


def plain_text(renderable: RenderableType, width: int = 120) -> str:
    """``renderable`` as plain text without colour, for a file; no trailing blanks on lines."""
    console = PlainConsole(file=io.StringIO(), record=True, width=width, color_system=None)
    console.print(renderable)
    # Tables pad every line to the full width; a file is easier to diff and grep without it.
    return "\n".join(line.rstrip() for line in console.export_text().splitlines()) + "\n"
