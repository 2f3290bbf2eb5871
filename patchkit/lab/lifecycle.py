"""Bring a whole lab up or down, and report on it. Every step is idempotent.

``up`` converges the lab to "N hosts running": it repairs what a killed controller left behind
(a pool still mounted, a dead FUSE mount, namespaces without veths, stale pid files, orphan
guests) instead of assuming a clean machine. ``down`` removes every trace except the shared
cache (golden image stream, SSH key), so the next ``up`` is fast.
"""

from __future__ import annotations

import fcntl
import logging
import shutil
import signal
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import yaml

from patchkit.lab import (
    catalog,
    cgroups,
    fleet,
    hosts,
    image,
    isolation,
    network,
    repo,
    supervisor,
    system,
)
from patchkit.lab.config import LabConfig

log = logging.getLogger(__name__)


@contextmanager
def locked(config: LabConfig, host: int | None = None) -> Iterator[None]:
    """One lab-changing command at a time per lab, or per host when ``host`` is given.

    A command on one host (snapshot, restore, start, stop) shares the lab's lock and holds its
    host's alone, so that a batch's hosts are restored side by side; bringing the lab up or
    down waits for all of them. The locks go with the process.
    """
    config.root.mkdir(parents=True, exist_ok=True)
    with (config.root / f".{config.name}.lock").open("w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX if host is None else fcntl.LOCK_SH)
        if host is None:
            yield
            return
        name = config.host_name(host)
        with (config.root / f".{config.name}.{name}.lock").open("w") as mine:
            fcntl.flock(mine, fcntl.LOCK_EX)
            yield


# ---------------------------------------------------------------- lxcfs
def ensure_lxcfs(config: LabConfig) -> None:
    """Per-host /proc/uptime comes from lxcfs; restart it if its mount is dead."""
    if supervisor.lxcfs_mount(config) is not None:
        return
    if system.is_mounted(config.lxcfs_dir):
        system.unmount(config.lxcfs_dir)  # the daemon died: its mount only goes lazily
    config.lxcfs_dir.mkdir(parents=True, exist_ok=True)
    system.signal_pid(
        cgroups.owned_pid(config.run_dir / "lxcfs.pid", f"{config.cgroup}/services"),
        signal.SIGKILL,
    )
    system.spawn_daemon(
        ["lxcfs", "-p", str(config.run_dir / "lxcfs.pid"), str(config.lxcfs_dir)],
        config.run_dir / "lxcfs.log",
        lambda: cgroups.enter(f"{config.cgroup}/services"),
    )
    if not system.wait_until(lambda: supervisor.lxcfs_mount(config) is not None, 5):
        log.warning("lxcfs did not start: hosts will show the controller's uptime")


# ---------------------------------------------------------------- up
def write_inventory(config: LabConfig, inventory_dir: Path, indices: list[int]) -> Path:
    inventory_dir.mkdir(parents=True, exist_ok=True)
    path = inventory_dir / "hosts.yml"
    body = yaml.safe_dump(fleet.inventory(config, indices), sort_keys=False)
    path.write_text(
        f"# Written by 'patchkit lab up' for lab {config.name}; rewritten on every up.\n{body}"
    )
    return path


def up(config: LabConfig, count: int, inventory_dir: Path) -> list[int]:
    """Converge to at least ``count`` running hosts; return the numbers of all lab hosts."""
    config.check_count(count)
    system.check_machine()
    with locked(config):
        system.install_packages()
        system.check_btrfs()
        system.ensure_inotify_instances()
        config.run_dir.mkdir(parents=True, exist_ok=True)
        image.ensure_key(config)
        network.ensure_bridge(config)
        image.ensure_pool(config)
        ensure_lxcfs(config)
        repo.ensure_built(config)
        repo.ensure_initialised(config)
        repo.ensure_serving(config)
        image.ensure_base(config, repo.installed_debs(config))
        wanted = sorted(set(range(1, count + 1)) | set(hosts.existing(config)))
        to_start = [i for i in wanted if not hosts.running(config, i)]
        if to_start:
            log.info("starting %s", ", ".join(config.host_name(i) for i in to_start))
        hosts.write_known_hosts(config)  # also for a lab made before the lab kept them
        for index in to_start:
            hosts.start(config, index)
        hosts.wait_ssh(config, wanted)
        write_inventory(config, inventory_dir, wanted)
        return wanted


# ---------------------------------------------------------------- down
def down(config: LabConfig, inventory_dir: Path | None, *, purge: bool = False) -> None:
    """Remove the lab: processes, namespaces, bridge, mounts, cgroups, files.

    Keeps the shared cache (the golden image stream and the SSH key) unless ``purge``.
    """
    system.check_machine()
    with locked(config):
        numbers = sorted(set(hosts.existing(config)) | set(network.lab_namespaces(config)))
        running = [i for i in numbers if hosts.running(config, i)]
        if running:
            with ThreadPoolExecutor(max_workers=min(16, len(running))) as pool:
                list(pool.map(lambda i: hosts.stop(config, i, timeout=10), running))
        isolation.undo(config)  # its routes live in this machine's table, not in the lab's
        if not cgroups.kill_all(config.cgroup):
            log.warning("some processes of lab %s would not die", config.name)
        for index in numbers:
            network.delete_host(config, index)
            system.run(
                ["rm", "-rf", f"/run/systemd/nspawn/propagate/{config.host_name(index)}"],
                check=False,
            )
        network.delete_bridge(config)
        for mount in system.mounts_under(config.lab_dir):
            system.unmount(mount)
        cgroups.remove(config.cgroup)
        if not system.mounts_under(config.lab_dir):
            shutil.rmtree(config.lab_dir, ignore_errors=True)
        if inventory_dir is not None:
            (inventory_dir / "hosts.yml").unlink(missing_ok=True)
        if purge:
            shutil.rmtree(config.cache_dir, ignore_errors=True)
            shutil.rmtree(config.key_path.parent, ignore_errors=True)


# ---------------------------------------------------------------- status
@dataclass(frozen=True)
class HostStatus:
    name: str
    address: str
    state: str  # running / off
    network: str  # up / down (cable pulled)
    env: str
    tier: int
    cluster: str


@dataclass(frozen=True)
class LabStatus:
    name: str
    subnet: str
    pool_mounted: bool
    repo_url: str
    repo_serving: bool
    published_updates: tuple[str, ...]
    hosts: tuple[HostStatus, ...]
    snapshots: tuple[str, ...]

    @property
    def exists(self) -> bool:
        return self.pool_mounted or bool(self.hosts)


def _network(config: LabConfig, index: int, far: isolation.Isolation | None) -> str:
    """up, down (cable pulled) or far (on the far network, reached through nodes only)."""
    if config.run_file(index, "netdown").exists():
        return "down"
    return "far" if far is not None and index in far.hosts else "up"


def status(config: LabConfig) -> LabStatus:
    mounted = system.is_mounted(config.pool_dir)
    far = isolation.current(config)
    rows = []
    for index in hosts.existing(config) if mounted else []:
        prof = fleet.profile(index)
        rows.append(
            HostStatus(
                name=config.host_name(index),
                address=str(config.address(index)),
                state="running" if hosts.running(config, index) else "off",
                network=_network(config, index, far),
                env=prof.env,
                tier=prof.tier,
                cluster=prof.cluster,
            )
        )
    return LabStatus(
        name=config.name,
        subnet=str(config.subnet),
        pool_mounted=mounted,
        repo_url=config.repo_url,
        repo_serving=repo.serving(config),
        published_updates=tuple(p.key for p in repo.published(config) if p.is_update),
        hosts=tuple(rows),
        snapshots=tuple(f"{s.host}@{s.name}" for s in hosts.snapshots(config)) if mounted else (),
    )


def set_updates(config: LabConfig, pattern: str | None, *, publish: bool) -> tuple[str, ...]:
    """Publish or withdraw demo package versions; returns the ``name_version`` keys touched."""
    chosen = catalog.select(pattern)
    with locked(config):
        repo.ensure_built(config)
        (repo.publish if publish else repo.withdraw)(config, chosen)
    return tuple(p.key for p in chosen)
