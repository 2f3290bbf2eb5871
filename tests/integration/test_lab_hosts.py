"""Integration: Ansible (through ansible-runner) against the real hosts of the test lab."""

from __future__ import annotations

from pathlib import Path

from patchkit.lab import hosts, lifecycle
from patchkit.lab.config import LabConfig

from .conftest import TEST_HOSTS, on_host, play, states


def test_runner_reaches_every_host(lab: Path) -> None:
    result = play("ping.yml", lab)
    assert result.status == "successful"
    assert sorted(result.hosts) == [f"host{i}" for i in range(1, TEST_HOSTS + 1)]
    assert all(t.result.get("ping") == "pong" for t in result.tasks)


def test_package_facts_show_installed_demo_versions(lab: Path) -> None:
    rows = states(lab)
    assert len(rows) == TEST_HOSTS
    assert all(row.reachable for row in rows.values())
    assert len({row.boot_id for row in rows.values()}) == TEST_HOSTS  # separate machines
    for row in rows.values():
        assert dict(row.packages) == {
            "demo-app": "1.0", "demo-kernel": "1.0", "demo-lib": "1.0", "demo-svc": "1.0"
        }  # fmt: skip


def test_hosts_are_separate_systems(lab_config: LabConfig, lab: Path) -> None:
    assert on_host(lab_config, 2, "hostname") == "host2"
    assert on_host(lab_config, 2, "ps -p 1 -o comm=") == "systemd"
    address = f"{lab_config.address(2)}/{lab_config.subnet.prefixlen}"  # e.g. 10.77.1.12/24
    assert on_host(lab_config, 2, "ip -4 -o addr show eth0").split()[3] == address
    uptime = float(on_host(lab_config, 2, "cut -d' ' -f1 /proc/uptime"))
    assert uptime < 24 * 3600  # per-host uptime from lxcfs, not the controller's


def test_apt_upgrade_installs_the_update(lab_config: LabConfig, lab: Path, pristine: None) -> None:
    result = play("upgrade.yml", lab, limit="host1", package="demo-app")
    assert result.status == "successful"
    upgrade = result.task("host1", "Upgrade the package")
    assert upgrade is not None and upgrade.status == "changed"
    after = states(lab)
    # demo-app 1.1 depends on demo-lib >= 1.1, so apt brings the library along.
    assert after["host1"].packages["demo-app"] == "1.1"
    assert after["host1"].packages["demo-lib"] == "1.1"
    assert after["host2"].packages["demo-app"] == "1.0"  # the limit held
    assert on_host(lab_config, 1, "demo-app") == "demo-app 1.1 (demo-lib 1.1)"


def test_updates_come_from_two_origins(lab_config: LabConfig, lab: Path) -> None:
    on_host(lab_config, 3, "apt-get update -qq")
    simulated = on_host(lab_config, 3, "apt-get -s dist-upgrade | grep ^Inst")
    lines = {line.split()[1]: line for line in simulated.splitlines()}
    assert set(lines) == {"demo-lib", "demo-app", "demo-kernel", "demo-svc"}
    assert ":lab-security " in lines["demo-lib"]
    assert ":lab-security " in lines["demo-kernel"]
    assert ":lab-updates " in lines["demo-app"]
    assert ":lab-updates " in lines["demo-svc"]


def test_withdrawn_updates_are_not_offered(lab_config: LabConfig, lab: Path) -> None:
    lifecycle.set_updates(lab_config, "demo-svc", publish=False)
    try:
        on_host(lab_config, 3, "apt-get update -qq")
        simulated = on_host(lab_config, 3, "apt-get -s dist-upgrade | grep ^Inst || true")
        assert "demo-svc" not in simulated
        assert "demo-lib" in simulated
    finally:
        lifecycle.set_updates(lab_config, "demo-svc", publish=True)
    on_host(lab_config, 3, "apt-get update -qq")
    assert "demo-svc" in on_host(lab_config, 3, "apt-get -s dist-upgrade | grep ^Inst")


