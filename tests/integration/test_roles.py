"""Integration: playbooks/patch.yml and its phase roles on lab hosts, run as the controller will.

Each test runs the playbook through patchkit's runner adapter with the extra vars the controller
passes (run id, batch, updates and checks by host, phase settings) and checks both sides: the
structured result of each phase (the keys docs/playbook-contract.md documents) and the hosts
themselves. ``pristine`` puts every host back afterwards.
"""

from __future__ import annotations

import shlex
import socket
import time
import uuid
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest

from patchkit import content
from patchkit.execution.runner import PlaybookResult, TaskResult, run_playbook
from patchkit.lab import hosts, lifecycle
from patchkit.lab.config import LabConfig

from .conftest import on_host, states

PHASES = ("precheck", "backup", "snapshot", "patch", "reboot", "verify")
COMMON = {"phase", "status", "message"}
# The keys of each phase's result, as docs/playbook-contract.md lists them.
KEYS = {
    "precheck": COMMON
    | {"reachable", "os_family", "free_disk_mb", "min_free_disk_mb", "reboot_pending"}
    | {"pending_reboot_policy", "pending_reboot_action", "healthy", "checks"},
    "backup": COMMON | {"rc", "seconds", "timeout", "timed_out", "stderr_tail"},
    "snapshot": COMMON
    | {"backend", "id", "location", "existing", "kept", "manifest", "packages_recorded"},
    "patch": COMMON | {"updates", "extra_changes", "reboot_required", "reboot_required_packages"},
    "reboot": COMMON
    | {"policy", "reboot_required", "rebooted", "boot_id_before", "boot_id_after"}
    | {"kernel_before", "kernel_after", "system_state", "elapsed"}
    | {"mode", "predicted", "required", "pending"},
    "verify": COMMON | {"checks", "failed_checks"},
}
CHECK_KEYS = {"name", "type", "target", "status", "detail"}

# demo-svc's own health: the 1.1 update breaks the HTTP answer and therefore demo-svc-check.
CHECKS = [
    {"type": "systemd", "unit": "demo-svc.service"},
    {"type": "tcp", "port": 8081},
    {"type": "http", "url": "http://127.0.0.1:8081/health", "status": 200},
    {"type": "command", "command": "demo-svc-check"},
]
ALL_OLD = {"demo-app": "1.0", "demo-kernel": "1.0", "demo-lib": "1.0", "demo-svc": "1.0"}
ALL_OK = {"systemd": "ok", "tcp": "ok", "http": "ok", "command": "ok"}


@pytest.fixture
def published(lab_config: LabConfig, lab: Path) -> None:
    """Every demo update is installable (another test may have withdrawn some)."""
    lifecycle.set_updates(lab_config, "demo-*", publish=True)


@pytest.fixture
def run_id() -> str:
    return "roles-" + uuid.uuid4().hex[:8]


def patch_batch(
    inventory: Path,
    run_id: str,
    updates: Mapping[str, list[str]],
    timings: dict[str, float] | None = None,
    **settings: object,
) -> PlaybookResult:
    """Run playbooks/patch.yml on the hosts of ``updates`` (host -> packages to take to 1.1)."""
    extravars: dict[str, object] = {
        "patchkit_run_id": run_id,
        "patchkit_batch": 1,
        "patchkit_updates_by_host": {
            host: [{"package": name, "candidate": "1.1"} for name in names]
            for host, names in updates.items()
        },
        "patchkit_checks_by_host": dict.fromkeys(updates, CHECKS),
        "patchkit_snapshot_backend": "package",
        "patchkit_reboot_policy": "if-needed",
        "patchkit_reboot_timeout": 120,
        **settings,
    }
    started = time.monotonic()

    def on_task(task: TaskResult) -> None:
        # when the last host reported each phase: the phases run in lockstep (linear strategy)
        if timings is not None and task.task.startswith("patchkit "):
            timings[task.task.split()[1]] = time.monotonic() - started

    return run_playbook(
        content.playbook("patch.yml"),
        inventory,
        limit=",".join(updates),
        extravars=extravars,
        timeout=600,
        on_task=on_task,
    )


