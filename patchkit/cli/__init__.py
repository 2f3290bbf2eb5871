"""The ``patchkit`` command: parse, call the library, render. No logic lives here."""

from __future__ import annotations

import logging
import sys
import traceback

import click
from rich.logging import RichHandler

from patchkit import __version__
from patchkit.cli.consoles import err_console
from patchkit.errors import ExitCode, PatchkitError

from .lab import lab
from .planning import assess, plan, scope
from .policy import policy
from .report import report, runs
from .rollback import release, rollback
from .window import approve, resume, run, status


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
@click.pass_context
def cli(ctx: click.Context, verbose: int, debug: bool, ledger: str | None) -> None:
    """patchkit: patch windows for Ansible fleets, driven by a patch policy.

    Exit codes: 0 ok, 1 failures or a halted window, 2 bad input, 3 refused.
    """
    ctx.ensure_object(dict)
    ctx.obj["debug"] = debug
    ctx.obj["ledger"] = ledger
    level = logging.DEBUG if verbose > 1 or debug else logging.INFO if verbose else logging.WARNING
    handler = RichHandler(console=err_console, show_path=False, show_time=False)
    logging.basicConfig(level=logging.WARNING, handlers=[handler], format="%(message)s")
    logging.getLogger("patchkit").setLevel(min(level, logging.INFO))


cli.add_command(lab)
cli.add_command(policy)
cli.add_command(report)
for command in (scope, assess, plan, approve, run, resume, status, runs, rollback, release):
    cli.add_command(command)


def main() -> None:
    """Console script entry point: turns patchkit errors into one line and an exit code."""
    try:
        cli.main(prog_name="patchkit", standalone_mode=False)
    except click.exceptions.Abort:
        err_console.print("patchkit: interrupted")
        sys.exit(ExitCode.FAILURES)
    except click.UsageError as exc:
        # Same shape as every other error: what is wrong, then what to do.
        err_console.print(f"[bold red]patchkit: error:[/] {exc.format_message()}", highlight=False)
        where = exc.ctx.command_path if exc.ctx is not None else "patchkit"
        err_console.print(f"  what to do: see '{where} --help'", highlight=False)
        sys.exit(ExitCode.BAD_INPUT)
    except click.ClickException as exc:
        exc.show()
        sys.exit(ExitCode.BAD_INPUT)
    except PatchkitError as exc:
        if "--debug" in sys.argv:
            traceback.print_exc()
        err_console.print(f"[bold red]patchkit: error:[/] {exc.message}", highlight=False)
        if exc.hint:
            err_console.print(f"  what to do: {exc.hint}", highlight=False)
        sys.exit(exc.exit_code)
    except KeyboardInterrupt:
        err_console.print("patchkit: interrupted")
        sys.exit(ExitCode.FAILURES)
    sys.exit(ExitCode.OK)
