"""The supervisor of one lab host: keeps it "powered on", boots it again after a reboot.

Started detached by ``patchkit lab up`` as ``python -m patchkit.lab.supervisor``. A guest's
``systemctl reboot`` makes systemd-nspawn exit with status 133; the supervisor then boots the
host again (with a new boot_id), after the fault knobs have had their say:

- ``hostN.boot_delay`` (seconds): the host stays off that long during a reboot;
- ``hostN.noboot``: the next reboot leaves the host off (it never comes back);
- ``hostN.netdown``: the host's cable stays pulled when it boots;
- ``hostN.reset``: written by a hard reset, so that the kill counts as a reboot;
- ``hostN.stop``: a clean poweroff was asked for; do not boot again.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import time
from datetime import UTC, datetime
from pathlib import Path
from types import FrameType

from patchkit.lab import cgroups, network
from patchkit.lab.config import LabConfig

REBOOT_EXIT = 133  # systemd-nspawn's exit status when the guest asked for a reboot


def _stamp(console: Path, text: str) -> None:
    with console.open("a") as out:
        out.write(f"=== {text} {datetime.now(UTC).isoformat(timespec='seconds')}\n")


def _boot_delay(config: LabConfig, index: int) -> float:
    try:
        return max(0.0, float(config.run_file(index, "boot_delay").read_text().strip()))
    except (OSError, ValueError):
        return 0.0


def nspawn_argv(config: LabConfig, index: int, lxcfs: Path | None) -> list[str]:
    """The systemd-nspawn command that boots host ``index``."""
    argv = [
        "systemd-nspawn", "-q", "-b",
        "-D", str(config.host_dir(index)),
        "-M", config.host_name(index),
        # No systemd/dbus on the controller: do not register with machined, keep our cgroup.
        "--register=no", "--keep-unit", "--link-journal=no",
        f"--network-namespace-path=/run/netns/{config.netns(index)}",
        "--console=read-only",
    ]  # fmt: skip
    if lxcfs is not None:
        # Per-host uptime: lxcfs answers for the reading process's PID namespace. nspawn makes
        # binds under /proc after it has chrooted into the guest, so the second source is a path
        # inside the guest, which the first bind provides.
        argv += [
            f"--bind-ro={lxcfs}:/var/lib/lxcfs",
            "--bind-ro=/var/lib/lxcfs/proc/uptime:/proc/uptime",
        ]
    return argv


def lxcfs_mount(config: LabConfig) -> Path | None:
    """The lab's lxcfs mount if it is alive (its daemon answers), else None."""
    try:
        alive = (config.lxcfs_dir / "proc/uptime").exists()
    except OSError:
        alive = False
    return config.lxcfs_dir if alive else None


def supervise(config: LabConfig, index: int) -> None:
    """Boot the host, and again after each reboot, until it is stopped or left off."""
    host = config.host_name(index)
    cgroups.enter(f"{config.cgroup}/{host}")
    config.run_file(index, "sup.pid").write_text(str(os.getpid()))
    for knob in ("stop", "reset"):
        config.run_file(index, knob).unlink(missing_ok=True)
    console = config.run_file(index, "console")
    child: subprocess.Popen[bytes] | None = None

    def on_term(_signum: int, _frame: FrameType | None) -> None:
        config.run_file(index, "stop").touch()
        if child is not None:
            child.send_signal(signal.SIGTERM)  # nspawn turns it into a clean guest poweroff

    signal.signal(signal.SIGTERM, on_term)
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    try:
        while True:
            if not config.run_file(index, "netdown").exists():
                network.set_link(config, index, up=True)
            _stamp(console, "boot")
            with console.open("ab") as out:
                child = subprocess.Popen(
                    nspawn_argv(config, index, lxcfs_mount(config)),
                    stdin=subprocess.DEVNULL,
                    stdout=out,
                    stderr=subprocess.STDOUT,
                )
            config.run_file(index, "pid").write_text(str(child.pid))
            code = child.wait()
            network.set_link(config, index, up=False)  # off: connections time out, not refused
            _stamp(console, f"nspawn exit {code}")
            if config.run_file(index, "stop").exists():
                break
            if code == REBOOT_EXIT or config.run_file(index, "reset").exists():
                config.run_file(index, "reset").unlink(missing_ok=True)
                if config.run_file(index, "noboot").exists():
                    config.run_file(index, "noboot").unlink()
                    _stamp(console, "left off (no-boot fault)")
                    break
                time.sleep(_boot_delay(config, index))
                continue
            break  # poweroff, halt or a crash: the host stays off
    finally:
        for name in ("pid", "sup.pid", "stop"):
            config.run_file(index, name).unlink(missing_ok=True)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--name", required=True)
    parser.add_argument("--root", required=True)
    parser.add_argument("--subnet", required=True)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--host", type=int, required=True)
    args = parser.parse_args(argv)
    config = LabConfig.create(args.name, args.root, args.subnet, args.port)
    supervise(config, config.check_index(args.host))


def command(config: LabConfig, index: int, python: str) -> list[str]:
    """The command line that starts the supervisor of host ``index``."""
    return [
        python,
        "-m",
        "patchkit.lab.supervisor",
        "--name",
        config.name,
        "--root",
        str(config.root),
        "--subnet",
        str(config.subnet),
        "--port",
        str(config.repo_port),
        "--host",
        str(index),
    ]


if __name__ == "__main__":
    main()
