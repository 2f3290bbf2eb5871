"""Benchmark: the same patch window run from the controller and through two execution nodes.

Run on demand, as root (it brings up its own lab, ``pknode`` on 10.77.50.0/24):

    .venv/bin/python benchmarks/node_overhead.py [--hosts 12] [--repeat 1] [--wheels DIR]

host1 and host2 are bootstrapped as execution nodes; host3.. are the window's hosts. Both
variants start from the same host state (btrfs restore), run `patchkit run` on a plan of the
same batches (the plan is made again per variant: placement does not change the batches), and
are checked on the ledger: every host patched. Variants:

  local   every host patched from the controller (no execution section)
  nodes   the hosts split in two node groups, one node each: every batch's job is streamed
          (transmit -> ssh -> patchkit-worker -> process) to both nodes, side by side

Prints each batch's seconds in both variants, the streaming overhead per batch (seconds and
nodes/local), and the window's total. The snapshot backend is `package` in both (the `lab`
backend runs on the controller, which hosts on nodes cannot use).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

from _common import patchkit

from patchkit.lab import hosts, lifecycle
from patchkit.lab.config import LabConfig
from patchkit.ledger import Ledger

ROOT = Path(__file__).resolve().parents[1]
POLICY = ROOT / "policies" / "lab.yml"
BASE = "bench-base"
NODES = (1, 2)


def policy_text(config: LabConfig, targets: list[int], nodes: bool) -> str:
    """policies/lab.yml for ``targets``, its window open now, package snapshots; with
    ``nodes``, half of the hosts on each node."""
    text = POLICY.read_text()
    hour = datetime.now(UTC).hour
    names = [config.host_name(i) for i in targets]
    for old, new in (
        ("rrule: FREQ=DAILY;BYHOUR=0;", f"rrule: FREQ=DAILY;BYHOUR={hour};"),
        ("duration: 24h", "duration: 3h"),
        ("classification:\n", f"scope:\n  include: [{', '.join(names)}]\n\nclassification:\n"),
        ("backend: lab,", "backend: package,"),
    ):
        if old not in text:
            raise SystemExit(f"policies/lab.yml changed: {old!r} not found")
        text = text.replace(old, new, 1)
    if nodes:
        half = len(names) // 2
        text += "\nexecution:\n  node_groups:\n"
        for group, (node, part) in enumerate(zip(NODES, (names[:half], names[half:]), strict=True)):
            text += (
                f"    - name: near{group + 1}\n"
                f"      nodes: [root@{config.address(node)}]\n"
                f"      key: {config.key_path}\n"
                f"      known_hosts: {config.known_hosts}\n"
                f"      hosts: [{', '.join(part)}]\n"
            )
    return text


def reset(config: LabConfig, indices: list[int]) -> None:
    for snap in hosts.snapshots(config):
        if snap.name != BASE:
            hosts.delete_snapshot(config, config.parse_host(snap.host), snap.name)
    hosts.restore_many(config, indices, BASE)
    shutil.rmtree(Path.home() / ".ansible" / "patchkit-cp", ignore_errors=True)


def window(
    policy: Path, inventory: Path, env: dict[str, str]
) -> tuple[float, dict[int, tuple[tuple[str, ...], float]]]:
    """One window: assess, plan, approve (not timed), run (timed). Its wall time and, per
    batch, its hosts and seconds."""
    patchkit("assess", "-p", str(policy), "-i", str(inventory), env=env)
    plan = json.loads(
        patchkit("plan", "-p", str(policy), "-i", str(inventory), "--format", "json", env=env)
    )
    patchkit("approve", plan["id"], "--by", "demo-operator", "--reboots", env=env)
    start = time.monotonic()
    patchkit("run", plan["id"], "-p", str(policy), "-i", str(inventory), "--json", env=env)
    seconds = time.monotonic() - start
    record = Ledger(env["PATCHKIT_LEDGER"]).run_record()
    assert record is not None
    if record["status"] != "completed":
        raise SystemExit(f"the window ended {record['status']}: {record['reason']}")
    members = {b["number"]: tuple(sorted(h["host"] for h in b["hosts"])) for b in plan["batches"]}
    batches = {
        int(b["number"]): (members[b["number"]], (b["ended"] - b["started"]).total_seconds())
        for b in record["batches"]
    }
    return seconds, batches


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--hosts", type=int, default=12, help="the window's hosts (besides nodes)")
    parser.add_argument("--repeat", type=int, default=1, help="windows per variant (median)")
    parser.add_argument("--wheels", type=Path, default=ROOT / ".venv" / "node-wheels")
    parser.add_argument("--keep", action="store_true", help="leave the lab up afterwards")
    parser.add_argument("--name", default="pknode")
    parser.add_argument("--subnet", default="10.77.50.0/24")
    args = parser.parse_args()

    config = LabConfig.create(name=args.name, root="/var/lib/patchkit/lab", subnet=args.subnet)
    work = Path(tempfile.mkdtemp(prefix="pknode-"))
    inventory_dir = work / "inventory"
    env = {**os.environ, "PATCHKIT_LEDGER": f"sqlite:///{work / 'ledger.sqlite'}"}
    count = args.hosts + len(NODES)
    targets = list(range(len(NODES) + 1, count + 1))
    print(f"lab {config.name}: bringing up {count} hosts (2 nodes)", flush=True)
    lifecycle.up(config, count, inventory_dir)
    inventory = inventory_dir / "hosts.yml"
    try:
        lifecycle.set_updates(config, "demo-svc", publish=False)  # the breaking one stays out
        addresses = [str(config.address(i)) for i in NODES]
        patchkit(
            "node", "bootstrap", *addresses, "--key", str(config.key_path), "--known-hosts",
            str(config.known_hosts), "--wheels", str(args.wheels), env=env,
        )  # fmt: skip
        for index in targets:
            hosts.snapshot(config, index, BASE)
        policies = {}
        for variant in ("local", "nodes"):
            policies[variant] = work / f"{variant}.yml"
            policies[variant].write_text(policy_text(config, targets, variant == "nodes"))
        totals: dict[str, list[float]] = {"local": [], "nodes": []}
        per_batch: dict[str, dict[int, list[float]]] = {"local": {}, "nodes": {}}
        shape: dict[int, tuple[str, ...]] | None = None
        for round_ in range(args.repeat):
            for variant, policy in policies.items():
                reset(config, targets)
                seconds, batches = window(policy, inventory, env)
                members = {n: hosts_ for n, (hosts_, _) in batches.items()}
                if shape is None:
                    shape = members
                elif members != shape:
                    raise SystemExit(f"{variant}: other batches than the first window: {members}")
                totals[variant].append(seconds)
                for number, (_, took) in batches.items():
                    per_batch[variant].setdefault(number, []).append(took)
                print(f"  round {round_ + 1} {variant:<6} {seconds:6.1f} s", flush=True)
        assert shape is not None
        print(f"\n{args.hosts} hosts in {len(shape)} batches, median of {args.repeat}:")
        print(f"  {'batch':>5} {'hosts':>5} {'local s':>8} {'nodes s':>8} {'+s':>6} {'ratio':>6}")
        overheads = []
        for number in sorted(shape):
            local = statistics.median(per_batch["local"][number])
            nodes = statistics.median(per_batch["nodes"][number])
            overheads.append(nodes - local)
            print(
                f"  {number:>5} {len(shape[number]):>5} {local:8.1f} {nodes:8.1f} "
                f"{nodes - local:+6.1f} {nodes / local:6.2f}"
            )
        local_total = statistics.median(totals["local"])
        nodes_total = statistics.median(totals["nodes"])
        print(
            f"  window {local_total:.1f} s local, {nodes_total:.1f} s through the nodes: "
            f"nodes/local = {nodes_total / local_total:.2f}; overhead per batch "
            f"{statistics.mean(overheads):+.1f} s on average"
        )
    finally:
        if not args.keep:
            lifecycle.down(config, inventory_dir)
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
