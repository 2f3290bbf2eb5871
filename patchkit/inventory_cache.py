"""A cache of static inventories as read: a 50,000-host YAML inventory takes ansible-core
15-30 s to read, and every command (plan, audit, report compliance) reads it again.

Only what is a function of files on disk is kept: an inventory whose every source was parsed by
the ``yaml``, ``ini`` or ``toml`` plugin (or is a host list), with no vars plugin but
``host_group_vars``. Scripts, plugin configs (``auto``: a cloud plugin, ``constructed``) and
other vars plugins answer differently from one read to the next and are read every time.

An entry is named by the SHA-256 of everything the read depends on: each source's path, the
content of every file of the inventory (a directory source: every file under it; a file: it
and the ``group_vars/`` and ``host_vars/`` beside it), the variables kept, the ``ANSIBLE_*``
environment, the Ansible configuration file's content, and the ansible-core and patchkit
versions. Any change is a new name, so nothing is ever stale: an edit to one ``host_vars``
file means one full read. Hidden files are left out, as Ansible leaves them out.

Entries are JSON files (mode 0600, in a directory of mode 0700 that must belong to this user)
holding the hosts' rows as the reading child sends them; the newest ``KEEP`` are kept.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import stat
import tempfile
from collections.abc import Collection, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

FORMAT = "patchkit-inventory-cache/1"
KEEP = 8  # entries kept: a few inventories (prod, staging, the lab) and their last versions
# the plugins whose result depends only on the files they read
STATIC_PLUGINS = frozenset({"yaml", "ini", "toml", "host_list"})
STATIC_VARS_PLUGINS = frozenset({"host_group_vars"})
ADJACENT = ("group_vars", "host_vars")  # read beside an inventory file by host_group_vars

# A row as inventory.py's child sends it: host name, groups, plain variables.
Row = tuple[str, tuple[str, ...], dict[str, Any]]


def default_directory() -> Path:
    """``$XDG_CACHE_HOME/patchkit/inventory``, or ``~/.cache/patchkit/inventory``."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "patchkit" / "inventory"


def plugin_name(name: str) -> str:
    """A plugin's short name: ``ansible.builtin.yaml`` and ``yaml`` are one plugin."""
    return name.removeprefix("ansible.builtin.")


@dataclass(frozen=True)
class Entry:
    rows: list[Row]
    said: list[str]  # what Ansible said during the read, logged again on each use


class InventoryCache:
    """The cache in ``directory`` (made on first store)."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory

    def key(
        self,
        sources: Sequence[str],
        keep: Collection[str] | None,
        versions: Sequence[str],
        config_file: str | None,
    ) -> str | None:
        """The entry name for reading ``sources`` now; None when a file cannot be read (the read
        itself will say why)."""
        digest = hashlib.sha256()

        def add(*parts: str | bytes) -> None:
            for part in parts:
                data = part.encode("utf-8", "surrogateescape") if isinstance(part, str) else part
                digest.update(len(data).to_bytes(8, "big") + data)

        add(FORMAT, *versions)
        add("keep", *(sorted(keep) if keep is not None else ["*"]))
        for name in sorted(os.environ):
            if name.startswith("ANSIBLE_"):
                add("env", name, os.environ[name])
        try:
            if config_file:
                add("config", config_file, Path(config_file).read_bytes())
            for source in sources:
                add("source", source)
                for path in _files_of(source):
                    add("file", str(path), hashlib.sha256(path.read_bytes()).digest())
        except OSError as exc:
            log.debug("inventory not cached: %s", exc)
            return None
        return digest.hexdigest()

    def get(self, key: str) -> Entry | None:
        """The entry named ``key``, if there is a sound one."""
        path = self.directory / f"{key}.json"
        if not self._ours(self.directory):
            return None
        try:
            with path.open("rb") as found:
                if not self._ours(path, found.fileno()):
                    return None
                data = json.load(found)
        except FileNotFoundError:
            return None
        except (OSError, ValueError) as exc:
            log.warning("ignoring inventory cache entry %s: %s", path, exc)
            return None
        if not isinstance(data, dict) or data.get("format") != FORMAT:
            return None
        rows = [(str(n), tuple(g), v) for n, g, v in data["rows"]]
        return Entry(rows, [str(s) for s in data["said"]])

    def put(self, key: str, entry: Entry) -> None:
        """Store ``entry`` as ``key`` (written whole or not at all), and drop old entries. A
        cache that cannot be written is only logged: the inventory was read all the same."""
        try:
            self.directory.mkdir(mode=0o700, parents=True, exist_ok=True)
            if not self._ours(self.directory):
                return
            fd, temporary = tempfile.mkstemp(dir=self.directory, prefix=".entry-")
            try:
                with os.fdopen(fd, "w", encoding="utf-8") as out:
                    json.dump({"format": FORMAT, "rows": entry.rows, "said": entry.said}, out)
                Path(temporary).replace(self.directory / f"{key}.json")
            except BaseException:
                Path(temporary).unlink(missing_ok=True)
                raise
            self._prune()
        except (OSError, TypeError, ValueError) as exc:
            log.warning("cannot write the inventory cache in %s: %s", self.directory, exc)

    def _prune(self) -> None:
        entries = sorted(
            self.directory.glob("*.json"), key=lambda p: p.stat().st_mtime_ns, reverse=True
        )
        for old in entries[KEEP:]:
            old.unlink(missing_ok=True)

    def _ours(self, path: Path, fd: int | None = None) -> bool:
        """Whether ``path`` belongs to this user and no one else may write it (what another
        user could plant here becomes every host's variables)."""
        try:
            info = os.fstat(fd) if fd is not None else path.stat()
        except FileNotFoundError:
            return False
        if info.st_uid != os.geteuid() or info.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
            log.warning(
                "not using the inventory cache %s: it belongs to another user or others may "
                "write it",
                path,
            )
            return False
        return True


def _files_of(source: str) -> Iterator[Path]:
    """The files whose content a static read of ``source`` depends on, in a stable order."""
    path = Path(source)
    if not path.exists():  # a host list ("a,b,"): the source text is all there is
        return
    if path.is_dir():
        yield from _tree(path)
        return
    yield path
    for name in ADJACENT:
        beside = path.parent / name
        if beside.is_dir():
            yield from _tree(beside)


def _tree(directory: Path) -> Iterator[Path]:
    for root, dirs, files in os.walk(directory, followlinks=True):  # as Ansible follows them
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        for name in sorted(files):
            if not name.startswith("."):
                yield Path(root) / name
