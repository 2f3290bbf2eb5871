"""The ``patchkit`` command: parse, call the library, render. No logic lives here."""

from __future__ import annotations

import errno
import logging
import os
import sys
import traceback
from typing import NoReturn

import click
from rich.logging import RichHandler
from rich.text import Text

from patchkit import __version__
from patchkit.cli.consoles import err_console
from patchkit.errors import ExitCode, PatchkitError

from .advisories import advisories
from .approve import approve
from .audit import audit
from .lab import lab
from .node import node
from .planning import assess, plan, scope
from .policy import policy
from .report import report, runs
from .rollback import release, rollback
from .window import resume, run, status


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="patchkit")
@click.option("-v", "--verbose", count=True, help="More log output (-vv for debug).")
@click.option("--debug", is_flag=True, help="Show tracebacks of errors.")
@click.option(
    "--ledger",
    envvar="PATCHKIT_LEDGER",
    help="Ledger database URL (default sqlite:///.patchkit/ledger.sqlite; postgresql://… for "
    "teams). Env: PATCHKIT_LEDGER.",
)
@click.option(
    "--inventory-timeout",
    type=click.FloatRange(min=0, min_open=True, max=86400),
    default=300.0,
    show_default=True,
    envvar="PATCHKIT_INVENTORY_TIMEOUT",
    help="Seconds an inventory (its scripts and plugins) may take to read; then it is stopped. "
    "Env: PATCHKIT_INVENTORY_TIMEOUT.",
)
@click.option(
    "--inventory-cache",
    metavar="DIR|off",
    envvar="PATCHKIT_INVENTORY_CACHE",
    help="Where static inventories (YAML/INI files, host_vars/, group_vars/) are kept as read, "
    "by the SHA-256 of their files: a big one is read by Ansible once per change, not once per "
    "command; 'off' reads every time. Default: ~/.cache/patchkit/inventory "
    "($XDG_CACHE_HOME). Env: PATCHKIT_INVENTORY_CACHE.",
)
@click.pass_context
def cli(
    ctx: click.Context,
    verbose: int,
    debug: bool,
    ledger: str | None,
    inventory_timeout: float,
    inventory_cache: str | None,
) -> None:
    """patchkit: patch windows for Ansible fleets, driven by a patch policy.

    Exit codes: 0 ok, 1 failures or a halted window, 2 bad input, 3 refused, 70 a bug in
    patchkit (an internal error; --debug shows its traceback).
    """
    ctx.ensure_object(dict)
    ctx.obj["debug"] = debug
    ctx.obj["ledger"] = ledger
    ctx.obj["inventory_timeout"] = inventory_timeout
    ctx.obj["inventory_cache"] = inventory_cache
    level = logging.DEBUG if verbose > 1 or debug else logging.INFO if verbose else logging.WARNING
    handler = RichHandler(console=err_console, show_path=False, show_time=False)
    logging.basicConfig(level=logging.WARNING, handlers=[handler], format="%(message)s")
    logging.getLogger("patchkit").setLevel(min(level, logging.INFO))


cli.add_command(advisories)
cli.add_command(lab)
cli.add_command(node)
cli.add_command(policy)
cli.add_command(report)
for command in (scope, assess, plan, approve, run, resume, status, runs, rollback, release, audit):
    cli.add_command(command)


def _say(head: str, text: str, hint: str | None = None) -> None:
    """An error as the user reads it: the head styled, their text never read as markup."""
    err_console.print(Text.assemble((head, "bold red"), " ", text), highlight=False)
    if hint:
        err_console.print(Text(f"  what to do: {hint}"), highlight=False)


def main() -> None:
    """Console script entry point: every way out is one message and a documented exit code.

    patchkit's own errors say what is wrong and what to do; an exception nothing expected is a
    bug, said as such with its own exit code (the traceback only with --debug).
    """
    debug = "--debug" in sys.argv
    try:
        cli.main(prog_name="patchkit", standalone_mode=False)
        sys.stdout.flush()  # a full disk or a closed pipe shows here, not at interpreter exit
    except (click.exceptions.Abort, KeyboardInterrupt):
        err_console.print("patchkit: interrupted")
        sys.exit(ExitCode.FAILURES)
    except click.UsageError as exc:
        # Same shape as every other error: what is wrong, then what to do.
        where = exc.ctx.command_path if exc.ctx is not None else "patchkit"
        _say("patchkit: error:", exc.format_message(), f"see '{where} --help'")
        sys.exit(ExitCode.BAD_INPUT)
    except click.ClickException as exc:
        _say("patchkit: error:", exc.format_message())
        sys.exit(ExitCode.BAD_INPUT)
    except PatchkitError as exc:
        if debug:
            traceback.print_exc()
        _say("patchkit: error:", exc.message, exc.hint)
        sys.exit(exc.exit_code)
    # after PatchkitError: several of its kinds are OSErrors too (LedgerError, RefusedError)
    except BrokenPipeError:
        # the reader went away (| head): stop quietly. Exit 1, as click and rich do when they
        # meet a closed pipe first (both end the process with 1 themselves).
        _quiet_stdout()
        sys.exit(ExitCode.FAILURES)
    except OSError as exc:
        # A write to stdout fails without a file name; a full disk elsewhere (a temporary
        # directory, the ledger) names its file and is not "the output" (nor expected: a bug)
        if exc.errno not in _OUTPUT_ERRORS or exc.filename is not None:
            _bug(exc, debug)
        _quiet_stdout()
        _say("patchkit: error:", f"cannot write the output: {exc.strerror}", "write elsewhere")
        sys.exit(ExitCode.BAD_INPUT)
    except Exception as exc:  # the one place that turns a bug into a message
        _bug(exc, debug)
    sys.exit(ExitCode.OK)


# errno of a write to stdout that failed because of where it goes (a full disk, a lost terminal)
_OUTPUT_ERRORS = frozenset({errno.ENOSPC, errno.EIO, errno.EDQUOT, errno.EFBIG})


def _bug(exc: BaseException, debug: bool) -> NoReturn:
    if debug:
        traceback.print_exception(exc)
    _say(
        "patchkit: internal error:",
        f"{type(exc).__name__}: {exc}",
        "this is a bug in patchkit, not in your input; run again with --debug for the "
        f"traceback and report it (exit code {int(ExitCode.BUG)})",
    )
    sys.exit(ExitCode.BUG)


def _quiet_stdout() -> None:
    """Point stdout at /dev/null, so that the interpreter's last flush cannot fail again."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    os.close(devnull)