def thaw(value: Any) -> Any:
    """Plain dicts and lists again (the runner adapter freezes results)."""
    if isinstance(value, Mapping):
        return {key: thaw(item) for key, item in value.items()}
    if isinstance(value, tuple):
        return [thaw(item) for item in value]
    return value


def outcome(result: PlaybookResult, host: str, phase: str) -> dict[str, Any]:
    """The structured result of ``phase`` on ``host``, with exactly the documented keys."""
    task = result.task(host, f"patchkit {phase} result")
    assert task is not None, f"no {phase} result for {host}: {result.for_host(host)[-1:]}"
    msg: dict[str, Any] = thaw(task.result["msg"])
    assert set(msg) == KEYS[phase], f"{phase} result keys"
    assert msg["phase"] == phase
    assert msg["status"] in ("ok", "failed", "skipped")
    return msg


def check_rows(checks: Any) -> dict[str, str]:
    """Check type -> ok/failed (the test's CHECKS have one check of each type)."""
    assert all(set(row) == CHECK_KEYS for row in checks)
    return {row["type"]: row["status"] for row in checks}


def deb_fields(config: LabConfig, index: int, path: str) -> str:
    """``name version`` of a .deb file on a host."""
    return on_host(
        config, index, f"dpkg-deb --show --showformat='${{Package}} ${{Version}}' {path}"
    )


def recorded_version(config: LabConfig, index: int, manifest: str, package: str) -> str:
    """The version of ``package`` in a package snapshot's manifest (package_facts' JSON)."""
    script = f"import json; print(json.load(open('{manifest}'))['{package}'][0]['version'])"
    return on_host(config, index, f'python3 -c "{script}"')


def test_a_batch_of_two_hosts_goes_through_every_phase(
    lab_config: LabConfig, lab: Path, pristine: None, published: None, run_id: str
) -> None:
    selected = ["demo-lib", "demo-app", "demo-kernel"]
    before = states(lab, "host1,host2")
    timings: dict[str, float] = {}
    result = patch_batch(lab, run_id, {"host1": selected, "host2": selected}, timings)
    after = states(lab, "host1,host2")

    assert result.status == "successful", [t for t in result.tasks if t.status == "failed"]
    for index, host in ((1, "host1"), (2, "host2")):
        phases = {phase: outcome(result, host, phase) for phase in PHASES}
        # no backup hook configured: skipped, and the host goes on
        assert {phase: r["status"] for phase, r in phases.items()} == {
            **dict.fromkeys(PHASES, "ok"),
            "backup": "skipped",
        }
        assert phases["backup"]["message"] == "no backup hook"

        precheck = phases["precheck"]
        assert precheck["reachable"] and precheck["os_family"] == "Debian"
        assert precheck["free_disk_mb"] >= precheck["min_free_disk_mb"]
        assert precheck["healthy"] is True
        assert check_rows(precheck["checks"]) == ALL_OK

        snapshot = phases["snapshot"]
        assert (snapshot["backend"], snapshot["id"]) == ("package", run_id)
        assert sorted(k["package"] for k in snapshot["kept"]) == sorted(selected)

        patch = phases["patch"]
        assert patch["updates"] == [
            {"package": name, "candidate": "1.1", "before": "1.0", "after": "1.1", "changed": True}
            for name in selected
        ]
        assert patch["extra_changes"] == []
        assert patch["reboot_required"] is True
        assert patch["reboot_required_packages"] == ["demo-kernel"]
        assert "demo-lib 1.0 -> 1.1" in patch["message"]

        reboot = phases["reboot"]
        assert reboot["rebooted"] is True
        assert reboot["mode"] == "if-needed" and reboot["required"] is True
        assert (reboot["predicted"], reboot["pending"]) == (False, False)
        assert reboot["boot_id_before"] == before[host].boot_id
        assert reboot["boot_id_after"] == after[host].boot_id != before[host].boot_id
        assert (reboot["kernel_before"], reboot["kernel_after"]) == ("1.0", "1.1")
        assert on_host(lab_config, index, "cat /run/demo-kernel.running") == "1.1"

        verify = phases["verify"]
        assert verify["failed_checks"] == 0
        assert check_rows(verify["checks"]) == ALL_OK

        assert dict(after[host].packages) == {**dict.fromkeys(selected, "1.1"), "demo-svc": "1.0"}

    ends = [0.0] + [timings[phase] for phase in PHASES]
    spans = [
        f"{p} {end - start:.1f}" for p, start, end in zip(PHASES, ends, ends[1:], strict=False)
    ]
    print(f"batch of 2 hosts, seconds per phase: {', '.join(spans)} (total {ends[-1]:.1f})")


