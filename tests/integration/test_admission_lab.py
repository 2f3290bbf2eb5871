"""Integration: the run does what the approved plan and the policy say, on the lab's hosts.

A plan runs only inside its window (``--wait`` waits for it to open), and only once; an
approval row written into the ledger by hand is refused when signatures are required, while a
signed one runs; a failing backup hook leaves its host unpatched; a patch that fails once is
tried again under ``retries: 1`` and the window completes.
"""

from __future__ import annotations

import json
import re
import sqlite3
import subprocess
from datetime import UTC, datetime, timedelta
from pathlib import Path

from patchkit.lab import hosts
from patchkit.lab.config import LabConfig

from .conftest import POLICY, approve, patchkit_cli, planned_id, said, states, variant

DAILY = (
    "    rrule: FREQ=DAILY;BYHOUR={hour};BYMINUTE=0;BYSECOND=0\n"
    "    timezone: UTC\n    duration: 3h\n"
)
# Two hosts (dev canary, staging) and no demo-svc (its update breaks its health check): the
# tests here are about admission and phases, not about the rollout.
SMALL = (
    "roles:\n",
    "scope:\n  include: [host1, host2]\n\nroles:\n",
)
NO_SVC = ("  updates: all\n", "  updates: all\n  deny: [demo-svc]\n")


def window_in(minutes: int) -> tuple[tuple[str, str], datetime]:
    """A policy change: a 30-minute window opening ``minutes`` from now (to the minute)."""
    opens = (datetime.now(UTC) + timedelta(minutes=minutes)).replace(second=0, microsecond=0)
    # the tests' lab policy opened its window at the hour the test session started
    found = re.search(r"    rrule: FREQ=DAILY;BYHOUR=(\d+);", Path(POLICY).read_text())
    assert found, "the tests' lab policy has no daily window"
    old = DAILY.format(hour=found.group(1))
    new = (
        f"    rrule: FREQ=DAILY;BYHOUR={opens.hour};BYMINUTE={opens.minute};BYSECOND=0\n"
        "    timezone: UTC\n    duration: 30m\n"
    )
    return (old, new), opens


def run_cli(
    lab: Path, env: dict[str, str], plan: str, policy: str, *extra: str
) -> subprocess.CompletedProcess[str]:
    done = patchkit_cli("run", plan, "-p", policy, "-i", str(lab), *extra, env=env)
    assert "Traceback" not in done.stderr, done.stderr
    return done


def versions(lab: Path) -> dict[str, dict[str, str]]:
    return {n: dict(r.packages) for n, r in states(lab).items()}


def test_a_plan_runs_only_in_its_window_and_only_once(
    lab: Path, env: dict[str, str], tmp_path: Path, pristine: None
) -> None:
    change, opens = window_in(2)
    if (opens - datetime.now(UTC)).total_seconds() < 75:  # give the first refusal time to run
        change, opens = window_in(3)
    policy = variant(tmp_path, SMALL, NO_SVC, change)
    plan_id = planned_id(lab, env, policy)
    approve(plan_id, env)
    before = versions(lab)
    early = run_cli(lab, env, plan_id, policy)
    assert early.returncode == 3, early.stderr
    assert f"opens at {opens:%Y-%m-%d %H:%M}" in said(early) and "--wait" in said(early)
    assert versions(lab) == before  # refused before anything was touched
    waited = run_cli(lab, env, plan_id, policy, "--wait", "--json")
    assert waited.returncode == 0, waited.stderr
    assert datetime.now(UTC) >= opens
    end = json.loads(waited.stdout.splitlines()[-1])["run"]
    assert end["status"] == "completed" and datetime.fromisoformat(end["started"]) >= opens
    assert versions(lab)["host1"]["demo-lib"] != before["host1"]["demo-lib"]
    again = run_cli(lab, env, plan_id, policy)
    assert again.returncode == 3, again.stderr
    assert end["id"] in said(again) and "resume" in said(again)


def keypair(tmp_path: Path, name: str) -> tuple[Path, str]:
    key = tmp_path / name
    subprocess.run(
        ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", name, "-f", str(key)], check=True
    )
    return key, key.with_suffix(".pub").read_text().split(" ", 2)[1]


