"""Integration: approve and run a plan on the lab; check the hosts and the ledger.

Every test runs twice: with the ledger in a SQLite file and in a database on a real PostgreSQL
server (see ``postgres.py``), the same code either way.
"""

from __future__ import annotations

import csv
import io
import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from patchkit.lab import hosts, lifecycle
from patchkit.lab.config import LabConfig
from patchkit.ledger import Ledger
from tests.receiver import closed_port_url, receiver

from .conftest import (
    POLICY,
    TEST_HOSTS,
    approve,
    drop_run_snapshots,
    http_status,
    patchkit_cli,
    planned_id,
    run,
    said,
    states,
    variant,
)

pytest_plugins = ["tests.integration.postgres"]

NAMES = [f"host{i}" for i in range(1, TEST_HOSTS + 1)]


@pytest.fixture
def env(ledger_url: str, lab_config: LabConfig) -> Iterator[dict[str, str]]:
    """The CLI's environment with a ledger on each backend (``ledger_url``, postgres.py)."""
    yield {"PATCHKIT_LEDGER": ledger_url, "PATCHKIT_LAB_ROOT": str(lab_config.root)}
    drop_run_snapshots(lab_config)


def test_unapproved_or_changed_plans_are_refused(
    lab: Path, env: dict[str, str], tmp_path: Path, pristine: None
) -> None:
    before = {n: r.boot_id for n, r in states(lab).items()}
    plan_id = planned_id(lab, env)
    done = patchkit_cli("run", plan_id, "-p", POLICY, "-i", str(lab), env=env)
    assert done.returncode == 3 and "not approved" in done.stderr
    wrong = patchkit_cli("approve", plan_id, "--by", "mallory", env=env)
    assert wrong.returncode == 3 and "may not approve" in wrong.stderr
    change_only = patchkit_cli("approve", plan_id, "--by", "demo-operator", env=env)
    assert change_only.returncode == 0 and "need approval too" in said(change_only)
    # without --reboots the run would patch prod and leave its reboots pending (the batch
    # loop's unit tests and the reboot role's lab tests show that); approve them too
    assert "host3" in said(change_only) and "reboot pending" in said(change_only)
    approve(plan_id, env)
    changed = tmp_path / "changed.yml"
    changed.write_text(Path(POLICY).read_text().replace("retries: 0", "retries: 1"))
    done = patchkit_cli("run", plan_id, "-p", str(changed), "-i", str(lab), env=env)
    assert done.returncode == 3 and "policy changed" in done.stderr
    assert {n: r.boot_id for n, r in states(lab).items()} == before  # nothing was touched


def test_breaking_update_halts_the_window_after_the_canary(
    lab_config: LabConfig, lab: Path, env: dict[str, str], tmp_path: Path, pristine: None
) -> None:
    with receiver() as heard:
        # one receiver that answers, one that is down: the window goes the same either way
        hooks = (
            f"  webhooks:\n  - {{url: '{heard.url}'}}\n"
            f"  - {{url: '{closed_port_url()}', retries: 1}}\n"
        )
        policy = variant(tmp_path, ("reporting:\n", f"notifications:\n{hooks}reporting:\n"))
        plan_id = planned_id(lab, env, policy)
        approve(plan_id, env)
        assert run(lab, env, plan_id, policy) == 1
    assert heard.events() == ["window-started", "rollback-done", "batch-halted", "window-finished"]
    assert heard.got[1]["hosts"][0]["host"] == "host1"
    assert heard.got[3]["status"] == "halted" and "halted" in heard.got[3]["text"]
    record = Ledger(env["PATCHKIT_LEDGER"]).run_record()
    assert record is not None and record["status"] == "halted"
    statuses = [(b["number"], b["status"]) for b in record["batches"]]
    # the canary batch crossed the error threshold: it halted the window after its wave
    assert statuses[0] == (1, "halted") and len(statuses) > 1
    assert all(status == "not-started" for _, status in statuses[1:])
    verify = [p for p in record["phases"] if p["phase"] == "verify"]
    assert [(p["host"], p["status"]) for p in verify] == [("host1", "failed")]
    assert "demo-svc-check" in verify[0]["message"] or "health" in verify[0]["message"]
    # rollback scope host: the failed canary was put back to its lab snapshot and verified
    rollback = [p for p in record["phases"] if p["phase"] == "rollback"]
    assert [(p["host"], p["status"]) for p in rollback] == [("host1", "ok")]
    after = states(lab)
    assert after["host1"].packages["demo-svc"] == "1.0"
    assert http_status(lab_config, 1) == 200  # the service answers again
    for untouched in NAMES[1:]:  # checked on the hosts, not only in the ledger
        assert set(after[untouched].packages.values()) == {"1.0"}
    # the report says what was left for the next window, and why
    page = tmp_path / "report.html"
    shown = patchkit_cli("report", "run", "--format", "html", "-o", str(page), env=env)
    assert shown.returncode == 0, shown.stderr
    assert "Left for the next window" in page.read_text()
    report = json.loads(patchkit_cli("report", "run", "--format", "json", env=env).stdout)
    left = {x["host"]: x["why"] for x in report["left"]}
    assert left["host1"].startswith("rolled back: verify failed")
    assert all(
        "not-started" in left[name] and "error threshold" in left[name] for name in NAMES[1:]
    )