def test_only_the_selected_update_is_installed(
    lab: Path, pristine: None, published: None, run_id: str
) -> None:
    result = patch_batch(lab, run_id, {"host1": ["demo-lib"]})
    assert result.status == "successful"

    patch = outcome(result, "host1", "patch")
    assert patch["updates"] == [
        {
            "package": "demo-lib",
            "candidate": "1.1",
            "before": "1.0",
            "after": "1.1",
            "changed": True,
        }
    ]
    assert patch["extra_changes"] == []
    assert patch["reboot_required"] is False
    assert outcome(result, "host1", "reboot")["rebooted"] is False
    # demo-app 1.1 is available too, and stays uninstalled: nothing beyond the selection
    assert dict(states(lab, "host1")["host1"].packages) == {**ALL_OLD, "demo-lib": "1.1"}


def test_an_update_that_breaks_the_service_fails_verify_on_that_host_only(
    lab: Path, pristine: None, published: None, run_id: str
) -> None:
    result = patch_batch(lab, run_id, {"host1": ["demo-svc"], "host2": ["demo-lib"]})
    assert result.status == "failed"
    assert result.failed() == {"host1"}

    broken = outcome(result, "host1", "verify")
    assert broken["status"] == "failed"
    assert broken["failed_checks"] == 2
    assert check_rows(broken["checks"]) == {**ALL_OK, "http": "failed", "command": "failed"}
    http = next(row for row in broken["checks"] if row["type"] == "http")
    assert "HTTP 500" in http["detail"]
    assert "demo-svc-check" in broken["message"]
    assert outcome(result, "host1", "patch")["updates"][0]["after"] == "1.1"

    healthy = outcome(result, "host2", "verify")
    assert healthy["status"] == "ok"
    assert healthy["failed_checks"] == 0


def test_a_host_unhealthy_before_patching_is_not_patched(
    lab_config: LabConfig, lab: Path, pristine: None, published: None, run_id: str
) -> None:
    on_host(lab_config, 2, "systemctl stop demo-svc")
    result = patch_batch(
        lab,
        run_id,
        {"host2": ["demo-lib", "demo-kernel"]},
        patchkit_precheck_healthy_before=True,  # the default; false patches it anyway (below)
    )

    precheck = outcome(result, "host2", "precheck")
    assert precheck["status"] == "failed"
    assert precheck["healthy"] is False
    assert precheck["message"].startswith("not patched: unhealthy before patching")
    assert check_rows(precheck["checks"]) == dict.fromkeys(ALL_OK, "failed")
    # the host stopped there: no later phase ran, nothing changed
    for phase in PHASES[1:]:
        assert result.task("host2", f"patchkit {phase} result") is None
    assert result.failed() == {"host2"}
    assert dict(states(lab, "host2")["host2"].packages) == ALL_OLD


def test_package_snapshot_keeps_the_installed_debs_of_all_that_would_change(
    lab_config: LabConfig, lab: Path, pristine: None, published: None, run_id: str
) -> None:
    # demo-app 1.1 needs demo-lib 1.1: the snapshot keeps both; the patch then refuses to
    # change demo-lib, which was not selected, so the host stays as it was
    result = patch_batch(lab, run_id, {"host3": ["demo-app"]})

    snapshot = outcome(result, "host3", "snapshot")
    assert snapshot["status"] == "ok"
    assert snapshot["location"] == f"/var/lib/patchkit/snapshots/{run_id}"
    assert snapshot["packages_recorded"] > 100
    installed = dict(states(lab, "host3")["host3"].packages)
    assert installed == ALL_OLD
    kept = {k["package"]: k for k in snapshot["kept"]}
    assert sorted(kept) == ["demo-app", "demo-lib"]
    for name, keep in kept.items():
        assert keep["version"] == installed[name]
        assert deb_fields(lab_config, 3, keep["file"]) == f"{name} {installed[name]}"
    assert recorded_version(lab_config, 3, snapshot["manifest"], "demo-lib") == "1.0"

    patch = outcome(result, "host3", "patch")
    assert patch["status"] == "failed"
    assert "demo-lib 1.0 -> 1.1" in patch["message"]
    assert "not selected" in patch["message"]
    assert patch["updates"][0]["after"] == "1.0"


