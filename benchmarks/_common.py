"""What the lab benchmarks share: calling the patchkit command line of this venv."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

BIN = Path(sys.executable).parent  # the venv running the benchmark


def patchkit(*args: str, env: dict[str, str], ok: tuple[int, ...] = (0,)) -> str:
    """Run ``patchkit ARGS``; its stdout, or stop the benchmark with its stderr."""
    done = subprocess.run(
        [str(BIN / "patchkit"), *args], capture_output=True, text=True, env=env, check=False
    )
    if done.returncode not in ok:
        sys.exit(f"patchkit {' '.join(args)} failed ({done.returncode}): {done.stderr}")
    return done.stdout
