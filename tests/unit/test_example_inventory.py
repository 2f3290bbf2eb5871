"""Unit: the example fleet read as a directory (``-i inventories/example``) is its hosts.yml.

Ansible reads every file of a directory inventory as a source, so the directory must hold
inventory only: a script or a second inventory put back beside ``hosts.yml`` fails this test.
"""

from __future__ import annotations

from pathlib import Path

from patchkit import inventory

EXAMPLE = Path(__file__).resolve().parents[2] / "inventories" / "example"


def test_the_directory_gives_the_hosts_and_vars_of_hosts_yml() -> None:
    from_directory = inventory.load(EXAMPLE)
    from_file = inventory.load(EXAMPLE / "hosts.yml")
    assert [h.name for h in from_directory] == [h.name for h in from_file]
    assert from_directory == from_file  # groups and merged variables too
    # group_vars/ and host_vars/ were read both ways, not just the hosts
    web = {h.name: h for h in from_directory}["web-prod-01"]
    assert (web.var("env"), web.var("tier"), web.var("tls_cert_expires")) == (
        "prod",
        1,
        "2027-02-01",
    )
