"""Integration: a second lab of its own (``pklife``), grown, killed, recovered and torn down.

It runs beside the session's test lab, with its own name and subnet, through the command line.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from patchkit.lab import cgroups, hosts, lifecycle, network, system
from patchkit.lab.config import LabConfig

from .conftest import patchkit_cli

pytestmark = pytest.mark.lifecycle

LIFE = LabConfig.create(name="pklife", subnet="10.77.2.0/24")
FULL = 8


@pytest.fixture(scope="module")
def inventory_dir(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    path = tmp_path_factory.mktemp("pklife-inventory")
    try:
        yield path
    finally:
        lifecycle.down(LIFE, path)


def cli(inventory_dir: Path, *args: str) -> subprocess.CompletedProcess[str]:
    base = ["lab", "--name", LIFE.name, "--root", str(LIFE.root), "--subnet", str(LIFE.subnet)]
    return patchkit_cli(*base, "--inventory-dir", str(inventory_dir), *args)


def boot_ids(inventory_dir: Path) -> dict[str, str | None]:
    done = cli(inventory_dir, "check", "--json")
    assert done.returncode == 0, done.stderr
    return {row["host"]: row["boot_id"] for row in json.loads(done.stdout)}


def leftovers(config: LabConfig) -> dict[str, object]:
    """Everything of the lab the kernel still holds; empty values when the lab is gone."""
    links = system.run(["ip", "-o", "link", "show"]).stdout
    loops = system.run(["losetup", "-a"]).stdout
    in_cgroup = cgroups.pids(config.cgroup)
    by_cmdline = []
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            try:
                cmdline = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode()
            except OSError:
                continue
            if str(config.lab_dir) in cmdline:
                by_cmdline.append(f"{proc.name}: {cmdline}")
    return {
        "mounts": system.mounts_under(config.lab_dir),
        "namespaces": network.lab_namespaces(config),
        "links": [line for line in links.splitlines() if f" {config.name}-" in line],
        "loop devices": [line for line in loops.splitlines() if str(config.lab_dir) in line],
        "cgroup": cgroups.exists(config.cgroup),
        "processes": sorted(in_cgroup) + by_cmdline,
        "lab dir": config.lab_dir.exists(),
    }


def test_up_on_a_running_lab_only_adds_hosts(inventory_dir: Path) -> None:
    assert cli(inventory_dir, "up", "--hosts", "2").returncode == 0
    first = boot_ids(inventory_dir)
    assert sorted(first) == ["host1", "host2"]
    done = cli(inventory_dir, "up", "--hosts", str(FULL), "--json")
    assert done.returncode == 0, done.stderr
    assert len(json.loads(done.stdout)["hosts"]) == FULL
    after = boot_ids(inventory_dir)
    assert len(after) == FULL and all(after.values())
    assert after["host1"] == first["host1"] and after["host2"] == first["host2"]  # not rebooted
    assert len(set(after.values())) == FULL


def test_up_recovers_a_lab_whose_processes_were_killed(inventory_dir: Path) -> None:
    assert cli(inventory_dir, "up", "--hosts", "3").returncode == 0
    # What ending a session does: every process SIGKILLed, nothing cleaned up.
    assert cgroups.kill_all(LIFE.cgroup)
    assert not hosts.running(LIFE, 1)
    assert LIFE.run_file(1, "sup.pid").exists()  # stale pid files, mounts and namespaces remain
    assert system.mounts_under(LIFE.lab_dir)
    assert network.lab_namespaces(LIFE)
    done = cli(inventory_dir, "up", "--hosts", "3")
    assert done.returncode == 0, done.stderr
    ids = boot_ids(inventory_dir)
    assert len(ids) >= 3 and all(ids.values())  # every host of the lab is back and reachable


def test_down_leaves_nothing_behind(inventory_dir: Path) -> None:
    assert cli(inventory_dir, "up", "--hosts", str(FULL)).returncode == 0
    assert all(leftovers(LIFE).values())  # the probe sees a running lab
    done = cli(inventory_dir, "down")
    assert done.returncode == 0, done.stderr
    assert not any(leftovers(LIFE).values()), leftovers(LIFE)
    assert not (inventory_dir / "hosts.yml").exists()
    again = cli(inventory_dir, "down")  # tearing down an absent lab is fine
    assert again.returncode == 0, again.stderr
