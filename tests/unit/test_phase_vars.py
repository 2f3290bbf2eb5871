"""Unit: the precheck and verification keys of a policy reach the extra vars of playbooks/patch.yml.

Each test plans with the real planner (``tests.unit.plans.make``), takes the plan through the
stored body's codec as ``patchkit run`` does, and builds the first batch's patch job the way the
batch loop does. tests/integration/test_roles.py drives the roles with the same variables on lab
hosts.
"""

from __future__ import annotations

from typing import Any

import pytest

from patchkit.execution.ansible import patch_extravars
from patchkit.execution.ports import PatchJob
from patchkit.execution.state import RebootMode
from patchkit.planning import codec
from tests.unit.plans import make


def extravars(extra: str = "") -> dict[str, Any]:
    """The extra vars of the first batch's patch job, under the test policy plus ``extra``."""
    plan = codec.decode(codec.encode(make(extra, hosts=2)))
    batch = plan.batches[0]
    reboot = dict.fromkeys((h.host for h in batch.hosts), RebootMode.IF_NEEDED)
    return patch_extravars(PatchJob("run-1", batch, batch.hosts, 1, reboot, plan.settings))


def prechecks(extra: str = "") -> dict[str, Any]:
    """The precheck role's settings among the extra vars."""
    return {k: v for k, v in extravars(extra).items() if k.startswith("patchkit_precheck_")}


DEFAULTS = {
    "patchkit_precheck_min_free_disk_mb": 500,
    "patchkit_precheck_healthy_before": True,
    "patchkit_precheck_pending_reboot": "note",
}


def test_the_precheck_defaults_reach_the_playbook() -> None:
    assert prechecks() == DEFAULTS


@pytest.mark.parametrize(
    ("setting", "variable", "value"),
    [
        ("min_free_disk: 20000", "patchkit_precheck_min_free_disk_mb", 20000),
        ("min_free_disk: 0", "patchkit_precheck_min_free_disk_mb", 0),
        ("healthy_before: false", "patchkit_precheck_healthy_before", False),
        ("pending_reboot: skip-host", "patchkit_precheck_pending_reboot", "skip-host"),
        ("pending_reboot: reboot-first", "patchkit_precheck_pending_reboot", "reboot-first"),
    ],
)
def test_each_precheck_key_reaches_its_variable_and_no_other(
    setting: str, variable: str, value: object
) -> None:
    seen = prechecks(f"preparation: {{prechecks: {{{setting}}}}}")
    assert seen == DEFAULTS | {variable: value}


def test_the_check_fields_reach_every_host_that_runs_the_check() -> None:
    seen = extravars("""
        verification:
          - {type: tcp, port: 8099, host: 10.77.41.11}
          - {type: http, url: "http://10.77.41.11:8099/missing", status: 404}
          - {type: command, command: "sh -c 'exit 3'", exit_code: 3}
          - {type: tcp, port: 22, hosts: [h2]}
    """)
    expected = [
        {"type": "tcp", "port": 8099, "host": "10.77.41.11"},
        {"type": "http", "url": "http://10.77.41.11:8099/missing", "status": 404},
        {"type": "command", "command": "sh -c 'exit 3'", "exit_code": 3},
    ]
    assert seen["patchkit_checks_by_host"] == {
        "h1": expected,
        "h2": [*expected, {"type": "tcp", "port": 22, "host": "127.0.0.1"}],
    }


def test_a_check_field_left_out_reaches_the_playbook_at_its_default() -> None:
    seen = extravars("""
        verification:
          - {type: tcp, port: 8081}
          - {type: http, url: "http://127.0.0.1:8081/health"}
          - {type: command, command: demo-svc-check}
    """)
    assert seen["patchkit_checks_by_host"]["h1"] == [
        {"type": "tcp", "port": 8081, "host": "127.0.0.1"},
        {"type": "http", "url": "http://127.0.0.1:8081/health", "status": 200},
        {"type": "command", "command": "demo-svc-check", "exit_code": 0},
    ]
