"""Benchmark: how long planning takes for the example fleet and for a generated large fleet.

Run on demand (never part of ``make test``):

    .venv/bin/python benchmarks/plan_scale.py [--hosts 50000]

Prints the time to read each inventory through ansible-core, and the time for the pure planner
(scope → selection → priority → batches), with the ratio per 1,000 hosts so sizes compare.
"""

from __future__ import annotations

import argparse
import random
import subprocess
import sys
import tempfile
import time
from datetime import timedelta
from pathlib import Path

from _common import AT, PACKAGES

from patchkit import findings as findings_file
from patchkit import inventory
from patchkit.model import Finding, Host, PendingUpdate
from patchkit.planning.plan import make_plan
from patchkit.policy import load

ROOT = Path(__file__).resolve().parents[1]


def synthetic_findings(hosts: list[Host], seed: int = 7) -> dict[str, Finding]:
    """Findings for every host: 0-5 pending updates each, known for 0-40 days."""
    rng = random.Random(seed)  # noqa: S311 - reproducible test data, not secrets
    out = {}
    for host in hosts:
        chosen = rng.sample(PACKAGES, rng.randint(0, 5))
        updates = tuple(
            PendingUpdate(p, "1.0", "1.1", o, AT - timedelta(days=rng.randint(0, 40)))
            for p, o in sorted(chosen)
        )
        out[host.name] = Finding(host.name, AT - timedelta(hours=6), True, updates)
    return out


def timed(func):  # type: ignore[no-untyped-def]
    start = time.perf_counter()
    value = func()
    return value, time.perf_counter() - start


def report(label: str, elapsed: float, count: int) -> None:
    per_1k = elapsed / max(count, 1) * 1000 * 1000
    print(f"{label:<44} {elapsed:8.2f} s   {per_1k:8.1f} ms per 1,000 hosts")


def bench(name: str, inventory_path: Path, policy_path: Path, findings_path: Path | None) -> None:
    hosts, read = timed(lambda: inventory.load(inventory_path))
    count = len(hosts)
    report(f"{name}: read inventory ({count} hosts)", read, count)
    if findings_path is not None and findings_path.exists():
        found = {f.host: f for f in findings_file.load(findings_path)}
    else:
        found = synthetic_findings(list(hosts))
    policy = load(policy_path)
    plan, planning = timed(lambda: make_plan(policy, hosts, found, AT))
    report(f"{name}: plan (pure)", planning, count)
    planned = sum(len(b.hosts) for b in plan.batches)
    print(f"{name}: {planned} hosts in {len(plan.batches)} batches, {len(plan.skipped)} skipped")
    print(f"{name}: planning / reading the inventory = {planning / read:.2f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hosts", type=int, default=50_000, help="size of the generated fleet")
    args = parser.parse_args()
    example = ROOT / "inventories" / "example"
    bench(
        "example",
        example / "hosts.yml",
        ROOT / "policies" / "example.yml",
        ROOT / "examples" / "findings.json",
    )
    with tempfile.TemporaryDirectory() as tmp:
        subprocess.run(
            [
                sys.executable,
                str(ROOT / "examples" / "generate_fleet.py"),
                "--hosts",
                str(args.hosts),
                tmp,
            ],
            check=True,
        )
        bench(
            f"generated {args.hosts}",
            Path(tmp) / "hosts.yml",
            ROOT / "policies" / "example.yml",
            None,
        )


if __name__ == "__main__":
    main()
