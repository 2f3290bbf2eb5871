"""Integration: faults during a window on the lab, each checked on the hosts and in the ledger.

One window of three batches (canary host1; host3, host5, host2; host4, host6) meets three
faults: demo-lib's update cannot be installed on host3, host5 is hard-reset (and stays off a
while) while it patches, and host4's cable is pulled after it patched. The error threshold lets
the window go on; rollback scope `host` puts each changed, failed host back to its snapshot.

The fault ``install-fails-once`` (for the controller's retries) is checked on its own, with two
attempts of the patch playbook on one host.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from patchkit import content
from patchkit.execution.runner import run_playbook
from patchkit.lab import hosts, lifecycle
from patchkit.lab.config import LabConfig
from patchkit.ledger import Ledger

from .conftest import approve, http_status, on_host, patchkit_cli, planned_id, states, variant


def run_with_faults(
    lab: Path, env: dict[str, str], plan_id: str, policy: str, lab_config: LabConfig
) -> int:
    argv = [sys.executable, "-m", "patchkit", "run", plan_id, "-p", policy, "-i", str(lab)]
    proc = subprocess.Popen(
        [*argv, "--json"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env={**os.environ, **env},
    )  # fmt: skip
    assert proc.stdout is not None
    reset = cut = plugged = False
    for line in proc.stdout:
        event = json.loads(line)
        host, task = event.get("host"), event.get("task")
        if not reset and host == "host5" and task == "patchkit snapshot result":
            hosts.set_boot_delay(lab_config, 5, 12)  # off long enough to miss its patch tasks
            hosts.hard_reset(lab_config, 5)
            reset = True
        if not cut and host == "host4" and task == "patchkit patch result":
            hosts.set_network(lab_config, 4, up=False)  # lost before its reboot
            cut = True
        if cut and not plugged and host == "host4" and event.get("status") == "unreachable":
            hosts.set_network(lab_config, 4, up=True)  # fixed: the rollback can reach it
            plugged = True
    _, err = proc.communicate(timeout=600)
    assert "Traceback" not in err, err
    assert reset and cut and plugged, (reset, cut, plugged)
    return proc.returncode


def test_install_failure_hard_reset_and_cut_cable_are_recorded_and_rolled_back(
    lab_config: LabConfig, lab: Path, env: dict[str, str], tmp_path: Path, pristine: None
) -> None:
    policy = variant(
        tmp_path,
        ("batch_size: 2", "batch_size: 3"),
        ("error_threshold: 1", "error_threshold: 5"),
        ("reboot_timeout: 2m", "reboot_timeout: 30s"),
    )
    lifecycle.set_updates(lab_config, "demo-svc", publish=False)
    try:
        plan_id = planned_id(lab, env, policy)
        approve(plan_id, env)
        hosts.set_install_fails(lab_config, 3, fails=True)
        assert run_with_faults(lab, env, plan_id, policy, lab_config) == 1
    finally:
        lifecycle.set_updates(lab_config, "demo-svc", publish=True)
        hosts.clear_faults(lab_config, 3)
        hosts.clear_faults(lab_config, 4)
        hosts.clear_faults(lab_config, 5)
    record = Ledger(env["PATCHKIT_LEDGER"]).run_record()
    assert record is not None
    assert record["status"] == "failed", record["reason"]
    phases = {(p["host"], p["phase"]): p for p in record["phases"]}

    broken = phases[("host3", "patch")]
    assert broken["status"] == "failed"
    assert "demo-lib" in broken["message"] or "dpkg" in broken["message"], broken["message"]
    reset = phases[("host5", "patch")]
    assert reset["status"] in ("unreachable", "failed") and reset["message"]
    lost = phases[("host4", "reboot")]
    assert lost["status"] == "unreachable" and lost["message"]
    assert phases[("host4", "patch")]["status"] == "ok"

    rollbacks = {p["host"]: p["status"] for p in record["phases"] if p["phase"] == "rollback"}
    assert rollbacks == {"host3": "ok", "host4": "ok", "host5": "ok"}
    assert [b["failed"] for b in record["batches"]] == [0, 2, 1]

    after = states(lab)  # on the hosts: the failed ones back at 1.0, the others patched
    for index, name in ((3, "host3"), (4, "host4"), (5, "host5")):
        assert set(after[name].packages.values()) == {"1.0"}, name
        assert http_status(lab_config, index) == 200, name
    for name in ("host1", "host2", "host6"):
        assert after[name].packages["demo-lib"] == "1.1", name


def patch_demo_lib(lab: Path, run_id: str) -> dict[str, Any]:
    """playbooks/patch.yml on host1 for demo-lib 1.1, as the controller runs one attempt; the
    patch phase's result."""
    result = run_playbook(
        content.playbook("patch.yml"),
        lab,
        limit="host1",
        extravars={
            "patchkit_run_id": run_id,
            "patchkit_batch": 1,
            "patchkit_updates_by_host": {"host1": [{"package": "demo-lib", "candidate": "1.1"}]},
            "patchkit_snapshot_backend": "package",
        },
        timeout=600,
    )
    patch = result.task("host1", "patchkit patch result")
    assert patch is not None, [t.message for t in result.tasks if t.status == "failed"]
    return dict(patch.result["msg"])


def test_install_fails_once_fails_the_first_attempt_only(
    lab_config: LabConfig, lab: Path, pristine: None
) -> None:
    lifecycle.set_updates(lab_config, "demo-lib", publish=True)
    fault = ["lab", "--name", lab_config.name, "--root", str(lab_config.root)]
    fault += ["--subnet", str(lab_config.subnet), "fault", "host1"]
    done = patchkit_cli(*fault, "install-fails-once")
    assert done.returncode == 0, done.stderr

    first = patch_demo_lib(lab, "faults-once")
    assert first["status"] == "failed"
    assert "pre-removal" in first["message"] or "dpkg" in first["message"], first["message"]
    assert states(lab, "host1")["host1"].packages["demo-lib"] == "1.0"  # dpkg kept 1.0

    second = patch_demo_lib(lab, "faults-once")  # the retry: same run, same snapshot
    assert second["status"] == "ok", second["message"]
    assert states(lab, "host1")["host1"].packages["demo-lib"] == "1.1"

    # `clear` takes the fault away before it fired
    prerm = "/var/lib/dpkg/info/demo-lib.prerm"
    assert patchkit_cli(*fault, "install-fails-once").returncode == 0
    assert on_host(lab_config, 1, f"test -x {prerm} && echo set") == "set"
    assert patchkit_cli(*fault, "clear").returncode == 0
    assert on_host(lab_config, 1, f"test -e {prerm} || echo gone") == "gone"