def test_lab_snapshot_is_named_after_the_run(
    lab_config: LabConfig, lab: Path, pristine: None, published: None
) -> None:
    run = f"roles/{uuid.uuid4().hex[:8]}"
    name = run.replace("/", "-")  # the characters a snapshot name cannot have become '-'
    try:
        result = patch_batch(
            lab,
            run,
            {"host3": ["demo-lib"]},
            patchkit_snapshot_backend="lab",
            patchkit_lab_root=str(lab_config.root),  # as the controller passes it
        )
        snapshot = outcome(result, "host3", "snapshot")
        assert snapshot["status"] == "ok", snapshot["message"]
        assert (snapshot["backend"], snapshot["id"], snapshot["existing"]) == ("lab", name, False)
        assert snapshot["kept"] == []
        assert ("host3", name) in {(s.host, s.name) for s in hosts.snapshots(lab_config)}
        assert outcome(result, "host3", "patch")["status"] == "ok"
    finally:
        if any(s.host == "host3" and s.name == name for s in hosts.snapshots(lab_config)):
            hosts.delete_snapshot(lab_config, 3, name)


def test_bad_settings_fail_before_any_phase(
    lab: Path, pristine: None, published: None, run_id: str
) -> None:
    result = patch_batch(lab, run_id, {"host1": ["demo-lib"]}, patchkit_reboot_policy="sometimes")
    assert result.failed() == {"host1"}
    assert not [t for t in result.tasks if t.task.startswith("patchkit ")]  # no phase ran
    (failure,) = [t for t in result.tasks if t.status == "failed"]
    assert "patchkit_reboot_policy must be one of: if-needed, always, never" in failure.message


def test_a_snapshot_backend_that_is_not_shipped_is_refused(
    lab: Path, pristine: None, published: None, run_id: str
) -> None:
    result = patch_batch(lab, run_id, {"host1": ["demo-lib"]}, patchkit_snapshot_backend="lvm")
    snapshot = outcome(result, "host1", "snapshot")
    assert snapshot["status"] == "failed"
    assert snapshot["message"].startswith("snapshot backend 'lvm' is not shipped")
    assert "package, lab, none" in snapshot["message"]
    assert result.task("host1", "patchkit patch result") is None  # so nothing was patched
    assert states(lab, "host1")["host1"].packages["demo-lib"] == "1.0"


# ---------------------------------------------------------------- backup (on the controller)


def not_patched_after(result: PlaybookResult, host: str, phase: str) -> None:
    """``host`` stopped at ``phase``: no later phase reported, the host failed."""
    for later in PHASES[PHASES.index(phase) + 1 :]:
        assert result.task(host, f"patchkit {later} result") is None, later
    assert host in result.failed()


def test_the_backup_hook_runs_on_the_controller_before_the_snapshot(
    lab_config: LabConfig,
    lab: Path,
    pristine: None,
    published: None,
    run_id: str,
    tmp_path: Path,
) -> None:
    seen = tmp_path / "backup-seen"
    hook = (
        f"env | grep ^PATCHKIT_ | sort > {seen}/$PATCHKIT_HOST.env; "
        f"hostname > {seen}/$PATCHKIT_HOST.where; echo 'dump: 3 tables' >&2"
    )
    seen.mkdir()
    result = patch_batch(
        lab,
        run_id,
        {"host1": ["demo-lib"], "host2": ["demo-lib"]},
        patchkit_backup_command=hook,
        patchkit_backup_timeout=30,
    )
    assert result.status == "successful", [t.message for t in result.tasks if t.status == "failed"]
    for index, host in ((1, "host1"), (2, "host2")):
        backup = outcome(result, host, "backup")
        assert (backup["status"], backup["rc"], backup["timed_out"]) == ("ok", 0, False)
        assert backup["timeout"] == 30 and 0 <= backup["seconds"] < 30
        assert backup["stderr_tail"] == ["dump: 3 tables"]
        assert backup["message"].startswith("backup hook done in ")
        # on the controller, with the host named in its environment
        assert (seen / f"{host}.where").read_text().strip() == socket.gethostname()
        assert (seen / f"{host}.env").read_text().splitlines() == [
            "PATCHKIT_BATCH=1",
            f"PATCHKIT_HOST={host}",
            f"PATCHKIT_HOST_ADDRESS={lab_config.address(index)}",
            f"PATCHKIT_RUN_ID={run_id}",
        ]
        names = [t.task for t in result.for_host(host) if t.task.startswith("patchkit ")]
        assert names == [f"patchkit {phase} result" for phase in PHASES]
        assert outcome(result, host, "patch")["updates"][0]["after"] == "1.1"


