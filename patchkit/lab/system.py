"""The lab's one adapter to the machine: system commands, mounts, processes, prerequisites."""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

from patchkit.errors import LabEnvironmentError, LabOperationError

log = logging.getLogger(__name__)

# Debian packages the lab needs on the controller, and a command each one provides.
REQUIRED_PACKAGES = {
    "debootstrap": "debootstrap",
    "systemd-container": "systemd-nspawn",
    "btrfs-progs": "btrfs",
    "dpkg-dev": "dpkg-scanpackages",
    "lxcfs": "lxcfs",
    "iproute2": "ip",
    "openssh-client": "ssh",
}


def run(
    argv: Sequence[str],
    *,
    check: bool = True,
    timeout: float | None = 300,
    preexec: Callable[[], None] | None = None,
    input_text: str | None = None,
    cwd: Path | None = None,
) -> subprocess.CompletedProcess[str]:
    """Run a command, capture its output; a failure becomes a LabOperationError naming it."""
    log.debug("run %s", " ".join(argv))
    try:
        done = subprocess.run(
            list(argv),
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
            preexec_fn=preexec,  # only moves the child into a cgroup
            input=input_text,
            cwd=cwd,
            stdin=None if input_text is not None else subprocess.DEVNULL,
        )
    except FileNotFoundError:
        raise LabEnvironmentError(
            f"command not found: {argv[0]}",
            hint="run 'patchkit lab up' as root: it installs the Debian packages the lab needs",
        ) from None
    except subprocess.TimeoutExpired:
        raise LabOperationError(f"'{' '.join(argv)}' did not finish in {timeout} s") from None
    if check and done.returncode != 0:
        tail = (done.stderr or done.stdout).strip().splitlines()[-5:]
        raise LabOperationError(
            f"'{' '.join(argv)}' failed (exit {done.returncode}): {' | '.join(tail)}"
        )
    return done


# ---------------------------------------------------------------- prerequisites
def check_machine() -> None:
    """Refuse early, with one clear line, on a machine that cannot host the lab."""
    if not sys.platform.startswith("linux"):
        raise LabEnvironmentError(
            f"the lab needs Linux (this is {sys.platform})",
            hint="run the lab on a Debian machine or VM",
        )
    if os.geteuid() != 0:
        raise LabEnvironmentError(
            "the lab needs root (it mounts filesystems, creates network namespaces and cgroups)",
            hint="run it as root, for example with sudo",
        )
    if not Path("/dev/loop-control").exists():
        raise LabEnvironmentError(
            "no loop device support (/dev/loop-control is missing)",
            hint="load the loop module (modprobe loop) or use a machine that has it",
        )


def check_btrfs() -> None:
    """The pool is a btrfs filesystem: the kernel must know btrfs (loaded or loadable)."""
    if "btrfs" in Path("/proc/filesystems").read_text():
        return
    if shutil.which("modprobe"):
        run(["modprobe", "btrfs"], check=False)
        if "btrfs" in Path("/proc/filesystems").read_text():
            return
    raise LabEnvironmentError(
        "this kernel has no btrfs support",
        hint="load the btrfs module (modprobe btrfs) or use a kernel that has it",
    )


def missing_packages() -> list[str]:
    """Required Debian packages whose command is not on PATH."""
    return [pkg for pkg, cmd in REQUIRED_PACKAGES.items() if shutil.which(cmd) is None]


# apt and dpkg allow one user at a time: two labs coming up together (parallel test workers)
# take turns here instead of failing on dpkg's lock.
APT_LOCK = Path("/run/lock/patchkit-apt.lock")