def test_a_clean_window_patches_reboots_and_records_every_host(
    lab_config: LabConfig, lab: Path, env: dict[str, str], tmp_path: Path, pristine: None
) -> None:
    # Batches of up to 3 under anti-affinity: canary host1, then host3+host5+host2, then
    # host4+host6 (web and db pairs are split).
    policy = variant(
        tmp_path,
        ("batch_size: 2", "batch_size: 3"),
        ("retention: 1d", "retention: 0s"),  # every host verified: release at the run's end
    )
    boots = {n: r.boot_id for n, r in states(lab).items()}
    lifecycle.set_updates(lab_config, "demo-svc", publish=False)
    try:
        plan_id = planned_id(lab, env, policy)
        approve(plan_id, env)
        assert run(lab, env, plan_id, policy) == 0
    finally:
        lifecycle.set_updates(lab_config, "demo-svc", publish=True)
    after = states(lab)
    assert sorted(after) == NAMES
    for name, row in after.items():
        assert row.packages == {
            "demo-app": "1.1", "demo-kernel": "1.1", "demo-lib": "1.1", "demo-svc": "1.0"
        }  # fmt: skip
        assert row.boot_id != boots[name]  # the "kernel" changed: rebooted
    record = Ledger(env["PATCHKIT_LEDGER"]).run_record()
    assert record is not None and record["status"] == "completed"
    assert [(b["number"], b["status"], b["hosts"]) for b in record["batches"]] == [
        (1, "completed", 1), (2, "completed", 3), (3, "completed", 2)
    ]  # fmt: skip
    by_batch = {(p["batch"], p["host"]) for p in record["phases"]}
    assert {h for b, h in by_batch if b == 2} == {"host2", "host3", "host5"}
    phases = {(p["host"], p["phase"]): p["status"] for p in record["phases"]}
    for name in NAMES:
        for phase in ("precheck", "snapshot", "patch", "reboot", "verify"):
            assert phases[(name, phase)] == "ok", (name, phase)
    changes = {(c["host"], c["package"]): (c["before"], c["after"]) for c in record["changes"]}
    assert changes[("host2", "demo-kernel")] == ("1.0", "1.1")
    assert len(changes) == 3 * len(after)
    assert {s["host"] for s in record["snapshots"]} == set(after)
    assert all(s["released"] is not None for s in record["snapshots"])
    assert not [s for s in hosts.snapshots(lab_config) if s.name == record["id"]]  # none leaked
    shown = patchkit_cli("status", "--json", env=env)
    assert shown.returncode == 0 and json.loads(shown.stdout)["id"] == record["id"]
    # compliance from the same ledger: what the run installed is no longer outstanding, and
    # its time to patch is measured from the assessment that first saw each update
    args = ("report", "compliance", "-p", policy, "-i", str(lab), "--format", "json")
    shown = patchkit_cli(*args, env=env)
    assert shown.returncode == 0, shown.stderr
    report = json.loads(shown.stdout)
    assert report["counts"] == {"compliant": len(NAMES)}
    assert all(h["updates"] == [] for h in report["hosts"])
    measured = {t["severity"]: t["updates"] for t in report["time_to_patch"]}
    assert measured == {"critical": 6, "high": 6, "medium": 6}  # kernel, lib, app per host
    assert [(w["runs"], w["completed"]) for w in report["windows"]] == [(1, 1)]


