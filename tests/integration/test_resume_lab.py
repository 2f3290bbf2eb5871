"""Integration: a controller SIGKILLed mid-batch; the lock it leaves; resume finishing the window.

Checked on the hosts (versions, dpkg's own log: nothing installed twice) and in the ledger (no
outcome lost or duplicated).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

from patchkit.execution.status import PATCH_PHASES
from patchkit.lab import lifecycle
from patchkit.lab.config import LabConfig
from patchkit.ledger import Ledger

from .conftest import (
    POLICY,
    TEST_HOSTS,
    approve,
    on_host,
    patchkit_cli,
    planned_id,
    said,
    states,
    variant,
)

NAMES = [f"host{i}" for i in range(1, TEST_HOSTS + 1)]


def kill_during_batch_2(lab: Path, env: dict[str, str], plan_id: str) -> None:
    """Start `patchkit run` and SIGKILL its whole process tree once batch 2 has patched a host."""
    argv = [sys.executable, "-m", "patchkit", "run", plan_id, "-p", POLICY, "-i", str(lab)]
    proc = subprocess.Popen(
        [*argv, "--json"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env={**os.environ, **env}, start_new_session=True,
    )  # fmt: skip
    assert proc.stdout is not None
    batch = 0
    for line in proc.stdout:
        event = json.loads(line)
        if event.get("event") == "batch" and event.get("status") == "running":
            batch = event["batch"]
        if batch == 2 and event.get("task") == "patchkit patch result":
            os.killpg(proc.pid, signal.SIGKILL)  # the controller and its ansible-playbook
            break
    proc.wait(timeout=60)
    assert proc.returncode == -signal.SIGKILL


def test_resume_finishes_a_window_whose_controller_was_killed(
    lab_config: LabConfig, lab: Path, env: dict[str, str], pristine: None
) -> None:
    lifecycle.set_updates(lab_config, "demo-svc", publish=False)
    try:
        plan_id = planned_id(lab, env)
        approve(plan_id, env)
        kill_during_batch_2(lab, env, plan_id)
        record = Ledger(env["PATCHKIT_LEDGER"]).run_record()
        assert record is not None and record["status"] == "running"  # as the dead left it
        run_id = record["id"]
        # what batch 2 reported before the kill was committed as it happened
        assert {(p["batch"], p["phase"]) for p in record["phases"]} >= {(2, "patch")}

        # the plan's approval went to the killed run: a new run of it is refused, pointing at
        # resume; the dead controller still holds the hosts: a plain resume is refused too
        again = patchkit_cli("run", plan_id, "-p", POLICY, "-i", str(lab), env=env)
        assert again.returncode == 3 and f"already ran: run {run_id}" in said(again)
        assert f"patchkit resume {run_id}" in said(again)
        plain = patchkit_cli("resume", run_id, "-p", POLICY, "-i", str(lab), env=env)
        assert plain.returncode == 3 and "--take-over" in said(plain)

        done = patchkit_cli(
            "resume", run_id, "-p", POLICY, "-i", str(lab), "--take-over", "--json", env=env
        )
        assert done.returncode == 0, done.stderr
    finally:
        lifecycle.set_updates(lab_config, "demo-svc", publish=True)
    record = Ledger(env["PATCHKIT_LEDGER"]).run_record(run_id)
    assert record is not None
    assert record["status"] == "completed", record["reason"]
    assert all(b["status"] == "completed" for b in record["batches"])
    rows = Counter((p["host"], p["phase"]) for p in record["phases"])
    assert set(rows.values()) == {1}  # no outcome duplicated...
    assert len(rows) == len(PATCH_PHASES) * len(NAMES)  # ...or lost: every phase of every host
    changes = Counter((c["host"], c["package"]) for c in record["changes"])
    assert set(changes.values()) == {1} and len(changes) == 3 * len(NAMES)
    after = states(lab)
    for index, name in enumerate(NAMES, start=1):
        assert after[name].packages["demo-lib"] == "1.1", name
        # dpkg's own log on the host: each update was installed exactly once
        upgrades = on_host(lab_config, index, "grep -c ' upgrade demo-lib:' /var/log/dpkg.log")
        assert upgrades == "1", name
    assert Ledger(env["PATCHKIT_LEDGER"]).locks(NAMES) == []  # released at the end

    ended = patchkit_cli("resume", run_id, "-p", POLICY, "-i", str(lab), env=env)
    assert ended.returncode == 3 and "nothing to resume" in said(ended)


SCOPED = ("name: lab\n", "name: lab\nscope: {include: [dev, staging]}\n")  # two batches


def break_the_ledger(fault: str, ledger_dir: Path) -> None:
    if fault == "disk-full":
        fill = ["dd", "if=/dev/zero", f"of={ledger_dir / 'fill'}", "bs=64k"]
        subprocess.run(fill, capture_output=True, check=False)  # until ENOSPC
    else:
        # What a filesystem remounted read-only after an error looks like to the open ledger: its
        # writes fail. (A real `remount,ro` is refused while the file is open for writing. The
        # -shm file stays writable: SQLite maps it, and an immutable map would kill the process
        # with SIGBUS, which is a different fault from the one tested here.)
        names = [str(ledger_dir / n) for n in ("ledger.sqlite", "ledger.sqlite-wal")]
        subprocess.run(["chattr", "+i", *names], check=True)


def repair_the_ledger(fault: str, ledger_dir: Path) -> None:
    if fault == "disk-full":
        (ledger_dir / "fill").unlink()
    else:
        names = [str(ledger_dir / n) for n in ("ledger.sqlite", "ledger.sqlite-wal")]
        subprocess.run(["chattr", "-i", *names], check=False)  # also after a partial set-up


@pytest.mark.parametrize("fault", ["disk-full", "read-only"])
def test_a_ledger_that_stops_taking_writes_stops_the_run_and_resume_finishes_it(
    fault: str,
    lab_config: LabConfig,
    lab: Path,
    env: dict[str, str],
    tmp_path: Path,
    pristine: None,
) -> None:
    """The ledger's disk fills up, or its file turns read-only, mid-batch: the run stops with a
    clear error instead of patching on without records; nothing is half-written; once the
    ledger takes writes again, resume completes the window."""
    ledger_dir = tmp_path / "ledgerfs"
    ledger_dir.mkdir()
    if fault == "disk-full":
        mount = ["mount", "-t", "tmpfs", "-o", "size=64m", "tmpfs", str(ledger_dir)]
        subprocess.run(mount, check=True)
    policy = variant(tmp_path, SCOPED)
    names = ["host1", "host2"]
    try:
        env = env | {"PATCHKIT_LEDGER": f"sqlite:///{ledger_dir / 'ledger.sqlite'}"}
        lifecycle.set_updates(lab_config, "demo-svc", publish=False)
        try:
            plan_id = planned_id(lab, env, policy)
            approve(plan_id, env)
            argv = [sys.executable, "-m", "patchkit", "run", plan_id, "-p", policy, "-i", str(lab)]
            proc = subprocess.Popen(
                [*argv, "--json"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                env={**os.environ, **env},
            )  # fmt: skip
            assert proc.stdout is not None
            for line in proc.stdout:
                if json.loads(line).get("task") == "patchkit precheck result":
                    break_the_ledger(fault, ledger_dir)
                    break
            _, err = proc.communicate(timeout=600)
            assert proc.returncode == 2, err
            message = " ".join(err.split())
            assert "Traceback" not in err
            assert "cannot write to the ledger" in message
            assert ("full" if fault == "disk-full" else "I/O error") in message
            assert "stopped during batch 1" in message and "patchkit resume" in message
            repair_the_ledger(fault, ledger_dir)
            ledger_file = ledger_dir / "ledger.sqlite"
            check = subprocess.run(
                ["python3", "-c", "import sqlite3,sys; print(sqlite3.connect(sys.argv[1])"
                 ".execute('PRAGMA integrity_check').fetchone()[0])", str(ledger_file)],
                capture_output=True, text=True, check=True,
            )  # fmt: skip
            assert check.stdout.strip() == "ok"  # nothing half-written
            record = Ledger(env["PATCHKIT_LEDGER"]).run_record()
            assert record is not None and record["status"] == "running"
            done = patchkit_cli(
                "resume", record["id"], "-p", policy, "-i", str(lab), "--take-over", env=env
            )
            assert done.returncode == 0, done.stderr
        finally:
            lifecycle.set_updates(lab_config, "demo-svc", publish=True)
        record = Ledger(env["PATCHKIT_LEDGER"]).run_record(record["id"])
        assert record is not None and record["status"] == "completed"
        rows = Counter((p["host"], p["phase"]) for p in record["phases"])
        assert set(rows.values()) == {1} and len(rows) == len(PATCH_PHASES) * len(names)
        after = states(lab)
        assert all(after[name].packages["demo-lib"] == "1.1" for name in names)
        untouched = [name for name in NAMES if name not in names]
        assert all(after[name].packages["demo-lib"] == "1.0" for name in untouched)
    finally:
        if fault == "disk-full":
            subprocess.run(["umount", "-l", str(ledger_dir)], check=False)
        else:
            repair_the_ledger(fault, ledger_dir)
