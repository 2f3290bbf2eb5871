"""The far network: lab hosts that only execution nodes reach (``patchkit lab isolate``).

A data centre or a DMZ, on one machine. Isolated hosts keep their addresses, names and keys, but
their cables move to a second bridge that has no address here: this machine (the controller)
has no route to them, and an explicit ``unreachable`` route per host makes an attempt fail at
once ("Network is unreachable") instead of after ARP timeouts. The nodes get a second cable into
that bridge, with a host route per isolated host, so that they, and only they, reach it. The far
network has its own apt mirror (the lab repository, served from a namespace of its own at the
lab's repository address), as a real DMZ would.

The lab's own tools (``lab ssh``, the tests' commands on hosts, waiting for SSH after a boot)
keep working: they reach an isolated host from inside its own namespace, its console; Ansible
and patchkit never do.
"""

from __future__ import annotations

import json
import signal
import sys
from dataclasses import dataclass
from pathlib import Path

from patchkit.errors import LabOperationError, LabUsageError
from patchkit.lab import cgroups, network, system
from patchkit.lab.config import LabConfig


@dataclass(frozen=True)
class Isolation:
    """Which hosts sit on the far network, and the nodes that reach them."""

    hosts: tuple[int, ...]
    via: tuple[int, ...]


def current(config: LabConfig) -> Isolation | None:
    """The lab's far network, or None when every host is on the lab bridge."""
    try:
        data = json.loads(config.isolation_file.read_text())
    except (OSError, ValueError):
        return None
    return Isolation(tuple(data["hosts"]), tuple(data["via"]))


def is_isolated(config: LabConfig, index: int) -> bool:
    found = current(config)
    return found is not None and index in found.hosts


def isolate(config: LabConfig, hosts: list[int], via: list[int]) -> Isolation:
    """Move ``hosts`` onto the far network, reached through the nodes ``via`` only."""
    existing = set(network.lab_namespaces(config))
    for index in [*hosts, *via]:
        if index not in existing:
            raise LabUsageError(
                f"{config.host_name(index)} is not a host of lab {config.name}",
                hint="bring it up first: patchkit lab up --hosts N",
            )
    if not hosts or not via:
        raise LabUsageError("name the hosts to isolate and at least one node (--via)")
    if set(hosts) & set(via):
        raise LabUsageError(
            "a node cannot be isolated too: it is the way in",
            hint="name each host either as isolated or after --via",
        )
    if current(config) is not None:
        raise LabUsageError(
            "the lab already has a far network",
            hint="undo it first: patchkit lab isolate --undo",
        )
    wanted = Isolation(tuple(sorted(set(hosts))), tuple(sorted(set(via))))
    config.run_dir.mkdir(parents=True, exist_ok=True)
    # written first: an interrupted isolate is undone from it like a finished one
    config.isolation_file.write_text(json.dumps({"hosts": wanted.hosts, "via": wanted.via}))
    _bridge(config)
    _mirror(config)
    for node in wanted.via:
        _node_cable(config, node, wanted.hosts)
    for index in wanted.hosts:
        _deaf(config.veth(index))
        system.run(["ip", "link", "set", config.veth(index), "master", config.far_bridge])
        system.run(["ip", "route", "replace", "unreachable", f"{config.address(index)}/32"])
        # what the host learnt on the lab bridge (the gateway's address) is wrong here
        system.run(["ip", "-n", config.netns(index), "neigh", "flush", "all"], check=False)
    for node in wanted.via:
        system.run(["ip", "-n", config.netns(node), "neigh", "flush", "all"], check=False)
    return wanted


def undo(config: LabConfig) -> Isolation | None:
    """Put the isolated hosts back on the lab bridge and remove the far network (idempotent:
    also what ``lab down`` calls, and it mends a half-done isolate)."""
    found = current(config)
    if found is not None:
        for index in found.hosts:
            system.run(["ip", "route", "del", "unreachable", f"{config.address(index)}/32"],
                       check=False)  # fmt: skip
            system.run(["ip", "link", "set", config.veth(index), "master", config.bridge],
                       check=False)  # fmt: skip
            system.run(["ip", "-n", config.netns(index), "neigh", "flush", "all"], check=False)
            system.run(["ip", "neigh", "flush", "to", str(config.address(index))], check=False)
        for node in found.via:
            system.run(["ip", "link", "del", config.far_veth(node)], check=False)
    pid = cgroups.owned_pid(_mirror_pid_file(config), f"{config.cgroup}/services")
    system.signal_pid(pid, signal.SIGKILL)
    _mirror_pid_file(config).unlink(missing_ok=True)
    system.run(["ip", "link", "del", config.mirror_veth], check=False)
    if config.mirror_netns in network.namespaces():
        system.run(["ip", "netns", "del", config.mirror_netns], check=False)
    system.run(["ip", "link", "del", config.far_bridge], check=False)
    config.isolation_file.unlink(missing_ok=True)
    return found