def test_unreachable_and_lost_hosts_are_recorded_with_their_phase(
    lab_config: LabConfig, lab: Path, env: dict[str, str], tmp_path: Path, pristine: None
) -> None:
    policy = variant(
        tmp_path,
        ("batch_size: 2", "batch_size: 3"),
        ("error_threshold: 1", "error_threshold: 3"),  # let the window go on past the faults
        ("reboot_timeout: 2m", "reboot_timeout: 30s"),
    )
    lifecycle.set_updates(lab_config, "demo-svc", publish=False)
    try:
        plan_id = planned_id(lab, env, policy)  # assessed while every host answers
        approve(plan_id, env)
        hosts.set_network(lab_config, 3, up=False)  # batch 2: cut off before its precheck
        hosts.set_no_boot(lab_config, 4)  # batch 3: never comes back from its reboot
        assert run(lab, env, plan_id, policy) == 1
    finally:
        lifecycle.set_updates(lab_config, "demo-svc", publish=True)
        hosts.set_network(lab_config, 3, up=True)
    record = Ledger(env["PATCHKIT_LEDGER"]).run_record()
    assert record is not None
    assert record["status"] == "failed", record["reason"]
    phases = {(p["host"], p["phase"]): p for p in record["phases"]}
    cut = phases[("host3", "precheck")]
    assert cut["status"] == "unreachable" and cut["message"]
    assert {p["status"] for (h, ph), p in phases.items() if h == "host3" and ph != "precheck"} == {
        "not-run"
    }
    lost = phases[("host4", "reboot")]
    assert lost["status"] in ("failed", "unreachable") and lost["message"]
    assert phases[("host4", "verify")]["status"] == "not-run"
    assert phases[("host4", "patch")]["status"] == "ok"
    # changed and then lost: rolled back (rollback scope host) by reverting its lab snapshot,
    # which brings the machine back; host3 was never changed, so it is not rolled back
    rollbacks = [p for p in record["phases"] if p["phase"] == "rollback"]
    assert [(p["host"], p["status"]) for p in rollbacks] == [("host4", "ok")]
    assert "lab snapshot" in rollbacks[0]["message"]
    # a batch fails on hosts that were changed and then failed; host3 was left as it was
    assert [b["status"] for b in record["batches"]] == ["completed", "completed", "failed"]
    assert "host3 (unreachable in precheck)" in record["reason"]
    after = states(lab, "host2,host3,host4,host5,host6")  # checked on the hosts
    for name in ("host3", "host4"):
        assert set(after[name].packages.values()) == {"1.0"}, name
    for name in ("host2", "host5", "host6"):
        assert after[name].packages["demo-kernel"] == "1.1"

    # The run report tells the same story from the ledger alone, in each format.
    shown = patchkit_cli("report", "run", record["id"], "--format", "json", env=env)
    assert shown.returncode == 0, shown.stderr
    report = json.loads(shown.stdout)
    outcomes = {h["host"]: h["outcome"] for h in report["hosts"]}
    assert outcomes == {
        "host1": "patched", "host2": "patched", "host3": "unreachable", "host4": "rolled back",
        "host5": "patched", "host6": "patched",
    }  # fmt: skip
    left = {x["host"]: x["why"] for x in report["left"]}
    assert set(left) == {"host3", "host4"} and left["host3"].startswith("unreachable: precheck")
    assert "rollback ok" in left["host4"]
    table = patchkit_cli("report", "run", "--format", "csv", env=env)  # the newest run
    in_order = [h["host"] for h in report["hosts"]]  # by batch, then name
    rows = list(csv.reader(io.StringIO(table.stdout)))  # messages may hold line breaks
    assert [row[2] for row in rows[1:]] == in_order
    markdown = patchkit_cli("report", "run", record["id"], "--format", "markdown", env=env)
    assert markdown.stdout.startswith(f"# Patch run {record['id']}: failed")
    listed = json.loads(patchkit_cli("runs", "--status", "failed", "--json", env=env).stdout)
    assert [r["id"] for r in listed] == [record["id"]] and listed[0]["failed"] >= 1


def test_ctrl_c_stops_cleanly_and_records_what_is_known(
    lab: Path, env: dict[str, str], pristine: None
) -> None:
    plan_id = planned_id(lab, env)
    approve(plan_id, env)
    argv = [sys.executable, "-m", "patchkit", "run", plan_id, "-p", POLICY, "-i", str(lab)]
    proc = subprocess.Popen(
        [*argv, "--json"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env={**os.environ, **env},
    )  # fmt: skip
    assert proc.stdout is not None
    for line in proc.stdout:  # wait until the first batch is patching
        event = json.loads(line)
        if event.get("task") == "patchkit snapshot result":
            proc.send_signal(signal.SIGINT)
            break
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 1, err
    assert "Traceback" not in err
    record = Ledger(env["PATCHKIT_LEDGER"]).run_record()
    assert record is not None and record["status"] == "interrupted"
    assert "stopped by the operator during batch 1" in record["reason"]
    statuses = [b["status"] for b in record["batches"]]
    assert statuses[0] == "interrupted" and set(statuses[1:]) == {"not-started"}, statuses
    assert any(p["phase"] == "snapshot" for p in record["phases"])  # known results were kept
    assert Ledger(env["PATCHKIT_LEDGER"]).locks(NAMES) == []  # a clean stop lets the hosts go
