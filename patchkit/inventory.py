"""Ansible inventory → Host records, read by ansible-core's own inventory code.

Any source ``ansible-inventory -i`` takes works: INI or YAML files, directories (with their
``group_vars/`` and ``host_vars/``), inventory scripts, plugin configs and ``a,b,`` host lists.
Each host's groups and variables are those ``ansible-inventory --list`` prints, except that:

- variables beside the *current directory* (Ansible reads ``./group_vars`` there as
  "playbook-adjacent") and cached facts are not read: neither belongs to the inventory;
- a file no inventory plugin can parse is an error, where Ansible warns and goes on with
  whatever hosts the failed attempts made up.

What Ansible would print (warnings, an inventory script's stderr) goes to the log instead.
"""

from __future__ import annotations

import logging
import re
import threading
from collections.abc import Callable, Collection, Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import date, datetime, time
from pathlib import Path
from typing import Any

from ansible import constants
from ansible._internal._display_utils import format_message
from ansible.errors import AnsibleError
from ansible.inventory.helpers import get_group_vars, sort_groups
from ansible.inventory.manager import InventoryManager
from ansible.parsing.dataloader import DataLoader
from ansible.parsing.vault import VaultHelper
from ansible.plugins.loader import init_plugin_loader
from ansible.utils.collection_loader import AnsibleCollectionConfig
from ansible.utils.display import Display
from ansible.utils.vars import combine_vars
from ansible.vars.plugins import get_vars_from_inventory_sources

from patchkit.errors import InventoryError
from patchkit.model import Host, freeze

log = logging.getLogger(__name__)

Source = Path | str
HINT = "check it with: ansible-inventory -i {path} --list"
BUILTIN_GROUPS = frozenset({"all", "ungrouped"})
# VariableManager's group-var steps that read the inventory; the "*_play" steps read the
# playbook (for ansible-inventory: the current) directory, which is not part of the inventory.
INVENTORY_STEPS = frozenset(
    {"all_inventory", "groups_inventory", "all_plugins_inventory", "groups_plugins_inventory"}
)


def load(
    source: Source | Sequence[Source], keep: Collection[str] | None = None
) -> tuple[Host, ...]:
    """Every host of the inventory, sorted by name.

    ``source`` is one inventory source or several (like repeated ``-i``); ``keep`` names the
    variables to keep (``None`` keeps all). Raises InventoryError naming the source when it is
    missing, cannot be parsed, or holds no host.
    """
    sources = _sources(source)
    shown = ", ".join(sources)
    with _ONE_AT_A_TIME, _ansible_output_kept() as output:
        if AnsibleCollectionConfig.collection_finder is None:
            # as the ansible CLIs do first: without it, 'plugin: ansible.builtin.constructed'
            # and plugins from collections are unknown
            init_plugin_loader()
        level = logging.DEBUG  # what Ansible said is in the error, unless all went well
        try:
            loader = _Loader()
            inventory = _RecordingInventory(loader, sources)
            failed = [path for path, parsed in inventory.outcomes.items() if not parsed]
            if failed:
                raise _unparsable(failed, output)
            if not inventory.hosts:
                raise InventoryError(
                    f"inventory {shown} has no hosts",
                    hint="add hosts to it, or point --inventory at the fleet's inventory",
                )
            hosts = _records(inventory, _GroupLayers(loader, sources, inventory), keep)
            level = logging.WARNING
            return hosts
        except AnsibleError as exc:
            raise InventoryError(
                f"cannot read inventory {shown}{_origin(exc)}: {_brief(str(exc))}",
                hint=HINT.format(path=shown),
            ) from exc
        finally:
            for text in output:
                log.log(level, "ansible: %s", text)


# Ansible's inventory code keeps process-wide state (plugin loaders, the vars plugins' file
# caches, the Display singleton): one load at a time.
_ONE_AT_A_TIME = threading.Lock()


class _Kept:
    """Stands in for Display's queue to the controller (what Ansible's worker processes use):
    every warning, deprecation, error and message Ansible would print is kept as text."""

    def __init__(self) -> None:
        self.texts: list[str] = []

    def send_display(self, _method: str, *args: Any, **kwargs: Any) -> None:
        what = args[0] if args else kwargs.get("msg", kwargs.get("warning", ""))
        text = what if isinstance(what, str) else format_message(what, False)
        self.texts.append(text.strip())


