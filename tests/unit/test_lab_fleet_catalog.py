"""Unit: the lab inventory's fleet roles and the demo package catalog (pure, no hosts)."""

from __future__ import annotations

import dataclasses
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from patchkit.errors import LabUsageError
from patchkit.lab import catalog, fleet
from patchkit.lab.config import LabConfig


def _hosts(inv: dict[str, Any]) -> dict[str, dict[str, object]]:
    children = inv["all"]["children"]["lab"]["children"]
    return {name: hv for group in children.values() for name, hv in group["hosts"].items()}


def test_inventory_carries_the_fleet_variables() -> None:
    config = LabConfig.create()
    inv = fleet.inventory(config, range(1, 9))
    hosts = _hosts(inv)
    assert sorted(hosts) == [f"host{i}" for i in range(1, 9)]
    assert hosts["host3"] == {
        "ansible_host": "10.77.0.13",
        "env": "prod",
        "tier": 1,
        "cluster": "web",
        "os_family": "Debian",
    }
    lab_vars = inv["all"]["children"]["lab"]["vars"]
    assert lab_vars["ansible_ssh_private_key_file"] == str(config.key_path)


def test_environments_are_groups() -> None:
    inv = fleet.inventory(LabConfig.create(), range(1, 9))
    groups = inv["all"]["children"]["lab"]["children"]
    assert set(groups) == {"dev", "staging", "prod"}
    assert set(groups["dev"]["hosts"]) == {"host1"}
    for name, group in groups.items():
        assert all(hv["env"] == name for hv in group["hosts"].values())


def test_eight_hosts_have_multi_member_clusters() -> None:
    sizes = Counter(fleet.profile(i).cluster for i in range(1, 9))
    assert sizes["web"] == 3
    assert sizes["db"] == 2
    assert sizes["app-staging"] == 2


def test_three_hosts_cover_all_environments() -> None:
    assert [fleet.profile(i).env for i in (1, 2, 3)] == ["dev", "staging", "prod"]


def test_inventory_ignores_duplicates_and_sorts() -> None:
    inv = fleet.inventory(LabConfig.create(), [3, 1, 3])
    assert sorted(_hosts(inv)) == ["host1", "host3"]


def test_catalog_has_installed_version_and_update_of_each() -> None:
    names = {p.name for p in catalog.CATALOG}
    assert names == {"demo-lib", "demo-app", "demo-kernel", "demo-svc"}
    for name in names:
        versions = {p.version for p in catalog.CATALOG if p.name == name}
        assert versions == {catalog.INSTALLED_VERSION, catalog.UPDATE_VERSION}


def test_updates_come_from_two_origins() -> None:
    updates = {p.name: p.origin for p in catalog.CATALOG if p.is_update}
    assert updates == {
        "demo-lib": catalog.SECURITY,
        "demo-kernel": catalog.SECURITY,
        "demo-app": catalog.MAIN,
        "demo-svc": catalog.MAIN,
    }
    assert all(p.origin == catalog.MAIN for p in catalog.installed_packages())
    assert catalog.ORIGINS[catalog.SECURITY].endswith("-security")


def test_app_update_needs_the_library_update() -> None:
    app = next(p for p in catalog.CATALOG if p.key == "demo-app_1.1")
    assert app.depends == "demo-lib (>= 1.1)"


def test_service_update_breaks_health() -> None:
    def server(version: str) -> str:
        pkg = next(p for p in catalog.CATALOG if p.key == f"demo-svc_{version}")
        return next(f.content for f in pkg.files if f.path == "usr/bin/demo-svc")

    assert "code = 200 if" in server("1.0")
    assert "code = 500 if" in server("1.1")


def test_kernel_update_asks_for_reboot() -> None:
    kernel = next(p for p in catalog.CATALOG if p.key == "demo-kernel_1.1")
    assert "/run/reboot-required" in kernel.postinst


@pytest.mark.parametrize(
    "pattern, keys",
    [
        (None, {"demo-lib_1.1", "demo-app_1.1", "demo-kernel_1.1", "demo-svc_1.1"}),
        ("demo-svc", {"demo-svc_1.1"}),
        ("demo-*", {"demo-lib_1.1", "demo-app_1.1", "demo-kernel_1.1", "demo-svc_1.1"}),
        ("demo-lib_1.0", {"demo-lib_1.0"}),
        ("*_1.0", {"demo-lib_1.0", "demo-app_1.0", "demo-kernel_1.0", "demo-svc_1.0"}),
    ],
)
def test_select(pattern: str | None, keys: set[str]) -> None:
    assert {p.key for p in catalog.select(pattern)} == keys


def test_select_nothing_is_an_error_listing_the_packages() -> None:
    with pytest.raises(LabUsageError) as err:
        catalog.select("openssl")
    assert "demo-svc_1.1" in (err.value.hint or "")


def test_demo_lib_is_built_from_its_own_source_and_its_changelog_names_the_cves() -> None:
    update = next(p for p in catalog.CATALOG if p.name == "demo-lib" and p.is_update)
    assert update.source_name == "libdemo" and update.fixes == catalog.LIB_CVES
    text = catalog.changelog(update)
    assert text.startswith("libdemo (1.1) lab-security; urgency=high\n")
    assert all(f"* Fix {cve}." in text for cve in catalog.LIB_CVES)
    assert "libdemo (1.0) lab-updates" in text  # the older entry follows, as in Debian
    installed = next(p for p in catalog.CATALOG if p.name == "demo-lib" and not p.is_update)
    assert not any(cve in catalog.changelog(installed) for cve in catalog.LIB_CVES)


def test_the_cached_image_changes_with_what_it_installs(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    before = LabConfig.create(name="one", root=tmp_path).image_stream
    assert catalog.installed_stamp() in before.name
    first = catalog.CATALOG[0]
    assert not first.is_update
    changed = (dataclasses.replace(first, source="another"), *catalog.CATALOG[1:])
    monkeypatch.setattr(catalog, "CATALOG", changed)
    after = LabConfig.create(name="one", root=tmp_path).image_stream
    assert after != before
    # a change to an update only (not installed by the image) keeps the image
    updates = tuple(dataclasses.replace(p, fixes=()) if p.is_update else p for p in changed)
    monkeypatch.setattr(catalog, "CATALOG", updates)
    assert LabConfig.create(name="one", root=tmp_path).image_stream == after
