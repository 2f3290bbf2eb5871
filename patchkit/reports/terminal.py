"""Text from users and hosts shown as it is: never read as markup, emoji or terminal controls.

Host names, variables, package versions, policy and approver names and messages from hosts are
data. On a terminal they must appear exactly as written: ``[/]`` is not markup, ``:100:`` is
not an emoji, and an escape sequence in a host's message must not recolour or rewrite the
operator's terminal. Every console patchkit prints on is a ``PlainConsole``, and every
renderer builds user text with ``shown``; deliberate styling is a ``Style`` on a ``Text``, never
markup in a string.

Control characters are shown escaped, not stripped: ``\\x1b[31m`` appears as those seven
characters, so that the operator can see that the text carried them. Newlines and tabs stay.

Nor is a value people copy or compare (a run or plan id, a host, a package, a version) ever cut
to fit the terminal: tables of them are ``FittedTable``s, which let prose take the squeeze and,
on a terminal too narrow even so, show one block per row instead.
"""

from __future__ import annotations

import io
import re
from collections.abc import Iterable, Sequence
from enum import Enum
from typing import Any

from rich.cells import cell_len
from rich.console import (
    Console,
    ConsoleOptions,
    Group,
    HighlighterType,
    JustifyMethod,
    OverflowMethod,
    RenderableType,
    RenderResult,
)
from rich.segment import Segment
from rich.style import Style, StyleType
from rich.table import Table
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


class Fit(Enum):
    """How a column of a ``FittedTable`` may be broken over lines to fit the terminal."""

    WHOLE = "whole"  # one value people copy or compare (an id, a host, a version): never broken
    WORDS = "words"  # wraps between words, never inside one: "8: web1, web2", "1.0 → 1.1"
    FREE = "free"  # prose (a reason, a message): folds anywhere, and takes the squeeze first


# Prose folded narrower than this is hard to read; a table that would need it becomes blocks.
FREE_MIN = 10


def _frame(columns: int, edge: bool) -> int:
    """Cells a rich table adds to its columns: a border between them and a space of padding on
    either side of each; with its ``edge``, a border and that padding at both ends too."""
    return 3 * columns + 1 if edge else 3 * columns - 3


def _longest(texts: Iterable[str]) -> int:
    return max((cell_len(t) for t in texts), default=0)


def _share(room: int, floors: Sequence[int], wants: Sequence[int]) -> list[int]:
    """``floors`` grown towards ``wants`` within ``room`` cells in all, shared evenly: a column
    that needs little gets all it needs, the rest split what is left."""
    widths = list(floors)
    spare = room - sum(widths)
    order = sorted(range(len(widths)), key=lambda i: (wants[i] - floors[i], i))
    for left, i in zip(range(len(order), 0, -1), order, strict=True):
        grow = min(max(wants[i] - floors[i], 0), spare // left)
        widths[i] += grow
        spare -= grow
    return widths


class FittedTable:
    """A table that never breaks a ``WHOLE`` value, nor a word of a ``WORDS`` column.

    Where the terminal is wide enough it renders as a rich ``Table`` whose column widths are
    set here, not by rich's shrinking (which cuts any column with an ellipsis): ``WHOLE``
    columns as wide as their longest line, ``WORDS`` columns at least as wide as their longest
    word, ``FREE`` columns at least ``FREE_MIN``; what is left is shared among the columns that
    wrap. If that does not fit, the table drops its outer edge; if it still does not, it renders
    as one block per row, a ``header: value`` line for each cell that is not empty.
    """

    def __init__(
        self, title: str | Text = "", *, title_style: StyleType = "", min_width: int | None = None
    ) -> None:
        self.title = title
        self.title_style = title_style
        self.min_width = min_width  # as rich's: a table at least this wide (for a long title)
        self.columns: list[tuple[str, Fit]] = []
        self.rows: list[tuple[tuple[Text, ...], StyleType | None]] = []

    def add_column(self, header: str, fit: Fit = Fit.WHOLE) -> None:
        self.columns.append((header, fit))

    def add_row(self, *cells: Text | str, style: StyleType | None = None) -> None:
        """One row, a cell per column; a ``str`` is user text, shown as written (``shown``)."""
        if len(cells) != len(self.columns):
            raise ValueError(f"{len(cells)} cell(s) for {len(self.columns)} column(s)")
        self.rows.append((tuple(c if isinstance(c, Text) else shown(c) for c in cells), style))

    def layout(self, width: int) -> tuple[list[int], bool] | None:
        """Column widths on a terminal ``width`` cells wide, and whether the table keeps its
        outer edge (dropped when that is what makes it fit); None: too narrow for a table."""
        floors: list[int] = []
        wants: list[int] = []  # the longest line: as wide as a column ever needs to be
        for index, (header, fit) in enumerate(self.columns):
            texts = [cells[index].plain for cells, _ in self.rows]
            words = _longest([*header.split(), *(w for t in texts for w in t.split())])
            lines = max(_longest(line for t in texts for line in t.splitlines()), words)
            floors.append({Fit.WHOLE: lines, Fit.WORDS: words}.get(fit, min(lines, FREE_MIN)))
            wants.append(lines)
        for edge in (True, False):
            room = width - _frame(len(self.columns), edge)
            if sum(floors) <= room:
                return _share(room, floors, wants), edge
        return None

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        layout = self.layout(options.max_width)
        yield self._blocks() if layout is None else self._table(*layout)

    def _table(self, widths: Sequence[int], edge: bool) -> Table:
        table = Table(
            title=self.title,
            title_justify="left",
            title_style=self.title_style,
            min_width=self.min_width,
            show_edge=edge,
            pad_edge=edge,
        )
        for (header, fit), width in zip(self.columns, widths, strict=True):
            # A header may wrap between its words even over a column that never wraps.
            head = Text(header, no_wrap=False, overflow="fold")
            # "fold" only as a last resort: the widths above leave nothing to fold
            table.add_column(head, width=width, no_wrap=fit is Fit.WHOLE, overflow="fold")
        for cells, style in self.rows:
            table.add_row(*cells, style=style)
        return table

    def _blocks(self) -> Group:
        parts: list[RenderableType] = []
        if self.title:
            parts.append(Text.assemble(self.title, style=self.title_style))
        for number, (cells, style) in enumerate(self.rows):
            block = Table.grid(padding=(0, 1))
            block.add_column(style="bold", no_wrap=True)
            block.add_column(overflow="fold")
            for (header, _), cell in zip(self.columns, cells, strict=True):
                if cell.plain.strip():  # a cell left empty (a host's own, on its later rows)
                    block.add_row(f"{header}:", cell, style=style)
            parts += [Text("")] if number else []
            parts.append(block)
        return Group(*parts)