def test_a_forged_approval_is_refused_a_signed_one_runs_and_a_failing_backup_holds_its_host(
    lab: Path, env: dict[str, str], tmp_path: Path, pristine: None
) -> None:
    key, public = keypair(tmp_path, "demo-operator")
    signers = tmp_path / "allowed_signers"
    signers.write_text(f"demo-operator ssh-ed25519 {public}\n")
    policy = variant(
        tmp_path,
        SMALL,
        NO_SVC,
        (
            "  approvers: [demo-operator]\n",
            f"  approvers: [demo-operator]\n  signatures: {{allowed_signers: {signers}}}\n",
        ),
        (
            "  snapshot: {backend: lab, retention: 1d}\n",
            "  snapshot: {backend: lab, retention: 1d}\n"
            "  backup: {command: 'test \"$PATCHKIT_HOST\" != host2', timeout: 30s}\n",
        ),
    )
    plan_id = planned_id(lab, env, policy)
    body = json.loads(
        patchkit_cli("plan", "-p", policy, "-i", str(lab), "--format", "json", env=env).stdout
    )
    assert body["id"] == plan_id  # planning again gives the same plan
    unsigned = patchkit_cli("approve", plan_id, "--by", "demo-operator", env=env)
    assert unsigned.returncode == 3 and "--sign" in said(unsigned)
    ledger = env["PATCHKIT_LEDGER"].removeprefix("sqlite:///")
    with sqlite3.connect(ledger) as db:  # an approval row written by hand
        db.execute(
            "INSERT INTO approvals (plan_id, plan_hash, approved_by, approved_at, comment, "
            "reboots, emergency) VALUES (?, ?, 'demo-operator', ?, 'forged', 1, 0)",
            (plan_id, body["hash"], datetime.now(UTC).isoformat(" ")),
        )
    before = versions(lab)
    forged = run_cli(lab, env, plan_id, policy)
    assert forged.returncode == 3 and "is not signed" in said(forged), forged.stderr
    assert versions(lab) == before
    signed = patchkit_cli(
        "approve", plan_id, "--by", "demo-operator", "--sign", str(key), "--reboots", env=env
    )
    assert signed.returncode == 0, signed.stderr
    done = run_cli(lab, env, plan_id, policy, "--json")
    assert done.returncode == 1, done.stderr  # host2 left unpatched: incomplete
    record = json.loads(done.stdout.splitlines()[-1])["run"]
    assert record["status"] == "incomplete" and "host2" in record["reason"]
    backup = {p["host"]: p for p in record["phases"] if p["phase"] == "backup"}
    assert backup["host1"]["status"] == "ok" and backup["host2"]["status"] == "failed"
    after = versions(lab)
    assert after["host2"] == before["host2"]  # not patched: no snapshot, no package changed
    assert after["host1"]["demo-lib"] != before["host1"]["demo-lib"]
    assert not [p for p in record["phases"] if p["host"] == "host2" and p["phase"] == "patch"
                and p["status"] == "ok"]  # fmt: skip


def test_a_patch_that_fails_once_is_tried_again_and_the_window_completes(
    lab_config: LabConfig, lab: Path, env: dict[str, str], tmp_path: Path, pristine: None
) -> None:
    policy = variant(tmp_path, SMALL, NO_SVC, ("  retries: 0\n", "  retries: 1\n"))
    plan_id = planned_id(lab, env, policy)
    approve(plan_id, env)
    hosts.set_install_fails_once(lab_config, 2, fails=True)
    before = versions(lab)
    done = run_cli(lab, env, plan_id, policy, "--json")
    assert done.returncode == 0, done.stderr
    record = json.loads(done.stdout.splitlines()[-1])["run"]
    assert record["status"] == "completed"
    tries = [(p["attempt"], p["status"]) for p in record["phases"]
             if p["host"] == "host2" and p["phase"] == "patch"]  # fmt: skip
    assert tries == [(1, "failed"), (2, "ok")]
    report = json.loads(patchkit_cli("report", "run", "--format", "json", env=env).stdout)
    (host2,) = [h for h in report["hosts"] if h["host"] == "host2"]
    assert host2["outcome"] == "patched" and host2["attempts"] == 2
    assert versions(lab)["host2"]["demo-lib"] != before["host2"]["demo-lib"]
