"""``patchkit lab``: a lab of real Debian hosts on this machine, for the demo and the tests."""

from __future__ import annotations

import dataclasses
import json
import sys
from pathlib import Path
from typing import Any

import click

from patchkit.cli.consoles import console, err_console
from patchkit.errors import ExitCode
from patchkit.lab import feeds as lab_feeds
from patchkit.lab import hosts, isolation, lifecycle
from patchkit.lab.check import check
from patchkit.lab.config import (
    DEFAULT_NAME,
    DEFAULT_REPO_PORT,
    DEFAULT_ROOT,
    DEFAULT_SUBNET,
    LabConfig,
)
from patchkit.reports.lab import check_problems, check_table, status_table


def _json(value: Any) -> None:
    click.echo(json.dumps(value, indent=2, default=str))


def _config(ctx: click.Context) -> LabConfig:
    config: LabConfig = ctx.obj["lab"]
    return config


def _inventory_dir(ctx: click.Context) -> Path:
    path: Path = ctx.obj["inventory_dir"]
    return path


@click.group()
@click.option(
    "--name",
    envvar="PATCHKIT_LAB_NAME",
    default=DEFAULT_NAME,
    show_default=True,
    help="Lab name (several labs can run side by side). Env: PATCHKIT_LAB_NAME.",
)
@click.option(
    "--root",
    envvar="PATCHKIT_LAB_ROOT",
    default=str(DEFAULT_ROOT),
    show_default=True,
    help="State directory shared by all labs. Env: PATCHKIT_LAB_ROOT.",
)
@click.option(
    "--subnet",
    envvar="PATCHKIT_LAB_SUBNET",
    default=DEFAULT_SUBNET,
    show_default=True,
    help="The lab's own private subnet. Env: PATCHKIT_LAB_SUBNET.",
)
@click.option(
    "--repo-port",
    envvar="PATCHKIT_LAB_REPO_PORT",
    default=DEFAULT_REPO_PORT,
    type=click.IntRange(1024, 65535),
    show_default=True,
    help="Port of the apt repository on the lab bridge.",
)
@click.option(
    "--inventory-dir",
    envvar="PATCHKIT_LAB_INVENTORY",
    default="inventories/lab",
    show_default=True,
    type=click.Path(path_type=Path),
    help="Where 'up' writes the lab's Ansible inventory (hosts.yml).",
)
@click.pass_context
def lab(
    ctx: click.Context, name: str, root: str, subnet: str, repo_port: int, inventory_dir: Path
) -> None:
    """A lab of real Debian hosts on this machine (root, Linux, btrfs, loop devices).

    Hosts are systemd-nspawn machines booting systemd, with sshd, their own network namespace
    on a lab bridge, and a btrfs disk that can be snapshotted. A local apt repository serves
    demo packages and their updates from a regular and a security origin.
    """
    ctx.ensure_object(dict)
    ctx.obj["lab"] = LabConfig.create(name, root, subnet, repo_port)
    ctx.obj["inventory_dir"] = inventory_dir


@lab.command()
@click.option(
    "--hosts",
    "count",
    default=3,
    show_default=True,
    type=click.IntRange(min=1),
    help="Number of hosts (existing hosts beyond it are kept).",
)
@click.option("--json", "as_json", is_flag=True, help="Print the lab status as JSON.")
@click.pass_context
def up(ctx: click.Context, count: int, as_json: bool) -> None:
    """Build (on first use) and boot the lab; on a running lab, start only what is missing."""
    config = _config(ctx)
    with err_console.status(f"bringing lab {config.name} up ({count} hosts)…"):
        lifecycle.up(config, count, _inventory_dir(ctx))
    _show_status(config, as_json)
    if not as_json:
        err_console.print(f"inventory: {_inventory_dir(ctx) / 'hosts.yml'}")


@lab.command()
@click.option(
    "--purge",
    is_flag=True,
    help="Also delete the shared cache (golden image, SSH key): the next up rebuilds.",
)
@click.pass_context
def down(ctx: click.Context, purge: bool) -> None:
    """Tear the lab down: hosts, namespaces, bridge, repository server, mounts, cgroups."""
    config = _config(ctx)
    with err_console.status(f"tearing lab {config.name} down…"):
        lifecycle.down(config, _inventory_dir(ctx), purge=purge)
    err_console.print(f"lab {config.name} is down")


def _show_status(config: LabConfig, as_json: bool) -> None:
    status = lifecycle.status(config)
    if as_json:
        _json(dataclasses.asdict(status))
    elif not status.exists:
        console.print(f"lab {config.name} is not up ('patchkit lab up' builds it)")
    else:
        console.print(status_table(status))