def test_a_failing_backup_leaves_its_host_unpatched(
    lab: Path, pristine: None, published: None, run_id: str
) -> None:
    hook = (
        '[ "$PATCHKIT_HOST" != host2 ]'
        ' || { echo "vault: 3 left" >&2; echo "no space" >&2; exit 3; }'
    )
    result = patch_batch(
        lab, run_id, {"host1": ["demo-lib"], "host2": ["demo-lib"]}, patchkit_backup_command=hook
    )
    failed = outcome(result, "host2", "backup")
    assert (failed["status"], failed["rc"], failed["timed_out"]) == ("failed", 3, False)
    assert failed["stderr_tail"] == ["vault: 3 left", "no space"]
    assert failed["message"].startswith("not patched: the backup hook failed (exit 3 after ")
    assert failed["message"].endswith("): vault: 3 left | no space")
    not_patched_after(result, "host2", "backup")
    assert outcome(result, "host1", "verify")["status"] == "ok"  # the other host went on
    after = states(lab, "host1,host2")
    assert (after["host1"].packages["demo-lib"], after["host2"].packages["demo-lib"]) == (
        "1.1",
        "1.0",
    )


def processes_mentioning(text: str) -> list[str]:
    """Command lines of the controller's processes that contain ``text``."""
    found = []
    for proc in Path("/proc").glob("[0-9]*"):
        try:
            line = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:  # gone meanwhile
            continue
        if text in line:
            found.append(line)
    return found


def test_a_backup_out_of_time_is_stopped_and_leaves_the_host_unpatched(
    lab: Path, pristine: None, published: None, run_id: str, tmp_path: Path
) -> None:
    late = tmp_path / "finished"
    # the hook ignores SIGTERM: only the SIGKILL that follows it 10 s later stops it
    hook = f"trap '' TERM; echo 'copying' >&2; sleep 40; touch {late}"
    started = time.monotonic()
    result = patch_batch(
        lab,
        run_id,
        {"host3": ["demo-lib"]},
        patchkit_backup_command=hook,
        patchkit_backup_timeout=3,
    )
    took = time.monotonic() - started
    backup = outcome(result, "host3", "backup")
    assert (backup["status"], backup["timed_out"]) == ("failed", True)
    assert backup["message"] == "not patched: the backup hook timed out after 3 s: copying"
    assert 3 <= backup["seconds"] < 20 and took < 40
    not_patched_after(result, "host3", "backup")
    assert states(lab, "host3")["host3"].packages["demo-lib"] == "1.0"
    assert not processes_mentioning(str(late))  # the hook was killed, not left running


# ---------------------------------------------------------------- reboot decisions per host


def reboots(result: PlaybookResult, host: str) -> tuple[str, bool, bool, bool, str]:
    """mode, rebooted, required, pending, message of the host's reboot phase (status ok)."""
    reboot = outcome(result, host, "reboot")
    assert reboot["status"] == "ok", reboot["message"]
    assert reboot["rebooted"] == (reboot["boot_id_before"] != reboot["boot_id_after"])
    return (
        reboot["mode"],
        reboot["rebooted"],
        reboot["required"],
        reboot["pending"],
        reboot["message"],
    )


