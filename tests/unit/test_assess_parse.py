"""Unit: apt's simulation output and the assess playbook's results become Findings.

The data files are apt's own output, captured:
- apt-sim-lab.txt: a lab host with every demo update published (apt 2.6, ``-V``);
- apt-sim-lab-mixed.txt / -plain.txt: a lab host given extra local repositories to show what the
  demo packages cannot: a new install, a removal, a held package kept back, an epoch, a label
  with a space, one version in two origins, a repository without a Release file (with and
  without ``-V``);
- apt-sim-lab-none.txt: nothing pending;
- apt-sim-debian12-oldstable.txt: a real Debian 12 machine against the Debian mirrors (124
  updates from point release and security, 20 of them in both);
- apt-sim-debian12-point.txt: written by hand in apt's format (pkgSimulate::Describe) for what
  none of the machines had: a new kernel ABI package, a foreign-architecture package
  (``libssl3:i386``), stable-updates, and held packages of a real fleet.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import yaml

from patchkit.assess import (
    RESULT_TASK,
    FindingCollector,
    SimulationError,
    choose_origin,
    failure_message,
    finding_from_report,
    parse_simulation,
    read_simulation,
    suite_of,
)
from patchkit.execution.runner import TaskResult
from patchkit.model import PendingUpdate

DATA = Path(__file__).parent / "data"
AT = datetime(2026, 11, 20, 8, 15, tzinfo=UTC)


def sample(name: str) -> str:
    return (DATA / f"apt-sim-{name}.txt").read_text()


def test_lab_output_gives_the_four_demo_updates_with_their_origins() -> None:
    updates = parse_simulation(sample("lab"))
    assert updates == (
        PendingUpdate("demo-app", "1.0", "1.1", "lab-updates"),
        PendingUpdate("demo-kernel", "1.0", "1.1", "lab-security"),
        PendingUpdate("demo-lib", "1.0", "1.1", "lab-security"),
        PendingUpdate("demo-svc", "1.0", "1.1", "lab-updates"),
    )


def test_first_seen_is_stamped_on_every_update() -> None:
    assert {u.first_seen for u in parse_simulation(sample("lab"), first_seen=AT)} == {AT}


def test_nothing_pending() -> None:
    simulation = read_simulation(sample("lab-none"))
    assert simulation.updates == ()
    assert simulation.removals == ()
    assert simulation.kept_back == ()


@pytest.mark.parametrize("name", ["lab-mixed", "lab-mixed-plain"])
def test_new_installs_removals_and_kept_back(name: str) -> None:
    simulation = read_simulation(sample(name))
    by_name = {u.package: u for u in simulation.updates}
    # a new dependency: no installed version
    assert by_name["extra-new"] == PendingUpdate("extra-new", None, "1.0", "3.1/extra-stable")
    # the label "Example Extra" has a space; the origin is the suite part
    assert by_name["extra-app"].origin == "3.1/extra-stable"
    # epochs stay in the version
    assert (by_name["extra-tool"].installed, by_name["extra-tool"].candidate) == (
        "1:2.0-1",
        "1:2.1-1",
    )
    # the same version in two origins: the security one names it
    assert by_name["extra-tool"].origin == "extra-security"
    # a repository without a Release file
    assert by_name["norel-pkg"].origin == "localhost"
    # a held package is not pending for this upgrade, and Conf lines do not double anything
    assert "extra-held" not in by_name
    assert len(simulation.updates) == 8
    assert simulation.removals == ("extra-old",)
    assert simulation.kept_back == ("extra-held",)
    assert [u.package for u in simulation.updates] == sorted(by_name)


def test_real_debian_output() -> None:
    text = sample("debian12-oldstable")
    updates = parse_simulation(text)
    inst_lines = [line for line in text.splitlines() if line.startswith("Inst ")]
    assert len(updates) == len(inst_lines) == 124
    by_name = {u.package: u for u in updates}
    assert by_name["openssl"] == PendingUpdate(
        "openssl", "3.0.19-1~deb12u2", "3.0.22-1~deb12u2", "12/oldstable-security"
    )
    assert by_name["base-files"].origin == "12.15/oldstable"
    assert by_name["login"].installed == "1:4.13+dfsg1-1+deb12u1"
    # listed as "Debian:12.15/oldstable, Debian-Security:12/oldstable-security"
    assert by_name["libgnutls30"].origin == "12/oldstable-security"
    # trailing notes on dependencies ("[perl:amd64 ]", "[]") are not part of anything
    assert by_name["libperl5.36"].candidate == "5.36.0-7+deb12u4"
    assert {u.origin for u in updates} == {"12/oldstable-security", "12.15/oldstable"}


def test_hand_written_debian_sample() -> None:
    simulation = read_simulation(sample("debian12-point"))
    by_name = {u.package: u for u in simulation.updates}
    assert by_name["linux-image-6.1.0-18-amd64"] == PendingUpdate(
        "linux-image-6.1.0-18-amd64", None, "6.1.76-1", "12/stable-security"
    )
    assert by_name["libssl3:i386"].origin == "12/stable-security"
    assert by_name["libssl3:i386"].key == "libssl3:i386=3.0.11-1~deb12u2"
    assert by_name["tzdata"].origin == "12-updates/stable-updates"
    assert by_name["curl"].origin == "12.5/stable"
    assert simulation.kept_back == ("nginx", "nginx-common")
    assert len(simulation.updates) == 11


@pytest.mark.parametrize(
    "origin, suite",
    [
        ("Debian-Security:12/stable-security", "12/stable-security"),
        ("patchkit-lab-security:lab-security", "lab-security"),
        ("Example Extra:3.1/extra-stable", "3.1/extra-stable"),
        ("Docker CE:bookworm", "bookworm"),
        ("localhost", "localhost"),
        ("lab-updates", "lab-updates"),
    ],
)
def test_suite_of(origin: str, suite: str) -> None:
    assert suite_of(origin) == suite


def test_choose_origin_prefers_security_else_first() -> None:
    assert choose_origin(["Debian:12.5/stable", "Debian-Security:12/stable-security"]) == (
        "12/stable-security"
    )
    assert choose_origin(["Debian:12.5/stable", "Debian:12-updates/stable-updates"]) == (
        "12.5/stable"
    )
    assert choose_origin([""]) == ""


def test_inst_line_variants() -> None:
    text = "\n".join(
        [
            # no origin at all (RelStr empty): apt prints two spaces before the architecture
            "Inst local-only [0.9] (1.0  [amd64])",
            # broken-dependency notes after the description
            "Inst libpam-modules-bin [1.5.2-6+deb12u1] (1.5.2-6+deb12u2 Debian:12.15/oldstable"
            " [amd64]) [libpam-modules:amd64 on libpam-modules-bin:amd64] [libpam-modules:amd64 ]",
            "Conf local-only broken",
            " Depends:libc6",
            "Remv old-thing [1.0]",
            "Purg older-thing [2.0] [dependent:amd64 ]",
        ]
    )
    simulation = read_simulation(text)
    assert simulation.updates == (
        PendingUpdate(
            "libpam-modules-bin", "1.5.2-6+deb12u1", "1.5.2-6+deb12u2", "12.15/oldstable"
        ),
        PendingUpdate("local-only", "0.9", "1.0", ""),
    )
    assert simulation.removals == ("old-thing", "older-thing")


def test_apt_3_titles_for_kept_back() -> None:
    text = "Not upgrading:\n  nginx nginx-common\n\nSummary:\n  Upgrading: 0\n"
    assert read_simulation(text).kept_back == ("nginx", "nginx-common")
    phased = (
        "The following upgrades have been deferred due to phasing:\n"
        "   systemd (255.4-1ubuntu8 => 255.4-1ubuntu8.1)\n"
    )
    assert read_simulation(phased).kept_back == ("systemd",)


def test_an_unreadable_inst_line_is_an_error_not_a_dropped_update() -> None:
    with pytest.raises(SimulationError, match="line 2"):
        read_simulation("Calculating upgrade...\nInst demo-lib [1.0] (garbled\n")


# ---------------------------------------------------------------- playbook results


def report(**overrides: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "format": 1,
        "os_family": "Debian",
        "manager": "apt",
        "refreshed": True,
        "refresh_rc": 0,
        "refresh_errors": [],
        "simulation": sample("lab"),
        "reboot_required": False,
    }
    return {**base, **overrides}


def task(
    host: str, name: str, status: str = "ok", action: str = "ansible.builtin.debug", **res: Any
) -> TaskResult:
    return TaskResult(host=host, task=name, action=action, status=status, result=res)


def test_finding_from_a_report() -> None:
    finding = finding_from_report("host1", report(reboot_required=True), AT)
    assert finding.reachable
    assert finding.reboot_pending
    assert finding.assessed_at == AT
    assert [u.package for u in finding.updates] == [
        "demo-app",
        "demo-kernel",
        "demo-lib",
        "demo-svc",
    ]
    assert finding.message == ""


def test_a_failed_refresh_is_assessed_with_a_warning() -> None:
    errors = ["E: Failed to fetch http://10.77.4.1:8080/nothere/./Packages  404  File not found"]
    finding = finding_from_report(
        "host1", report(refreshed=False, refresh_rc=100, refresh_errors=errors), AT
    )
    assert finding.reachable
    assert len(finding.updates) == 4
    assert "not refreshed (apt-get update exit 100: E: Failed to fetch" in finding.message


def test_a_skipped_refresh_is_not_a_warning() -> None:
    finding = finding_from_report("host1", report(refreshed=False, refresh_rc=None), AT)
    assert finding.reachable
    assert finding.message == ""


def test_a_report_this_version_cannot_read() -> None:
    finding = finding_from_report("host1", report(format=3), AT)
    assert not finding.reachable
    assert "format 3" in finding.message
    assert "reads formats 1 and 2 from apt" in finding.message
    finding = finding_from_report("host1", report(format=2, manager="dnf"), AT)
    assert not finding.reachable
    assert "format 2" in finding.message
    assert "'dnf'" in finding.message


def test_a_reboot_flag_must_be_a_real_true() -> None:
    assert not finding_from_report("host1", report(reboot_required="False"), AT).reboot_pending


def test_failure_messages() -> None:
    unreachable = task(
        "host2",
        "Read the OS family",
        "unreachable",
        msg="Task failed: Data could not be sent to remote host\nssh: connect to host"
        " 10.77.4.12 port 22: Connection timed out",
    )
    assert failure_message(unreachable) == (
        "unreachable: Task failed: Data could not be sent to remote host | ssh: connect to host"
        " 10.77.4.12 port 22: Connection timed out"
    )
    failed = task(
        "host3",
        "Simulate the upgrade",
        "failed",
        msg="non-zero return code",
        rc=100,
        stderr="E: dpkg was interrupted, you must manually run 'dpkg --configure -a' to correct"
        " the problem. \n",
    )
    assert failure_message(failed) == (
        "failed at 'Simulate the upgrade': non-zero return code (exit 100): E: dpkg was"
        " interrupted, you must manually run 'dpkg --configure -a' to correct the problem."
    )


def test_collector_gives_one_finding_per_host_in_natural_order() -> None:
    collector = FindingCollector(AT)
    decided = [
        collector.add(task("host10", "Read the OS family", action="ansible.builtin.setup")),
        collector.add(task("host10", RESULT_TASK, msg=report())),
        collector.add(task("host2", "Read the OS family", "unreachable", msg="timed out")),
        collector.add(task("host3", "Read the OS family", action="ansible.builtin.setup")),
        collector.add(
            task("host4", "Refuse an OS family patchkit cannot assess yet", "failed", msg="no")
        ),
    ]
    assert [f.host if f else None for f in decided] == [None, "host10", "host2", None, "host4"]
    late = collector.finish("timeout")
    assert [(f.host, f.reachable, f.message) for f in late] == [
        ("host3", False, "no result from the assess playbook (run timeout)")
    ]
    found = collector.findings()
    assert [f.host for f in found] == ["host2", "host3", "host4", "host10"]
    assert [f.reachable for f in found] == [False, False, False, True]
    assert found[2].message == "failed at 'Refuse an OS family patchkit cannot assess yet': no"


def test_collector_keeps_the_first_decision() -> None:
    collector = FindingCollector(AT)
    assert collector.add(task("host1", "Simulate the upgrade", "failed", msg="boom")) is not None
    assert collector.add(task("host1", RESULT_TASK, msg=report())) is None
    assert not collector.findings()[0].reachable


def test_the_playbook_reports_through_the_task_this_module_reads() -> None:
    playbook = Path(__file__).parents[2] / "playbooks" / "assess.yml"
    (play,) = yaml.safe_load(playbook.read_text())

    def tasks(items: list[dict[str, Any]]) -> list[dict[str, Any]]:
        out = []
        for item in items:
            out.append(item)
            out.extend(tasks(item.get("block", [])))
        return out

    every = tasks(play["tasks"])
    assert [t["name"] for t in every].count(RESULT_TASK) == 1
    modules = {k for t in every for k in t if "." in k}
    assert modules and all(m.startswith("ansible.builtin.") for m in modules)
    # the host-side commands must run under --check
    commands = [t for t in every if "ansible.builtin.command" in t]
    assert commands and all(t["check_mode"] is False for t in commands)
