"""Small typed plans made by the real planner, for unit tests of the run and its views."""

from __future__ import annotations

import textwrap
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta

import yaml

from patchkit.model import Finding, Host, PendingUpdate, freeze
from patchkit.planning.plan import make_plan
from patchkit.planning.types import Plan
from patchkit.policy import loads

AT = datetime(2026, 11, 25, 10, 0, tzinfo=UTC)  # planned in the morning
OPEN = datetime(2026, 11, 25, 22, 5, tzinfo=UTC)  # the window opened at 22:00

POLICY = """\
name: loop
roles: {owner: ops, approvers: [alice]}
windows:
  - name: nightly
    rrule: FREQ=DAILY;BYHOUR=22;BYMINUTE=0;BYSECOND=0
    timezone: UTC
    duration: 4h
    cutoff: 30m
rollout:
  batch_size: 2
  concurrency: 2
  error_threshold: 2
  anti_affinity: null
  estimate: {base: 5m, per_package: 0s, reboot: 0s}
downtime:
  reboot_packages: [demo-kernel]
"""


def make(
    extra: str = "",
    hosts: int = 4,
    names: Sequence[str] = (),
    **variables: Mapping[str, object],
) -> Plan:
    """A plan of ``hosts`` hosts h1, h2, … (or ``names``) with two security updates each, under
    POLICY with the top-level sections of ``extra`` merged in; keyword arguments give a host
    its variables (``h1={"cluster": "etcd"}``)."""
    data = yaml.safe_load(POLICY)
    for key, value in (yaml.safe_load(textwrap.dedent(extra)) or {}).items():
        if isinstance(value, dict) and isinstance(data.get(key), dict):
            data[key] = data[key] | value
        else:
            data[key] = value
    policy = loads(yaml.safe_dump(data))
    names = list(names) or [f"h{i}" for i in range(1, hosts + 1)]
    fleet = [Host(n, (), freeze(variables.get(n, {}))) for n in names]
    findings = {
        n: Finding(
            n,
            AT - timedelta(hours=1),
            True,
            (
                PendingUpdate("demo-lib", "1.0", "1.1", "lab-security"),
                PendingUpdate("demo-tool", "1.0", "1.1", "lab-security"),
            ),
        )
        for n in names
    }
    return make_plan(policy, fleet, findings, AT)
