"""Unit: a static inventory is read by ansible-core once per change of its files, then comes from
the cache (patchkit.inventory_cache); what is not static is read every time."""

from __future__ import annotations

import logging
import os
import textwrap
from pathlib import Path
from typing import Any

import pytest

from patchkit import inventory
from patchkit.inventory_cache import InventoryCache

from .cli_process import in_process

HOSTS = """\
all:
  children:
    web:
      hosts:
        web1: {}
        web2: {}
"""


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    root = tmp_path / "inv"
    (root / "group_vars").mkdir(parents=True)
    (root / "host_vars").mkdir()
    (root / "hosts.yml").write_text(HOSTS)
    (root / "group_vars" / "web.yml").write_text("tier: 2\n")
    (root / "host_vars" / "web1.yml").write_text("owner: alice\n")
    return root


class Reads:
    """Counts the reads ansible-core makes (each one is a child process)."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.count = 0
        real = inventory._in_child

        def counted(*args: Any) -> Any:
            self.count += 1
            return real(*args)

        monkeypatch.setattr(inventory, "_in_child", counted)


def owner(hosts: tuple[Any, ...], name: str) -> Any:
    return next(h for h in hosts if h.name == name).vars.get("owner")


def test_a_static_inventory_is_read_once_and_then_from_the_cache(
    tree: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    reads = Reads(monkeypatch)
    cache = tmp_path / "cache"
    first = inventory.load(tree, cache=cache)
    again = inventory.load(tree, cache=cache)
    assert reads.count == 1
    assert again == first
    assert owner(again, "web1") == "alice"
    assert next(h for h in again if h.name == "web2").vars["tier"] == 2
    assert len(list(cache.glob("*.json"))) == 1
    # the cache is the user's alone
    assert cache.stat().st_mode & 0o777 == 0o700
    assert all(p.stat().st_mode & 0o077 == 0 for p in cache.glob("*.json"))


@pytest.mark.parametrize("edit", ["host_vars/web1.yml", "group_vars/web.yml", "hosts.yml"])
def test_an_edit_to_any_file_of_the_inventory_is_read_again(
    tree: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, edit: str
) -> None:
    reads = Reads(monkeypatch)
    cache = tmp_path / "cache"
    inventory.load(tree, cache=cache)
    path = tree / edit
    stat = path.stat()
    if edit == "hosts.yml":
        path.write_text(HOSTS + "        web3: {}\n")
    else:
        path.write_text(path.read_text().replace("alice", "bob").replace("2", "3"))
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))  # same time: content decides
    hosts = inventory.load(tree, cache=cache)
    assert reads.count == 2
    if edit == "host_vars/web1.yml":
        assert owner(hosts, "web1") == "bob"
    elif edit == "group_vars/web.yml":
        assert hosts[0].vars["tier"] == 3
    else:
        assert [h.name for h in hosts] == ["web1", "web2", "web3"]


def test_a_file_source_counts_the_group_and_host_vars_beside_it(
    tree: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    reads = Reads(monkeypatch)
    cache = tmp_path / "cache"
    assert owner(inventory.load(tree / "hosts.yml", cache=cache), "web1") == "alice"
    (tree / "host_vars" / "web2.yml").write_text("owner: carol\n")
    assert owner(inventory.load(tree / "hosts.yml", cache=cache), "web2") == "carol"
    inventory.load(tree / "hosts.yml", cache=cache)
    assert reads.count == 2


def test_what_the_read_depends_on_besides_files_names_another_entry(
    tree: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    reads = Reads(monkeypatch)
    cache = tmp_path / "cache"
    inventory.load(tree, cache=cache)
    only_owner = inventory.load(tree, keep=["owner"], cache=cache)  # the variables kept
    assert "tier" not in only_owner[0].vars
    monkeypatch.setenv("ANSIBLE_INVENTORY_ANY_UNPARSED_IS_FAILED", "True")  # Ansible's settings
    inventory.load(tree, cache=cache)
    assert reads.count == 3
    inventory.load(tree, keep=["owner"], cache=cache)
    assert reads.count == 4  # the environment is part of every name
    assert len(list(cache.glob("*.json"))) == 4  # one entry for each distinct read


def test_a_script_inventory_is_read_every_time(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    reads = Reads(monkeypatch)
    cache = tmp_path / "cache"
    script = tmp_path / "fleet.py"
    script.write_text(
        textwrap.dedent(
            """\
            #!/usr/bin/env python3
            import json
            print(json.dumps({"web": {"hosts": ["web1"]}, "_meta": {"hostvars": {}}}))
            """
        )
    )
    script.chmod(0o755)
    for _ in range(2):
        assert [h.name for h in inventory.load(script, cache=cache)] == ["web1"]
    assert reads.count == 2
    assert not cache.exists() or not list(cache.glob("*.json"))
    # a static file next to the script does not make the pair static
    (tmp_path / "more.yml").write_text(HOSTS)
    inventory.load([script, tmp_path / "more.yml"], cache=cache)
    inventory.load([script, tmp_path / "more.yml"], cache=cache)
    assert reads.count == 4


def test_a_cache_others_may_write_is_not_used(
    tree: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    reads = Reads(monkeypatch)
    cache = tmp_path / "cache"
    inventory.load(tree, cache=cache)
    cache.chmod(0o777)
    with caplog.at_level(logging.WARNING):
        assert owner(inventory.load(tree, cache=cache), "web1") == "alice"
    assert reads.count == 2
    assert "others may write it" in caplog.text


def test_a_broken_entry_is_read_past(
    tree: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    reads = Reads(monkeypatch)
    cache = tmp_path / "cache"
    inventory.load(tree, cache=cache)
    (entry,) = cache.glob("*.json")
    entry.write_text('{"format": "patchkit-inventory-cache/1", "rows": [')  # cut short
    with caplog.at_level(logging.WARNING):
        assert owner(inventory.load(tree, cache=cache), "web1") == "alice"
    assert reads.count == 2
    assert "ignoring inventory cache entry" in caplog.text
    inventory.load(tree, cache=cache)  # the second read stored a sound entry again
    assert reads.count == 2


def test_only_the_newest_entries_are_kept(tree: Path, tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    store = InventoryCache(cache)
    for n in range(12):
        (tree / "host_vars" / "web1.yml").write_text(f"owner: o{n}\n")
        inventory.load(tree, cache=cache)
        entries = sorted(cache.glob("*.json"), key=lambda p: p.stat().st_mtime_ns)
        os.utime(entries[-1], ns=(n * 10**9, n * 10**9 + 10**12))
    assert len(list(cache.glob("*.json"))) == 8
    assert store.directory == cache


def test_the_cli_uses_the_directory_given_and_off_reads_every_time(
    tree: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    policy = Path(__file__).resolve().parents[2] / "policies" / "example.yml"
    reads = Reads(monkeypatch)
    run = in_process(monkeypatch, capsys)
    cache = tmp_path / "given"
    for _ in range(2):
        done = run("--inventory-cache", str(cache), "scope", "-p", str(policy), "-i", str(tree))
        assert done.code in (0, 1), done.err
    assert reads.count == 1
    assert len(list(cache.glob("*.json"))) == 1
    for _ in range(2):
        run("--inventory-cache", "off", "scope", "-p", str(policy), "-i", str(tree))
    assert reads.count == 3
    monkeypatch.setenv("PATCHKIT_INVENTORY_CACHE", str(tmp_path / "from-env"))
    run("scope", "-p", str(policy), "-i", str(tree))
    assert len(list((tmp_path / "from-env").glob("*.json"))) == 1
