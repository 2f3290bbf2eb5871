"""Reach the lab's hosts with Ansible (through ansible-runner) and read their state."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from patchkit import content
from patchkit.execution import runner

REPORT_TASK = "Report the lab check"


@dataclass(frozen=True)
class HostCheck:
    host: str
    reachable: bool
    boot_id: str | None = None
    packages: Mapping[str, str] = field(default_factory=dict)  # demo package -> version
    message: str = ""


def parse_report(host: str, msg: Mapping[str, Any]) -> HostCheck:
    """The lab-check playbook's report for one host (package_facts lists versions per name)."""
    packages = {
        name: str(entries[0]["version"])
        for name, entries in dict(msg.get("packages", {})).items()
        if entries
    }
    return HostCheck(host=host, reachable=True, boot_id=str(msg["boot_id"]), packages=packages)


def check(inventory: Path, limit: str | None = None) -> tuple[HostCheck, ...]:
    """One row per host the playbook ran on: reachable or not, boot id, demo package versions."""
    result = runner.run_playbook(
        content.playbook("lab-check.yml"), inventory, limit=limit, forks=20, timeout=300
    )
    rows = []
    for host in sorted(result.hosts, key=_natural):
        report = result.task(host, REPORT_TASK)
        if report is not None:
            rows.append(parse_report(host, report.result["msg"]))
            continue
        bad = [t for t in result.for_host(host) if t.status in ("failed", "unreachable")]
        rows.append(
            HostCheck(host=host, reachable=False, message=bad[-1].message if bad else "no result")
        )
    return tuple(rows)


def _natural(name: str) -> tuple[str, int]:
    """host2 before host10."""
    stem = name.rstrip("0123456789")
    digits = name[len(stem) :]
    return (stem, int(digits) if digits else -1)