@contextmanager
def _ansible_output_kept() -> Iterator[list[str]]:
    """Keep Ansible's output from the terminal: the inventory script plugin, for one, prints a
    script's stderr as an error, and plugins print warnings."""
    display = Display()
    # private, but Display has no public way to divert its output within this process
    saved = display._final_q
    kept = _Kept()
    display._final_q = kept
    try:
        yield kept.texts
    finally:
        display._final_q = saved


def _sources(source: Source | Sequence[Source]) -> list[str]:
    items = [source] if isinstance(source, str | Path) else list(source)
    if not items:
        raise InventoryError("no inventory given", hint="pass an inventory file or directory")
    out = []
    for item in items:
        text = str(item)
        # "a,b," is a host list, not a path (as for ansible's -i); a Path is always a path
        is_host_list = isinstance(item, str) and "," in text
        if not is_host_list and not Path(text).exists():
            raise InventoryError(
                f"inventory {text} does not exist",
                hint="pass an inventory file, directory, script or plugin config that exists",
            )
        out.append(text)
    return out


class _Loader(DataLoader):  # type: ignore[misc]
    """DataLoader that parses an inventory file once, and does not copy what it just parsed.

    Inventory plugins read their file with ``cache='none'``: the ``auto`` plugin (looking for a
    ``plugin:`` key) and then the ``yaml`` plugin each parse a YAML inventory, and DataLoader
    deep-copies every fresh parse. Here the first request parses (marked trusted, as the yaml
    plugin asks; ``auto`` only reads the ``plugin`` key) and the second gets that same data:
    a 50,000-host YAML inventory parses about four times faster, with the same result.
    """

    def __init__(self) -> None:
        super().__init__()
        self._fresh: dict[tuple[str, bool], Any] = {}

    def load_from_file(
        self,
        file_name: str,
        cache: str = "all",
        unsafe: bool = False,
        json_only: bool = False,
        trusted_as_template: bool = False,
    ) -> Any:
        if cache != "none":
            return super().load_from_file(file_name, cache, unsafe, json_only, trusted_as_template)
        key = (str(self.path_dwim(file_name)), json_only)
        if key in self._fresh:
            return self._fresh.pop(key)
        data = super().load_from_file(file_name, cache, True, json_only, trusted_as_template=True)
        self._fresh[key] = data
        return data


class _RecordingInventory(InventoryManager):  # type: ignore[misc]
    """InventoryManager that remembers which sources (and files of directories) parsed.

    Ansible only warns about a file no plugin could parse and goes on with whatever hosts the
    failed attempts left behind; patchkit refuses such an inventory instead.
    """

    def __init__(self, loader: DataLoader, sources: list[str]) -> None:
        self.outcomes: dict[str, bool] = {}
        super().__init__(loader=loader, sources=sources)

    def parse_source(self, source: str, cache: bool = False) -> bool:
        parsed = bool(super().parse_source(source, cache=cache))
        self.outcomes[str(source)] = parsed
        return parsed


_PLUGIN_FAILURE = re.compile(r"^Failed to parse inventory with '([^']+)' plugin: (.+)$")
_ORIGIN = re.compile(r"Origin: (.+?):([0-9]+):([0-9]+)$", re.MULTILINE)


def _unparsable(failed: list[str], warnings: list[str]) -> InventoryError:
    """The error for sources no plugin could parse, with each plugin's reason, in brief."""
    # a directory fails only because its files did: name the first file
    files = [path for path in failed if not Path(path).is_dir()] or failed
    path = files[0]
    reasons: dict[str, list[str]] = {}  # reason -> plugins that gave it
    where = ""
    for text in warnings:
        found = _PLUGIN_FAILURE.match(text.splitlines()[0]) if path in text else None
        if found:
            reasons.setdefault(found.group(2).strip(), []).append(found.group(1))
            origin = _ORIGIN.search(text)
            if origin and origin.group(1) == path and not where:
                where = f" (line {origin.group(2)}, column {origin.group(3)})"
    detail = "; ".join(f"{', '.join(plugins)}: {reason}" for reason, plugins in reasons.items())
    more = f" and {len(files) - 1} more" if len(files) > 1 else ""
    return InventoryError(
        f"cannot parse inventory {path}{where}{more}: {detail or 'no inventory plugin accepts it'}",
        hint="fix the file, or move files that are not inventory out of the inventory "
        f"directory; {HINT.format(path=path)}",
    )


