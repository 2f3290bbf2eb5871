"""``patchkit policy``: validate a policy file, print the JSON Schema of policies."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from patchkit import policy as policy_lib
from patchkit.cli.consoles import console
from patchkit.errors import ExitCode, PolicyError
from patchkit.policy.model import Policy


@click.group()
def policy() -> None:
    """Check patch policies and print their schema."""


@policy.command()
@click.argument("file", type=click.Path(path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
def check(file: Path, as_json: bool) -> None:
    """Validate the policy FILE: every problem with its line, field, and what is allowed.

    Exits 0 when valid, 2 when not.
    """
    try:
        loaded = policy_lib.load(file)
    except PolicyError as exc:
        if not as_json:
            raise
        click.echo(json.dumps({"file": str(file), "valid": False, "problems": exc.problems}))
        sys.exit(ExitCode.BAD_INPUT)
    if as_json:
        summary = {"file": str(file), "valid": True, "problems": [], "name": loaded.name}
        click.echo(json.dumps(summary | {"windows": [w.name for w in loaded.windows]}))
        return
    windows = ", ".join(w.name for w in loaded.windows)
    console.print(
        f"{file}: valid policy [bold]{loaded.name}[/] (owner {loaded.roles.owner}; "
        f"windows: {windows}; {len(loaded.exceptions)} exception(s))",
        highlight=False,
    )


@policy.command()
def schema() -> None:
    """Print the JSON Schema of a policy file (for editors and CI validation)."""
    body = Policy.model_json_schema(mode="validation")
    body["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    body["title"] = "patchkit policy"
    click.echo(json.dumps(body, indent=2, sort_keys=True))
