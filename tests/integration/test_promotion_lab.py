"""Integration: staged promotion and window fit on the lab, through the command line.

dev (host1) → staging (host2) → prod (host3-6). Updates reach an environment only once verified
in the one before; the breaking demo-svc update fails in dev and never reaches prod (checked on
the prod hosts after a prod window). Estimates come from the ledger's history once there is
some; a window too short for the plan leaves its last batches for the next one.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from patchkit.lab import lifecycle
from patchkit.lab.config import LabConfig

from .conftest import POLICY, approve, patchkit_cli, run, states, variant

PROMOTION = "promotion:\n  order: [dev, staging, prod]\n  min_hosts: 1\n  soak: SOAK\nreporting:\n"
PROD = ["host3", "host4", "host5", "host6"]


def staged(tmp_path: Path, soak: str, *more: tuple[str, str]) -> str:
    folder = tmp_path / soak.replace(" ", "")
    folder.mkdir(exist_ok=True)
    return variant(
        folder,
        ("reporting:\n", PROMOTION.replace("SOAK", soak)),
        ("error_threshold: 1", "error_threshold: 5"),  # a failed dev host does not halt
        *more,
    )


def plan(lab: Path, env: dict[str, str], policy: str, *extra: str) -> dict[str, Any]:
    done = patchkit_cli("assess", "-p", policy, "-i", str(lab), env=env)
    assert done.returncode == 0, done.stderr
    args = ("plan", "-p", policy, "-i", str(lab), "--format", "json", *extra)
    done = patchkit_cli(*args, env=env)
    assert done.returncode == 0, done.stderr
    body: dict[str, Any] = json.loads(done.stdout)
    return body


def held(body: dict[str, Any]) -> dict[str, dict[str, str]]:
    """host -> package -> why it is held, for planned and skipped hosts alike."""
    out: dict[str, dict[str, str]] = {}
    for b in body["batches"]:
        for h in b["hosts"]:
            out[h["host"]] = {x["package"]: x["reason"] for x in h["held"]}
    for s in body["skipped"]:
        out[s["host"]] = {x["package"]: x["reason"] for x in s["held"]}
    return out


def selected(body: dict[str, Any]) -> dict[str, list[str]]:
    return {
        h["host"]: [u["package"] for u in h["updates"]] for b in body["batches"] for h in b["hosts"]
    }


def window(lab: Path, env: dict[str, str], policy: str, body: dict[str, Any]) -> int:
    approve(body["id"], env)
    return run(lab, env, body["id"], policy)


def test_updates_climb_the_environments_and_a_failed_one_stays_out_of_prod(
    lab_config: LabConfig, lab: Path, env: dict[str, str], tmp_path: Path, pristine: None
) -> None:
    soaking = staged(tmp_path, "2h")
    # 1. dev alone: the first environment is not gated; demo-svc 1.1 is not published yet
    lifecycle.set_updates(lab_config, "demo-svc", publish=False)
    try:
        first = plan(lab, env, soaking)
        assert selected(first) == {"host1": ["demo-app", "demo-kernel", "demo-lib"]}
        assert held(first)["host2"]["demo-lib"] == "awaiting promotion: verified on 0/1 dev hosts"
        assert window(lab, env, soaking, first) == 0
    finally:
        lifecycle.set_updates(lab_config, "demo-svc", publish=True)

    # 2. right after: staging waits for the soak, prod for staging; dev gets demo-svc 1.1
    second = plan(lab, env, soaking)
    assert selected(second) == {"host1": ["demo-svc"]}
    assert held(second)["host2"]["demo-lib"] == (
        "awaiting promotion: verified on 1/1 dev hosts; 2 h left"
    )
    assert held(second)["host3"]["demo-lib"] == (
        "awaiting promotion: verified on 0/1 staging hosts"
    )
    later = (datetime.now(UTC) + timedelta(hours=3)).isoformat()
    after_soak = plan(lab, env, soaking, "--at", later)
    assert selected(after_soak)["host2"] == ["demo-app", "demo-kernel", "demo-lib"]
    # demo-svc 1.1 breaks its health check on dev: verification fails, the host is rolled back
    assert window(lab, env, soaking, second) == 1
    assert states(lab, "host1")["host1"].packages["demo-svc"] == "1.0"

    # 3. the team shortens the soak: staging takes what dev verified, not demo-svc
    quick = staged(tmp_path, "0s")
    third = plan(lab, env, quick)
    assert selected(third) == {"host2": ["demo-app", "demo-kernel", "demo-lib"]}
    blocked = held(third)["host2"]["demo-svc"]
    assert blocked.startswith("blocked: failed verification on 1 of 1 host(s) so far")
    assert "demo-svc" in held(third)["host1"]  # and dev is not offered it again
    assert "host1 (dev)" in blocked
    assert window(lab, env, quick, third) == 0

    # 4. prod: what staging verified, and still not demo-svc (checked on the hosts)
    fourth = plan(lab, env, quick)
    assert {h: sorted(p) for h, p in selected(fourth).items()} == {
        name: ["demo-app", "demo-kernel", "demo-lib"] for name in PROD
    }
    assert all(held(fourth)[name]["demo-svc"].startswith("blocked") for name in PROD)
    # no tier-1 host has run yet: their estimates are still the policy's
    bases = {h["host"]: h["estimate_basis"] for b in fourth["batches"] for h in b["hosts"]}
    assert bases == dict.fromkeys(PROD, "policy estimate (no history)")
    assert window(lab, env, quick, fourth) == 0
    after = states(lab, ",".join(PROD))
    for name in PROD:
        assert after[name].packages["demo-svc"] == "1.0", name
        assert after[name].packages["demo-lib"] == "1.1", name


def test_the_second_window_is_estimated_from_the_first(
    lab_config: LabConfig, lab: Path, env: dict[str, str], tmp_path: Path, pristine: None
) -> None:
    """A window runs; the next plan over the same start state (the first assessment, exported
    and planned again with --findings) takes its estimates from the first window's durations.
    Estimate and actual are printed per batch (the figures for the issue note) and both are
    recorded in the run report."""
    names = [f"host{i}" for i in range(1, 7)]
    exported = tmp_path / "first.json"
    lifecycle.set_updates(lab_config, "demo-svc", publish=False)
    try:
        done = patchkit_cli("assess", "-p", POLICY, "-i", str(lab), "--export", str(exported),
                            env=env)  # fmt: skip
        assert done.returncode == 0, done.stderr
        args = ("plan", "-p", POLICY, "-i", str(lab), "--format", "json")
        first = json.loads(patchkit_cli(*args, env=env).stdout)
        assert {h["estimate_basis"] for b in first["batches"] for h in b["hosts"]} == {
            "policy estimate (no history)"
        }
        assert window(lab, env, POLICY, first) == 0
    finally:
        lifecycle.set_updates(lab_config, "demo-svc", publish=True)
    done = patchkit_cli(*args, "--findings", str(exported), env=env)
    assert done.returncode == 0, done.stderr
    second = json.loads(done.stdout)
    assert selected(second) == selected(first)  # the same start state
    bases = {h["host"]: h["estimate_basis"] for b in second["batches"] for h in b["hosts"]}
    # four tier-1 hosts ran once each: 4 samples per phase; host1 and host2 are alone in theirs
    assert {n: b for n, b in bases.items() if n in PROD} == dict.fromkeys(
        PROD, "p90 of 4 past runs of similar hosts"
    )
    assert bases["host1"] == bases["host2"] == "policy estimate (no history)"
    assert sorted(bases) == names
    report = json.loads(patchkit_cli("report", "run", "--format", "json", env=env).stdout)
    for b in report["batches"]:
        print(f"batch {b['number']} {b['hosts']}: estimate {b['estimate']} s, "
              f"actual {b['seconds']} s")  # fmt: skip
        assert b["estimate"] == next(
            x["duration"] for x in first["batches"] if x["number"] == b["number"]
        )
        assert b["seconds"] is not None


def test_a_window_too_short_leaves_its_last_batches_and_run_does_not_start_them(
    lab_config: LabConfig, lab: Path, env: dict[str, str], tmp_path: Path, pristine: None
) -> None:
    # 100 minutes per host in a 3 h window: the canary fits, the next batch would end after it
    slow = variant(
        tmp_path,
        ("estimate: {base: 30s, per_package: 5s, reboot: 20s}",
         "estimate: {base: 100m, per_package: 0s, reboot: 0s}"),
    )  # fmt: skip
    lifecycle.set_updates(lab_config, "demo-svc", publish=False)
    try:
        body = plan(lab, env, slow)
        flags = [b["next_window"] for b in body["batches"]]
        assert flags[0] is False and flags[1:] and all(flags[1:]), flags
        # the run does what the approved plan holds for this window, and starts nothing more
        assert window(lab, env, slow, body) == 0
    finally:
        lifecycle.set_updates(lab_config, "demo-svc", publish=True)
    record = json.loads(patchkit_cli("status", "--json", env=env).stdout)
    statuses = [b["status"] for b in record["batches"]]
    assert statuses[0] == "completed" and set(statuses[1:]) == {"not-started"}
    assert all(b["reason"] == "left for the next window by the plan" for b in record["batches"][1:])
    report = json.loads(patchkit_cli("report", "run", "--format", "json", env=env).stdout)
    left = {x["host"] for x in report["left"]}
    assert left == {h["host"] for b in body["batches"][1:] for h in b["hosts"]}
