"""Ansible inventory → Host records, read by ansible-core's own inventory code.

Any source ``ansible-inventory -i`` takes works: INI or YAML files, directories (with their
``group_vars/`` and ``host_vars/``), inventory scripts, plugin configs and host lists (``a,b,``,
``a,``, ``host:2222,``: as for Ansible, a source with a comma that is not an existing path).
Each host's groups and variables are those ``ansible-inventory --list`` prints, except that:

- variables beside the *current directory* (Ansible reads ``./group_vars`` there as
  "playbook-adjacent") and cached facts are not read: neither belongs to the inventory;
- a file no inventory plugin can parse is an error, where Ansible warns and goes on with
  whatever hosts the failed attempts made up;
- a source that is neither a file nor a directory (a FIFO, a device) is an error, as is a value
  that nests too deeply or expands past ``MAX_VALUES`` values for one host.

The inventory is read in a child process, forked (so with this process's working directory,
environment and Ansible configuration), leading a process group of its own: inventory scripts
and plugins run there. When the read takes longer than ``timeout`` seconds the whole group is
killed (the script, its children, a plugin stuck on an API) and an InventoryError names the
source being read; a thread could not be stopped, and ansible-core's script plugin waits on a
script without a timeout. The group is killed after a successful read too: nothing a script
started outlives the read, unless it left the group (``setsid``, a daemon).

What Ansible would print (warnings, an inventory script's stderr) goes to the log instead.
"""

from __future__ import annotations

import functools
import logging
import marshal
import math
import multiprocessing
import os
import re
import signal
import threading
import time as clock
import traceback
from collections.abc import Callable, Collection, Iterator, Mapping, Sequence
from contextlib import contextmanager, suppress
from datetime import date, datetime, time
from multiprocessing.connection import Connection
from multiprocessing.process import BaseProcess
from pathlib import Path
from typing import Any

import yaml
from ansible import constants
from ansible._internal._datatag._tags import SourceWasEncrypted
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

from patchkit import __version__ as patchkit_version
from patchkit import inventory_cache
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
TIMEOUT = 300.0  # seconds for a whole load: long enough for a cloud plugin over a slow API
# Values (scalars, lists, mappings) in one host's variables. YAML aliases share one value, which
# the host's record copies: ten levels of nine aliases each would be 9**10 values.
MAX_VALUES = 1_000_000
# What a row of the child's answer holds: a host's name, groups and plain (JSON) variables.
_Row = tuple[str, tuple[str, ...], dict[str, Any]]


def load(
    source: Source | Sequence[Source],
    keep: Collection[str] | None = None,
    *,
    timeout: float = TIMEOUT,
    cache: Path | None = None,
) -> tuple[Host, ...]:
    """Every host of the inventory, sorted by name.

    ``source`` is one inventory source or several (like repeated ``-i``); ``keep`` names the
    variables to keep (``None`` keeps all); ``timeout`` bounds the whole read in seconds
    (``math.inf``: no bound); ``cache`` is a directory for inventory_cache (None: none).
    Raises InventoryError naming the source when it is missing, cannot be parsed, holds no
    host, or takes longer than ``timeout``.
    """
    if not timeout > 0:
        raise InventoryError(
            f"the inventory timeout must be more than 0 seconds, not {timeout}",
            hint="give the seconds an inventory may take to read, e.g. 300",
        )
    sources = _sources(source)
    with _PLUGINS_READY, _ansible_output_kept() as said:
        if AnsibleCollectionConfig.collection_finder is None:
            # as the ansible CLIs do first: without it, 'plugin: ansible.builtin.constructed'
            # and plugins from collections are unknown. Done here, once, for every child.
            init_plugin_loader()
    store = inventory_cache.InventoryCache(cache) if cache is not None else None
    key = _cache_key(store, sources, keep)
    entry = store.get(key) if store is not None and key is not None else None
    if entry is not None:
        log.debug("inventory %s: read from the cache %s", ", ".join(sources), cache)
        for text in entry.said:
            log.log(logging.WARNING, "ansible: %s", text)
        return _hosts(entry.rows)
    answer, said_there, static = _in_child(sources, keep, timeout)
    said += said_there
    if static and store is not None and key is not None and isinstance(answer, list):
        # kept only when no file changed while it was read
        unchanged = _cache_key(store, sources, keep) == key
        if unchanged:
            store.put(key, inventory_cache.Entry(answer, said))
    # what Ansible said is in the error, unless all went well
    level = logging.WARNING if isinstance(answer, list) else logging.DEBUG
    for text in said:
        log.log(level, "ansible: %s", text)
    if isinstance(answer, InventoryError):
        raise answer
    return _hosts(answer)


