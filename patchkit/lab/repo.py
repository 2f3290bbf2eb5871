"""The lab's local apt repositories (a regular and a security origin), served on the bridge.

Every demo package version is built once into ``repo/build``; publishing a version copies it into
its origin's pool and re-indexes that origin, withdrawing removes it. Hosts use
``deb [trusted=yes] http://<bridge>:<port>/<origin> ./`` for both origins.
"""

from __future__ import annotations

import email.utils
import gzip
import hashlib
import logging
import os
import shutil
import signal
import socket
import sys
import tempfile
import time
from pathlib import Path

from patchkit.errors import LabOperationError
from patchkit.lab import catalog, cgroups, system
from patchkit.lab.catalog import DemoPackage
from patchkit.lab.config import LabConfig

log = logging.getLogger(__name__)


def _catalog_stamp() -> str:
    return hashlib.sha256(repr(catalog.CATALOG).encode()).hexdigest()


def build_dir(config: LabConfig) -> Path:
    return config.repo_dir / "build"


def _build_one(package: DemoPackage, target: Path) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        (root / "DEBIAN").mkdir()
        control = [
            f"Package: {package.name}",
            f"Version: {package.version}",
            *([f"Source: {package.source}"] if package.source else []),
            "Architecture: all",
            "Maintainer: patchkit lab <lab@example.invalid>",
            *([f"Depends: {package.depends}"] if package.depends else []),
            "Section: misc",
            "Priority: optional",
            f"Description: {package.description}",
        ]
        (root / "DEBIAN/control").write_text("\n".join(control) + "\n")
        if package.postinst:
            postinst = root / "DEBIAN/postinst"
            postinst.write_text(f"#!/bin/sh\nset -e\n{package.postinst}\nexit 0\n")
            postinst.chmod(0o755)
        # Debian puts a binary's changelog beside its copyright; scanners read CVEs from it.
        docs = root / "usr/share/doc" / package.name
        docs.mkdir(parents=True)
        with gzip.open(docs / "changelog.Debian.gz", "wt", encoding="utf-8") as out:
            out.write(catalog.changelog(package))
        for item in package.files:
            path = root / item.path
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(item.content)
            path.chmod(item.mode)
        system.run(["dpkg-deb", "--root-owner-group", "-Zgzip", "--build", str(root), str(target)])


def ensure_built(config: LabConfig) -> None:
    """Build every demo package version, unless the build matches the current catalog."""
    out = build_dir(config)
    stamp = out / ".catalog"
    if stamp.exists() and stamp.read_text() == _catalog_stamp():
        return
    out.mkdir(parents=True, exist_ok=True)
    for package in catalog.CATALOG:
        _build_one(package, out / package.filename)
    stamp.write_text(_catalog_stamp())


def installed_debs(config: LabConfig) -> list[Path]:
    """The built files of the versions the golden image installs."""
    return [build_dir(config) / p.filename for p in catalog.installed_packages()]


def _origin_dir(config: LabConfig, origin: str) -> Path:
    return config.repo_dir / origin


def index(config: LabConfig) -> None:
    """Write Packages and Release for each origin from what its pool holds now."""
    for origin, suite in catalog.ORIGINS.items():
        top = _origin_dir(config, origin)
        (top / "pool").mkdir(parents=True, exist_ok=True)
        packages = system.run(
            ["dpkg-scanpackages", "--multiversion", "pool", "/dev/null"],
            cwd=top,
        ).stdout
        _write_newer(top / "Packages", packages.encode())
        _write_newer(top / "Packages.gz", gzip.compress(packages.encode(), mtime=0))
        sums = "".join(
            f" {hashlib.sha256((top / name).read_bytes()).hexdigest()}"
            f" {(top / name).stat().st_size} {name}\n"
            for name in ("Packages", "Packages.gz")
        )
        release = (
            f"Origin: patchkit-lab\nLabel: patchkit-lab-{origin}\nSuite: {suite}\n"
            f"Codename: {suite}\nDate: {email.utils.formatdate(usegmt=True)}\nSHA256:\n{sums}"
        )
        _write_newer(top / "Release", release.encode())


def _write_newer(path: Path, data: bytes) -> None:
    """Write ``data`` with an mtime strictly later, in whole seconds, than the file it replaces.

    apt asks with If-Modified-Since and the HTTP server compares whole seconds: an index
    rewritten in the same second as the previous one (withdraw then publish) would be answered
    "304 Not Modified" and the host would keep the stale list.
    """
    before = int(path.stat().st_mtime) if path.exists() else 0
    path.write_bytes(data)
    stamp = max(time.time(), before + 1.0)
    os.utime(path, (stamp, stamp))


def publish(config: LabConfig, packages: tuple[DemoPackage, ...]) -> None:
    for package in packages:
        target = _origin_dir(config, package.origin) / "pool" / package.filename
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(build_dir(config) / package.filename, target)
    index(config)


def withdraw(config: LabConfig, packages: tuple[DemoPackage, ...]) -> None:
    for package in packages:
        (_origin_dir(config, package.origin) / "pool" / package.filename).unlink(missing_ok=True)
    index(config)


def published(config: LabConfig) -> list[DemoPackage]:
    """The package versions the hosts can install now."""
    return [
        p for p in catalog.CATALOG if (_origin_dir(config, p.origin) / "pool" / p.filename).exists()
    ]


def ensure_initialised(config: LabConfig) -> None:
    """On a new lab, publish every version (installed ones and updates)."""
    if not (config.repo_dir / catalog.MAIN / "Release").exists():
        publish(config, catalog.CATALOG)


# ---------------------------------------------------------------- the HTTP server
def _answers(config: LabConfig) -> bool:
    try:
        with socket.create_connection((str(config.gateway), config.repo_port), timeout=0.5):
            return True
    except OSError:
        return False


def serving(config: LabConfig) -> bool:
    return _server_pid(config) is not None and _answers(config)


def _server_pid(config: LabConfig) -> int | None:
    return cgroups.owned_pid(config.run_dir / "repo.pid", f"{config.cgroup}/services")


def ensure_serving(config: LabConfig) -> None:
    """Serve the repositories on the bridge address (the bridge must exist)."""
    if serving(config):
        return
    system.signal_pid(_server_pid(config), signal.SIGKILL)
    argv = [
        sys.executable,
        "-m",
        "http.server",
        str(config.repo_port),
        "--bind",
        str(config.gateway),
        "--directory",
        str(config.repo_dir),
    ]
    pid = system.spawn_daemon(
        argv, config.run_dir / "repo.log", lambda: cgroups.enter(f"{config.cgroup}/services")
    )
    (config.run_dir / "repo.pid").write_text(str(pid))
    if not system.wait_until(lambda: _answers(config), 10):
        raise LabOperationError(
            f"the lab repository did not start on {config.repo_url}",
            hint=f"see {config.run_dir / 'repo.log'}; is port {config.repo_port} taken?",
        )
    log.info("apt repository served at %s", config.repo_url)
