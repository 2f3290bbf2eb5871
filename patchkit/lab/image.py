"""The btrfs pool on a loop-mounted sparse file, and the golden image every host is cloned from.

The golden image (debootstrap of Debian bookworm with systemd, sshd and python3, plus the demo
packages' installed versions) takes about a minute to build. It is kept between labs as a btrfs
send stream in the shared cache, so a later ``lab up`` receives it in seconds instead.
"""

from __future__ import annotations

import logging
import os
import re
from pathlib import Path

from patchkit.errors import LabEnvironmentError
from patchkit.lab import cgroups, system
from patchkit.lab.config import SUITE, LabConfig

log = logging.getLogger(__name__)

POOL_SIZE = "20G"  # sparse: only what is written takes disk space
BASE = "base"
IMAGE_PACKAGES = (
    "systemd,systemd-sysv,dbus,libpam-systemd,openssh-server,python3,python3-apt,"
    "apt-utils,sudo,iproute2,procps,less"
)


def parse_mirror(sources: str) -> str | None:
    """The first Debian mirror URL in deb822 (``URIs:``) or one-line (``deb URL``) sources."""
    for line in sources.splitlines():
        m = re.match(r"^\s*URIs:\s*(\S+)", line) or re.match(
            r"^\s*deb\s+(?:\[[^]]*\]\s+)?(\S+)", line
        )
        if m and "security" not in m.group(1):
            return m.group(1)
    return None


def find_mirror() -> str:
    """The mirror debootstrap uses: PATCHKIT_LAB_MIRROR, else the machine's own apt sources."""
    if env := os.environ.get("PATCHKIT_LAB_MIRROR"):
        return env
    for path in (Path("/etc/apt/sources.list.d/debian.sources"), Path("/etc/apt/sources.list")):
        if path.exists() and (url := parse_mirror(path.read_text())):
            return url
    raise LabEnvironmentError(
        "no Debian mirror found in /etc/apt/sources.list.d/debian.sources or sources.list",
        hint="set PATCHKIT_LAB_MIRROR to a Debian mirror URL",
    )


# ---------------------------------------------------------------- subvolumes
def snapshot(source: Path, target: Path, *, readonly: bool) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    system.run(
        [
            "btrfs",
            "-q",
            "subvolume",
            "snapshot",
            *(["-r"] if readonly else []),
            str(source),
            str(target),
        ]
    )


def delete_subvolume(path: Path, pool: Path) -> None:
    """Delete a subvolume and those nested in it (a guest's systemd creates some)."""
    if not path.exists():
        return
    listing = system.run(["btrfs", "subvolume", "list", "-o", str(path)], check=False).stdout
    for line in listing.splitlines():
        nested = line.split(" path ", 1)[-1].removeprefix("<FS_TREE>/")
        delete_subvolume(pool / nested, pool)
    system.run(["btrfs", "property", "set", str(path), "ro", "false"], check=False)
    system.run(["btrfs", "-q", "subvolume", "delete", str(path)])


# ---------------------------------------------------------------- pool
def ensure_pool(config: LabConfig) -> None:
    """Mount the lab's btrfs pool, creating its sparse image file first if needed."""
    config.lab_dir.mkdir(parents=True, exist_ok=True)
    if system.is_mounted(config.pool_dir):
        return
    config.pool_dir.mkdir(exist_ok=True)
    if not config.pool_image.exists():
        system.check_btrfs()
        system.run(["truncate", "-s", POOL_SIZE, str(config.pool_image)])
        system.run(["mkfs.btrfs", "-q", str(config.pool_image)])
    system.run(
        [
            "mount",
            "-o",
            "loop,compress=zstd:1,noatime",
            str(config.pool_image),
            str(config.pool_dir),
        ]
    )
    config.snap_dir.mkdir(exist_ok=True)


def ensure_key(config: LabConfig) -> None:
    """The SSH key pair Ansible uses; the golden image trusts its public half."""
    key = config.key_path
    if key.exists():
        return
    key.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    with system.exclusive(key.parent / ".lock"):  # shared by every lab: made once
        if not key.exists():
            system.run(
                [
                    "ssh-keygen",
                    "-q",
                    "-t",
                    "ed25519",
                    "-N",
                    "",
                    "-C",
                    "patchkit-lab",
                    "-f",
                    str(key),
                ]
            )


