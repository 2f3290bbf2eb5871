"""Integration: the ``patchkit lab`` command line as a user runs it, on the test lab."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from patchkit.lab import hosts
from patchkit.lab.config import LabConfig

from .conftest import TEST_HOSTS, patchkit_cli


def lab_args(config: LabConfig, inventory: Path) -> list[str]:
    return [
        "lab",
        "--name",
        config.name,
        "--root",
        str(config.root),
        "--subnet",
        str(config.subnet),
        "--inventory-dir",
        str(inventory.parent),
    ]


def test_status_json_lists_running_hosts(lab_config: LabConfig, lab: Path) -> None:
    done = patchkit_cli(*lab_args(lab_config, lab), "status", "--json")
    assert done.returncode == 0, done.stderr
    status = json.loads(done.stdout)
    rows = {row["name"]: row for row in status["hosts"]}
    assert sorted(rows) == [f"host{i}" for i in range(1, TEST_HOSTS + 1)]
    assert all(row["state"] == "running" for row in rows.values())
    assert rows["host2"]["address"] == str(lab_config.address(2))


def test_check_json_reaches_hosts_through_runner(lab_config: LabConfig, lab: Path) -> None:
    done = patchkit_cli(*lab_args(lab_config, lab), "check", "--limit", "host1", "--json")
    assert done.returncode == 0, done.stderr
    (row,) = json.loads(done.stdout)
    assert row["host"] == "host1" and row["reachable"] is True
    assert row["packages"]["demo-lib"] in ("1.0", "1.1")


def test_check_exits_1_and_names_the_unreachable_host(lab_config: LabConfig, lab: Path) -> None:
    hosts.set_network(lab_config, 3, up=False)
    try:
        done = patchkit_cli(*lab_args(lab_config, lab), "check", "--limit", "host3")
    finally:
        hosts.set_network(lab_config, 3, up=True)
    assert done.returncode == 1
    assert "host3: " in done.stderr and "10.77" in done.stderr  # Ansible's reason, in full


def test_ssh_runs_one_command(lab_config: LabConfig, lab: Path) -> None:
    done = patchkit_cli(*lab_args(lab_config, lab), "ssh", "host2", "--", "hostname")
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "host2"
    failed = patchkit_cli(*lab_args(lab_config, lab), "ssh", "host2", "--", "exit 7")
    assert failed.returncode == 7  # the remote status is passed on


def test_snapshot_list_and_delete(lab_config: LabConfig, lab: Path) -> None:
    args = lab_args(lab_config, lab)
    assert patchkit_cli(*args, "snapshot", "host1", "cli-test").returncode == 0
    listed = json.loads(patchkit_cli(*args, "snapshots", "--json").stdout)
    assert "host1@cli-test" in listed
    again = patchkit_cli(*args, "snapshot", "host1", "cli-test")
    assert again.returncode == 2 and "already has" in again.stderr
    assert patchkit_cli(*args, "snapshot", "host1", "cli-test", "--delete").returncode == 0
    listed = json.loads(patchkit_cli(*args, "snapshots", "--json").stdout)
    assert "host1@cli-test" not in listed


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (["ssh", "web1", "--", "true"], "web1"),
        (["snapshot", "host99", "x"], "host99"),
        (["snapshot", "host1", "bad/name"], "bad/name"),
        (["fault", "host1", "boot-delay"], "SECONDS"),
        (["fault", "host1", "boot-delay", "99999"], "range"),
        (["up", "--hosts", "0"], "0"),
        (["up", "--hosts", "500"], "500"),
        (["restore", "host1", "never-taken"], "never-taken"),
    ],
)
def test_bad_input_is_one_clear_line_and_exit_2(
    lab_config: LabConfig, lab: Path, args: list[str], words: str
) -> None:
    done = patchkit_cli(*lab_args(lab_config, lab), *args)
    assert done.returncode == 2, (done.stdout, done.stderr)
    assert "Traceback" not in done.stderr
    assert words in done.stderr
    assert done.stderr.startswith("patchkit: error: ")
    assert len(done.stderr.strip().splitlines()) <= 2  # the error, then what to do


def test_not_root_is_refused_before_anything_is_touched(lab_config: LabConfig, lab: Path) -> None:
    done = patchkit_cli(*lab_args(lab_config, lab), "up", "--hosts", "1", user="65534")
    assert done.returncode == 2
    assert "Traceback" not in done.stderr
    assert "root" in done.stderr
    assert hosts.running(lab_config, 1)  # the running lab is untouched


def test_every_command_has_help() -> None:
    commands = ["up", "down", "status", "check", "updates", "snapshot", "restore", "snapshots"]
    commands += ["ssh", "fault", "start", "stop"]
    for command in commands:
        done = patchkit_cli("lab", command, "--help")
        assert done.returncode == 0, command
        assert "Usage:" in done.stdout