def _bridge(config: LabConfig) -> None:
    """The far bridge, deaf on this machine: this machine's own addresses (the lab gateway's
    among them) are not answered for on it (ARP), and it has no IPv6, whose link-local
    addresses would otherwise reach every host on it."""
    system.run(["ip", "link", "add", config.far_bridge, "type", "bridge"], check=False)
    _deaf(config.far_bridge)
    system.run(["ip", "link", "set", config.far_bridge, "up"])


def _deaf(device: str) -> None:
    """No IPv4 or IPv6 on ``device`` in this machine's namespace (a bridge or a bridge port)."""
    Path(f"/proc/sys/net/ipv6/conf/{device}/disable_ipv6").write_text("1\n")
    Path(f"/proc/sys/net/ipv4/conf/{device}/arp_ignore").write_text("8\n")


def _mirror(config: LabConfig) -> None:
    """A namespace on the far bridge that holds the repository's address and serves it."""
    ns = config.mirror_netns
    if ns not in network.namespaces():
        system.run(["ip", "netns", "add", ns])
    system.run(["ip", "link", "add", config.mirror_veth, "type", "veth", "peer", "name", "eth0",
                "netns", ns])  # fmt: skip
    _deaf(config.mirror_veth)
    system.run(["ip", "link", "set", config.mirror_veth, "master", config.far_bridge])
    system.run(["ip", "link", "set", config.mirror_veth, "up"])
    address = f"{config.gateway}/{config.subnet.prefixlen}"
    system.run(["ip", "-n", ns, "addr", "add", address, "dev", "eth0"])
    system.run(["ip", "-n", ns, "link", "set", "eth0", "up"])
    system.run(["ip", "-n", ns, "link", "set", "lo", "up"])
    argv = [
        "ip", "netns", "exec", ns, sys.executable, "-m", "http.server", str(config.repo_port),
        "--bind", str(config.gateway), "--directory", str(config.repo_dir),
    ]  # fmt: skip
    pid = system.spawn_daemon(
        argv, config.run_dir / "mirror.log", lambda: cgroups.enter(f"{config.cgroup}/services")
    )
    _mirror_pid_file(config).write_text(str(pid))
    probe = (
        f"import socket; socket.create_connection(({str(config.gateway)!r}, {config.repo_port}), 1)"
    )

    def answers() -> bool:
        done = system.run(["ip", "netns", "exec", ns, sys.executable, "-c", probe], check=False)
        return done.returncode == 0

    if not system.wait_until(answers, 10):
        raise LabOperationError(
            "the far network's mirror did not start",
            hint=f"see {config.run_dir / 'mirror.log'}; undo with patchkit lab isolate --undo",
        )


def _mirror_pid_file(config: LabConfig) -> Path:
    return config.run_dir / "mirror.pid"


def _node_cable(config: LabConfig, node: int, hosts: tuple[int, ...]) -> None:
    """Node ``node``'s second cable: its own address on it, and a route to each far host."""
    ns, veth = config.netns(node), config.far_veth(node)
    system.run(["ip", "link", "add", veth, "type", "veth", "peer", "name", "eth1", "netns", ns])
    _deaf(veth)
    system.run(["ip", "link", "set", veth, "master", config.far_bridge])
    system.run(["ip", "link", "set", veth, "up"])
    system.run(["ip", "-n", ns, "addr", "add", f"{config.address(node)}/32", "dev", "eth1"])
    system.run(["ip", "-n", ns, "link", "set", "eth1", "up"])
    for index in hosts:
        system.run(["ip", "-n", ns, "route", "replace", f"{config.address(index)}/32",
                    "dev", "eth1"])  # fmt: skip
