"""Benchmark: report generation on a big ledger (default 50,000 hosts x 10 runs).

Run on demand (never part of ``make test``; needs no lab):

    .venv/bin/python benchmarks/report_scale.py [--hosts 50000] [--runs 10] [--keep DIR]

Builds a SQLite ledger shaped like patchkit's own after a year of monthly windows: one
assessment with 0-5 pending updates per host, and ``--runs`` runs over every host (5 phases and
up to 3 package changes per host, 1 % failed and rolled back), written straight into the schema
(going through the run code would take hours). Then times, each from a fresh Ledger object:
``runs`` (the history), ``report run`` of the newest run (ledger read, build, JSON and HTML) and
``report compliance`` (ledger reads, build, JSON and HTML), and prints seconds and seconds per
1,000 hosts.
"""

from __future__ import annotations

import argparse
import json
import random
import tempfile
import time
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any, TypeVar

from _common import AT, PACKAGES
from sqlalchemy import insert

from patchkit.cli.report import compliance_of
from patchkit.ledger import Ledger
from patchkit.ledger import schema as t
from patchkit.model import Host, freeze
from patchkit.policy import load
from patchkit.reports import compliance, run_report

ROOT = Path(__file__).resolve().parents[1]
PHASES = ("precheck", "snapshot", "patch", "reboot", "verify")
T = TypeVar("T")


def timed(label: str, hosts: int, func: Callable[[], T]) -> T:
    start = time.perf_counter()
    value = func()
    seconds = time.perf_counter() - start
    print(f"  {label:<44} {seconds:8.2f} s  {1000 * seconds / hosts:7.3f} s per 1,000 hosts")
    return value


def fleet(count: int) -> list[Host]:
    envs = ("prod", "staging", "dev")
    return [
        Host(
            f"h{i:05d}",
            ("all", f"site{i % 7}", envs[i % 3]),
            freeze({"env": envs[i % 3], "tier": 1 + i % 3}),
        )
        for i in range(count)
    ]