def test_reboot_gives_a_new_boot_id(lab_config: LabConfig, lab: Path) -> None:
    before = states(lab, "host2")["host2"].boot_id
    result = play("reboot.yml", lab, limit="host2")
    reboot = result.task("host2", "Reboot")
    assert reboot is not None and reboot.status == "changed"
    assert reboot.result["rebooted"] is True
    after = states(lab, "host2")["host2"].boot_id
    assert after and after != before


def test_kernel_update_asks_for_reboot_and_runs_after_it(
    lab_config: LabConfig, lab: Path, pristine: None
) -> None:
    play("upgrade.yml", lab, limit="host3", package="demo-kernel")
    assert on_host(lab_config, 3, "cat /run/demo-kernel.running") == "1.0"
    assert on_host(lab_config, 3, "cat /run/reboot-required.pkgs") == "demo-kernel"
    play("reboot.yml", lab, limit="host3")
    assert on_host(lab_config, 3, "cat /run/demo-kernel.running") == "1.1"
    assert on_host(lab_config, 3, "test -e /run/reboot-required || echo cleared") == "cleared"


def test_service_update_breaks_its_health_check(
    lab_config: LabConfig, lab: Path, pristine: None
) -> None:
    assert on_host(lab_config, 1, "demo-svc-check && echo healthy") == "healthy"
    play("upgrade.yml", lab, limit="host1", package="demo-svc")
    assert on_host(lab_config, 1, "demo-svc-check || echo broken").endswith("broken")


def test_snapshot_restore_undoes_a_change(lab_config: LabConfig, lab: Path) -> None:
    hosts.snapshot(lab_config, 2, "before-change")
    try:
        assert "host2@before-change" in lifecycle.status(lab_config).snapshots
        on_host(lab_config, 2, "echo changed > /root/marker && apt-get update -qq")
        on_host(lab_config, 2, "apt-get install -y -qq demo-lib >/dev/null")
        boot_before = states(lab, "host2")["host2"].boot_id
        hosts.restore(lab_config, 2, "before-change")
        assert on_host(lab_config, 2, "test -e /root/marker || echo gone") == "gone"
        row = states(lab, "host2")["host2"]
        assert row.packages["demo-lib"] == "1.0"
        assert row.boot_id != boot_before  # restored disk, booted again
    finally:
        hosts.delete_snapshot(lab_config, 2, "before-change")
    assert "host2@before-change" not in lifecycle.status(lab_config).snapshots


def test_no_boot_host_is_reported_unreachable(lab_config: LabConfig, lab: Path) -> None:
    hosts.set_no_boot(lab_config, 3)
    try:
        result = play("reboot.yml", lab, limit="host3", timeout=15)
        reboot = result.task("host3", "Reboot")
        assert reboot is not None and reboot.status in ("failed", "unreachable")
        assert not hosts.running(lab_config, 3)
        row = states(lab, "host3")["host3"]
        assert not row.reachable
        assert row.message  # the reason Ansible gave
        assert states(lab, "host1")["host1"].reachable  # only host3 is down
    finally:
        hosts.start(lab_config, 3)
        hosts.wait_ssh(lab_config, [3])
    assert states(lab, "host3")["host3"].reachable


def test_pulled_cable_makes_host_unreachable(lab_config: LabConfig, lab: Path) -> None:
    hosts.set_network(lab_config, 1, up=False)
    try:
        row = states(lab, "host1")["host1"]
        assert not row.reachable
        assert hosts.running(lab_config, 1)  # powered on, only cut off
    finally:
        hosts.set_network(lab_config, 1, up=True)
    assert states(lab, "host1")["host1"].reachable


def test_hard_reset_boots_the_host_again(lab_config: LabConfig, lab: Path) -> None:
    before = states(lab, "host2")["host2"].boot_id
    hosts.hard_reset(lab_config, 2)
    hosts.wait_ssh(lab_config, [2])
    assert states(lab, "host2")["host2"].boot_id != before


def test_boot_delay_keeps_host_off_for_a_while(lab_config: LabConfig, lab: Path) -> None:
    hosts.set_boot_delay(lab_config, 2, 8)
    try:
        result = play("reboot.yml", lab, limit="host2")
        reboot = result.task("host2", "Reboot")
        assert reboot is not None and reboot.status == "changed"
        assert reboot.result["elapsed"] >= 8
    finally:
        hosts.clear_faults(lab_config, 2)
