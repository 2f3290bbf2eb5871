"""``patchkit node check|bootstrap|wheels``: execution nodes, checked and prepared over SSH."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar

import click
from rich.status import Status

from patchkit.cli.consoles import console, err_console
from patchkit.errors import ExitCode, PatchkitError

FC = TypeVar("FC", bound=Callable[..., Any])


def _addressing(func: FC) -> FC:
    """The options that say how to reach the nodes named on the command line."""
    for option in reversed(
        [
            click.option(
                "--key",
                type=click.Path(dir_okay=False, exists=True, path_type=Path),
                help="SSH private key for the nodes (default: ssh's own).",
            ),
            click.option(
                "--known-hosts",
                type=click.Path(dir_okay=False, exists=True, path_type=Path),
                help="known_hosts file holding the nodes' host keys (default: ssh's own). "
                "Host keys of nodes are always checked.",
            ),
            click.option(
                "--venv",
                default="/opt/patchkit-node",
                show_default=True,
                help="Where the node's virtualenv is (or goes).",
            ),
        ]
    ):
        func = option(func)
    return func


def _nodes(texts: Sequence[str], key: Path | None, known: Path | None, venv: str) -> list[Any]:
    from patchkit.execution.nodes import parse_node

    return [parse_node(t, key=key, known_hosts=known, venv=venv) for t in texts]


@click.group()
def node() -> None:
    """Execution nodes: machines near the hosts that run the controller's jobs.

    A node needs SSH and Python 3.11 or newer; 'bootstrap' installs the controller's own
    ansible-core and ansible-runner there, from wheels (the node needs no internet), and
    'check' shows what a node has and whether it can run this controller's jobs.
    NODE is [user@]host[:port] (user root, port 22).
    """


@node.command()
@click.argument("nodes", nargs=-1, required=True, metavar="NODE...")
@_addressing
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
def check(
    nodes: tuple[str, ...], key: Path | None, known_hosts: Path | None, venv: str, as_json: bool
) -> None:
    """Show each node's Python, free space and versions; refuse one that differs.

    Exit codes: 0 every node can run this controller's jobs; 1 a node cannot be reached;
    3 a node is not bootstrapped or runs other versions than the controller (its line says
    which, and 'patchkit node bootstrap NODE' is the fix).
    """
    from patchkit.execution import nodes as library

    rows: list[dict[str, Any]] = []
    worst = ExitCode.OK
    for item in _nodes(nodes, key, known_hosts, venv):
        row: dict[str, Any] = {"node": item.name, "venv": item.venv}
        with Status(f"probing {item.name}", console=err_console):
            try:
                facts = library.probe(item)
            except library.NodeError as exc:
                row |= {"state": "unreachable", "problem": exc.message}
                worst = max(worst, ExitCode.FAILURES)
                rows.append(row)
                continue
        wanted = library.pins(".".join(facts.python.split(".")[:2]) or None)
        differ = library.mismatches(facts, wanted)
        row |= {
            "python": facts.python,
            "machine": facts.machine,
            "free_mb": dict(facts.free_mb),
            "ansible_core": facts.versions.get("ansible-core", ""),
            "ansible_runner": facts.versions.get("ansible-runner", ""),
            "worker": facts.worker,
            "differences": {n: {"controller": w, "node": h} for n, (w, h) in differ.items()},
        }
        try:
            library.refuse_unless_ready(facts, wanted)
            row["state"] = "ready"
        except library.NodeError as exc:
            row |= {"state": "refused", "problem": exc.message, "hint": exc.hint}
            worst = max(worst, ExitCode.REFUSED)
        rows.append(row)
    if as_json:
        console.print_json(json.dumps({"nodes": rows}))
    else:
        for row in rows:
            _show(row)
    sys.exit(worst)


def _show(row: dict[str, Any]) -> None:
    head = f"{row['node']}: {row['state']}"
    if row["state"] == "unreachable":
        console.print(f"{head}: {row['problem']}")
        return
    free = ", ".join(f"{path} {mb:,} MiB free" for path, mb in row["free_mb"].items())
    console.print(
        f"{head} (Python {row['python']} {row['machine']}; ansible-core "
        f"{row['ansible_core'] or 'none'}, ansible-runner {row['ansible_runner'] or 'none'} "
        f"in {row['venv']}; {free})"
    )
    if row["state"] == "refused":
        console.print(f"  {row['problem']}")
        console.print(f"  what to do: {row['hint']}")


@node.command()
@click.argument("nodes", nargs=-1, required=True, metavar="NODE...")
@_addressing
@click.option(
    "--wheels",
    type=click.Path(file_okay=False, exists=True, path_type=Path),
    help="Directory holding every wheel the node needs ('patchkit node wheels' makes one). "
    "Default: downloaded once into ~/.cache/patchkit/node-wheels/ for the node's Python.",
)
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
def bootstrap(
    nodes: tuple[str, ...],
    key: Path | None,
    known_hosts: Path | None,
    venv: str,
    wheels: Path | None,
    as_json: bool,
) -> None:
    """Install the controller's ansible-core, ansible-runner and patchkit-worker on each node.

    Into a fresh virtualenv (--venv, replaced if there), from wheels: the node needs SSH and
    Python 3.11 or newer, and no internet. Exit codes: 0 every node is ready; 1 one failed
    (its line says at which step); 2 the wheels given are incomplete.
    """
    from patchkit.execution import nodes as library

    rows: list[dict[str, Any]] = []
    worst = ExitCode.OK
    for item in _nodes(nodes, key, known_hosts, venv):
        with Status(f"bootstrapping {item.name}", console=err_console) as status:
            try:
                facts = library.bootstrap(item, wheels, say=status.update)
            except PatchkitError as exc:
                rows.append({"node": item.name, "state": "failed", "problem": exc.message})
                err_console.print(f"{item.name}: failed: {exc.message}")
                if exc.hint:
                    err_console.print(f"  what to do: {exc.hint}")
                worst = max(worst, ExitCode.FAILURES)
                continue
        rows.append(
            {
                "node": item.name,
                "state": "ready",
                "venv": item.venv,
                "python": facts.python,
                "ansible_core": facts.versions.get("ansible-core", ""),
                "ansible_runner": facts.versions.get("ansible-runner", ""),
            }
        )
        if not as_json:
            console.print(
                f"{item.name}: ready (ansible-core {facts.versions.get('ansible-core')}, "
                f"ansible-runner {facts.versions.get('ansible-runner')} in {item.venv})"
            )
    if as_json:
        console.print_json(json.dumps({"nodes": rows}))
    sys.exit(worst)


@node.command()
@click.option("--python", "python", default="3.11", show_default=True, help="The nodes' Python.")
@click.option("--machine", default="x86_64", show_default=True, help="The nodes' machine.")
@click.option(
    "--dest",
    type=click.Path(file_okay=False, path_type=Path),
    help="Directory to fill (default: the cache 'bootstrap' reads).",
)
def wheels(python: str, machine: str, dest: Path | None) -> None:
    """Download the wheels a node needs (this controller's versions) for a Python and machine.

    The one step that needs a package index: run it where there is one, then copy the
    directory to a controller without ('bootstrap --wheels DIR'). Prints the directory.
    """
    from patchkit.execution import nodes as library

    major_minor = ".".join(python.split(".")[:2])
    wanted = library.pins(major_minor)
    tag = f"cp{major_minor.replace('.', '')}-{machine}"
    folder = dest if dest is not None else library.default_wheels(tag)
    missing = library.missing_wheels(folder, wanted)
    if missing:
        with Status(f"downloading {len(missing)} wheels into {folder}", console=err_console):
            library.download_wheels(folder, wanted, python=python, machine=machine)
    console.print(str(folder))


@node.command()
@click.argument("nodes", nargs=-1, required=True, metavar="NODE...")
@_addressing
def cleanup(nodes: tuple[str, ...], key: Path | None, known_hosts: Path | None, venv: str) -> None:
    """Remove the job directories killed workers left on each node.

    A worker ended by SIGKILL (or a node that lost power) cannot delete its job's directory,
    which holds the hosts' SSH key and the job's extra vars: this removes every
    /tmp/patchkit-job-* directory with ansible-runner's own 'worker cleanup'. Run it when no job
    of any controller is running on the node. Exit codes: 0 done; 1 a node failed.
    """
    from patchkit.execution import nodes as library

    worst = ExitCode.OK
    for item in _nodes(nodes, key, known_hosts, venv):
        try:
            said = library.cleanup(item)
        except library.NodeError as exc:
            err_console.print(f"{item.name}: failed: {exc.message}")
            worst = max(worst, ExitCode.FAILURES)
            continue
        console.print(f"{item.name}: {said or 'nothing to remove'}")
    sys.exit(worst)