def test_each_host_reboots_as_its_mode_says(
    lab: Path, pristine: None, published: None, run_id: str
) -> None:
    # demo-lib asks for no reboot, demo-kernel does (/run/reboot-required)
    result = patch_batch(
        lab,
        run_id,
        {"host1": ["demo-lib"], "host2": ["demo-kernel"], "host3": ["demo-kernel"]},
        patchkit_reboot_by_host={
            "host1": {"mode": "always", "predicted": False},
            "host2": {"mode": "held", "predicted": True},
            "host3": {"mode": "never", "predicted": True},
        },
    )
    assert result.status == "successful"
    assert reboots(result, "host1")[:4] == ("always", True, False, False)
    held = reboots(result, "host2")
    assert held == ("held", False, True, True, "reboot pending: downtime not approved")
    never = reboots(result, "host3")
    assert never == ("never", False, True, True, "reboot pending (policy: never)")
    assert outcome(result, "host2", "reboot")["predicted"] is True


def test_if_needed_reboots_on_the_plans_prediction_too(
    lab: Path, pristine: None, published: None, run_id: str
) -> None:
    result = patch_batch(
        lab,
        run_id,
        {"host1": ["demo-lib"], "host2": ["demo-lib"], "host3": ["demo-kernel"]},
        patchkit_reboot_by_host={
            "host1": {"mode": "if-needed", "predicted": True},
            "host2": {"mode": "if-needed", "predicted": False},
        },  # host3 has no entry: patchkit_reboot_policy (if-needed) and its flag decide
    )
    assert result.status == "successful"
    predicted = reboots(result, "host1")
    assert predicted[:4] == ("if-needed", True, False, False)
    assert "the plan predicted the reboot" in predicted[4]
    assert reboots(result, "host2") == (
        "if-needed",
        False,
        False,
        False,
        "not rebooted: no reboot required",
    )
    assert reboots(result, "host3")[:4] == ("if-needed", True, True, False)
    assert outcome(result, "host3", "reboot")["predicted"] is False


def test_a_bad_reboot_mode_fails_before_any_phase(
    lab: Path, pristine: None, published: None, run_id: str
) -> None:
    result = patch_batch(
        lab, run_id, {"host1": ["demo-lib"]}, patchkit_reboot_by_host={"host1": {"mode": "later"}}
    )
    assert result.failed() == {"host1"}
    assert not [t for t in result.tasks if t.task.startswith("patchkit ")]
    (failure,) = [t for t in result.tasks if t.status == "failed"]
    assert "always, if-needed, never, held" in failure.message, failure.message


def test_reboot_first_waits_only_as_long_as_the_reboot_timeout(
    lab_config: LabConfig, lab: Path, pristine: None, published: None, run_id: str
) -> None:
    on_host(lab_config, 1, "touch /run/reboot-required")
    hosts.set_boot_delay(lab_config, 1, 60)  # it comes back long after the reboot timeout
    started = time.monotonic()
    result = patch_batch(
        lab,
        run_id,
        {"host1": ["demo-lib"]},
        patchkit_precheck_pending_reboot="reboot-first",
        patchkit_reboot_timeout=15,
    )
    took = time.monotonic() - started
    precheck = outcome(result, "host1", "precheck")
    assert precheck["status"] == "failed" and precheck["pending_reboot_action"] == "rebooted"
    assert precheck["message"].endswith("(timeout=15)"), precheck["message"]
    assert took < 60  # the default 600 s would have waited for the host to come back
    not_patched_after(result, "host1", "precheck")


# ---------------------------------------------------------------- precheck settings


def free_disk_mb(config: LabConfig, index: int) -> int:
    """MiB free on the host's / (what the precheck measures)."""
    return int(on_host(config, index, "df --output=avail --block-size=1M /").split()[-1])


