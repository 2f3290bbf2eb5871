"""Running ``patchkit`` in the test's own process, as the command-line tests do.

Through ``patchkit.cli.main`` rather than click's CliRunner alone: the exit codes and the
"what to do" line of an error are made there.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from dataclasses import dataclass

import pytest

from patchkit.cli import consoles, main


@dataclass(frozen=True)
class Done:
    code: int
    out: str
    err: str

    @property
    def message(self) -> str:
        return " ".join(self.err.split())  # one line, however the terminal is wide


Run = Callable[..., Done]


def in_process(
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    *prefix: str,
    width: int = 300,
) -> Run:
    """A function running ``patchkit PREFIX… ARGV…`` here, on consoles ``width`` wide."""
    for console in (consoles.console, consoles.err_console):
        monkeypatch.setattr(console, "width", width)

    def run(*argv: str) -> Done:
        monkeypatch.setattr(sys, "argv", ["patchkit", *prefix, *argv])
        with pytest.raises(SystemExit) as stopped:
            main()
        out, err = capsys.readouterr()
        # a crash is never what these tests expect, whatever exit code they look for
        assert "Traceback" not in err and "internal error" not in err, err
        return Done(int(stopped.value.code or 0), out, err)

    return run