def _origin(exc: BaseException) -> str:
    """Where in which file an Ansible error arose (a group_vars/ file, say), if it says."""
    seen: BaseException | None = exc
    while seen is not None:
        origin = getattr(seen, "obj", None)
        path = getattr(origin, "path", None)
        if isinstance(path, str):
            line = getattr(origin, "line_num", None)
            column = getattr(origin, "col_num", None)
            at = f" line {line}, column {column}" if line and column else ""
            return f": in {path}{at}"
        seen = seen.__cause__ or seen.__context__
    return ""


def _brief(text: str) -> str:
    """The first lines of an Ansible error, on one line."""
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    return " ".join(lines[:2])


def _records(
    inventory: InventoryManager, layers: _GroupLayers, keep: Collection[str] | None
) -> tuple[Host, ...]:
    keep_set = None if keep is None else frozenset(keep)
    out = []
    for host in inventory.hosts.values():
        groups = tuple(g for g in host.get_groups() if g.name != "all")
        merged = combine_vars(layers.prefix(groups), host.get_vars())
        merged = combine_vars(merged, layers.plugin_vars([host]))
        values = {
            str(k): _plain(merged[k])
            for k in sorted(merged, key=str)
            if k not in constants.INTERNAL_STATIC_VARS and (keep_set is None or k in keep_set)
        }
        names = tuple(sorted(g.name for g in groups if g.name not in BUILTIN_GROUPS))
        out.append(Host(name=str(host.name), groups=names, vars=freeze(values)))
    return tuple(sorted(out, key=lambda h: h.name))


class _GroupLayers:
    """The group part of VariableManager.get_vars, once per distinct set of groups.

    VariableManager merges, in the order of ``constants.VARIABLE_PRECEDENCE``: the 'all' group's
    inventory vars, the host's groups' inventory vars (sorted by depth, priority, name), then
    the same from vars plugins (group_vars/ files); host vars come after. Hosts with the same
    groups share that prefix, so it is computed once per group set, not once per host.
    """

    def __init__(self, loader: DataLoader, sources: list[str], inventory: InventoryManager) -> None:
        self.loader = loader
        self.sources = sources
        self.all_group = inventory.groups["all"]
        self.cache: dict[tuple[str, ...], dict[str, Any]] = {}

    def plugin_vars(self, entities: list[Any]) -> dict[str, Any]:
        found: dict[str, Any] = get_vars_from_inventory_sources(
            self.loader, self.sources, entities, "all"
        )
        return found

    def prefix(self, groups: tuple[Any, ...]) -> dict[str, Any]:
        ordered = sort_groups(groups)
        key = tuple(g.name for g in ordered)
        if key not in self.cache:
            steps: dict[str, Callable[[], dict[str, Any]]] = {
                "all_inventory": lambda: dict(self.all_group.get_vars()),
                "groups_inventory": lambda: dict(get_group_vars(ordered)),
                "all_plugins_inventory": lambda: self.plugin_vars([self.all_group]),
                "groups_plugins_inventory": lambda: self.plugin_vars(ordered),
            }
            merged: dict[str, Any] = {}
            for entry in constants.VARIABLE_PRECEDENCE:
                if entry in INVENTORY_STEPS:
                    merged = combine_vars(merged, steps[entry]())
            self.cache[key] = merged
        return self.cache[key]


def _plain(value: Any) -> Any:
    """A variable's value as ``ansible-inventory --list`` prints it: JSON types only.

    Ansible's tagged str/int/dict/list types become the builtins; dates become ISO text; sets
    become sorted lists; vault-encrypted values stay encrypted, as ``{"__ansible_vault": …}``.
    """
    if value is None or type(value) in (str, int, float, bool):
        return value
    # Ansible's tagged subclasses: the builtin constructors return the exact builtin type
    if isinstance(value, str):
        return str(value)
    if isinstance(value, bool):
        return bool(value)
    if isinstance(value, int):
        return int(value)
    if isinstance(value, float):
        return float(value)
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if isinstance(value, set | frozenset):
        return sorted((_plain(v) for v in value), key=str)
    if isinstance(value, datetime | date | time):
        return value.isoformat()
    ciphertext = VaultHelper.get_ciphertext(value, with_tags=False)
    if ciphertext is not None:
        return {"__ansible_vault": ciphertext}
    return str(value)
