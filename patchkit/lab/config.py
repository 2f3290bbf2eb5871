"""Where a lab lives and how it is addressed: pure values, no I/O."""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass
from pathlib import Path

from patchkit.errors import LabUsageError
from patchkit.lab import catalog

DEFAULT_ROOT = Path("/var/lib/patchkit/lab")
DEFAULT_NAME = "pklab"
DEFAULT_SUBNET = "10.77.0.0/24"
DEFAULT_REPO_PORT = 8080
SUITE = "bookworm"

# Host I lives at <subnet>.(HOST_OFFSET + I); .1 is the bridge (and the apt repository).
HOST_OFFSET = 10
_DEFAULT_NETWORK = ipaddress.IPv4Network(DEFAULT_SUBNET)
_NAME_RE = re.compile(r"^[a-z][a-z0-9]{0,7}$")
_HOST_RE = re.compile(r"^(?:host)?([0-9]{1,6})$")  # more digits than any lab has hosts


@dataclass(frozen=True)
class LabConfig:
    """One lab: its name, the state root shared by all labs, its subnet and repository port.

    Two labs with different names and subnets can run side by side (the tests do that);
    they share the golden image cache and the SSH key under ``root``.
    """

    name: str = DEFAULT_NAME
    root: Path = DEFAULT_ROOT
    subnet: ipaddress.IPv4Network = _DEFAULT_NETWORK
    repo_port: int = DEFAULT_REPO_PORT

    @classmethod
    def create(
        cls,
        name: str = DEFAULT_NAME,
        root: Path | str = DEFAULT_ROOT,
        subnet: str = DEFAULT_SUBNET,
        repo_port: int = DEFAULT_REPO_PORT,
    ) -> LabConfig:
        """Validate raw settings (from flags or the environment) into a config."""
        if not _NAME_RE.match(name):
            raise LabUsageError(
                f"lab name {name!r} is not allowed",
                hint="use 1-8 characters: a lowercase letter, then letters or digits",
            )
        try:
            network = ipaddress.IPv4Network(subnet)
        except ValueError as exc:
            raise LabUsageError(
                f"lab subnet {subnet!r} is not an IPv4 network ({exc})",
                hint="give it as A.B.C.0/24",
            ) from None
        if not network.is_private or not 16 <= network.prefixlen <= 26:
            raise LabUsageError(
                f"lab subnet {subnet} must be a private network with a prefix from /16 to /26",
                hint="the default is " + DEFAULT_SUBNET,
            )
        if not 1024 <= repo_port <= 65535:
            raise LabUsageError(f"repository port {repo_port} is out of range 1024-65535")
        return cls(name=name, root=Path(root), subnet=network, repo_port=repo_port)

    # ---------------------------------------------------------------- addresses
    @property
    def max_hosts(self) -> int:
        """How many hosts fit in the subnet after the bridge and the offset (capped at 240)."""
        return min(self.subnet.num_addresses - HOST_OFFSET - 2, 240)

    @property
    def gateway(self) -> ipaddress.IPv4Address:
        """The bridge's address: the hosts' default route and the apt repository's address."""
        return self.subnet.network_address + 1

    def address(self, index: int) -> ipaddress.IPv4Address:
        """The address of host ``index``."""
        self.check_index(index)
        return self.subnet.network_address + HOST_OFFSET + index

    def check_index(self, index: int) -> int:
        """Return ``index`` if a host with that number can exist in this lab."""
        if not 1 <= index <= self.max_hosts:
            raise LabUsageError(
                f"host number {index} is out of range",
                hint=f"lab {self.name} holds host1 to host{self.max_hosts}",
            )
        return index

    def check_count(self, count: int) -> int:
        """Return ``count`` if the lab can hold that many hosts."""
        if not 1 <= count <= self.max_hosts:
            raise LabUsageError(
                f"host count {count} is out of range",
                hint=f"lab {self.name} holds 1 to {self.max_hosts} hosts",
            )
        return count

    def parse_host(self, text: str) -> int:
        """Turn ``host3`` or ``3`` into 3; anything else is a usage error."""
        match = _HOST_RE.match(text.strip())
        if not match:
            raise LabUsageError(
                f"{text!r} is not a lab host name", hint="name hosts host1, host2, ... or 1, 2, ..."
            )
        return self.check_index(int(match.group(1)))

    @staticmethod
    def host_name(index: int) -> str:
        """The hostname (and inventory name) of host ``index``."""
        return f"host{index}"

    @property
    def repo_url(self) -> str:
        """Base URL of the lab's apt repository, as the hosts see it."""
        return f"http://{self.gateway}:{self.repo_port}"

    # ---------------------------------------------------------------- network names
    @property
    def bridge(self) -> str:
        """The lab bridge's interface name (at most 15 characters)."""
        return f"{self.name}-br"

    def netns(self, index: int) -> str:
        """The network namespace of host ``index``."""
        return f"{self.name}-host{index}"

    def veth(self, index: int) -> str:
        """The host-side end of host ``index``'s veth pair (at most 15 characters)."""
        return f"{self.name}-v{index}"

    # the far network (``patchkit lab isolate``): hosts only execution nodes reach
    @property
    def far_bridge(self) -> str:
        """The far network's bridge: no address on this machine, so no route from it."""
        return f"{self.name}-far"

    def far_veth(self, index: int) -> str:
        """The bridge-side end of node ``index``'s second cable, into the far network."""
        return f"{self.name}-f{index}"

    @property
    def mirror_netns(self) -> str:
        """The far network's own apt mirror (the lab repository, served at the same address)."""
        return f"{self.name}-mirror"

    @property
    def mirror_veth(self) -> str:
        return f"{self.name}-m"

    @property
    def isolation_file(self) -> Path:
        """Which hosts sit on the far network, and through which nodes (JSON)."""
        return self.run_dir / "isolated.json"

    @property
    def cgroup(self) -> str:
        """The cgroup directory (under each hierarchy) that holds every process of the lab."""
        return f"patchkit-lab-{self.name}"

    # ---------------------------------------------------------------- paths
    @property
    def lab_dir(self) -> Path:
        return self.root / self.name

    @property
    def pool_image(self) -> Path:
        return self.lab_dir / "pool.img"

    @property
    def pool_dir(self) -> Path:
        return self.lab_dir / "pool"

    @property
    def snap_dir(self) -> Path:
        return self.pool_dir / "snap"

    @property
    def run_dir(self) -> Path:
        return self.lab_dir / "run"

    @property
    def repo_dir(self) -> Path:
        return self.lab_dir / "repo"

    @property
    def lxcfs_dir(self) -> Path:
        return self.lab_dir / "lxcfs"

    @property
    def cache_dir(self) -> Path:
        """Shared by all labs: the golden image as a btrfs send stream."""
        return self.root / "cache"

    @property
    def image_stream(self) -> Path:
        """The cached golden image of the current demo catalog: a catalog whose installed
        versions changed (a new source, a changelog) gets an image of its own, never a stale one."""
        return self.cache_dir / f"base-{SUITE}-{catalog.installed_stamp()}.btrfs"

    @property
    def key_path(self) -> Path:
        """Shared by all labs: the private key Ansible logs in with (the image trusts it)."""
        return self.root / "ssh" / "id_ed25519"

    @property
    def known_hosts(self) -> Path:
        """The lab hosts' SSH host keys, written from their disks (ssh and Ansible check them)."""
        return self.lab_dir / "known_hosts"

    def host_dir(self, index: int) -> Path:
        """The host's disk: a writable btrfs subvolume."""
        return self.pool_dir / self.host_name(index)

    def snapshot_dir(self, index: int, snapshot: str) -> Path:
        return self.snap_dir / f"{self.host_name(index)}@{snapshot}"

    def run_file(self, index: int, suffix: str) -> Path:
        """A state or fault file of host ``index`` (``pid``, ``sup.pid``, ``noboot`` ...)."""
        return self.run_dir / f"{self.host_name(index)}.{suffix}"


_SNAPSHOT_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")


def check_snapshot_name(name: str) -> str:
    """Return ``name`` if it can name a snapshot (it becomes part of a path)."""
    if not _SNAPSHOT_RE.match(name):
        raise LabUsageError(
            f"snapshot name {name!r} is not allowed",
            hint="use up to 64 letters, digits, '.', '_' or '-', starting with a letter or digit",
        )
    return name
