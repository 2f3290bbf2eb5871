"""The lab's cgroup subtree: every lab process lives in it, so teardown can find them all.

Each host's supervisor moves itself into ``<lab cgroup>/<host>`` before it starts
systemd-nspawn. Without that, every nspawn started with ``--keep-unit`` on a machine without a
running systemd shares one cgroup, and the guests' systemds fight over each other's units (a
reboot then hangs for minutes). The same subtree lets ``lab down`` kill orphans that outlived a
killed controller.
"""

from __future__ import annotations

import os
import signal
from pathlib import Path

from patchkit.lab import system

CGROUP_FS = Path("/sys/fs/cgroup")


def roots() -> list[Path]:
    """The hierarchies systemd uses: the unified one, or (hybrid) the named v1 and v2 ones."""
    if (CGROUP_FS / "cgroup.controllers").exists():
        return [CGROUP_FS]
    return [CGROUP_FS / t for t in ("systemd", "unified") if (CGROUP_FS / t).is_dir()]


def enter(group: str) -> None:
    """Move the calling process into ``group`` (a path relative to each hierarchy's root)."""
    pid = str(os.getpid())
    for root in roots():
        path = root / group
        path.mkdir(parents=True, exist_ok=True)
        (path / "cgroup.procs").write_text(pid)


def pids(group: str) -> set[int]:
    """Every process in ``group`` and below it, in any hierarchy."""
    found: set[int] = set()
    for root in roots():
        top = root / group
        if not top.is_dir():
            continue
        for procs in top.rglob("cgroup.procs"):
            try:
                found.update(int(x) for x in procs.read_text().split())
            except (OSError, ValueError):
                continue
    return found


def kill_all(group: str, timeout: float = 10.0) -> bool:
    """SIGKILL everything in ``group``, repeating while processes fork; True when empty."""

    def empty() -> bool:
        remaining = pids(group)
        for pid in remaining:
            system.signal_pid(pid, signal.SIGKILL)
        return not remaining

    return system.wait_until(empty, timeout, interval=0.2)


def remove(group: str) -> None:
    """Remove the (empty) cgroup directories of ``group``, deepest first."""
    for root in roots():
        top = root / group
        if not top.is_dir():
            continue
        dirs = sorted((p for p in top.rglob("*") if p.is_dir()), key=lambda p: -len(p.parts))
        for path in [*dirs, top]:
            try:
                path.rmdir()
            except OSError:
                continue


def member(pid: int, group: str) -> bool:
    """True when process ``pid`` lives in ``group`` or below it (in any hierarchy)."""
    try:
        lines = Path(f"/proc/{pid}/cgroup").read_text().splitlines()
    except OSError:
        return False
    top = "/" + group.strip("/")
    for line in lines:
        path = line.split(":", 2)[-1]
        if path == top or path.startswith(top + "/"):
            return True
    return False


def owned_pid(pid_file: Path, group: str) -> int | None:
    """The pid in ``pid_file`` if that process is alive and one of ``group``'s, else None.

    PID files outlive their processes when the lab is killed without teardown, and after a
    restart the number may belong to anyone (it was once the controller itself): a pid is only
    trusted, and only ever signalled, while it sits in the lab's cgroup.
    """
    pid = system.read_pid(pid_file)
    if pid is None or not system.alive(pid) or not member(pid, group):
        return None
    return pid


def exists(group: str) -> bool:
    return any((root / group).is_dir() for root in roots())
