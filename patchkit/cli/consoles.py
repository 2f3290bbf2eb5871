"""Where commands' output goes: data on stdout, messages and progress on stderr, or a file.

The consoles interpret nothing they print (no markup, emoji or highlighting; control characters
shown escaped: patchkit.reports.terminal), because what they print is mostly user text.
"""

from __future__ import annotations

import errno
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import click

from patchkit.reports.terminal import PlainConsole

FC = TypeVar("FC", bound=Callable[..., Any] | click.Command)

console = PlainConsole(soft_wrap=True)  # plain lines unwrapped; tables still fit
# soft_wrap: an error stays one line however narrow the terminal, so scripts can grep it.
err_console = PlainConsole(stderr=True, soft_wrap=True)


def output_option(what: str) -> Callable[[FC], FC]:
    """``-o/--output FILE``: write ``what`` there instead of to stdout."""
    return click.option(
        "-o",
        "--output",
        type=click.Path(dir_okay=False, path_type=Path),
        help=f"Write {what} to this file (its directory is created if missing).",
    )


_WHY = {
    errno.EISDIR: "it is a directory; give a file name in it",
    errno.ENOTDIR: "a part of the path is a file, not a directory",
    errno.EEXIST: "a part of the path is a file, not a directory",  # from creating the directory
    errno.ENOSPC: "no space left on the device; free some or write elsewhere",
    errno.EROFS: "the file system is read-only; write elsewhere",
    errno.EACCES: "permission denied; write where you may",
    errno.EPERM: "not permitted; write where you may",
    errno.ENAMETOOLONG: "the name is too long",
}


def write_output(path: Path, text: str, *, option: str = "'-o' / '--output'") -> None:
    """Write a rendered document to ``path`` (creating its directory), or fail as bad input.

    A path that cannot be written is the user's input (exit 2), named with its option; the
    reason is the system's, in words, with what to do.
    """
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("w", encoding="utf-8") as out:
            out.write(text)
    except OSError as exc:
        why = _WHY.get(exc.errno or 0) or (exc.strerror or str(exc)).lower()
        raise click.BadParameter(f"cannot write {path}: {why}", param_hint=option) from None


def chunks(pieces: Iterable[str], size: int = 1 << 20) -> Iterator[str]:
    """``pieces`` joined into chunks of about ``size`` characters (one write each)."""
    held: list[str] = []
    length = 0
    for piece in pieces:
        held.append(piece)
        length += len(piece)
        if length >= size:
            yield "".join(held)
            held, length = [], 0
    if held:
        yield "".join(held)


def write_pieces(path: Path, pieces: Iterable[str], *, option: str = "'-o' / '--output'") -> None:
    """``write_output`` for a document that comes in pieces (never held whole): the file is
    made (and a path that cannot be written refused) first, then filled chunk by chunk."""
    write_output(path, "", option=option)
    try:
        with path.open("a", encoding="utf-8") as out:
            for chunk in chunks(pieces):
                out.write(chunk)
    except OSError as exc:
        why = _WHY.get(exc.errno or 0) or (exc.strerror or str(exc)).lower()
        raise click.BadParameter(f"cannot write {path}: {why}", param_hint=option) from None


def emit_pieces(pieces: Iterable[str], output: Path | None, *, end: str = "") -> None:
    """A document that comes in pieces, to ``output`` or (None) to stdout followed by ``end``;
    never held whole."""
    if output is not None:
        write_pieces(output, pieces)
        return
    for chunk in chunks(pieces):
        click.echo(chunk, nl=False)
    click.echo(end, nl=False)