def ensure_base(config: LabConfig, installed_debs: list[Path]) -> None:
    """Put the golden image into the pool: from the cache stream, or built from scratch.

    The cache is shared by every lab on the machine: one lab builds it while the others wait,
    then receive it.
    """
    base = config.pool_dir / BASE
    if base.exists():
        return
    config.cache_dir.mkdir(parents=True, exist_ok=True)
    with system.exclusive(config.cache_dir / ".build.lock"):
        _receive_or_build(config, base, installed_debs)


def _receive_or_build(config: LabConfig, base: Path, installed_debs: list[Path]) -> None:
    if config.image_stream.exists():
        log.info("receiving the golden image from %s", config.image_stream)
        system.run(
            ["btrfs", "receive", "-f", str(config.image_stream), str(config.pool_dir)], timeout=600
        )
        return
    _build_base(config, base, installed_debs)
    config.cache_dir.mkdir(parents=True, exist_ok=True)
    partial = config.image_stream.with_suffix(".partial")
    system.run(["btrfs", "send", "-q", "-f", str(partial), str(base)], timeout=600)
    partial.rename(config.image_stream)


def _in_image(config: LabConfig, root: Path, script: str) -> None:
    """Run a shell script inside a not-booted image (nspawn provides /proc, /dev, /sys)."""
    try:
        system.run(
            [
                "systemd-nspawn",
                "-q",
                "--register=no",
                "--keep-unit",
                "--link-journal=no",
                "-D",
                str(root),
                "/bin/sh",
                "-ec",
                script,
            ],
            preexec=lambda: cgroups.enter(f"{config.cgroup}/build"),
            timeout=600,
        )
    finally:
        system.run(["rm", "-rf", f"/run/systemd/nspawn/propagate/{root.name}"], check=False)


def _build_base(config: LabConfig, base: Path, installed_debs: list[Path]) -> None:
    mirror = find_mirror()
    ensure_key(config)
    log.info("building the golden image: debootstrap %s from %s (about a minute)", SUITE, mirror)
    system.run(["btrfs", "-q", "subvolume", "create", str(base)])
    try:
        system.run(
            [
                "debootstrap",
                "--variant=minbase",
                f"--include={IMAGE_PACKAGES}",
                SUITE,
                str(base),
                mirror,
            ],
            timeout=1200,
        )
        # The hosts have no route out of the lab: only the lab repository is a source.
        (base / "etc/apt/sources.list").rename(base / "etc/apt/sources.list.debian-disabled")
        ssh_dir = base / "root/.ssh"
        ssh_dir.mkdir(mode=0o700, exist_ok=True)
        (ssh_dir / "authorized_keys").write_text(config.key_path.with_suffix(".pub").read_text())
        (ssh_dir / "authorized_keys").chmod(0o600)
        debs_dir = base / "var/tmp/demo-debs"  # nspawn mounts a fresh tmpfs on /tmp
        debs_dir.mkdir()
        for deb in installed_debs:
            (debs_dir / deb.name).write_bytes(deb.read_bytes())
        _in_image(
            config,
            base,
            """
            useradd -m -s /bin/bash -G sudo lab
            install -d -o lab -g lab -m 700 /home/lab/.ssh
            install -o lab -g lab -m 600 /root/.ssh/authorized_keys /home/lab/.ssh/
            echo 'lab ALL=(ALL) NOPASSWD:ALL' > /etc/sudoers.d/lab && chmod 440 /etc/sudoers.d/lab
            systemctl mask apt-daily.timer apt-daily-upgrade.timer >/dev/null 2>&1
            systemctl mask e2scrub_reap.service >/dev/null 2>&1
            dpkg -i /var/tmp/demo-debs/*.deb >/dev/null
            rm -rf /var/tmp/demo-debs
            apt-get clean
            """,
        )
        for key in (base / "etc/ssh").glob("ssh_host_*"):
            key.unlink()
        (base / "etc/machine-id").write_text("")
        (base / "var/lib/dbus/machine-id").unlink(missing_ok=True)
        system.run(["btrfs", "property", "set", str(base), "ro", "true"])
    except BaseException:
        delete_subvolume(base, config.pool_dir)
        raise