@contextlib.contextmanager
def exclusive(path: Path) -> Iterator[None]:
    """Hold an exclusive flock on ``path`` (created if missing) for the block."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        yield


def install_packages() -> None:
    """Install the Debian packages the lab needs, if any is missing (apt, as root)."""
    if not missing_packages():
        return
    with exclusive(APT_LOCK):
        _install_missing()


def _install_missing() -> None:
    missing = missing_packages()  # again: another process may have installed them meanwhile
    if not missing:
        return
    if shutil.which("apt-get") is None:
        raise LabEnvironmentError(
            f"missing commands from {', '.join(missing)} and no apt-get to install them",
            hint="the lab is written for Debian; install those tools by hand",
        )
    log.info("installing Debian packages: %s", " ".join(missing))
    env_cmd = ["env", "DEBIAN_FRONTEND=noninteractive"]
    run([*env_cmd, "apt-get", "update", "-qq"], timeout=600)
    run(
        [*env_cmd, "apt-get", "install", "-y", "-qq", "--no-install-recommends", *missing],
        timeout=900,
    )


# ---------------------------------------------------------------- mounts
def _unescape(field: str) -> str:
    """mountinfo escapes space, tab, newline and backslash as octal (``\\040``)."""
    out, i = [], 0
    while i < len(field):
        if field[i] == "\\" and field[i + 1 : i + 4].isdigit():
            out.append(chr(int(field[i + 1 : i + 4], 8)))
            i += 4
        else:
            out.append(field[i])
            i += 1
    return "".join(out)


def parse_mountinfo(text: str) -> list[tuple[str, str]]:
    """(mount point, filesystem type) of each line of /proc/self/mountinfo."""
    mounts = []
    for line in text.splitlines():
        left, sep, right = line.partition(" - ")
        if not sep:
            continue
        fields, rfields = left.split(), right.split()
        if len(fields) >= 5 and rfields:
            mounts.append((_unescape(fields[4]), rfields[0]))
    return mounts


def mounts_under(prefix: Path) -> list[Path]:
    """Mount points at or below ``prefix``, deepest first (the order to unmount them in).

    Read from mountinfo rather than by stat: a FUSE mount whose daemon was killed fails stat.
    """
    text = Path("/proc/self/mountinfo").read_text()
    base = str(prefix).rstrip("/")
    found = {
        Path(point)
        for point, _ in parse_mountinfo(text)
        if point == base or point.startswith(base + "/")
    }
    return sorted(found, key=lambda p: len(p.parts), reverse=True)


def is_mounted(path: Path) -> bool:
    return path in mounts_under(path)


def unmount(path: Path) -> None:
    """Unmount, lazily if busy; a dead FUSE mount only goes lazily."""
    if run(["umount", str(path)], check=False).returncode != 0:
        run(["umount", "-l", str(path)], check=False)


# ---------------------------------------------------------------- processes
def read_pid(path: Path) -> int | None:
    try:
        return int(path.read_text().strip())
    except (OSError, ValueError):
        return None


def alive(pid: int | None) -> bool:
    """True while ``pid`` exists and is not a zombie."""
    if pid is None or pid <= 0:
        return False
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z"


def children(pid: int) -> list[int]:
    try:
        text = Path(f"/proc/{pid}/task/{pid}/children").read_text()
    except OSError:
        return []
    return [int(x) for x in text.split()]


def signal_pid(pid: int | None, sig: signal.Signals) -> None:
    if pid is None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, sig)


def wait_until(predicate: Callable[[], bool], timeout: float, interval: float = 0.1) -> bool:
    """Poll ``predicate`` until it holds or ``timeout`` seconds pass; return its last value."""
    deadline = time.monotonic() + timeout
    while True:
        if predicate():
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(interval)


def spawn_daemon(
    argv: Sequence[str], log_path: Path, preexec: Callable[[], None] | None = None
) -> int:
    """Start a long-lived process in its own session, detached from the caller's terminal."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with log_path.open("ab") as out:
        proc = subprocess.Popen(
            list(argv),
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            preexec_fn=preexec,  # only moves the child into a cgroup
            close_fds=True,
        )
    return proc.pid


# Every booted host's systemd takes several inotify instances; the kernel's default of 128 per
# user (all lab hosts run as root) runs out at about 20 hosts across the labs on a machine, and
# a host then dies at boot with "Failed to allocate manager object: Too many open files".
INOTIFY_INSTANCES = 1024


def ensure_inotify_instances(minimum: int = INOTIFY_INSTANCES) -> None:
    """Raise fs.inotify.max_user_instances to ``minimum`` when it is lower (never lowers it)."""
    knob = Path("/proc/sys/fs/inotify/max_user_instances")
    try:
        if int(knob.read_text()) < minimum:
            knob.write_text(f"{minimum}\n")
            log.info("raised fs.inotify.max_user_instances to %d for the lab hosts", minimum)
    except (OSError, ValueError) as exc:
        log.warning("cannot raise fs.inotify.max_user_instances (%s); many hosts may not boot", exc)
