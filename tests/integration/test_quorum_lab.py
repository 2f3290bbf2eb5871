"""Integration: quorum on the lab. A three-member cluster with one member down gets no other
member patched (rollout.anti_affinity.max_unavailable), in the plan and in the run."""

from __future__ import annotations

import json
from pathlib import Path

import yaml

from patchkit.lab import lifecycle
from patchkit.lab.config import LabConfig
from patchkit.ledger import Ledger

from .conftest import approve, patchkit_cli, run, states, variant

ETCD = ("host3", "host4", "host5")  # prod hosts: the canary (host1, dev) stays outside
DOWN = "host4"


def lab_args(config: LabConfig) -> list[str]:
    return [
        "lab",
        "--name",
        config.name,
        "--root",
        str(config.root),
        "--subnet",
        str(config.subnet),
    ]


def etcd_inventory(lab: Path, tmp_path: Path) -> Path:
    """The lab inventory with ETCD made one cluster, ``etcd`` (the inventory variable)."""
    data = yaml.safe_load(lab.read_text())
    for env in data["all"]["children"]["lab"]["children"].values():
        for name, variables in env["hosts"].items():
            if name in ETCD:
                variables["cluster"] = "etcd"
    path = tmp_path / "hosts.yml"
    path.write_text(yaml.safe_dump(data))
    return path


def test_a_cluster_with_a_member_down_gets_no_other_member_patched(
    lab_config: LabConfig, lab: Path, env: dict[str, str], tmp_path: Path, pristine: None
) -> None:
    # The tests' policy has its window open now (conftest), so that the run is admitted.
    policy = variant(
        tmp_path,
        (
            "anti_affinity: {variable: cluster, max_per_batch: 1}",
            "anti_affinity: {variable: cluster, max_per_batch: 1, max_unavailable: 1}",
        ),
    )
    inventory = etcd_inventory(lab, tmp_path)
    why = (
        f"cluster etcd: 1 of 3 members down ({DOWN}), max_unavailable 1: "
        "patching another would break quorum"
    )
    lifecycle.set_updates(lab_config, "demo-svc", publish=False)  # no breaking update: no halt
    cut = patchkit_cli(*lab_args(lab_config), "fault", DOWN, "net-down", env=env)
    assert cut.returncode == 0, cut.stderr
    try:
        done = patchkit_cli("assess", "-p", policy, "-i", str(inventory), env=env)
        assert done.returncode == 1, done.stderr  # an assessment with an unreachable host
        done = patchkit_cli("plan", "-p", policy, "-i", str(inventory), "--format", "json", env=env)
        assert done.returncode == 0, done.stderr
        body = json.loads(done.stdout)
        skipped = {s["host"]: (s["kind"], s["reason"]) for s in body["skipped"]}
        assert skipped[DOWN][0] == "unreachable"
        assert skipped["host3"] == skipped["host5"] == ("quorum", why)
        planned = {h["host"] for b in body["batches"] for h in b["hosts"]}
        assert planned == {"host1", "host2", "host6"}
        clusters = {c["name"]: c for c in body["clusters"]}  # those of hosts with work
        assert clusters["etcd"] == {
            "name": "etcd", "size": 3, "limit": 1, "down": [DOWN], "members": list(ETCD)
        }  # fmt: skip
        shown = patchkit_cli("plan", "-p", policy, "-i", str(inventory), "--no-save", env=env)
        assert "max 1 down per cluster" in " ".join(shown.stdout.split())

        approve(str(body["id"]), env)  # patchkit approve PLAN --by demo-operator (--reboots)
        assert run(inventory, env, str(body["id"]), policy) == 0
    finally:
        lifecycle.set_updates(lab_config, "demo-svc", publish=True)
        plugged = patchkit_cli(*lab_args(lab_config), "fault", DOWN, "net-up", env=env)
        assert plugged.returncode == 0, plugged.stderr

    record = Ledger(env["PATCHKIT_LEDGER"]).run_record()
    assert record is not None and record["status"] == "completed", record
    touched = {p["host"] for p in record["phases"]}
    assert touched == {"host1", "host2", "host6"}  # no member of etcd was started
    after = states(inventory)  # checked on the hosts, the one that was down included
    for name in ETCD:
        assert set(after[name].packages.values()) == {"1.0"}, name
    for name in ("host1", "host2", "host6"):
        assert after[name].packages["demo-kernel"] == "1.1", name
