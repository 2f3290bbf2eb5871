"""Lab hosts: create, power on and off, wait for SSH, inject faults, snapshot and restore."""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import tempfile
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from patchkit.errors import LabOperationError, LabUsageError
from patchkit.lab import catalog, cgroups, image, isolation, network, supervisor, system
from patchkit.lab.config import LabConfig, check_snapshot_name

log = logging.getLogger(__name__)

SSH_TIMEOUT = 120.0  # 8 hosts booting at once on 2 busy cores took over 60 s once


def ssh_argv(config: LabConfig, index: int, connect_timeout: int = 2) -> list[str]:
    """ssh to host ``index`` as root with the lab key, checking its key against the lab's own.

    A host on the far network (``lab isolate``) is reached from inside its own namespace, as
    one would at its console: this machine has no route to it.
    """
    console = ["ip", "netns", "exec", config.netns(index)]
    return [
        *(console if isolation.is_isolated(config, index) else []),
        "ssh",
        "-i",
        str(config.key_path),
        "-o",
        "StrictHostKeyChecking=yes",
        "-o",
        f"UserKnownHostsFile={config.known_hosts}",
        "-o",
        "LogLevel=ERROR",
        "-o",
        f"ConnectTimeout={connect_timeout}",
        "-o",
        "BatchMode=yes",
        f"root@{config.address(index)}",
    ]


def existing(config: LabConfig) -> list[int]:
    """Numbers of the hosts whose disk exists in the pool."""
    if not config.pool_dir.is_dir():
        return []
    found = []
    for path in config.pool_dir.glob("host*"):
        suffix = path.name.removeprefix("host")
        if suffix.isdigit() and path.is_dir():
            found.append(int(suffix))
    return sorted(found)


# ---------------------------------------------------------------- state
def supervisor_pid(config: LabConfig, index: int) -> int | None:
    return cgroups.owned_pid(config.run_file(index, "sup.pid"), _group(config, index))


def _group(config: LabConfig, index: int) -> str:
    return f"{config.cgroup}/{config.host_name(index)}"


def running(config: LabConfig, index: int) -> bool:
    return supervisor_pid(config, index) is not None


def guest_init(config: LabConfig, index: int) -> int | None:
    """PID (as the controller sees it) of the host's systemd, or None when it is off."""
    nspawn = cgroups.owned_pid(config.run_file(index, "pid"), _group(config, index))
    if nspawn is None:
        return None
    kids = system.children(nspawn)
    return kids[0] if kids else None


# ---------------------------------------------------------------- create and power
def _write_host_files(config: LabConfig, index: int) -> None:
    root = config.host_dir(index)
    name = config.host_name(index)
    (root / "etc/hostname").write_text(name + "\n")
    (root / "etc/hosts").write_text(f"127.0.0.1 localhost\n127.0.1.1 {name}\n")
    (root / "etc/apt/sources.list.d/patchkit-lab.list").write_text(
        "".join(f"deb [trusted=yes] {config.repo_url}/{origin} ./\n" for origin in catalog.ORIGINS)
    )


def create(config: LabConfig, index: int) -> None:
    """Clone the golden image into the host's disk and give it its network namespace."""
    if not config.host_dir(index).exists():
        image.snapshot(config.pool_dir / image.BASE, config.host_dir(index), readonly=False)
        _write_host_files(config, index)
        system.run(["ssh-keygen", "-q", "-A", "-f", str(config.host_dir(index))])
        write_known_hosts(config)
    network.ensure_host(config, index)


def known_hosts_lines(address: str, public_keys: Iterable[str]) -> list[str]:
    """known_hosts lines for ``address`` from the host's ``ssh_host_*_key.pub`` contents."""
    lines = []
    for text in public_keys:
        fields = text.split()
        if len(fields) >= 2:
            lines.append(f"{address} {fields[0]} {fields[1]}")
    return lines


def write_known_hosts(config: LabConfig) -> None:
    """Write the lab's known_hosts from the keys on the hosts' disks.

    The lab made every host's keys itself, so it knows them without asking the network (as a
    CMDB or a cloud's instance metadata would); a key that differs later is refused.
    """
    lines: list[str] = []
    for index in existing(config):
        keys = sorted((config.host_dir(index) / "etc/ssh").glob("ssh_host_*_key.pub"))
        lines += known_hosts_lines(str(config.address(index)), (k.read_text() for k in keys))
    config.lab_dir.mkdir(parents=True, exist_ok=True)
    # a private name, then a rename: hosts created side by side never see a half-written file
    fd, partial = tempfile.mkstemp(dir=config.lab_dir, prefix=".known_hosts.")
    try:
        with os.fdopen(fd, "w") as out:
            out.writelines(line + "\n" for line in lines)
        Path(partial).replace(config.known_hosts)
    except BaseException:
        Path(partial).unlink(missing_ok=True)
        raise


