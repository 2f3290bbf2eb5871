"""Integration: assess and plan on the lab through the command line; nothing on a host changes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from patchkit.lab import lifecycle
from patchkit.lab.config import LabConfig
from patchkit.ledger import Ledger

from .conftest import POLICY, TEST_HOSTS, patchkit_cli, states

HOSTS = [f"host{i}" for i in range(1, TEST_HOSTS + 1)]
DEMO = {"demo-app", "demo-kernel", "demo-lib", "demo-svc"}


@pytest.fixture
def ledger(tmp_path: Path) -> dict[str, str]:
    return {"PATCHKIT_LEDGER": f"sqlite:///{tmp_path / 'ledger.sqlite'}"}


def assess(lab: Path, env: dict[str, str], *extra: str) -> None:
    done = patchkit_cli("assess", "-p", POLICY, "-i", str(lab), *extra, env=env)
    assert done.returncode == 0, done.stderr


def plan_json(lab: Path, env: dict[str, str], *extra: str) -> dict[str, object]:
    done = patchkit_cli("plan", "-p", POLICY, "-i", str(lab), "--format", "json", *extra, env=env)
    assert done.returncode == 0, done.stderr
    body: dict[str, object] = json.loads(done.stdout)
    return body


def planned(body: dict[str, object]) -> dict[str, set[str]]:
    batches = body["batches"]
    assert isinstance(batches, list)
    return {h["host"]: {u["package"] for u in h["updates"]} for b in batches for h in b["hosts"]}


def test_assess_then_plan_changes_nothing_on_the_hosts(
    lab: Path, ledger: dict[str, str], tmp_path: Path
) -> None:
    before = {name: (row.boot_id, dict(row.packages)) for name, row in states(lab).items()}
    exported = tmp_path / "findings.json"
    assess(lab, ledger, "--export", str(exported))
    body = plan_json(lab, ledger)
    assert planned(body) == dict.fromkeys(HOSTS, DEMO)
    assert body["id"] == f"plan-{str(body['hash'])[:12]}"
    saved = Ledger(ledger["PATCHKIT_LEDGER"]).plan(str(body["id"]))
    assert saved is not None and saved["hash"] == body["hash"]  # saved for approve and run
    after = {name: (row.boot_id, dict(row.packages)) for name, row in states(lab).items()}
    assert after == before  # same boot, same versions: assess and plan touched nothing
    # the exported findings give the same plan without the ledger (for an offline preview)
    offline = plan_json(lab, {}, "--findings", str(exported), "--no-save", "--at", body_at(body))
    assert offline["hash"] == plan_json(lab, ledger, "--at", body_at(body))["hash"]


def body_at(body: dict[str, object]) -> str:
    return str(body["made_at"])


def test_withdrawn_updates_leave_nothing_to_plan(
    lab_config: LabConfig, lab: Path, ledger: dict[str, str]
) -> None:
    lifecycle.set_updates(lab_config, "demo-svc", publish=False)
    try:
        assess(lab, ledger)
        body = plan_json(lab, ledger)
        assert planned(body) == {host: DEMO - {"demo-svc"} for host in HOSTS}
        lifecycle.set_updates(lab_config, None, publish=False)
        assess(lab, ledger)
        body = plan_json(lab, ledger)
        assert planned(body) == {}
        skipped = body["skipped"]
        assert isinstance(skipped, list)
        assert {s["host"]: s["kind"] for s in skipped} == dict.fromkeys(HOSTS, "nothing-to-do")
    finally:
        lifecycle.set_updates(lab_config, None, publish=True)
    assess(lab, ledger)
    assert planned(plan_json(lab, ledger)) == dict.fromkeys(HOSTS, DEMO)


def test_security_only_policy_plans_only_security_updates(
    lab: Path, ledger: dict[str, str], tmp_path: Path
) -> None:
    policy = tmp_path / "security.yml"
    text = Path(POLICY).read_text().replace("  updates: all\n", "  updates: security\n")
    policy.write_text(text)
    assess(lab, ledger)
    done = patchkit_cli(
        "plan", "-p", str(policy), "-i", str(lab), "--format", "json", "--no-save", env=ledger
    )
    assert done.returncode == 0, done.stderr
    assert planned(json.loads(done.stdout)) == {h: {"demo-kernel", "demo-lib"} for h in HOSTS}


def test_unreachable_host_is_reported_not_dropped(
    lab_config: LabConfig, lab: Path, ledger: dict[str, str]
) -> None:
    from patchkit.lab import hosts

    hosts.set_network(lab_config, 2, up=False)
    try:
        done = patchkit_cli("assess", "-p", POLICY, "-i", str(lab), env=ledger)
    finally:
        hosts.set_network(lab_config, 2, up=True)
    assert done.returncode == 1  # scripts can tell an assessment with unreachable hosts
    body = plan_json(lab, ledger)
    skipped = body["skipped"]
    assert isinstance(skipped, list)
    assert [s["kind"] for s in skipped if s["host"] == "host2"] == ["unreachable"]
    assert set(planned(body)) == set(HOSTS) - {"host2"}
