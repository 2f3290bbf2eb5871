"""Benchmark: rolling back a failed batch of lab hosts, per snapshot backend, next to raw btrfs.

Run on demand, as root (it brings up its own lab, ``pkbench`` on 10.77.10.0/24):

    .venv/bin/python benchmarks/rollback_batch.py [--hosts 8]

For each backend (``lab``, ``package``): every host starts from the same state, one window
patches all of them in a single batch with the breaking demo-svc update (every host fails
verification; automatic rollback off), then ``patchkit rollback RUN`` puts the batch back and
is timed, and the hosts are checked (all demo packages at 1.0). Also timed: the raw btrfs
restore of all hosts side by side (``patchkit.lab.hosts.restore_many``), the floor for any
rollback on this lab. Prints seconds and ratios to the raw restore.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

from _common import patchkit

from patchkit.lab import hosts, lifecycle
from patchkit.lab.check import check
from patchkit.lab.config import LabConfig

ROOT = Path(__file__).resolve().parents[1]
BASE = "bench-base"


def policy_for(backend: str, count: int, work: Path) -> Path:
    text = (ROOT / "policies" / "lab.yml").read_text()
    for old, new in (
        ("backend: lab", f"backend: {backend}"),
        ("  canary: {size: 1, hosts: [dev]}\n", ""),
        ("anti_affinity: {variable: cluster, max_per_batch: 1}", "anti_affinity: null"),
        ("batch_size: 2", f"batch_size: {count}"),
        ("concurrency: 4", f"concurrency: {count}"),
        ("error_threshold: 1", 'error_threshold: "100%"'),
        ("rollback: host", "rollback: none"),
        ("reboot_approval: [prod]", "reboot_approval: []"),
    ):
        if old not in text:
            sys.exit(f"policies/lab.yml changed: {old!r} not found")
        text = text.replace(old, new)
    path = work / f"{backend}.yml"
    path.write_text(text)
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--hosts", type=int, default=8)
    parser.add_argument("--keep", action="store_true", help="leave the lab up afterwards")
    parser.add_argument("--name", default="pkbench")
    parser.add_argument("--subnet", default="10.77.10.0/24")
    args = parser.parse_args()
    config = LabConfig.create(name=args.name, root="/var/lib/patchkit/lab", subnet=args.subnet)
    work = Path(tempfile.mkdtemp(prefix="pkbench-"))
    inventory_dir = work / "inventory"
    base_env = {**os.environ, "PATCHKIT_LAB_NAME": config.name, "PATCHKIT_LAB_SUBNET": args.subnet}
    print(f"lab {config.name}: bringing up {args.hosts} hosts", flush=True)
    lifecycle.up(config, args.hosts, inventory_dir)
    inventory = inventory_dir / "hosts.yml"
    indices = range(1, args.hosts + 1)
    figures: dict[str, float] = {}
    try:
        lifecycle.set_updates(config, None, publish=True)
        for index in indices:
            hosts.snapshot(config, index, BASE)
        start = time.monotonic()
        hosts.restore_many(config, indices, BASE)
        figures["raw btrfs restore"] = time.monotonic() - start
        for backend in ("lab", "package"):
            env = base_env | {"PATCHKIT_LEDGER": f"sqlite:///{work / (backend + '.sqlite')}"}
            policy = str(policy_for(backend, args.hosts, work))
            patchkit("assess", "-p", policy, "-i", str(inventory), env=env)
            plan = json.loads(
                patchkit("plan", "-p", policy, "-i", str(inventory), "--format", "json", env=env)
            )
            if len(plan["batches"]) != 1:
                sys.exit(f"expected one batch, the plan has {len(plan['batches'])}")
            patchkit("approve", plan["id"], "--by", "demo-operator", env=env)
            out = patchkit(
                "run", plan["id"], "-p", policy, "-i", str(inventory), "--json", env=env, ok=(1,)
            )
            run_id = json.loads(out.splitlines()[-1])["run"]["id"]
            start = time.monotonic()
            patchkit("rollback", run_id, "-p", policy, "-i", str(inventory), env=env)
            figures[f"rollback, {backend} backend"] = time.monotonic() - start
            wrong = [r.host for r in check(inventory) if set(r.packages.values()) != {"1.0"}]
            if wrong:
                sys.exit(f"{backend}: not rolled back on {', '.join(wrong)}")
            for snap in hosts.snapshots(config):
                if snap.name != BASE:
                    hosts.delete_snapshot(config, config.parse_host(snap.host), snap.name)
            hosts.restore_many(config, indices, BASE)
        raw = figures["raw btrfs restore"]
        print(f"\nfailed batch of {args.hosts} lab hosts (4 packages each, demo-kernel included):")
        for name, seconds in figures.items():
            print(f"  {name:<28} {seconds:6.1f} s   {seconds / raw:5.1f} x raw restore")
    finally:
        if not args.keep:
            lifecycle.down(config, inventory_dir)
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