def start(config: LabConfig, index: int) -> None:
    """Power the host on (its supervisor boots it); nothing to do when it is on."""
    create(config, index)
    if running(config, index):
        return
    # A supervisor that died (killed controller) may have left its guest running: clear it.
    cgroups.kill_all(_group(config, index))
    system.run(
        ["rm", "-rf", f"/run/systemd/nspawn/propagate/{config.host_name(index)}"], check=False
    )
    config.run_dir.mkdir(parents=True, exist_ok=True)
    argv = supervisor.command(config, index, sys.executable)
    system.spawn_daemon(argv, config.run_file(index, "sup.log"))
    if not system.wait_until(lambda: config.run_file(index, "pid").exists(), 10):
        raise LabOperationError(
            f"{config.host_name(index)} did not start",
            hint=f"see {config.run_file(index, 'sup.log')} and {config.run_file(index, 'console')}",
        )


def stop(config: LabConfig, index: int, timeout: float = 30.0) -> None:
    """Clean poweroff (nspawn turns SIGTERM into one); a hard kill if it takes too long."""
    sup = supervisor_pid(config, index)
    if sup is None:
        return
    config.run_file(index, "stop").touch()
    system.signal_pid(
        cgroups.owned_pid(config.run_file(index, "pid"), _group(config, index)), signal.SIGTERM
    )
    if system.wait_until(lambda: not running(config, index), timeout, 0.2):
        return
    log.warning("%s: clean poweroff timed out, killing it", config.host_name(index))
    cgroups.kill_all(_group(config, index))
    system.wait_until(lambda: not running(config, index), 10, 0.2)


def _answers_ssh(config: LabConfig, index: int) -> bool:
    return system.run([*ssh_argv(config, index), "true"], check=False, timeout=15).returncode == 0


def wait_ssh(config: LabConfig, indices: Iterable[int], timeout: float = SSH_TIMEOUT) -> None:
    """Wait until every host answers over SSH; name the ones that do not."""
    wanted = sorted(set(indices))
    if not wanted:
        return

    def one(index: int) -> bool:
        return system.wait_until(lambda: _answers_ssh(config, index), timeout, 0.3)

    with ThreadPoolExecutor(max_workers=min(16, len(wanted))) as pool:
        results = dict(zip(wanted, pool.map(one, wanted), strict=True))
    silent = [config.host_name(i) for i, ok in results.items() if not ok]
    if silent:
        raise LabOperationError(
            f"not reachable over SSH after {timeout:.0f} s: {', '.join(silent)}",
            hint=f"see the consoles in {config.run_dir} (hostN.console)",
        )


def ssh(config: LabConfig, index: int, command: list[str], *, tty: bool) -> int:
    """Run a command (or, with none, a shell) on the host; returns its exit status."""
    argv = ssh_argv(config, index, connect_timeout=5)
    if tty:
        argv.insert(1, "-t")
    return subprocess.call([*argv, *command])


# ---------------------------------------------------------------- faults
def hard_reset(config: LabConfig, index: int) -> None:
    """SIGKILL the guest's PID 1: its whole PID namespace dies, then it boots again."""
    init = guest_init(config, index)
    if init is None:
        raise LabUsageError(f"{config.host_name(index)} is not running")
    config.run_file(index, "reset").touch()
    system.signal_pid(init, signal.SIGKILL)


def set_boot_delay(config: LabConfig, index: int, seconds: float) -> None:
    if not 0 <= seconds <= 3600:
        raise LabUsageError(f"boot delay {seconds} s is out of range 0-3600")
    config.run_dir.mkdir(parents=True, exist_ok=True)
    config.run_file(index, "boot_delay").write_text(f"{seconds}\n")


def set_no_boot(config: LabConfig, index: int) -> None:
    config.run_dir.mkdir(parents=True, exist_ok=True)
    config.run_file(index, "noboot").touch()


def set_network(config: LabConfig, index: int, *, up: bool) -> None:
    """Pull or plug the host's cable; a pulled cable stays pulled across reboots."""
    config.run_dir.mkdir(parents=True, exist_ok=True)
    marker = config.run_file(index, "netdown")
    if up:
        marker.unlink(missing_ok=True)
        if running(config, index):
            network.set_link(config, index, up=True)
    else:
        marker.touch()
        network.set_link(config, index, up=False)


# The file demo-lib's update replaces: made immutable on the host's disk, dpkg cannot unpack the
# new version ("Operation not permitted") and the install fails as a broken package would.
INSTALL_FAULT_FILE = "usr/lib/demo-lib/VERSION"


def set_install_fails(config: LabConfig, index: int, *, fails: bool) -> None:
    """Make the next install of demo-lib fail on the host (chattr +i from the controller)."""
    target = config.host_dir(index) / INSTALL_FAULT_FILE
    if target.exists():
        system.run(["chattr", "+i" if fails else "-i", str(target)])


