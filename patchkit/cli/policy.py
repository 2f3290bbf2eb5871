"""``patchkit policy``: validate a policy file, print the JSON Schema of policies."""

from __future__ import annotations

import json
import sys
from datetime import UTC, datetime
from pathlib import Path

import click
from rich.text import Text

from patchkit import policy as policy_lib
from patchkit.cli.consoles import console
from patchkit.errors import ExitCode, PolicyError
from patchkit.planning.windows import next_occurrence
from patchkit.policy.loader import Loc
from patchkit.policy.model import Policy, PolicySchema, Window
from patchkit.reports.terminal import shown

OPEN_WITHIN_DAYS = 366  # a year, leap or not: a yearly window always opens within it


def closed_windows(policy: Policy, now: datetime) -> list[tuple[Loc, str]]:
    """Windows of ``policy`` that do not open within a year of ``now``: where, and why.

    Pure (``now`` is an argument). The model already refuses a recurrence that never opens at
    all; this is the half that depends on the clock: a rule whose UNTIL has passed, a start
    more than a year away, or a year of freezes.
    """
    problems: list[tuple[Loc, str]] = []
    for i, window in enumerate(policy.windows):
        field = "rrule" if window.rrule is not None else "cron"
        closed = _closed(window.model_copy(update={"freeze": []}), now)
        if closed is not None:
            problems.append((("windows", i, field), closed))
        elif window.freeze and _closed(window, now) is not None:
            message = f"every opening in the year from {now:%Y-%m-%d} falls in a freeze"
            problems.append((("windows", i, "freeze"), message))
    return problems


def _closed(window: Window, now: datetime) -> str | None:
    """Why ``window`` has no usable opening in the year from ``now``; None when it has one."""
    try:
        if next_occurrence(window, now, horizon_days=OPEN_WITHIN_DAYS) is not None:
            return None
    except (ValueError, OverflowError) as exc:  # PlanningError is a ValueError
        return f"its openings after {now:%Y-%m-%d} cannot be computed: {exc}"
    ended = " (has its UNTIL passed?)" if "UNTIL=" in (window.rrule or "").upper() else ""
    return f"does not open in the year from {now:%Y-%m-%d}{ended}"


@click.group()
def policy() -> None:
    """Check patch policies and print their schema."""


@policy.command()
@click.argument("file", type=click.Path(path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
def check(file: Path, as_json: bool) -> None:
    """Validate the policy FILE: every problem with its line, field, and what is allowed.

    Also refuses a window that does not open within a year from now. Exits 0 when valid, 2
    when not.
    """
    try:
        located = policy_lib.load_located(file)
        closed = closed_windows(located.policy, datetime.now(UTC))
        if closed:
            raise PolicyError(
                [located.problem(loc, message) for loc, message in closed],
                hint="extend or remove the window's UNTIL, or its freezes",
            )
    except PolicyError as exc:
        if not as_json:
            raise
        click.echo(json.dumps({"file": str(file), "valid": False, "problems": exc.problems}))
        sys.exit(ExitCode.BAD_INPUT)
    loaded = located.policy
    if as_json:
        summary = {"file": str(file), "valid": True, "problems": [], "name": loaded.name}
        click.echo(json.dumps(summary | {"windows": [w.name for w in loaded.windows]}))
        return
    windows = ", ".join(w.name for w in loaded.windows)
    line = Text.assemble(
        f"{file}: valid policy ",
        shown(loaded.name, "bold"),
        f" (owner {loaded.roles.owner}; windows: {windows}; {len(loaded.exceptions)} exception(s))",
    )
    console.print(line)


@policy.command()
def schema() -> None:
    """Print the JSON Schema of a policy file (for editors and CI validation)."""
    body = Policy.model_json_schema(mode="validation", schema_generator=PolicySchema)
    body["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    body["title"] = "patchkit policy"
    click.echo(json.dumps(body, indent=2, sort_keys=True))