def test_min_free_disk_and_skip_host_stop_a_host_before_anything_changes(
    lab_config: LabConfig, lab: Path, pristine: None, published: None, run_id: str
) -> None:
    needed = free_disk_mb(lab_config, 1) + 1024
    short = patch_batch(
        lab, run_id, {"host1": ["demo-lib"]}, patchkit_precheck_min_free_disk_mb=needed
    )
    precheck = outcome(short, "host1", "precheck")
    assert precheck["status"] == "failed"
    assert precheck["min_free_disk_mb"] == needed > precheck["free_disk_mb"]
    assert (
        precheck["message"] == f"only {precheck['free_disk_mb']} MB free on /, {needed} MB needed"
    )
    not_patched_after(short, "host1", "precheck")

    # skip-host: a host already waiting for a reboot is left out, and that is no failure
    on_host(lab_config, 2, "touch /run/reboot-required")
    skipped = patch_batch(
        lab, run_id, {"host2": ["demo-lib"]}, patchkit_precheck_pending_reboot="skip-host"
    )
    precheck = outcome(skipped, "host2", "precheck")
    assert precheck["status"] == precheck["pending_reboot_action"] == "skipped"
    assert precheck["reboot_pending"] is True
    assert precheck["message"].startswith("not patched: a reboot is pending")
    for phase in PHASES[1:]:
        assert skipped.task("host2", f"patchkit {phase} result") is None, phase
    assert skipped.status == "successful" and not skipped.failed()

    after = states(lab, "host1,host2")
    assert after["host1"].packages["demo-lib"] == after["host2"].packages["demo-lib"] == "1.0"


def test_note_and_healthy_before_false_patch_a_host_the_other_values_would_stop(
    lab_config: LabConfig, lab: Path, pristine: None, published: None, run_id: str
) -> None:
    on_host(lab_config, 1, "touch /run/reboot-required")  # skip-host would leave it (above)
    on_host(lab_config, 2, "systemctl stop demo-svc")  # healthy_before true would not patch it
    unit = [{"type": "systemd", "unit": "demo-svc.service"}]  # one failing check: a short verify
    result = patch_batch(
        lab,
        run_id,
        {"host1": ["demo-lib"], "host2": ["demo-lib"]},
        patchkit_checks_by_host={"host1": CHECKS, "host2": unit},
        patchkit_precheck_pending_reboot="note",
        patchkit_precheck_healthy_before=False,
        patchkit_reboot_policy="never",  # no reboot needed to show this: a shorter test
    )

    noted = outcome(result, "host1", "precheck")
    assert noted["status"] == "ok"
    assert (noted["reboot_pending"], noted["pending_reboot_action"]) == (True, "noted")
    assert "a reboot was already pending (noted)" in noted["message"]
    assert outcome(result, "host1", "patch")["updates"][0]["after"] == "1.1"
    # the flag noted before patching is still there after it (reboot policy never keeps it)
    assert reboots(result, "host1")[1:] == (False, True, True, "reboot pending (policy: never)")
    assert outcome(result, "host1", "verify")["status"] == "ok"

    unchecked = outcome(result, "host2", "precheck")
    assert (unchecked["status"], unchecked["healthy"], unchecked["checks"]) == ("ok", None, [])
    assert unchecked["message"].endswith("no health checks run")
    assert outcome(result, "host2", "patch")["updates"][0]["after"] == "1.1"
    # the checks skipped before patching still judge the host after it
    verify = outcome(result, "host2", "verify")
    assert (verify["status"], verify["failed_checks"]) == ("failed", 1)
    assert result.failed() == {"host2"}

    after = states(lab, "host1,host2")
    assert after["host1"].packages["demo-lib"] == after["host2"].packages["demo-lib"] == "1.1"


# ---------------------------------------------------------------- check fields away from defaults

PORT = 8099


def probes(address: str, *, tcp_host: str, status: int, exit_code: int) -> list[dict[str, Any]]:
    """A check of each kind but systemd, on a listener at ``address`` only, that answers 404 to
    /missing; the three fields given in full, as the controller passes them."""
    return [
        {"type": "tcp", "port": PORT, "host": tcp_host},
        {"type": "http", "url": f"http://{address}:{PORT}/missing", "status": status},
        {"type": "command", "command": "sh -c 'exit 3'", "exit_code": exit_code},
    ]


def listen(config: LabConfig, index: int, address: str) -> None:
    """An HTTP server on the host at ``address`` only, serving the empty /srv, until the host is
    restored. (Not ``python3 -m http.server``: it looks up the address's name before listening,
    and the lab has no DNS to answer.)"""
    server = (
        "import http.server as h, socketserver as s; "
        f"s.TCPServer(({address!r}, {PORT}), h.SimpleHTTPRequestHandler).serve_forever()"
    )
    on_host(
        config,
        index,
        f"systemd-run --unit=patchkit-test-listener --working-directory=/srv"
        f" python3 -c {shlex.quote(server)}"
        f" && timeout 10 sh -c 'until ss -Htln | grep -q {address}:{PORT}; do sleep 0.2; done'",
    )


