"""Unit: the top-level guard of the patchkit command (every way out is a message and a code)."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import click
import pytest

from patchkit.cli import cli, main
from patchkit.errors import ExitCode, PolicyError, RefusedError


@click.command("raise-for-test", hidden=True)
@click.argument("kind")
def _raiser(kind: str) -> None:
    if kind == "bug":
        raise ZeroDivisionError("division by zero")
    if kind == "policy":
        raise PolicyError(["p.yml:3: name: [/] is :100: [a-z0-9] begin:end:step"], hint="[bold]x")
    if kind == "refused":  # a PatchkitError that is an OSError (PermissionError) too
        raise RefusedError("plan plan-1 is not approved", hint="patchkit approve plan-1")
    raise KeyboardInterrupt


@pytest.fixture
def raiser() -> Iterator[None]:
    cli.add_command(_raiser)
    yield
    cli.commands.pop("raise-for-test")


def _exit_of(monkeypatch: pytest.MonkeyPatch, *argv: str) -> int:
    monkeypatch.setattr(sys, "argv", ["patchkit", *argv])
    with pytest.raises(SystemExit) as stopped:
        main()
    return int(stopped.value.code or 0)


def test_an_unexpected_exception_is_a_bug_with_its_own_exit_code(
    raiser: None, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    assert _exit_of(monkeypatch, "raise-for-test", "bug") == 70 == int(ExitCode.BUG)
    err = capsys.readouterr().err
    assert "patchkit: internal error: ZeroDivisionError: division by zero" in err
    assert "this is a bug in patchkit" in err and "--debug" in err
    assert "Traceback" not in err


def test_debug_adds_the_traceback(
    raiser: None, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    assert _exit_of(monkeypatch, "--debug", "raise-for-test", "bug") == ExitCode.BUG
    err = capsys.readouterr().err
    assert "Traceback" in err and "ZeroDivisionError" in err


def test_a_patchkit_error_is_printed_as_written_with_its_exit_code(
    raiser: None, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    assert _exit_of(monkeypatch, "raise-for-test", "policy") == ExitCode.BAD_INPUT
    err = " ".join(capsys.readouterr().err.split())
    assert "patchkit: error: p.yml:3: name: [/] is :100: [a-z0-9] begin:end:step" in err
    assert "what to do: [bold]x" in err


def test_an_interrupt_and_usage_errors_have_their_documented_codes(
    raiser: None, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    assert _exit_of(monkeypatch, "raise-for-test", "interrupt") == ExitCode.FAILURES
    assert "patchkit: interrupted" in capsys.readouterr().err
    assert _exit_of(monkeypatch, "no-such-command") == ExitCode.BAD_INPUT
    err = capsys.readouterr().err
    assert "No such command 'no-such-command'" in err and "see 'patchkit --help'" in err
    assert _exit_of(monkeypatch, "--version") == ExitCode.OK


def test_output_to_a_full_disk_is_bad_input_not_a_bug() -> None:
    with Path("/dev/full").open("w") as full:
        done = subprocess.run(
            [sys.executable, "-m", "patchkit", "policy", "schema"],
            stdout=full,
            stderr=subprocess.PIPE,
            text=True,
            timeout=120,
            check=False,
        )
    assert done.returncode == ExitCode.BAD_INPUT, done.stderr
    assert "cannot write the output: No space left on device" in done.stderr
    assert "Traceback" not in done.stderr and "Exception ignored" not in done.stderr


def test_a_reader_that_goes_away_ends_quietly() -> None:
    with subprocess.Popen(
        [sys.executable, "-m", "patchkit", "policy", "schema"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    ) as child:
        assert child.stdout is not None and child.stderr is not None
        child.stdout.close()  # before the schema (larger than a pipe's buffer) is written
        err = child.stderr.read()
        code = child.wait(timeout=120)
    assert code == ExitCode.FAILURES  # what click and rich end a closed pipe with too
    assert "Traceback" not in err and "internal error" not in err


def test_a_refusal_keeps_its_exit_code_though_it_is_an_os_error(
    raiser: None, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    assert _exit_of(monkeypatch, "raise-for-test", "refused") == ExitCode.REFUSED
    err = capsys.readouterr().err
    assert "patchkit: error: plan plan-1 is not approved" in err


def test_a_full_disk_elsewhere_than_the_output_is_not_blamed_on_the_output(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    @click.command("fill-for-test", hidden=True)
    def _fill() -> None:
        raise OSError(28, "No space left on device", "/tmp/patchkit-runner-x/env/extravars")

    cli.add_command(_fill)
    try:
        assert _exit_of(monkeypatch, "fill-for-test") == ExitCode.BUG
    finally:
        cli.commands.pop("fill-for-test")
    err = capsys.readouterr().err
    assert "cannot write the output" not in err and "internal error: OSError" in err
