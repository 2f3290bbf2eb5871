"""Integration fixtures: a lab of real hosts, shared by the session, torn down at its end.

The test lab has its own name and subnet (``pktest``, 10.77.1.0/24) so that it never touches a
lab someone brought up by hand for the demo. Set PATCHKIT_TEST_KEEP_LAB=1 to keep it afterwards.
"""

from __future__ import annotations

import atexit
import json
import os
import shlex
import shutil
import subprocess
import sys
import tempfile
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from patchkit.execution.runner import PlaybookResult, run_playbook
from patchkit.lab import hosts, lifecycle
from patchkit.lab.check import HostCheck, check
from patchkit.lab.config import LabConfig

PLAYBOOKS = Path(__file__).parent / "playbooks"
ROOT = Path(__file__).resolve().parents[2]


def _time_safe_lab_policy() -> str:
    """policies/lab.yml with a window that opened at the top of this hour and stays open 3 h.

    The lab policy's window closes to new batches at 23:55 UTC, and a plan made shortly before
    leaves its later batches for the next window: a test must not depend on when it runs.
    """
    text = (ROOT / "policies" / "lab.yml").read_text()
    daily = (
        "    rrule: FREQ=DAILY;BYHOUR=0;BYMINUTE=0;BYSECOND=0\n"
        "    timezone: UTC\n"
        "    duration: 24h\n"
    )
    assert daily in text, "policies/lab.yml's window changed: update the tests' copy"
    hour = datetime.now(UTC).hour
    text = text.replace(
        daily,
        f"    rrule: FREQ=DAILY;BYHOUR={hour};BYMINUTE=0;BYSECOND=0\n"
        "    timezone: UTC\n    duration: 3h\n",
    )
    folder = Path(tempfile.mkdtemp(prefix="patchkit-test-policy-"))
    atexit.register(shutil.rmtree, folder, True)
    (folder / "lab.yml").write_text(text)
    return str(folder / "lab.yml")


POLICY = _time_safe_lab_policy()
# Six hosts: dev (the canary), staging, and a prod web pair and db pair, so that a window has
# three batches under anti-affinity (see patchkit/lab/fleet.py).
TEST_HOSTS = 6


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if Path(str(item.fspath)).is_relative_to(Path(__file__).parent):
            item.add_marker(pytest.mark.integration)


def worker_lab(name: str, subnet: str, worker: str | None) -> tuple[str, str]:
    """The lab of one pytest-xdist worker (``gw0``, ``gw1``…): the name with the worker's number,
    the subnet's third octet moved up by ten per worker. Without xdist, the lab as given."""
    if not worker:
        return name, subnet
    number = int(worker.removeprefix("gw"))
    a, b, c, rest = subnet.split(".", 3)
    return f"{name}{number}", f"{a}.{b}.{int(c) + 10 * number}.{rest}"


@pytest.fixture(scope="session")
def lab_config() -> LabConfig:
    name, subnet = worker_lab(
        os.environ.get("PATCHKIT_TEST_LAB_NAME", "pktest"),
        os.environ.get("PATCHKIT_TEST_LAB_SUBNET", "10.77.1.0/24"),
        os.environ.get("PYTEST_XDIST_WORKER"),
    )
    return LabConfig.create(
        name=name, root=os.environ.get("PATCHKIT_LAB_ROOT", "/var/lib/patchkit/lab"), subnet=subnet
    )