def test_check_fields_away_from_their_defaults_decide_health(
    lab_config: LabConfig, lab: Path, pristine: None, published: None, run_id: str
) -> None:
    first, second = str(lab_config.address(1)), str(lab_config.address(2))
    for index, address in ((1, first), (2, second)):
        listen(lab_config, index, address)
    result = patch_batch(
        lab,
        run_id,
        {"host1": ["demo-lib"], "host2": ["demo-lib"]},
        patchkit_checks_by_host={
            "host1": probes(first, tcp_host=first, status=404, exit_code=3),
            "host2": probes(second, tcp_host="127.0.0.1", status=200, exit_code=0),  # defaults
        },
    )

    healthy = outcome(result, "host1", "precheck")
    assert healthy["healthy"] is True, healthy["message"]
    for phase in ("precheck", "verify"):
        rows = outcome(result, "host1", phase)["checks"]
        assert check_rows(rows) == {"tcp": "ok", "http": "ok", "command": "ok"}, rows
        assert rows[0]["target"] == f"{first}:{PORT}"
        assert [row["detail"] for row in rows][1:] == [
            "HTTP 404 (expected 404)",
            "exit 3 (expected 3)",
        ]
    assert outcome(result, "host1", "patch")["updates"][0]["after"] == "1.1"

    unhealthy = outcome(result, "host2", "precheck")
    assert (unhealthy["status"], unhealthy["healthy"]) == ("failed", False)
    rows = unhealthy["checks"]
    assert check_rows(rows) == {"tcp": "failed", "http": "failed", "command": "failed"}, rows
    assert rows[0]["target"] == f"127.0.0.1:{PORT}"
    assert [row["detail"] for row in rows][1:] == ["HTTP 404 (expected 200)", "exit 3 (expected 0)"]
    not_patched_after(result, "host2", "precheck")
    assert states(lab, "host2")["host2"].packages["demo-lib"] == "1.0"


# ---------------------------------------------------------------- rollback's own reboot


def test_rollback_reboots_by_its_own_rule_whatever_the_windows_settings(
    lab: Path, pristine: None, published: None, run_id: str
) -> None:
    patched = patch_batch(lab, run_id, {"host2": ["demo-lib"]})
    assert outcome(patched, "host2", "patch")["status"] == "ok"
    result = run_playbook(
        content.playbook("rollback.yml"),
        lab,
        limit="host2",
        extravars={
            "patchkit_rollback_by_host": {
                "host2": {
                    "backend": "package",
                    "snapshot_id": run_id,
                    "changes": [{"package": "demo-lib", "before": "1.0", "after": "1.1"}],
                }
            },
            "patchkit_checks_by_host": {"host2": CHECKS},
            # the patch window's settings, which the controller passes to rollback.yml too
            "patchkit_reboot_policy": "always",
            "patchkit_reboot_by_host": {"host2": {"mode": "always", "predicted": True}},
            "patchkit_reboot_timeout": 120,
        },
        timeout=600,
    )
    assert result.status == "successful", [t.message for t in result.tasks if t.status == "failed"]
    rolled = result.task("host2", "patchkit rollback result")
    assert rolled is not None and rolled.result["msg"]["status"] == "ok"
    # a package rollback reboots only when the host asks: demo-lib 1.0 does not
    reboot = outcome(result, "host2", "reboot")
    assert (reboot["mode"], reboot["predicted"], reboot["rebooted"]) == ("if-needed", False, False)
    assert reboot["policy"] == "always"  # the window's policy, shown, not applied
    assert states(lab, "host2")["host2"].packages["demo-lib"] == "1.0"


@pytest.fixture(autouse=True)
def _no_stray_lab_snapshots(lab_config: LabConfig) -> Iterator[None]:
    """The tests leave no snapshot of theirs behind (pristine deletes its own)."""
    yield
    assert not [s for s in hosts.snapshots(lab_config) if s.name.startswith("roles")]
