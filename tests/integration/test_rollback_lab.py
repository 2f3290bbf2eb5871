"""Integration: rolling back on the lab, by hand (`patchkit rollback`) and during a run (scopes).

Checked on the hosts (package versions, the demo service answering 200 over HTTP) and in the
ledger. The breaking demo-svc 1.1 update is what fails verification.
"""

from __future__ import annotations

import json
from pathlib import Path

from patchkit.lab import lifecycle
from patchkit.lab.config import LabConfig
from patchkit.ledger import Ledger

from .conftest import approve, http_status, patchkit_cli, planned_id, run, said, states, variant


def test_package_rollback_by_hand_works_after_the_mirror_dropped_the_old_versions(
    lab_config: LabConfig, lab: Path, env: dict[str, str], tmp_path: Path, pristine: None
) -> None:
    policy = variant(
        tmp_path,
        ("backend: lab", "backend: package"),
        ("rollback: host", "rollback: none"),  # leave it to the operator
    )
    plan_id = planned_id(lab, env, policy)
    approve(plan_id, env)
    assert run(lab, env, plan_id, policy) == 1  # the canary fails verification: halted
    record = Ledger(env["PATCHKIT_LEDGER"]).run_record()
    assert record is not None and record["status"] == "halted"
    run_id = record["id"]
    assert states(lab, "host1")["host1"].packages["demo-svc"] == "1.1"
    assert http_status(lab_config, 1) != 200

    lifecycle.set_updates(lab_config, "*_1.0", publish=False)  # the mirror forgot 1.0
    try:
        dry = patchkit_cli("rollback", run_id, "--dry-run", "--json", env=env)
        assert dry.returncode == 0, dry.stderr
        (target,) = json.loads(dry.stdout)["targets"]
        assert (target["host"], target["backend"]) == ("host1", "package")
        assert {(c["package"], c["after"], c["before"]) for c in target["changes"]} == {
            (p, "1.1", "1.0") for p in ("demo-app", "demo-kernel", "demo-lib", "demo-svc")
        }
        assert states(lab, "host1")["host1"].packages["demo-svc"] == "1.1"  # dry: untouched

        boot = states(lab, "host1")["host1"].boot_id
        done = patchkit_cli("rollback", run_id, "-p", policy, "-i", str(lab), "--json", env=env)
        assert done.returncode == 0, done.stderr
        (row,) = json.loads(done.stdout)["results"]
        assert row["status"] == "rolled-back", row
    finally:
        lifecycle.set_updates(lab_config, "*_1.0", publish=True)
    after = states(lab, "host1")["host1"]
    assert set(after.packages.values()) == {"1.0"}  # checked on the host
    assert after.boot_id != boot  # the "kernel" went back: rebooted
    assert http_status(lab_config, 1) == 200
    record = Ledger(env["PATCHKIT_LEDGER"]).run_record(run_id)
    assert record is not None
    rows = [p for p in record["phases"] if p["phase"] == "rollback"]
    assert [(p["host"], p["status"]) for p in rows] == [("host1", "ok")]
    assert "restored 4 package(s)" in rows[0]["message"]

    again = patchkit_cli("rollback", run_id, "-p", policy, "-i", str(lab), env=env)
    assert again.returncode == 0 and "already rolled back" in said(again)
    assert "nothing to roll back" in said(again)
    unknown = patchkit_cli("rollback", run_id, "--host", "host9", "--dry-run", env=env)
    assert unknown.returncode == 2 and "not in run" in said(unknown)


def test_rollback_scope_batch_puts_the_whole_failed_batch_back(
    lab_config: LabConfig, lab: Path, env: dict[str, str], tmp_path: Path, pristine: None
) -> None:
    # No canary; batches of 3 under anti-affinity: host3, host5, host2 first. host5 keeps
    # demo-svc 1.0 (an exception), so it passes verification while host3 and host2 fail.
    policy = variant(
        tmp_path,
        ("  canary: {size: 1, hosts: [dev]}\n", ""),
        ("batch_size: 2", "batch_size: 3"),
        ("rollback: host", "rollback: batch"),
        (
            "reporting:",
            "exceptions:\n  - {hosts: [host5], packages: [demo-svc], owner: qa,"
            " reason: keeps the old service, expires: 2099-01-01}\n\nreporting:",
        ),
    )
    plan_id = planned_id(lab, env, policy)
    approve(plan_id, env)
    assert run(lab, env, plan_id, policy) == 1
    record = Ledger(env["PATCHKIT_LEDGER"]).run_record()
    assert record is not None and record["status"] == "halted"
    first = {p["host"] for p in record["phases"] if p["batch"] == 1}
    assert first == {"host2", "host3", "host5"}
    verify = {p["host"]: p["status"] for p in record["phases"] if p["phase"] == "verify"}
    assert verify == {"host2": "failed", "host3": "failed", "host5": "ok"}
    rollbacks = {p["host"]: p["status"] for p in record["phases"] if p["phase"] == "rollback"}
    assert rollbacks == {"host2": "ok", "host3": "ok", "host5": "ok"}  # the whole batch
    after = states(lab)
    for index, name in ((2, "host2"), (3, "host3"), (5, "host5")):
        assert set(after[name].packages.values()) == {"1.0"}, name
        assert http_status(lab_config, index) == 200, name
    for name in ("host1", "host4", "host6"):  # later batches: never touched
        assert set(after[name].packages.values()) == {"1.0"}, name