def _hosts(rows: list[_Row]) -> tuple[Host, ...]:
    """The hosts of these rows. Hosts repeat the same values (users, interpreters, groups):
    each distinct string and group tuple is kept once, a third of the memory at 50,000."""
    texts: dict[str, str] = {}
    groups: dict[tuple[str, ...], tuple[str, ...]] = {}

    def shared(value: Any) -> Any:
        return texts.setdefault(value, value) if type(value) is str else value

    return tuple(
        Host(name=n, groups=groups.setdefault(g, g), vars=freeze(v, shared)) for n, g, v in rows
    )


def _cache_key(
    store: inventory_cache.InventoryCache | None, sources: list[str], keep: Collection[str] | None
) -> str | None:
    if store is None:
        return None
    import ansible

    absolute = [
        s if is_host_list(s, exists=Path(s).exists()) else str(Path(s).resolve()) for s in sources
    ]
    versions = (patchkit_version, str(getattr(ansible, "__version__", "")))
    return store.key(absolute, keep, versions, constants.CONFIG_FILE)


_PLUGINS_READY = threading.Lock()


def _in_child(
    sources: list[str], keep: Collection[str] | None, timeout: float
) -> tuple[list[_Row] | InventoryError, list[str], bool]:
    """Read the inventory in a forked child (see the module docstring); its answer, what
    Ansible said there, and whether the answer depends only on the files read (static). The
    child and every process it started are gone on return."""
    context = multiprocessing.get_context("fork")  # the child shares the parent's cwd and env
    receiving, sending = context.Pipe(duplex=False)
    child = context.Process(
        target=_child, args=(sending, sources, keep), name="patchkit-inventory", daemon=True
    )
    child.start()
    sending.close()
    pid = child.pid
    if pid is None:  # never, once started; but the kill below must not aim at group 0
        raise InventoryError("cannot start the process that reads the inventory")
    # The child does this too: whichever runs first, its group exists before any kill.
    # PermissionError: it already leads its group; ProcessLookupError: it already ended.
    with suppress(PermissionError, ProcessLookupError):
        os.setpgid(pid, pid)
    try:
        return _answer(receiving, child, sources, timeout)
    finally:
        _stop(pid, child)
        receiving.close()


def _answer(
    receiving: Connection, child: BaseProcess, sources: list[str], timeout: float
) -> tuple[list[_Row] | InventoryError, list[str], bool]:
    deadline = clock.monotonic() + timeout
    shown = ", ".join(sources)
    at = f"inventory {shown}"  # what the child is reading: it says so as it goes
    while True:
        left = None if math.isinf(timeout) else max(deadline - clock.monotonic(), 0.0)
        try:
            if not receiving.poll(left):
                late = InventoryError(
                    f"reading {at} took longer than {timeout:g} s; stopped it and every process "
                    "it started",
                    hint="an inventory script or plugin that hangs (on a host, an API, a lock)? "
                    f"{HINT.format(path=shown)}; or allow it more time (--inventory-timeout)",
                )
                return late, [], False
            message = marshal.loads(receiving.recv_bytes())  # noqa: S302 (our own child's answer)
        except EOFError:
            child.join(5)
            return (
                InventoryError(
                    f"reading {at} stopped: the process reading it ended (exit status "
                    f"{child.exitcode}) without an answer",
                    hint=f"it may have run out of memory; {HINT.format(path=shown)}",
                ),
                [],
                False,
            )
        kind, *rest = message
        if kind == "at":
            at = rest[0]
        elif kind == "done":
            return rest[0], rest[1], rest[2]
        else:
            text, hint, said, trace = rest
            if trace:
                log.debug("reading %s failed in the child process:\n%s", at, trace)
            return InventoryError(text, hint=hint), said, False


