"""Benchmark: a patch window run by patchkit against the same work done by a hand-written playbook.

Run on demand, as root (it brings up its own lab, ``pkbench`` on 10.77.10.0/24):

    .venv/bin/python benchmarks/window_vs_playbook.py [--hosts 8] [--repeat 1] [--mitogen] \
        [--only patchkit,same-tuned,...]

Every variant starts from the same host state (btrfs restore), patches the same hosts in the
same batches (patchkit's plan), and is checked afterwards on the hosts (every selected version
installed); a variant that did not do the work is reported as failed, not timed.

Variants:
  patchkit          `patchkit run` (assess, plan and approve are done before the clock starts)
  patchkit+mitogen  the same with --mitogen (with --mitogen, when mitogen is installed)
  same-default      playbooks/patch.yml (the very tasks patchkit runs) by plain ansible-playbook,
                    one call per batch with the extra vars patchkit would pass, Ansible's
                    defaults (no pipelining, 5 forks): patchkit's controller overhead shows here
  same-tuned        the same with patchkit's tuning (pipelining, ControlPersist with keep-alives,
                    forks = batch concurrency)
  same-runner       the same through patchkit's ansible-runner adapter (run_playbook, events to a
                    handler), without ledger, locks or display: patchkit/same-runner is the cost
                    of the controller, same-runner/same-tuned the cost of ansible-runner
  lean-default      benchmarks/handwritten_patch.yml: the short playbook an ops team writes (the
                    same steps without patchkit's extra checks and records), Ansible's defaults
                    (facts gathered, no pipelining, 5 forks)
  lean-tuned        the short playbook with patchkit's tuning and no fact gathering

Prints each variant's wall time and the ratio of patchkit to each of the others.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

from _common import BIN, patchkit

from patchkit import content
from patchkit.execution import state
from patchkit.execution.ansible import patch_extravars
from patchkit.execution.ports import PatchJob
from patchkit.execution.runner import ansible_env, run_playbook
from patchkit.lab import hosts, lifecycle
from patchkit.lab.check import check
from patchkit.lab.config import LabConfig
from patchkit.planning import codec

ROOT = Path(__file__).resolve().parents[1]
POLICY = ROOT / "policies" / "lab.yml"
BASE = "bench-base"


def reset(config: LabConfig, count: int) -> None:
    """Every host back to the base snapshot; the snapshots variants took are dropped."""
    for snap in hosts.snapshots(config):
        if snap.name != BASE:
            hosts.delete_snapshot(config, config.parse_host(snap.host), snap.name)
    hosts.restore_many(config, range(1, count + 1), BASE)
    # Masters left over from before the restore would point at connections that are gone.
    shutil.rmtree(Path.home() / ".ansible" / "patchkit-cp", ignore_errors=True)


def verify(inventory: Path, wanted: dict[str, dict[str, str]]) -> str:
    """'' when every host has every selected version, else what is missing."""
    rows = {row.host: row for row in check(inventory)}
    missing = [
        f"{host} {pkg} {rows[host].packages.get(pkg)} (wanted {ver})"
        for host, pkgs in wanted.items()
        for pkg, ver in pkgs.items()
        if host not in rows or rows[host].packages.get(pkg) != ver
    ]
    return "; ".join(missing)


def playbook_env(tuned: bool, control_dir: Path) -> dict[str, str]:
    tuning = ansible_env()
    env = {
        "PATH": tuning["PATH"],
        "HOME": os.environ.get("HOME", "/root"),
        "ANSIBLE_ROLES_PATH": tuning["ANSIBLE_ROLES_PATH"],
        "ANSIBLE_SSH_CONTROL_PATH_DIR": str(control_dir),  # no reuse across variants
        "ANSIBLE_RETRY_FILES_ENABLED": "False",
    }
    if tuned:
        for key in ("ANSIBLE_PIPELINING", "ANSIBLE_SSH_ARGS", "ANSIBLE_TIMEOUT"):
            env[key] = tuning[key]
        env["ANSIBLE_GATHERING"] = "explicit"
    return env


def lean_extravars(batch: dict[str, Any], config: LabConfig) -> dict[str, Any]:
    return {
        "updates": {
            h["host"]: [f"{u['package']}={u['candidate']}" for u in h["updates"]]
            for h in batch["hosts"]
        },
        "lab_name": config.name,
        "lab_root": str(config.root),
        "snapshot_name": f"hand-{batch['number']}",
    }


def run_playbook_batches(
    playbook: Path,
    plan: dict[str, Any],
    inventory: Path,
    extravars: Callable[[dict[str, Any]], dict[str, Any]],
    tuned: bool,
) -> float:
    with tempfile.TemporaryDirectory(prefix="pkbench-") as tmp:
        env = playbook_env(tuned, Path(tmp) / "cp")
        start = time.monotonic()
        for batch in plan["batches"]:
            names = [h["host"] for h in batch["hosts"]]
            extra = extravars(batch)
            extra_file = Path(tmp) / f"batch{batch['number']}.json"
            extra_file.write_text(json.dumps(extra))
            argv = [
                str(BIN / "ansible-playbook"),
                "-i", str(inventory),
                "--limit", ",".join(names),
                "-e", f"@{extra_file}",
            ]  # fmt: skip
            if tuned:
                argv += ["--forks", str(max(1, int(batch["concurrency"])))]
            argv.append(str(playbook))
            done = subprocess.run(argv, capture_output=True, text=True, env=env, check=False)
            if done.returncode != 0:
                sys.exit(f"{playbook.name} failed on batch {batch['number']}:\n{done.stdout}")
        return time.monotonic() - start


def run_adapter_batches(
    plan: dict[str, Any], inventory: Path, extravars: Callable[[dict[str, Any]], dict[str, Any]]
) -> float:
    """The batches through patchkit's runner adapter alone, as `patchkit run` calls it."""
    start = time.monotonic()
    for batch in plan["batches"]:
        result = run_playbook(
            content.playbook("patch.yml"),
            inventory,
            limit=",".join(h["host"] for h in batch["hosts"]),
            extravars=extravars(batch),
            forks=max(1, int(batch["concurrency"])),
            cancel=lambda: False,
        )
        if result.rc != 0:
            sys.exit(f"patch.yml through the adapter failed on batch {batch['number']}")
    return time.monotonic() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--hosts", type=int, default=8)
    parser.add_argument("--repeat", type=int, default=1, help="runs per variant (median shown)")
    parser.add_argument("--mitogen", action="store_true", help="also time patchkit --mitogen")
    parser.add_argument("--keep", action="store_true", help="leave the lab up afterwards")
    parser.add_argument(
        "--only", help="comma-separated variants to time (default: all), e.g. patchkit,same-tuned"
    )
    parser.add_argument("--name", default="pkbench")
    parser.add_argument("--subnet", default="10.77.10.0/24")
    args = parser.parse_args()

    config = LabConfig.create(name=args.name, root="/var/lib/patchkit/lab", subnet=args.subnet)
    work = Path(tempfile.mkdtemp(prefix="pkbench-"))
    inventory_dir = work / "inventory"
    env = {
        **os.environ,
        "PATCHKIT_LEDGER": f"sqlite:///{work / 'ledger.sqlite'}",
        "PATCHKIT_LAB_NAME": config.name,
        "PATCHKIT_LAB_SUBNET": args.subnet,
    }
    print(f"lab {config.name}: bringing up {args.hosts} hosts", flush=True)
    lifecycle.up(config, args.hosts, inventory_dir)
    inventory = inventory_dir / "hosts.yml"
    try:
        lifecycle.set_updates(config, "demo-svc", publish=False)  # the breaking one stays out
        for index in range(1, args.hosts + 1):
            hosts.snapshot(config, index, BASE)
        patchkit("assess", "-p", str(POLICY), "-i", str(inventory), env=env)
        plan = json.loads(
            patchkit("plan", "-p", str(POLICY), "-i", str(inventory), "--format", "json", env=env)
        )
        patchkit("approve", plan["id"], "--by", "demo-operator", "--reboots", env=env)
        wanted = {
            h["host"]: {u["package"]: u["candidate"] for u in h["updates"]}
            for b in plan["batches"]
            for h in b["hosts"]
        }
        sizes = [len(b["hosts"]) for b in plan["batches"]]
        print(f"plan {plan['id']}: {len(wanted)} hosts in batches of {sizes}", flush=True)

        def patchkit_run(mitogen: bool) -> Callable[[], float]:
            def go() -> float:
                # an approval starts one run: each round approves again (not timed)
                patchkit("approve", plan["id"], "--by", "demo-operator", "--reboots", env=env)
                argv = ["run", plan["id"], "-p", str(POLICY), "-i", str(inventory), "--json"]
                start = time.monotonic()
                patchkit(*argv, *(["--mitogen"] if mitogen else []), env=env)
                return time.monotonic() - start

            return go

        variants: dict[str, Callable[[], float]] = {"patchkit": patchkit_run(False)}
        if args.mitogen:
            variants["patchkit+mitogen"] = patchkit_run(True)
        typed = codec.decode(plan)

        def same(batch: dict[str, Any]) -> dict[str, Any]:
            """patchkit's own extra vars for the batch (execution/ansible.py)."""
            b = next(x for x in typed.batches if x.number == batch["number"])
            modes = {
                h.host: state.reboot_mode(h, typed.settings.phases, reboots_approved=True)
                for h in b.hosts
            }
            job = PatchJob(f"run-same-{b.number}", b, b.hosts, 1, modes, typed.settings)
            return patch_extravars(job) | {"patchkit_lab_root": str(config.root)}

        def lean(batch: dict[str, Any]) -> dict[str, Any]:
            return lean_extravars(batch, config)

        for tuned in (False, True):
            suffix = "tuned" if tuned else "default"
            variants[f"same-{suffix}"] = partial(
                run_playbook_batches, content.playbook("patch.yml"), plan, inventory, same, tuned
            )
            if tuned:
                variants["same-runner"] = partial(run_adapter_batches, plan, inventory, same)
            variants[f"lean-{suffix}"] = partial(
                run_playbook_batches, ROOT / "benchmarks" / "handwritten_patch.yml", plan,
                inventory, lean, tuned,
            )  # fmt: skip

        if args.only:
            wanted_variants = args.only.split(",")
            unknown = sorted(set(wanted_variants) - set(variants))
            if unknown:
                sys.exit(f"unknown variants {unknown}; known: {', '.join(variants)}")
            variants = {name: variants[name] for name in wanted_variants}
        times: dict[str, list[float]] = {name: [] for name in variants}
        for round_ in range(args.repeat):
            for name, go in variants.items():
                reset(config, args.hosts)
                seconds = go()
                problem = verify(inventory, wanted)
                if problem:
                    sys.exit(f"{name} did not install everything: {problem}")
                times[name].append(seconds)
                print(f"  round {round_ + 1} {name:<17} {seconds:6.1f} s", flush=True)
        median = {name: statistics.median(values) for name, values in times.items()}
        print(f"\n{args.hosts} lab hosts, {len(sizes)} batches, median of {args.repeat}:")
        for name, seconds in median.items():
            print(f"  {name:<17} {seconds:6.1f} s")
        for name in [n for n in median if n.startswith("patchkit")]:
            for other in [n for n in median if not n.startswith("patchkit")]:
                print(f"  {name}/{other} = {median[name] / median[other]:.2f}")
        if {"same-runner", "same-tuned"} <= set(median):  # what ansible-runner itself adds
            print(f"  same-runner/same-tuned = {median['same-runner'] / median['same-tuned']:.2f}")
    finally:
        if not args.keep:
            lifecycle.down(config, inventory_dir)
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
