"""What the benchmarks share: the patchkit command line of this venv, synthetic fleet data."""

from __future__ import annotations

import subprocess
import sys
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