def _stop(pid: int, child: BaseProcess) -> None:
    """Kill the child's process group (the child, the scripts it ran, their children)."""
    # killed before it is reaped: until then its pid, and so its group id, cannot be reused
    try:
        os.killpg(pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        child.kill()
    child.join()


def _child(sending: Connection, sources: list[str], keep: Collection[str] | None) -> None:
    """The child's work: read the inventory, send back rows or an error, and what Ansible said.

    Messages are marshalled tuples of plain values (rows hold JSON types only); nothing is
    logged here: the parent's handlers are copies in this process, writing where no one reads.
    """
    with suppress(PermissionError):  # the parent already made this process lead its group
        os.setpgid(0, 0)

    def tell(message: tuple[Any, ...]) -> None:
        sending.send_bytes(marshal.dumps(message))

    shown = ", ".join(sources)
    with _ansible_output_kept() as said:
        try:
            rows, static = _read(sources, keep, tell, said)
        except Exception as exc:  # every failure is an answer: hostile input breaks anything
            text, hint, trace = _failure(exc, shown)
            tell(("failed", text, hint, said, trace))
            return
    try:
        tell(("done", rows, said, static))
    except ValueError as exc:  # marshal: a value nested past its limit
        tell(("failed", f"cannot read inventory {shown}: {exc}", HINT.format(path=shown), said, ""))


def _failure(exc: Exception, shown: str) -> tuple[str, str | None, str]:
    """An error in the child as (message, hint, traceback when it is not an expected one)."""
    hint = HINT.format(path=shown)
    if isinstance(exc, InventoryError):
        return exc.message, exc.hint, ""
    if isinstance(exc, AnsibleError):
        return f"cannot read inventory {shown}{_origin(exc)}: {_brief(str(exc))}", hint, ""
    if isinstance(exc, RecursionError):
        reason = "a value nests too deeply or refers to itself (a recursive YAML alias?)"
        return f"cannot read inventory {shown}{_origin(exc)}: {reason}", hint, ""
    reason = f"{type(exc).__name__}: {_brief(str(exc))}"
    return f"cannot read inventory {shown}{_origin(exc)}: {reason}", hint, traceback.format_exc()


def _read(
    sources: list[str],
    keep: Collection[str] | None,
    tell: Callable[[tuple[Any, ...]], None],
    said: list[str],
) -> tuple[list[_Row], bool]:
    """The hosts as rows (plain values cross to the parent, Host's mappings would not), and
    whether they depend only on the files read; ``tell`` hears what is being read."""
    shown = ", ".join(sources)
    loader = _Loader()
    inventory = _RecordingInventory(loader, sources, tell)
    failed = [path for path, parsed in inventory.outcomes.items() if not parsed]
    if failed:
        raise _unparsable(failed, said)
    if not inventory.hosts:
        raise InventoryError(
            f"inventory {shown} has no hosts",
            hint="add hosts to it, or point --inventory at the fleet's inventory",
        )
    tell(("at", f"the variables (group_vars/, host_vars/, vars plugins) of inventory {shown}"))
    rows = _records(inventory, _GroupLayers(loader, sources, inventory), keep)
    return rows, inventory.static()


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


def is_host_list(source: str, *, exists: bool) -> bool:
    """Ansible's rule (its host_list plugin): a source with a comma that is not an existing path
    is a host list (``a,b,``). A Path too: the CLI hands over '-i a,b,' as one."""
    return "," in source and not exists


def _sources(source: Source | Sequence[Source]) -> list[str]:
    items = [source] if isinstance(source, str | Path) else list(source)
    if not items:
        raise InventoryError("no inventory given", hint="pass an inventory file or directory")
    out = []
    for item in items:
        text = str(item)
        try:
            exists = Path(text).exists()
        except OSError as exc:  # a name too long for the file system, and the like
            raise InventoryError(
                f"inventory {text[:200]}: {exc.strerror}",
                hint="pass an inventory file, directory, script or plugin config that exists",
            ) from None
        if is_host_list(text, exists=exists):
            out.append(text)
            continue
        if not exists:
            raise InventoryError(
                f"inventory {text} does not exist",
                hint="pass an inventory file, directory, script or plugin config that exists",
            )
        _check_kind(text)
        out.append(text)
    return out


def _check_kind(path: str) -> None:
    """Refuse what no plugin can read and some would wait on forever: a FIFO, a device."""
    if not (Path(path).is_dir() or Path(path).is_file()):
        raise InventoryError(
            f"inventory {path} is neither a file nor a directory (a FIFO, socket or device?)",
            hint="pass an inventory file, directory, script or plugin config",
        )


_TEMPLATE_MARKS = ("{{", "{%", "{#")  # Jinja's, as ansible-core's templar looks for them


class _Loader(DataLoader):  # type: ignore[misc]
    """DataLoader that parses an inventory file once, and does not copy what it just parsed.

    Inventory plugins read their file with ``cache='none'``: the ``auto`` plugin (looking for a
    ``plugin:`` key) and then the ``yaml`` plugin each parse a YAML inventory, and DataLoader
    deep-copies every fresh parse. Here the first request parses (marked trusted, as the yaml
    plugin asks; ``auto`` only reads the ``plugin`` key) and the second gets that same data:
    a 50,000-host YAML inventory parses about four times faster, with the same result.

    A plain YAML inventory (a mapping of groups; no JSON, no vault, no Ansible tag such as
    ``!unsafe``, no Jinja marks anywhere) is parsed by PyYAML's C safe loader, whose values are
    those of ansible-core's constructor (a subclass of PyYAML's safe one) without the tags
    ansible-core puts on every value: where it came from, and trusted as a template. Without a
    Jinja mark no value can be a template, so the trust changes nothing, and the tags made
    ansible-core's parse of a 50,000-host inventory peak at twice the memory. Everything else
    (a plugin's config, whose options are templates; another tag; a syntax error; a file whose
    duplicate keys DUPLICATE_YAML_DICT_KEY makes an error) goes to ansible-core's own parse,
    which says what and where. (A duplicate key under ``warn``, the default, keeps its last
    value, as ansible-core does, without ansible-core's warning in the log.)
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
        data = None if json_only else self._plain_yaml(key[0])
        if data is None:
            data = super().load_from_file(file_name, cache, True, json_only, True)
        self._fresh[key] = data
        return data

    def _plain_yaml(self, path: str) -> Any:
        """``path`` parsed by PyYAML's C safe loader, or None when ansible-core's parse must
        read it (see the class docstring)."""
        safe = getattr(yaml, "CSafeLoader", None)
        if safe is None or constants.config.get_config_value("DUPLICATE_YAML_DICT_KEY") == "error":
            return None
        text = self.get_text_file_contents(path)
        if SourceWasEncrypted.is_tagged_on(text) or text.lstrip()[:1] in ("{", "["):
            return None  # a vaulted file, or JSON (ansible-core's decoder reads vault keys)
        if any(mark in text for mark in _TEMPLATE_MARKS):
            return None  # a value that may be templated must keep ansible-core's trust tag
        try:
            data = yaml.load(str(text), Loader=safe)  # noqa: S506 - the C *safe* loader
        except yaml.YAMLError:
            return None
        if not isinstance(data, dict) or "plugin" in data:
            return None  # a plugin's config (its options are templates), or not an inventory
        return data


class _RecordingInventory(InventoryManager):  # type: ignore[misc]
    """InventoryManager that remembers which sources (and files of directories) parsed.

    Ansible only warns about a file no plugin could parse and goes on with whatever hosts the
    failed attempts left behind; patchkit refuses such an inventory instead.
    """

    def __init__(
        self, loader: DataLoader, sources: list[str], tell: Callable[[tuple[Any, ...]], None]
    ) -> None:
        self.outcomes: dict[str, bool] = {}
        self.parsed_by: dict[str, str] = {}  # source -> the plugin that parsed it
        self.tell = tell
        super().__init__(loader=loader, sources=sources)

    def _fetch_inventory_plugins(self) -> list[Any]:
        plugins: list[Any] = super()._fetch_inventory_plugins()
        for plugin in plugins:  # a fresh instance each time: each records its own successes
            plugin.parse = functools.partial(self._parse_with, plugin, plugin.parse)
        return plugins

    def _parse_with(self, plugin: Any, parse: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """``plugin.parse``, remembering which plugin parsed each source (the last to succeed:
        a failed attempt raises before this records it)."""
        found = parse(*args, **kwargs)
        name = str(getattr(plugin, "_load_name", "") or getattr(plugin, "_original_path", ""))
        source = args[2] if len(args) > 2 else kwargs.get("path", "")
        self.parsed_by[str(source)] = inventory_cache.plugin_name(name)
        return found

    def static(self) -> bool:
        """Whether what was read depends only on the files read (inventory_cache's rule)."""
        plugins = {inventory_cache.plugin_name(p) for p in constants.VARIABLE_PLUGINS_ENABLED}
        return (
            bool(self.parsed_by)
            and set(self.parsed_by.values()) <= inventory_cache.STATIC_PLUGINS
            and plugins <= inventory_cache.STATIC_VARS_PLUGINS
        )

    def parse_source(self, source: str, cache: bool = False) -> bool:
        # called again for each file of a directory: the parent names the file that hangs
        if Path(source).exists():
            _check_kind(source)
        self.tell(("at", f"inventory {source}"))
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
) -> list[_Row]:
    keep_set = None if keep is None else frozenset(keep)
    out = []
    for host in inventory.hosts.values():
        groups = tuple(g for g in host.get_groups() if g.name != "all")
        merged = combine_vars(layers.prefix(groups), host.get_vars())
        merged = combine_vars(merged, layers.plugin_vars([host]))
        budget = _Budget(str(host.name), layers.sources)
        values = {
            str(k): _plain(merged[k], budget)
            for k in sorted(merged, key=str)
            if k not in constants.INTERNAL_STATIC_VARS and (keep_set is None or k in keep_set)
        }
        names = tuple(sorted(str(g.name) for g in groups if g.name not in BUILTIN_GROUPS))
        out.append((str(host.name), names, values))
    return sorted(out, key=lambda row: row[0])


class _Budget:
    """Counts the values copied into one host's record, and stops at MAX_VALUES."""

    def __init__(self, host: str, sources: list[str]) -> None:
        self.host = host
        self.sources = sources
        self.left = MAX_VALUES

    def spend(self) -> None:
        self.left -= 1
        if self.left < 0:
            shown = ", ".join(self.sources)
            raise InventoryError(
                f"inventory {shown}: the variables of host {self.host} hold more than "
                f"{MAX_VALUES:,} values (YAML aliases nested in aliases?)",
                hint=f"make the variables smaller; {HINT.format(path=shown)}",
            )


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


def _plain(value: Any, budget: _Budget) -> Any:
    """A variable's value as ``ansible-inventory --list`` prints it: JSON types only.

    Ansible's tagged str/int/dict/list types become the builtins; dates become ISO text; sets
    become sorted lists; vault-encrypted values stay encrypted, as ``{"__ansible_vault": …}``.
    """
    budget.spend()
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
        return {str(k): _plain(v, budget) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v, budget) for v in value]
    if isinstance(value, set | frozenset):
        return sorted((_plain(v, budget) for v in value), key=str)
    if isinstance(value, datetime | date | time):
        return value.isoformat()
    ciphertext = VaultHelper.get_ciphertext(value, with_tags=False)
    if ciphertext is not None:
        return {"__ansible_vault": ciphertext}
    return str(value)
