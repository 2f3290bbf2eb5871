"""Integration: policy, scope and plan commands on the example fleet (files only, no lab)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from .conftest import patchkit_cli

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "inventories" / "example"
PLAN = [
    "plan",
    "-p",
    str(ROOT / "policies" / "example.yml"),
    "-i",
    str(EXAMPLE / "hosts.yml"),
    "--findings",
    str(ROOT / "examples" / "findings.json"),
    "--at",
    "2026-11-20T12:00+00:00",
    "--window",
    "prod-weekly",
    "--no-save",
]


@pytest.fixture(scope="module")
def plan_body() -> dict[str, object]:
    done = patchkit_cli(*PLAN, "--format", "json")
    assert done.returncode == 0, done.stderr
    body: dict[str, object] = json.loads(done.stdout)
    return body


def test_json_preview_of_the_example_fleet(plan_body: dict[str, object]) -> None:
    assert plan_body["format"] == "patchkit-plan/2"
    window = plan_body["window"]
    assert isinstance(window, dict) and window["name"] == "prod-weekly"
    assert window["start"] == "2026-11-21T22:00:00+01:00"
    batches = plan_body["batches"]
    assert isinstance(batches, list) and batches[0]["canary"]
    hosts = [h["host"] for b in batches for h in b["hosts"]]
    assert hosts and all("-prod-" in h for h in hosts) and len(hosts) == len(set(hosts))
    skipped = plan_body["skipped"]
    assert isinstance(skipped, list)
    kinds = {s["host"]: s["kind"] for s in skipped}
    assert kinds["db-prod-03"] == "exception"
    assert kinds["app-prod-legacy-01"] == "excluded"


@pytest.mark.parametrize(("fmt", "marker"), [("markdown", "# "), ("html", "<!DOCTYPE html>")])
def test_documents_name_the_plan(plan_body: dict[str, object], fmt: str, marker: str) -> None:
    done = patchkit_cli(*PLAN, "--format", fmt)
    assert done.returncode == 0, done.stderr
    assert marker in done.stdout
    assert str(plan_body["id"]) in done.stdout and str(plan_body["hash"]) in done.stdout


def test_text_preview_to_a_file(plan_body: dict[str, object], tmp_path: Path) -> None:
    out = tmp_path / "deep" / "plan.txt"
    done = patchkit_cli(*PLAN, "--format", "text", "-o", str(out))
    assert done.returncode == 0, done.stderr
    text = out.read_text()
    assert str(plan_body["id"]) in text and "\x1b[" not in text  # plain text, no colour codes


def test_same_inputs_same_plan_id(plan_body: dict[str, object]) -> None:
    again = json.loads(patchkit_cli(*PLAN, "--format", "json").stdout)
    assert again["id"] == plan_body["id"] and again["hash"] == plan_body["hash"]


def test_scope_lists_every_host_with_a_verdict() -> None:
    done = patchkit_cli(
        "scope",
        "-i",
        str(EXAMPLE / "hosts.yml"),
        "-p",
        str(ROOT / "policies" / "example.yml"),
        "--at",
        "2026-11-20T12:00+00:00",
        "--json",
    )
    assert done.returncode == 0, done.stderr
    rows = json.loads(done.stdout)
    assert len(rows) == 240
    out = {r["host"]: r for r in rows if not r["in_scope"]}
    assert out["app-prod-legacy-01"]["reason"] == "excluded by *-legacy*"
    assert "vendor" in out["db-prod-03"]["reason"]
    laptop = next(r for r in rows if r["host"].startswith("lt-"))
    assert laptop["criticality"] < next(r for r in rows if r["tier"] == 1)["criticality"]


def test_bad_policy_and_unknown_window_exit_2(tmp_path: Path) -> None:
    broken = tmp_path / "broken.yml"
    broken.write_text("name: x\nroles: {owner: o, approvers: [a]}\nwindows: []\nrollout: {x: 1}\n")
    done = patchkit_cli("policy", "check", str(broken))
    assert done.returncode == 2
    assert f"{broken}:3: windows" in done.stderr and f"{broken}:4: rollout.x" in done.stderr
    verdict = json.loads(patchkit_cli("policy", "check", str(broken), "--json").stdout)
    assert verdict["valid"] is False and len(verdict["problems"]) == 2
    args = [a if a != "prod-weekly" else "sunday-brunch" for a in PLAN]
    done = patchkit_cli(*args)
    assert done.returncode == 2 and "no window 'sunday-brunch'" in done.stderr


def test_missing_inventory_exit_2(tmp_path: Path) -> None:
    done = patchkit_cli("scope", "-i", str(tmp_path / "nope.yml"))
    assert done.returncode == 2 and "nope.yml" in done.stderr and "Traceback" not in done.stderr