def fill(url: str, hosts: list[Host], runs: int, rng: random.Random) -> None:
    ledger = Ledger(url)
    names = [h.name for h in hosts]
    batches = [names[i : i + 500] for i in range(0, len(names), 500)]
    with ledger.engine.begin() as conn:
        conn.execute(
            insert(t.assessments).values(id=1, started=AT, source="bench", hosts=len(names))
        )
        conn.execute(
            insert(t.findings),
            [
                {
                    "id": n + 1,
                    "assessment_id": 1,
                    "host": name,
                    "assessed_at": AT - timedelta(hours=6),
                    "reachable": True,
                    "reboot_pending": False,
                    "message": "",
                }
                for n, name in enumerate(names)
            ],
        )
        pending = []
        for n, _name in enumerate(names):
            for package, origin in rng.sample(PACKAGES, rng.randint(0, 5)):
                first = AT - timedelta(days=rng.randint(0, 40))
                pending.append(
                    {
                        "finding_id": n + 1,
                        "package": package,
                        "installed": "1.0",
                        "candidate": "1.1",
                        "origin": origin,
                        "first_seen": first,
                    }
                )
        conn.execute(insert(t.pending_updates), pending)
    for r in range(runs):
        start = AT - timedelta(days=30 * (runs - r))
        run_id, plan_id = f"run-{r:02d}", f"plan-{r:02d}"
        body = {
            "id": plan_id,
            "hash": f"{r:064d}",
            "policy": "example-fleet",
            "made_at": start.isoformat(),
            "window": {
                "name": "prod-weekly",
                "start": start.isoformat(),
                "end": (start + timedelta(hours=4)).isoformat(),
            },
            "batches": [
                {
                    "number": b + 1,
                    "next_window": False,
                    "concurrency": 50,
                    "hosts": [
                        {
                            "host": h,
                            "updates": [
                                {"package": p, "candidate": f"1.{r + 1}"} for p, _ in PACKAGES[:3]
                            ],
                            "held": [],
                        }
                        for h in hs
                    ],
                }
                for b, hs in enumerate(batches)
            ],
            "skipped": [],
        }
        ledger.save_plan(body, saved_at=start)
        with ledger.engine.begin() as conn:
            conn.execute(
                insert(t.runs).values(
                    id=run_id,
                    plan_id=plan_id,
                    plan_hash=body["hash"],
                    started=start,
                    ended=start + timedelta(hours=3),
                    status="failed" if r % 4 == 3 else "completed",
                    reason="",
                    holder="bench:1",
                    heartbeat=start,
                )
            )
            conn.execute(
                insert(t.batches),
                [
                    {
                        "run_id": run_id,
                        "number": b + 1,
                        "status": "completed",
                        "hosts": len(hs),
                        "failed": 0,
                        "started": start,
                        "ended": start + timedelta(minutes=2),
                        "reason": "",
                    }
                    for b, hs in enumerate(batches)
                ],
            )
            phases, changes = [], []
            for b, hs in enumerate(batches):
                for h in hs:
                    failed = rng.random() < 0.01
                    for phase in PHASES:
                        status = "failed" if failed and phase == "verify" else "ok"
                        data = {
                            "phase": phase,
                            "status": status,
                            "message": f"{phase} {status}",
                            "seconds": round(rng.uniform(0.5, 5), 2),
                        }
                        if phase == "verify":
                            data["checks"] = [
                                {"name": "http /health", "status": status, "detail": "HTTP 200"}
                            ]
                        if phase == "reboot":
                            data["rebooted"] = True
                        phases.append(
                            {
                                "run_id": run_id,
                                "batch": b + 1,
                                "host": h,
                                "phase": phase,
                                "status": status,
                                "started": start,
                                "ended": start,
                                "message": data["message"],
                                "data": json.dumps(data),
                            }
                        )
                    if failed:
                        phases.append(
                            {
                                "run_id": run_id,
                                "batch": b + 1,
                                "host": h,
                                "phase": "rollback",
                                "status": "ok",
                                "started": start,
                                "ended": start,
                                "message": "restored",
                                "data": json.dumps({"seconds": 3.0}),
                            }
                        )
                    for package, _ in PACKAGES[:3]:
                        changes.append(
                            {
                                "run_id": run_id,
                                "host": h,
                                "package": package,
                                "before": f"1.{r}",
                                "after": f"1.{r + 1}",
                            }
                        )
            conn.execute(insert(t.host_phases), phases)
            conn.execute(insert(t.package_changes), changes)
    ledger.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--hosts", type=int, default=50_000)
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--keep", type=Path, help="build the ledger in this directory and keep it")
    args = parser.parse_args()
    work = args.keep or Path(tempfile.mkdtemp(prefix="pkreport-"))
    work.mkdir(parents=True, exist_ok=True)
    url = f"sqlite:///{work / 'ledger.sqlite'}"
    hosts = fleet(args.hosts)
    policy = load(ROOT / "policies" / "example.yml")
    n = args.hosts
    print(f"{n} hosts x {args.runs} runs, ledger {url}")
    if not (work / "ledger.sqlite").exists():
        timed(
            "build the ledger (not patchkit's work)",
            n,
            lambda: fill(url, hosts, args.runs, random.Random(7)),  # noqa: S311 - test data
        )
    size = (work / "ledger.sqlite").stat().st_size / 2**20
    print(f"  ledger size {size:.0f} MiB")

    listed = timed("runs (the history)", n, lambda: Ledger(url).runs())
    newest = listed[0]["id"]

    def run_report_json() -> str:
        ledger = Ledger(url)
        record = ledger.run_record(newest)
        assert record is not None
        body = ledger.plan(record["plan"]) or {}
        return run_report.to_json(run_report.build(record, body, ledger.approvals(record["plan"])))

    def run_report_html() -> str:
        ledger = Ledger(url)
        record = ledger.run_record(newest)
        assert record is not None
        return run_report.to_html(run_report.build(record, ledger.plan(record["plan"]) or {}, []))

    def compliance_report(render: Callable[[compliance.ComplianceReport], str]) -> Any:
        return render(compliance_of(Ledger(url), policy, hosts, AT))

    timed("report run, JSON (read + build + render)", n, run_report_json)
    page = timed("report run, HTML", n, run_report_html)
    timed(
        "report compliance, JSON (reads + build + render)",
        n,
        lambda: compliance_report(compliance.to_json),
    )
    html = timed("report compliance, HTML", n, lambda: compliance_report(compliance.to_html))
    print(f"  pages: run {len(page) / 2**20:.1f} MiB, compliance {len(html) / 2**20:.1f} MiB")


if __name__ == "__main__":
    main()