@pytest.fixture(scope="session")
def lab(lab_config: LabConfig, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """Bring the test lab up (TEST_HOSTS hosts); yield its inventory; tear it down."""
    inventory_dir = tmp_path_factory.mktemp("lab-inventory")
    lifecycle.up(lab_config, TEST_HOSTS, inventory_dir)
    try:
        yield inventory_dir / "hosts.yml"
    finally:
        if os.environ.get("PATCHKIT_TEST_KEEP_LAB") != "1":
            lifecycle.down(lab_config, inventory_dir)


def drop_run_snapshots(config: LabConfig) -> None:
    """Delete the lab snapshots runs took (a test's retention is its own length)."""
    for snap in hosts.snapshots(config):
        if snap.name.startswith("run-"):
            hosts.delete_snapshot(config, config.parse_host(snap.host), snap.name)


@pytest.fixture
def env(tmp_path: Path, lab_config: LabConfig) -> Iterator[dict[str, str]]:
    """Environment for the patchkit CLI: a SQLite ledger of the test's own, the lab root."""
    yield {
        "PATCHKIT_LEDGER": f"sqlite:///{tmp_path / 'ledger.sqlite'}",
        "PATCHKIT_LAB_ROOT": str(lab_config.root),
    }
    drop_run_snapshots(lab_config)


@pytest.fixture
def pristine(lab_config: LabConfig, lab: Path) -> Iterator[None]:
    """Put every test host back to the state it had before the test (btrfs restore)."""
    name = "pretest-" + uuid.uuid4().hex[:8]
    indices = list(range(1, TEST_HOSTS + 1))
    for index in indices:
        hosts.snapshot(lab_config, index, name)
    try:
        yield
    finally:
        for index in indices:
            hosts.clear_faults(lab_config, index)
        hosts.restore_many(lab_config, indices, name, power_on=True)
        for index in indices:
            hosts.delete_snapshot(lab_config, index, name)


def play(
    name: str, inventory: Path, limit: str | None = None, **extravars: object
) -> PlaybookResult:
    """Run one of the test playbooks through patchkit's runner adapter."""
    return run_playbook(PLAYBOOKS / name, inventory, limit=limit, extravars=extravars, timeout=300)


def states(inventory: Path, limit: str | None = None) -> dict[str, HostCheck]:
    return {row.host: row for row in check(inventory, limit)}


def on_host(config: LabConfig, index: int, command: str) -> str:
    """Run a shell command on a lab host over SSH; its stdout."""
    done = subprocess.run(
        [*hosts.ssh_argv(config, index), command], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, f"{command!r} on host{index}: {done.stderr}"
    return done.stdout.strip()


def http_status(config: LabConfig, index: int, url: str = "http://127.0.0.1:8081/health") -> int:
    """The HTTP status ``url`` answers with, asked on the lab host itself (its Python; no curl)."""
    script = (
        "import urllib.request as r, urllib.error as e\n"
        f"try:\n    print(r.urlopen({url!r}, timeout=5).status)\n"
        "except e.HTTPError as x:\n    print(x.code)\n"
        "except OSError:\n    print(0)\n"
    )
    return int(on_host(config, index, f"python3 -c {shlex.quote(script)}"))


def patchkit_cli(
    *args: str, env: dict[str, str] | None = None, user: str | None = None
) -> subprocess.CompletedProcess[str]:
    """Run the patchkit command line as a user would (optionally as another Unix user)."""
    argv = [sys.executable, "-m", "patchkit", *args]
    if user is not None:
        argv = ["setpriv", f"--reuid={user}", f"--regid={user}", "--clear-groups", *argv]
    return subprocess.run(
        argv, capture_output=True, text=True, timeout=900, env={**os.environ, **(env or {})}
    )


# ---------------------------------------------------------------- patch windows through the CLI


def variant(tmp_path: Path, *changes: tuple[str, str]) -> str:
    """A copy of the lab policy with some settings changed (each old text must be there)."""
    text = Path(POLICY).read_text()
    for old, new in changes:
        assert old in text, old
        text = text.replace(old, new)
    path = tmp_path / "policy.yml"
    path.write_text(text)
    return str(path)


def planned_id(lab: Path, env: dict[str, str], policy: str = POLICY) -> str:
    done = patchkit_cli("assess", "-p", policy, "-i", str(lab), env=env)
    assert done.returncode == 0, done.stderr
    done = patchkit_cli("plan", "-p", policy, "-i", str(lab), "--format", "json", env=env)
    assert done.returncode == 0, done.stderr
    return str(json.loads(done.stdout)["id"])


def said(done: subprocess.CompletedProcess[str]) -> str:
    """stderr with whitespace squeezed (messages wrap at the terminal width)."""
    return " ".join(done.stderr.split())


def approve(plan_id: str, env: dict[str, str]) -> None:
    """Approve the change and its downtime (lab.yml wants reboots in prod approved)."""
    done = patchkit_cli("approve", plan_id, "--by", "demo-operator", "--reboots", env=env)
    assert done.returncode == 0, done.stderr


def run(lab: Path, env: dict[str, str], plan_id: str, policy: str = POLICY) -> int:
    done = patchkit_cli("run", plan_id, "-p", policy, "-i", str(lab), "--json", env=env)
    assert "Traceback" not in done.stderr, done.stderr
    return done.returncode
