"""Generate the example fleet: a directory inventory of servers and employee laptops.

    python examples/generate_fleet.py                        # rewrites inventories/example/
    python examples/generate_fleet.py --hosts 50000 /tmp/big  # a large one, for benchmarks

The output is deterministic for a given size and seed: ``hosts.yml`` (groups by environment, by
role and by cluster), ``group_vars/`` and a few ``host_vars/``; other files in the output
directory are left alone. Only the standard library is used.

This script lives outside the fleet so that the fleet's directory holds inventory only: Ansible
reads every file of a directory given as ``-i`` (a script too) as an inventory source, so
``-i inventories/example`` and ``-i inventories/example/hosts.yml`` both work.
"""

from __future__ import annotations

import argparse
import json
import random
import re
import shutil
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_OUT = ROOT / "inventories" / "example"
DEFAULT_HOSTS = 240
DEFAULT_SEED = 20261128

PRODUCTS = (
    "orders", "billing", "search", "catalog", "accounts", "payments", "shipping", "reviews",
    "pricing", "media", "notify", "reports", "loyalty", "returns", "tax", "ledger",
)  # fmt: skip
FIRST = ("alice", "bob", "carla", "deniz", "emil", "farah", "goran", "hana", "ivan", "jun")
LAST = ("martin", "nguyen", "okafor", "petrov", "quinn", "rossi", "sato", "tanaka", "ueda", "weber")
ENV_NET = {"prod": 1, "staging": 2, "dev": 3}

# One product's stack per environment: (role, members). Members of a role form one cluster.
STACK = {
    "prod": (("web", 3), ("app", 3), ("db", 3), ("cache", 2)),
    "staging": (("web", 2), ("app", 2), ("db", 2)),
    "dev": (("app", 2), ("db", 1)),
}
# Shared infrastructure, once per eight products: (env, role, members, cluster or None).
SHARED = (
    ("prod", "lb", 2, "edge-lb"),
    ("prod", "mon", 2, "monitoring"),
    ("prod", "ci", 2, None),
    ("prod", "batch", 3, None),
    ("staging", "lb", 2, "edge-lb"),
    ("staging", "batch", 1, None),
    ("dev", "batch", 1, None),
)
ROLE_GROUP = {"mon": "monitoring"}
INTERNAL_ROLES = {"mon", "ci", "batch"}  # in prod: internal services, tier 2
CLUSTER_GROUP_ROLES = {"db", "cache"}  # cluster named by a group; other roles by a host var
SAFE_SCALAR = re.compile(r"^(?:[A-Za-z_][A-Za-z0-9_.@/-]*|[0-9]+(?:\.[0-9]+){3})$")
YAML_WORDS = {"yes", "no", "on", "off", "true", "false", "null", "y", "n", "~"}


@dataclass
class Server:
    name: str
    env: str
    role: str
    cluster: str | None
    product: str | None
    address: str


@dataclass
class Fleet:
    servers: list[Server] = field(default_factory=list)
    laptops: list[tuple[str, str]] = field(default_factory=list)  # (name, owner)
    legacy: list[str] = field(default_factory=list)
    canary: list[str] = field(default_factory=list)


def product_name(index: int) -> str:
    base = PRODUCTS[index % len(PRODUCTS)]
    round_ = index // len(PRODUCTS)
    return base if round_ == 0 else f"{base}{round_ + 1}"


def planned_stack(index: int) -> Iterator[tuple[str, str, int, str | None, str | None]]:
    """(env, role, members, cluster, product) for product ``index`` and any shared part."""
    product = product_name(index)
    for env, roles in STACK.items():
        for role, members in roles:
            yield env, role, members, f"{product}-{role}-{env}", product
    if index % 8 == 0:
        for env, role, members, cluster in SHARED:
            name = f"{cluster}{index // 8 + 1 if index else ''}-{env}" if cluster else None
            yield env, role, members, name, None
        yield "prod", "legacy", 2, None, None