@lab.command()
@click.option("--json", "as_json", is_flag=True, help="Print as JSON.")
@click.pass_context
def status(ctx: click.Context, as_json: bool) -> None:
    """List the lab's hosts with their address, state and fleet role."""
    _show_status(_config(ctx), as_json)


@lab.command(name="check")
@click.option("--limit", help="Ansible host pattern to check (default: all).")
@click.option("--json", "as_json", is_flag=True, help="Print as JSON.")
@click.pass_context
def check_cmd(ctx: click.Context, limit: str | None, as_json: bool) -> None:
    """Reach every host with Ansible through ansible-runner; show boot id and demo packages.

    Exits 1 if any host is unreachable.
    """
    inventory = _inventory_dir(ctx) / "hosts.yml"
    with err_console.status("running the lab check through ansible-runner…"):
        rows = check(inventory, limit)
    if as_json:
        _json([dataclasses.asdict(r) | {"packages": dict(r.packages)} for r in rows])
    else:
        console.print(check_table(rows))
        for line in check_problems(rows):
            err_console.print(line)
    if not all(r.reachable for r in rows):
        sys.exit(ExitCode.FAILURES)


@lab.command()
@click.option("--publish", "action", flag_value="publish", help="Make the updates installable.")
@click.option("--withdraw", "action", flag_value="withdraw", help="Take the updates away.")
@click.argument("pattern", required=False)
@click.option("--json", "as_json", is_flag=True, help="Print as JSON.")
@click.pass_context
def updates(ctx: click.Context, action: str | None, pattern: str | None, as_json: bool) -> None:
    """Publish or withdraw demo package versions; with neither flag, list what is published.

    PATTERN without '_' names packages whose update to act on (demo-svc, 'demo-*'); with '_'
    it names exact versions (demo-lib_1.0, '*_1.0'). No PATTERN: every update.
    """
    config = _config(ctx)
    if action is not None:
        keys = lifecycle.set_updates(config, pattern, publish=action == "publish")
        done = "published" if action == "publish" else "withdrawn"
        err_console.print(f"{done}: {', '.join(keys)}")
    published = lifecycle.status(config).published_updates
    if as_json:
        _json({"published_updates": list(published)})
    else:
        console.print("published updates: " + (", ".join(published) or "none"))


@lab.command()
@click.argument("host")
@click.argument("name")
@click.option("--delete", is_flag=True, help="Delete the snapshot instead of taking it.")
@click.pass_context
def snapshot(ctx: click.Context, host: str, name: str, delete: bool) -> None:
    """Take (or delete) a read-only snapshot NAME of HOST's disk."""
    config = _config(ctx)
    index = config.parse_host(host)
    with lifecycle.locked(config, index):
        if delete:
            hosts.delete_snapshot(config, index, name)
            err_console.print(f"deleted {config.host_name(index)}@{name}")
        else:
            hosts.snapshot(config, index, name)
            err_console.print(f"snapshot {config.host_name(index)}@{name} taken")


@lab.command()
@click.argument("host")
@click.argument("name")
@click.pass_context
def restore(ctx: click.Context, host: str, name: str) -> None:
    """Restore HOST to snapshot NAME: power off, swap the disk, boot, wait for SSH."""
    config = _config(ctx)
    index = config.parse_host(host)
    with (
        err_console.status(f"restoring {config.host_name(index)}@{name}…"),
        lifecycle.locked(config, index),
    ):
        hosts.restore(config, index, name)
    err_console.print(f"{config.host_name(index)} restored to {name}")


@lab.command()
@click.argument("folder", type=click.Path(file_okay=False, path_type=Path))
def feeds(folder: Path) -> None:
    """Write advisory feeds about the demo packages into FOLDER, in the real formats.

    A Debian Security Tracker JSON, a CISA KEV catalog and a FIRST EPSS file naming the CVEs the
    demo packages' changelogs fix (made-up numbers): a known-exploited one fixed by demo-lib
    1.1, one with no fix yet, one fixed in a version the lab repository does not offer. Import
    them with 'patchkit advisories import FOLDER/*'.
    """
    for path in lab_feeds.write_feeds(folder):
        click.echo(str(path))


@lab.command()
@click.option("--json", "as_json", is_flag=True, help="Print as JSON.")
@click.pass_context
def snapshots(ctx: click.Context, as_json: bool) -> None:
    """List the lab's snapshots as HOST@NAME."""
    names = lifecycle.status(_config(ctx)).snapshots
    if as_json:
        _json(list(names))
    else:
        for name in names:
            click.echo(name)


