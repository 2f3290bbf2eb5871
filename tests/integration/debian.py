"""Installing the Debian packages a test needs (as root; the suite's set-up does it on CI)."""

from __future__ import annotations

import os
import subprocess

import pytest

from patchkit.lab import system


def _apt_get(*args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    return subprocess.run(
        ["apt-get", *args], capture_output=True, text=True, env=env, timeout=900, check=False
    )


def apt_install(package: str, why: str) -> None:
    """``apt-get install`` ``package``, refreshing the package lists once if that fails; fail
    the test (saying ``why`` it needs the package) when it cannot be installed."""
    if os.geteuid() != 0:
        pytest.fail(f"{why}, and only root can install {package}")
    with system.exclusive(system.APT_LOCK):  # a parallel test worker may be installing too
        _install(package)


def _install(package: str) -> None:
    args = ("install", "-y", "--no-install-recommends", package)
    done = _apt_get(*args)
    if done.returncode != 0:
        # A fresh machine may have no package lists yet, or stale ones naming deleted files.
        _apt_get("update")
        done = _apt_get(*args)
    if done.returncode != 0:
        pytest.fail(f"apt-get {' '.join(args)} failed:\n{done.stdout}\n{done.stderr}")