def build(size: int, seed: int) -> Fleet:
    """Lay out ``size`` hosts: a quarter laptops, the rest whole product stacks."""
    rng = random.Random(seed)  # noqa: S311 - a reproducible layout, not secrets
    budget = size - size // 4
    plans: list[tuple[str, str, int, str | None, str | None]] = []
    used = 0
    index = 0
    while True:
        stack = list(planned_stack(index))
        need = sum(members for _, _, members, _, _ in stack)
        if used + need > budget:
            break
        plans.extend(stack)
        used += need
        index += 1
    totals: dict[tuple[str, str], int] = {}
    for env, role, members, _, _ in plans:
        totals[env, role] = totals.get((env, role), 0) + members
    width = max(2, len(str(max(totals.values(), default=1))))
    counters: dict[tuple[str, str], int] = {}
    fleet = Fleet()
    for env, role, members, cluster, product in plans:
        for _ in range(members):
            number = counters[env, role] = counters.get((env, role), 0) + 1
            if role == "legacy":
                name = f"app-{env}-legacy-{number:0{width}d}"
                fleet.legacy.append(name)
            else:
                name = f"{role}-{env}-{number:0{width}d}"
            seq = len(fleet.servers) + 1
            address = f"10.{ENV_NET[env]}.{seq // 250}.{seq % 250 + 1}"
            fleet.servers.append(Server(name, env, role, cluster, product, address))
    laptop_count = size - len(fleet.servers)
    lt_width = max(4, len(str(laptop_count)))
    for number in range(1, laptop_count + 1):
        owner = f"{rng.choice(FIRST)}.{rng.choice(LAST)}"
        fleet.laptops.append((f"lt-{number:0{lt_width}d}", owner))
    nonprod = [s.name for s in fleet.servers if s.env != "prod"]
    fleet.canary = sorted(rng.sample(nonprod, min(len(nonprod), max(2, size // 60))))
    return fleet


def group_key(text: str) -> str:
    return text.replace("-", "_")


def inventory_tree(fleet: Fleet) -> dict[str, Any]:
    """The ``all:`` tree of hosts.yml: host vars under the environment groups, roles beside."""
    by_env: dict[str, dict[str, Any]] = {env: {} for env in STACK}
    internal: dict[str, Any] = {}
    roles: dict[str, dict[str, Any]] = {}
    clusters: dict[str, dict[str, dict[str, Any]]] = {}
    for s in sorted(fleet.servers, key=lambda s: s.name):
        hostvars: dict[str, Any] = {"ansible_host": s.address}
        if s.cluster and s.role not in CLUSTER_GROUP_ROLES:
            hostvars["cluster"] = s.cluster
        if s.env == "prod" and s.role in INTERNAL_ROLES:
            internal[s.name] = hostvars
        else:
            by_env[s.env][s.name] = hostvars
        role = "app" if s.role == "legacy" else ROLE_GROUP.get(s.role, s.role)
        if s.role in CLUSTER_GROUP_ROLES and s.cluster:
            cluster = clusters.setdefault(role, {}).setdefault(group_key(s.cluster), {})
            cluster.setdefault("hosts", {})[s.name] = None
            cluster["vars"] = {"cluster": s.cluster}
        else:
            roles.setdefault(role, {}).setdefault("hosts", {})[s.name] = None
    for role, groups in clusters.items():
        # Clusters in the order of their first host: Ansible lists a group's hosts child group
        # by child group, so 'db[0]' is then the first db host by name, as patchkit counts.
        by_first = sorted(groups.items(), key=lambda item: min(item[1]["hosts"]))
        roles.setdefault(role, {})["children"] = dict(by_first)
    env_groups: dict[str, Any] = {env: {"hosts": hosts} for env, hosts in by_env.items()}
    env_groups["prod"]["children"] = {"prod_internal": {"hosts": internal}}
    # Early adopters, patched in a wave before the rest. Ansible merges group vars by depth, then
    # priority, then name; it honours a priority only where the inventory source sets it (not in
    # group_vars/). It makes group_vars/canary.yml win over staging.yml and dev.yml, which sit
    # at the same depth and sort after "canary".
    env_groups["canary"] = {
        "hosts": dict.fromkeys(fleet.canary),
        "vars": {"ansible_group_priority": 10},
    }
    laptops = {name: {"owner": owner} for name, owner in fleet.laptops}
    children: dict[str, Any] = {
        "servers": {"children": env_groups},
        "laptops": {"hosts": laptops},
        **dict(sorted(roles.items())),
        "legacy": {"hosts": dict.fromkeys(fleet.legacy)},
    }
    return {"all": {"children": children}}


def scalar(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    text = str(value)
    if SAFE_SCALAR.match(text) and text.lower() not in YAML_WORDS:
        return text
    return json.dumps(text)  # a JSON string is a valid double-quoted YAML scalar


def emit(tree: dict[str, Any], indent: int = 0) -> Iterator[str]:
    """Block-style YAML for nested dicts of scalars and lists (all this generator writes)."""
    pad = "  " * indent
    for key, value in tree.items():
        if isinstance(value, dict):
            if value:
                yield f"{pad}{scalar(key)}:"
                yield from emit(value, indent + 1)
            else:
                yield f"{pad}{scalar(key)}: {{}}"
        elif isinstance(value, list):
            yield f"{pad}{scalar(key)}:"
            yield from (f"{pad}  - {scalar(item)}" for item in value)
        else:
            yield f"{pad}{scalar(key)}: {scalar(value)}".rstrip()


GROUP_VARS: dict[str, dict[str, Any]] = {
    "all.yml": {
        "os_family": "Debian",
        "ansible_user": "patchkit",
        "ansible_python_interpreter": "/usr/bin/python3",
        "patch_wave": 2,
    },
    "servers.yml": {"backup_before_patch": True, "monitoring_silence": "30m"},
    "prod/main.yml": {"env": "prod", "tier": 1},
    "prod/contacts.yml": {"pager": "ops-oncall", "change_ticket_required": True},
    "staging.yml": {"env": "staging", "tier": 2, "patch_wave": 1},
    "dev.yml": {"env": "dev", "tier": 3, "patch_wave": 1},
    "laptops.yml": {
        "env": "corp",
        "tier": 4,
        "ansible_user": "it-admin",
        "reboot_notice": "Your laptop restarts for updates in 15 minutes.",
    },
    "db.yml": {"reboot_needs_approval": True, "services": ["postgresql"]},
    "web.yml": {"health_url": "http://127.0.0.1/health", "services": ["nginx"]},
    "legacy.yml": {"end_of_life": "2027-06-30"},
    # group_vars/ files win over the inventory's own group vars; deeper groups win over their
    # parents: prod_internal (under prod) lowers the tier of prod's internal services.
    "prod_internal.yml": {"tier": 2},
    "canary.yml": {"patch_wave": 0},
}


def host_vars(fleet: Fleet) -> dict[str, dict[str, Any]]:
    """A few hosts with vars of their own, as real inventories have."""
    files: dict[str, dict[str, Any]] = {}
    for name in fleet.legacy:
        files[f"{name}.yml"] = {"os_family": "RedHat", "notes": "CentOS 7, migration pending"}
    db = [s.name for s in fleet.servers if s.role == "db" and s.env == "prod"]
    if len(db) >= 3:
        files[f"{db[2]}.yml"] = {"vendor_certified": True, "notes": "vendor-certified build"}
    web = [s.name for s in fleet.servers if s.role == "web" and s.env == "prod"]
    if web:
        # host_vars/<host>/ as a directory: every file in it is read, in name order
        files[f"{web[0]}/main.yml"] = {"maintenance_note": "card terminals: tell payments first"}
        files[f"{web[0]}/tls.yml"] = {"tls_cert_expires": "2027-02-01"}
    if fleet.laptops:
        files[f"{fleet.laptops[0][0]}.yml"] = {"tier": 3, "notes": "shared kiosk, not a person"}
    return files


def write(out: Path, fleet: Fleet, size: int, seed: int) -> None:
    for sub in ("group_vars", "host_vars"):
        shutil.rmtree(out / sub, ignore_errors=True)
    out.mkdir(parents=True, exist_ok=True)
    header = [
        f"# Written by examples/generate_fleet.py --hosts {size} --seed {seed}; do not edit.",
        "# Servers by environment (servers: prod, staging, dev), by role (web, app, db, …) and",
        "# by cluster (db_*, cache_*); employee laptops in 'laptops'.",
    ]
    lines = [*header, *emit(inventory_tree(fleet))]
    (out / "hosts.yml").write_text("\n".join(lines) + "\n", encoding="utf-8")
    for kind, files in (("group_vars", GROUP_VARS), ("host_vars", host_vars(fleet))):
        for rel, data in files.items():
            path = out / kind / rel
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text("---\n" + "\n".join(emit(data)) + "\n", encoding="utf-8")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", nargs="?", type=Path, default=DEFAULT_OUT, help="output directory")
    parser.add_argument("--hosts", type=int, default=DEFAULT_HOSTS, help="fleet size (>= 48)")
    parser.add_argument("--seed", type=int, default=DEFAULT_SEED, help="random seed")
    args = parser.parse_args()
    if args.hosts < 48:
        parser.error("--hosts must be at least 48 (one product stack, shared services, laptops)")
    fleet = build(args.hosts, args.seed)
    write(args.out, fleet, args.hosts, args.seed)
    print(f"{args.hosts} hosts ({len(fleet.laptops)} laptops) written to {args.out}")


if __name__ == "__main__":
    main()