@lab.command(context_settings={"ignore_unknown_options": True})
@click.argument("host")
@click.argument("command", nargs=-1, type=click.UNPROCESSED)
@click.pass_context
def ssh(ctx: click.Context, host: str, command: tuple[str, ...]) -> None:
    """Open a shell on HOST, or run COMMAND there: patchkit lab ssh host1 -- uname -a."""
    config = _config(ctx)
    code = hosts.ssh(config, config.parse_host(host), list(command), tty=not command)
    sys.exit(code)


@lab.command()
@click.argument("host")
@click.argument(
    "kind",
    metavar="KIND",
    type=click.Choice(
        [
            "boot-delay",
            "no-boot",
            "net-down",
            "net-up",
            "hard-reset",
            "install-fails",
            "install-fails-once",
            "clear",
        ]
    ),
)
@click.argument("seconds", required=False, type=float)
@click.pass_context
def fault(ctx: click.Context, host: str, kind: str, seconds: float | None) -> None:
    """Inject a fault into HOST, for tests.

    \b
    boot-delay SECONDS  the host stays off that long on each reboot
    no-boot             the next reboot leaves the host off (it never comes back)
    net-down / net-up   pull or plug the host's network cable
    hard-reset          kill the host's PID 1 (it boots again)
    install-fails       installing demo-lib's update fails (dpkg cannot replace its file)
    install-fails-once  only the next attempt to install demo-lib's update fails; the one
                        after succeeds (a retry works)
    clear               remove boot-delay, no-boot, net-down, install-fails and
                        install-fails-once
    """
    config = _config(ctx)
    index = config.parse_host(host)
    if kind == "boot-delay":
        if seconds is None:
            raise click.UsageError("boot-delay needs SECONDS")
        hosts.set_boot_delay(config, index, seconds)
    elif seconds is not None:
        raise click.UsageError(f"{kind} takes no SECONDS")
    elif kind == "no-boot":
        hosts.set_no_boot(config, index)
    elif kind in ("net-down", "net-up"):
        hosts.set_network(config, index, up=kind == "net-up")
    elif kind == "hard-reset":
        hosts.hard_reset(config, index)
    elif kind == "install-fails":
        hosts.set_install_fails(config, index, fails=True)
    elif kind == "install-fails-once":
        hosts.set_install_fails_once(config, index, fails=True)
    else:
        hosts.clear_faults(config, index)
    err_console.print(f"{config.host_name(index)}: {kind} {'' if seconds is None else seconds}")


@lab.command()
@click.argument("host")
@click.pass_context
def start(ctx: click.Context, host: str) -> None:
    """Power HOST on and wait for SSH."""
    config = _config(ctx)
    index = config.parse_host(host)
    with lifecycle.locked(config, index):
        hosts.start(config, index)
        hosts.wait_ssh(config, [index])


@lab.command()
@click.argument("host")
@click.pass_context
def stop(ctx: click.Context, host: str) -> None:
    """Power HOST off cleanly."""
    config = _config(ctx)
    index = config.parse_host(host)
    with lifecycle.locked(config, index):
        hosts.stop(config, index)


@lab.command()
@click.argument("targets", nargs=-1, metavar="HOST...")
@click.option(
    "--via", "via", multiple=True, metavar="NODE", help="A host that reaches them (repeatable)."
)
@click.option("--undo", is_flag=True, help="Put the isolated hosts back on the lab bridge.")
@click.option("--json", "as_json", is_flag=True, help="Print the far network as JSON.")
@click.pass_context
def isolate(
    ctx: click.Context, targets: tuple[str, ...], via: tuple[str, ...], undo: bool, as_json: bool
) -> None:
    """Move HOSTs onto a far network that only the --via hosts (execution nodes) reach.

    This machine gets no route to them (ssh to one fails: Network is unreachable); the nodes get
    a second cable into that network; it has its own copy of the lab repository. The lab's own
    commands (lab ssh, lab snapshot) still reach the hosts, from inside their namespaces.
    patchkit lab isolate host2 host3 --via host1 --via host4; undo with --undo.
    """
    config = _config(ctx)
    with lifecycle.locked(config):
        if undo:
            if targets or via:
                raise click.UsageError("--undo takes no hosts")
            found = isolation.undo(config)
        else:
            found = isolation.isolate(
                config, [config.parse_host(h) for h in targets], [config.parse_host(h) for h in via]
            )
    shown = (
        {"hosts": [], "via": []}
        if found is None or undo
        else {
            "hosts": [config.host_name(i) for i in found.hosts],
            "via": [config.host_name(i) for i in found.via],
        }
    )
    if as_json:
        _json(shown)
    elif undo:
        console.print("every host is back on the lab bridge")
    else:
        console.print(
            f"{', '.join(shown['hosts'])} on the far network: only {', '.join(shown['via'])} "
            "reach them"
        )
