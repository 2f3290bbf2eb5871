"""The lab network: a bridge with the lab's subnet, and one namespace plus veth pair per host.

Hosts route only to the bridge: they reach the controller (SSH in, the apt repository out) and
each other, and nothing beyond the lab subnet.
"""

from __future__ import annotations

from patchkit.lab import system
from patchkit.lab.config import LabConfig


def _link_exists(name: str, netns: str | None = None) -> bool:
    argv = ["ip"] + (["-n", netns] if netns else []) + ["link", "show", name]
    return system.run(argv, check=False).returncode == 0


def namespaces() -> list[str]:
    """Names of the machine's network namespaces."""
    out = system.run(["ip", "netns", "list"], check=False).stdout
    return [line.split()[0] for line in out.splitlines() if line.strip()]


def ensure_bridge(config: LabConfig) -> None:
    """Create the bridge with the gateway address, or bring an existing one up."""
    br = config.bridge
    if not _link_exists(br):
        system.run(["ip", "link", "add", br, "type", "bridge"])
    addr = f"{config.gateway}/{config.subnet.prefixlen}"
    if addr not in system.run(["ip", "-o", "addr", "show", "dev", br]).stdout:
        system.run(["ip", "addr", "add", addr, "dev", br])
    system.run(["ip", "link", "set", br, "up"])


def delete_bridge(config: LabConfig) -> None:
    if _link_exists(config.bridge):
        system.run(["ip", "link", "del", config.bridge], check=False)


def ensure_host(config: LabConfig, index: int) -> None:
    """Give host ``index`` its namespace, and a veth pair from it into the bridge.

    Repairs a half-built state (a namespace left without its veth by a killed controller).
    """
    ns, veth = config.netns(index), config.veth(index)
    if ns not in namespaces():
        system.run(["ip", "netns", "add", ns])
    if not _link_exists(veth):
        if _link_exists("eth0", ns):
            system.run(["ip", "-n", ns, "link", "del", "eth0"], check=False)
        system.run(["ip", "link", "add", veth, "type", "veth", "peer", "name", "eth0", "netns", ns])
        system.run(["ip", "link", "set", veth, "master", config.bridge])
        addr = f"{config.address(index)}/{config.subnet.prefixlen}"
        system.run(["ip", "-n", ns, "addr", "add", addr, "dev", "eth0"])
        system.run(["ip", "-n", ns, "link", "set", "eth0", "up"])
        system.run(["ip", "-n", ns, "link", "set", "lo", "up"])
        system.run(["ip", "-n", ns, "route", "replace", "default", "via", str(config.gateway)])


def set_link(config: LabConfig, index: int, up: bool) -> None:
    """Plug or pull the host's cable (the bridge side of its veth)."""
    system.run(["ip", "link", "set", config.veth(index), "up" if up else "down"], check=False)


def delete_host(config: LabConfig, index: int) -> None:
    """Remove the host's namespace; its veth pair goes with it."""
    system.run(["ip", "link", "del", config.veth(index)], check=False)
    if config.netns(index) in namespaces():
        system.run(["ip", "netns", "del", config.netns(index)], check=False)


def lab_namespaces(config: LabConfig) -> list[int]:
    """Host numbers of this lab's namespaces that exist now (also those of deleted hosts)."""
    prefix = f"{config.name}-host"
    found = []
    for ns in namespaces():
        suffix = ns.removeprefix(prefix)
        if ns.startswith(prefix) and suffix.isdigit():
            found.append(int(suffix))
    return sorted(found)