# dpkg runs the installed version's prerm ("prerm upgrade NEW") before it unpacks another
# version. demo-lib ships none: this one, written into dpkg's database on the host's disk, deletes
# itself and fails, so dpkg gives up that attempt and keeps 1.0 installed; the next attempt finds
# no prerm and goes through. A retry of the same install therefore succeeds.
INSTALL_ONCE_FAULT_FILE = "var/lib/dpkg/info/demo-lib.prerm"
_INSTALL_ONCE_MARK = "# patchkit lab fault: install-fails-once"
_INSTALL_ONCE_SCRIPT = f"""#!/bin/sh
{_INSTALL_ONCE_MARK}
if [ "$1" = upgrade ]; then
    rm -f /{INSTALL_ONCE_FAULT_FILE}
    echo "patchkit lab fault install-fails-once: this upgrade fails, the next works" >&2
    exit 1
fi
exit 0
"""


def set_install_fails_once(config: LabConfig, index: int, *, fails: bool) -> None:
    """Make only the next install of demo-lib fail on the host (a self-deleting prerm)."""
    target = config.host_dir(index) / INSTALL_ONCE_FAULT_FILE
    if fails:
        if not target.parent.is_dir():
            raise LabUsageError(
                f"{config.host_name(index)} has no dpkg database at {target.parent}"
            )
        target.write_text(_INSTALL_ONCE_SCRIPT)
        target.chmod(0o755)
    elif target.is_file() and _INSTALL_ONCE_MARK in target.read_text(errors="replace"):
        target.unlink()  # only ours: a prerm a real package shipped stays


def clear_faults(config: LabConfig, index: int) -> None:
    for knob in ("boot_delay", "noboot"):
        config.run_file(index, knob).unlink(missing_ok=True)
    set_network(config, index, up=True)
    set_install_fails(config, index, fails=False)
    set_install_fails_once(config, index, fails=False)


# ---------------------------------------------------------------- snapshots
@dataclass(frozen=True)
class Snapshot:
    host: str
    name: str
    path: Path


def snapshot(config: LabConfig, index: int, name: str) -> Snapshot:
    """A read-only, crash-consistent snapshot of the host's disk (as a hypervisor takes)."""
    check_snapshot_name(name)
    target = config.snapshot_dir(index, name)
    if target.exists():
        raise LabUsageError(
            f"{config.host_name(index)} already has a snapshot {name!r}",
            hint="pick another name, or delete it first",
        )
    if not config.host_dir(index).exists():
        raise LabUsageError(f"{config.host_name(index)} does not exist in lab {config.name}")
    image.snapshot(config.host_dir(index), target, readonly=True)
    return Snapshot(config.host_name(index), name, target)


def snapshots(config: LabConfig) -> list[Snapshot]:
    if not config.snap_dir.is_dir():
        return []
    out = []
    for path in sorted(config.snap_dir.iterdir()):
        host, _, name = path.name.partition("@")
        out.append(Snapshot(host, name, path))
    return out


def delete_snapshot(config: LabConfig, index: int, name: str) -> None:
    target = config.snapshot_dir(index, check_snapshot_name(name))
    if not target.exists():
        raise LabUsageError(f"{config.host_name(index)} has no snapshot {name!r}")
    image.delete_subvolume(target, config.pool_dir)


def restore(config: LabConfig, index: int, name: str) -> None:
    """Power off, swap the disk for a writable copy of the snapshot, power on, wait for SSH.

    A host that was off (it never came back from a reboot) is booted too: like a hypervisor's
    revert, the restore brings back a running machine.
    """
    restore_many(config, [index], name, power_on=True)


def restore_many(
    config: LabConfig, indices: Iterable[int], name: str, *, power_on: bool = False
) -> None:
    """Restore several hosts to their snapshot ``name`` side by side.

    All are powered off first (in parallel), their disks swapped, then powered on together with
    one wait for SSH: restoring a batch costs about one host's boot, not one per host. Hosts
    that were off stay off unless ``power_on``.
    """
    wanted = sorted(set(indices))
    for index in wanted:
        if not config.snapshot_dir(index, check_snapshot_name(name)).exists():
            raise LabUsageError(
                f"{config.host_name(index)} has no snapshot {name!r}",
                hint="'patchkit lab snapshots' lists the snapshots there are",
            )
    was_running = [i for i in wanted if power_on or running(config, i)]
    if wanted:
        with ThreadPoolExecutor(max_workers=min(16, len(wanted))) as pool:
            list(pool.map(lambda i: stop(config, i), wanted))
    for index in wanted:
        image.delete_subvolume(config.host_dir(index), config.pool_dir)
        image.snapshot(config.snapshot_dir(index, name), config.host_dir(index), readonly=False)
    for index in was_running:
        start(config, index)
    wait_ssh(config, was_running)
