"""Integration: approve and run a plan on the lab; check the hosts and the ledger."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from patchkit.lab import hosts, lifecycle
from patchkit.lab.config import LabConfig
from patchkit.ledger import Ledger

from .conftest import patchkit_cli, states

ROOT = Path(__file__).resolve().parents[2]
POLICY = str(ROOT / "policies" / "lab.yml")


@pytest.fixture
def env(tmp_path: Path, lab_config: LabConfig) -> Iterator[dict[str, str]]:
    yield {
        "PATCHKIT_LEDGER": f"sqlite:///{tmp_path / 'ledger.sqlite'}",
        "PATCHKIT_LAB_ROOT": str(lab_config.root),
    }
    for snap in hosts.snapshots(lab_config):  # runs take lab snapshots; release them
        if snap.name.startswith("run-"):
            hosts.delete_snapshot(lab_config, lab_config.parse_host(snap.host), snap.name)


def planned_id(lab: Path, env: dict[str, str], policy: str = POLICY) -> str:
    done = patchkit_cli("assess", "-p", policy, "-i", str(lab), env=env)
    assert done.returncode == 0, done.stderr
    done = patchkit_cli("plan", "-p", policy, "-i", str(lab), "--format", "json", env=env)
    assert done.returncode == 0, done.stderr
    return str(json.loads(done.stdout)["id"])


def run(lab: Path, env: dict[str, str], plan_id: str, policy: str = POLICY) -> int:
    done = patchkit_cli("run", plan_id, "-p", policy, "-i", str(lab), "--json", env=env)
    assert "Traceback" not in done.stderr, done.stderr
    return done.returncode


def test_unapproved_or_changed_plans_are_refused(
    lab: Path, env: dict[str, str], tmp_path: Path, pristine: None
) -> None:
    before = {n: r.boot_id for n, r in states(lab).items()}
    plan_id = planned_id(lab, env)
    done = patchkit_cli("run", plan_id, "-p", POLICY, "-i", str(lab), env=env)
    assert done.returncode == 3 and "not approved" in done.stderr
    wrong = patchkit_cli("approve", plan_id, "--by", "mallory", env=env)
    assert wrong.returncode == 3 and "may not approve" in wrong.stderr
    assert patchkit_cli("approve", plan_id, "--by", "demo-operator", env=env).returncode == 0
    changed = tmp_path / "changed.yml"
    changed.write_text(Path(POLICY).read_text().replace("retries: 0", "retries: 1"))
    done = patchkit_cli("run", plan_id, "-p", str(changed), "-i", str(lab), env=env)
    assert done.returncode == 3 and "policy changed" in done.stderr
    assert {n: r.boot_id for n, r in states(lab).items()} == before  # nothing was touched


def test_breaking_update_halts_the_window_after_the_canary(
    lab: Path, env: dict[str, str], pristine: None
) -> None:
    plan_id = planned_id(lab, env)
    assert patchkit_cli("approve", plan_id, "--by", "demo-operator", env=env).returncode == 0
    assert run(lab, env, plan_id) == 1
    record = Ledger(env["PATCHKIT_LEDGER"]).run_record()
    assert record is not None and record["status"] == "halted"
    assert [(b["number"], b["status"]) for b in record["batches"]] == [
        (1, "failed"),
        (2, "not-started"),
    ]
    verify = [p for p in record["phases"] if p["phase"] == "verify"]
    assert [(p["host"], p["status"]) for p in verify] == [("host1", "failed")]
    assert "demo-svc-check" in verify[0]["message"] or "health" in verify[0]["message"]
    rollback = [p for p in record["phases"] if p["phase"] == "rollback"]
    assert [(p["host"], p["status"]) for p in rollback] == [("host1", "pending")]
    after = states(lab)
    assert after["host1"].packages["demo-svc"] == "1.1"
    for untouched in ("host2", "host3"):  # checked on the hosts, not only in the ledger
        assert set(after[untouched].packages.values()) == {"1.0"}


def test_a_clean_window_patches_reboots_and_records_every_host(
    lab_config: LabConfig, lab: Path, env: dict[str, str], pristine: None
) -> None:
    boots = {n: r.boot_id for n, r in states(lab).items()}
    lifecycle.set_updates(lab_config, "demo-svc", publish=False)
    try:
        plan_id = planned_id(lab, env)
        assert patchkit_cli("approve", plan_id, "--by", "demo-operator", env=env).returncode == 0
        assert run(lab, env, plan_id) == 0
    finally:
        lifecycle.set_updates(lab_config, "demo-svc", publish=True)
    after = states(lab)
    for name, row in after.items():
        assert row.packages == {
            "demo-app": "1.1", "demo-kernel": "1.1", "demo-lib": "1.1", "demo-svc": "1.0"
        }  # fmt: skip
        assert row.boot_id != boots[name]  # the "kernel" changed: rebooted
    record = Ledger(env["PATCHKIT_LEDGER"]).run_record()
    assert record is not None and record["status"] == "completed"
    assert all(b["status"] == "completed" for b in record["batches"])
    changes = {(c["host"], c["package"]): (c["before"], c["after"]) for c in record["changes"]}
    assert changes[("host2", "demo-kernel")] == ("1.0", "1.1")
    assert len(changes) == 3 * len(after)
    assert {s["host"] for s in record["snapshots"]} == set(after)
    shown = patchkit_cli("status", "--json", env=env)
    assert shown.returncode == 0 and json.loads(shown.stdout)["id"] == record["id"]


def test_ctrl_c_stops_cleanly_and_records_what_is_known(
    lab: Path, env: dict[str, str], pristine: None
) -> None:
    plan_id = planned_id(lab, env)
    assert patchkit_cli("approve", plan_id, "--by", "demo-operator", env=env).returncode == 0
    argv = [sys.executable, "-m", "patchkit", "run", plan_id, "-p", POLICY, "-i", str(lab)]
    proc = subprocess.Popen(
        [*argv, "--json"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env={**os.environ, **env},
    )  # fmt: skip
    assert proc.stdout is not None
    for line in proc.stdout:  # wait until the first batch is patching
        event = json.loads(line)
        if event.get("task") == "patchkit snapshot result":
            proc.send_signal(signal.SIGINT)
            break
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 1, err
    assert "Traceback" not in err
    record = Ledger(env["PATCHKIT_LEDGER"]).run_record()
    assert record is not None and record["status"] == "interrupted"
    assert "stopped by the operator during batch 1" in record["reason"]
    assert [b["status"] for b in record["batches"]][1:] == ["not-started"]
    assert any(p["phase"] == "snapshot" for p in record["phases"])  # known results were kept
