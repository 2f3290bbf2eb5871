"""What the benchmarks share: the patchkit command line of this venv, synthetic fleet data, and
measuring a command as a process of its own."""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

BIN = Path(sys.executable).parent  # the venv running the benchmark
# Synthetic fleets: the time they are judged at, and the updates they may have pending.
AT = datetime(2026, 11, 25, 10, 0, tzinfo=UTC)
PACKAGES = [
    ("openssl", "12/stable-security"),
    ("libssl3", "12/stable-security"),
    ("linux-image-amd64", "12/stable-security"),
    ("curl", "12/stable-updates"),
    ("tzdata", "12/stable-updates"),
    ("nginx", "12/stable"),
    ("openssh-server", "12/stable-security"),
]


def patchkit(*args: str, env: dict[str, str], ok: tuple[int, ...] = (0,)) -> str:
    """Run ``patchkit ARGS``; its stdout, or stop the benchmark with its stderr."""
    done = subprocess.run(
        [str(BIN / "patchkit"), *args], capture_output=True, text=True, env=env, check=False
    )
    if done.returncode not in ok:
        sys.exit(f"patchkit {' '.join(args)} failed ({done.returncode}): {done.stderr}")
    return done.stdout


@dataclass(frozen=True)
class Measured:
    """One command run as its own process: wall time and memory."""

    seconds: float
    peak_mb: float  # ru_maxrss from wait4: the largest of the process and the children it reaped
    tree_mb: float  # the highest sum of RSS over the process and its live descendants (sampled)
    returncode: int
    # the process's own high-water mark (VmHWM, sampled: growth in its last 50 ms is missed),
    # without the children it forks (patchkit reads an inventory in one)
    own_mb: float = 0.0


def _rss_kb(pid: int, field: str = "VmRSS") -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text(encoding="ascii").splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
    except (OSError, ValueError):
        pass
    return 0


def _descendants(pid: int) -> list[int]:
    found, todo = [], [pid]
    while todo:
        here = todo.pop()
        found.append(here)
        try:
            children = Path(f"/proc/{here}/task/{here}/children").read_text(encoding="ascii")
            todo.extend(int(c) for c in children.split())
        except (OSError, ValueError):
            continue
    return found


def measure(
    argv: Sequence[str],
    *,
    env: dict[str, str],
    cwd: Path | None = None,
    ok: tuple[int, ...] = (0,),
) -> Measured:
    """Run ``argv`` (stdout to /dev/null), and measure it; stop the benchmark if it fails.

    The time is wall-clock from before the process starts to after it is reaped, so start-up
    (imports) counts. ``peak_mb`` is the kernel's figure for the process (wait4); ``tree_mb``
    is sampled every 50 ms and counts pages shared after a fork twice.
    """
    peak = [0]
    with tempfile.TemporaryFile() as errors:
        start = time.perf_counter()
        child = subprocess.Popen(
            list(argv), stdout=subprocess.DEVNULL, stderr=errors, env=env, cwd=cwd
        )
        done = threading.Event()

        own = [0]

        def sample() -> None:
            while not done.wait(0.05):
                peak[0] = max(peak[0], sum(_rss_kb(p) for p in _descendants(child.pid)))
                own[0] = max(own[0], _rss_kb(child.pid, "VmHWM"))

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        _, status, usage = os.wait4(child.pid, 0)
        seconds = time.perf_counter() - start
        done.set()
        sampler.join()
        child.returncode = os.waitstatus_to_exitcode(status)
        if child.returncode not in ok:
            errors.seek(0)
            text = errors.read().decode(errors="replace")[-2000:]
            sys.exit(f"{' '.join(argv)} failed ({child.returncode}): {text}")
    return Measured(
        seconds, usage.ru_maxrss / 1024, peak[0] / 1024, child.returncode, own[0] / 1024
    )


def spread(values: Sequence[float], unit: str = "s", digits: int = 2) -> str:
    """``median (min-max)`` of repeated measurements, or the one value."""
    if len(values) == 1:
        return f"{values[0]:.{digits}f} {unit}"
    ordered = sorted(values)
    middle = statistics.median(ordered)
    return f"{middle:.{digits}f} {unit} ({ordered[0]:.{digits}f}-{ordered[-1]:.{digits}f})"
