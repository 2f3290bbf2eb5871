"""Integration: assess real lab hosts in check mode; it reports what is pending, changes nothing."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from patchkit import findings
from patchkit.assess import assess, read_packages
from patchkit.lab import hosts, lifecycle
from patchkit.lab.config import LabConfig
from patchkit.ledger import Ledger
from patchkit.model import Finding, InstalledPackage

from .conftest import POLICY, TEST_HOSTS, on_host, patchkit_cli, states

DEMO_ORIGINS = {
    "demo-app": "lab-updates",
    "demo-kernel": "lab-security",
    "demo-lib": "lab-security",
    "demo-svc": "lab-updates",
}
NAMES = [f"host{i}" for i in range(1, TEST_HOSTS + 1)]


@pytest.fixture
def published(lab_config: LabConfig, lab: Path) -> Iterator[None]:
    """Every demo update published, before and after the test (whatever the test withdraws)."""
    lifecycle.set_updates(lab_config, "demo-*", publish=True)
    try:
        yield
    finally:
        lifecycle.set_updates(lab_config, "demo-*", publish=True)


def pending(finding: Finding) -> dict[str, tuple[str | None, str, str]]:
    return {u.package: (u.installed, u.candidate, u.origin) for u in finding.updates}


def test_assess_reports_every_demo_update_and_changes_nothing(lab: Path, published: None) -> None:
    before = states(lab)
    at = datetime.now(UTC)
    seen: list[str] = []
    started = time.monotonic()
    found = assess(lab, limit=None, at=at, on_host=lambda f: seen.append(f.host))
    elapsed = time.monotonic() - started
    after = states(lab)

    assert [f.host for f in found] == NAMES
    assert sorted(seen) == NAMES
    for finding in found:
        assert finding.reachable, finding.message
        assert finding.assessed_at == at
        assert finding.message == ""
        assert pending(finding) == {
            name: ("1.0", "1.1", origin) for name, origin in DEMO_ORIGINS.items()
        }
        assert {u.first_seen for u in finding.updates} == {at}
        assert not finding.reboot_pending
    # check mode changed nothing: same package versions, no reboot
    for host in NAMES:
        assert after[host].packages == before[host].packages
        assert after[host].boot_id == before[host].boot_id
        assert set(after[host].packages.values()) == {"1.0"}
    # what was found survives the findings file
    assert findings.loads(findings.dumps(found), "lab") == found
    print(f"assess of {len(found)} lab hosts: {elapsed:.1f} s")


def test_a_withdrawn_update_is_no_longer_pending(
    lab_config: LabConfig, lab: Path, published: None
) -> None:
    lifecycle.set_updates(lab_config, "demo-svc", publish=False)
    try:
        found = assess(lab, limit="host1", at=datetime.now(UTC))
    finally:
        lifecycle.set_updates(lab_config, "demo-svc", publish=True)
    (finding,) = found
    assert finding.reachable, finding.message
    assert set(pending(finding)) == set(DEMO_ORIGINS) - {"demo-svc"}

    # and it is back once published again: the refresh sees it
    (again,) = assess(lab, limit="host1", at=datetime.now(UTC))
    assert set(pending(again)) == set(DEMO_ORIGINS)


def test_a_host_that_cannot_be_reached_is_reported_not_dropped(
    lab_config: LabConfig, lab: Path, published: None
) -> None:
    hosts.set_network(lab_config, 2, up=False)
    try:
        found = assess(lab, limit=None, at=datetime.now(UTC))
    finally:
        hosts.set_network(lab_config, 2, up=True)
    by_host = {f.host: f for f in found}
    assert sorted(by_host) == NAMES
    down = by_host["host2"]
    assert not down.reachable
    assert down.updates == ()
    assert down.message.startswith("unreachable: ")
    assert "ssh" in down.message
    for name in ("host1", "host3"):
        assert by_host[name].reachable, by_host[name].message
        assert len(by_host[name].updates) == len(DEMO_ORIGINS)


def test_a_pending_reboot_is_reported(lab_config: LabConfig, lab: Path, published: None) -> None:
    # what Debian's update-notifier hook (and demo-kernel's postinst) leaves behind
    on_host(lab_config, 3, "touch /run/reboot-required")
    try:
        (finding,) = assess(lab, limit="host3", at=datetime.now(UTC))
    finally:
        on_host(lab_config, 3, "rm -f /run/reboot-required")
    assert finding.reachable, finding.message
    assert finding.reboot_pending


# What the assess playbook runs, asked over SSH to check it against what the ledger holds.
DPKG_QUERY = (
    "dpkg-query -W -f='${binary:Package}\\t${Version}\\t${Architecture}\\t${source:Package}"
    "\\t${source:Version}\\t${db:Status-Abbrev}\\n'"
)


def test_assess_records_each_hosts_software_and_release(
    lab_config: LabConfig, lab: Path, published: None, env: dict[str, str], tmp_path: Path
) -> None:
    export = tmp_path / "findings.json"
    done = patchkit_cli("assess", "-p", POLICY, "-i", str(lab), "--export", str(export), env=env)
    assert done.returncode == 0, done.stderr
    demo = states(lab)
    ledger = Ledger(env["PATCHKIT_LEDGER"])
    software = ledger.latest_software()
    assert sorted(software) == NAMES
    for index, host in enumerate(NAMES, start=1):
        known = software[host]
        codename = on_host(lab_config, index, ". /etc/os-release && echo $VERSION_CODENAME")
        assert (known.distribution, known.release) == ("Debian", codename) == ("Debian", "bookworm")
        assert known.release_version and known.release_version.startswith("12")
        # the very packages dpkg lists on the host, demo-lib under its own source
        assert known.software == read_packages(on_host(lab_config, index, DPKG_QUERY) + "\n")
        installed = demo[host].packages["demo-lib"]
        lib = [p for p in known.software.packages if p.name == "demo-lib"]
        assert lib == [InstalledPackage("demo-lib", installed, "all", "libdemo", installed)]
    # hosts made from one image share one stored set, and one object when read
    latest = ledger.latest_findings()
    distinct = {f.software.digest for f in latest.values() if f.software is not None}
    assert (
        len({id(f.software) for f in latest.values()})
        == len(distinct)
        == len({s.software.digest for s in software.values()})
    )
    # the export is version 2, each set once; plan reads it
    data = json.loads(export.read_text())
    assert data["version"] == 2 and sorted(data["package_sets"]) == sorted(distinct)
    assert {f.host: f for f in findings.load(export)} == latest
    done = patchkit_cli(
        "plan", "-p", POLICY, "-i", str(lab), "--findings", str(export), "--no-save",
        "--format", "json", env=env,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
