"""Unit: parsers of machine output the lab relies on (captured text, no I/O)."""

from __future__ import annotations

import os
from pathlib import Path

from patchkit.lab import cgroups
from patchkit.lab.image import parse_mirror
from patchkit.lab.system import parse_mountinfo

MOUNTINFO = r"""22 1 254:0 / / rw,relatime shared:1 - ext4 /dev/vda rw
95 22 7:0 / /var/lib/patchkit/lab/pklab/pool rw,noatime shared:50 - btrfs /dev/loop0 rw,ssd
96 22 0:51 / /var/lib/patchkit/lab/pklab/lxcfs rw,nosuid shared:51 - fuse.lxcfs lxcfs rw,user_id=0
97 22 0:52 / /tmp/with\040space rw shared:52 - tmpfs tmpfs rw
"""


def test_parse_mountinfo() -> None:
    mounts = parse_mountinfo(MOUNTINFO)
    assert ("/var/lib/patchkit/lab/pklab/pool", "btrfs") in mounts
    assert ("/var/lib/patchkit/lab/pklab/lxcfs", "fuse.lxcfs") in mounts
    assert ("/tmp/with space", "tmpfs") in mounts
    assert len(mounts) == 4


def test_parse_mountinfo_skips_garbage() -> None:
    assert parse_mountinfo("nonsense\n\n") == []


def test_mirror_from_deb822() -> None:
    sources = """Types: deb
URIs: http://deb.example.org/debian
Suites: bookworm bookworm-updates

Types: deb
URIs: http://deb.example.org/debian-security
Suites: bookworm-security
"""
    assert parse_mirror(sources) == "http://deb.example.org/debian"


def test_mirror_from_one_line_sources() -> None:
    sources = "# comment\ndeb [arch=amd64] http://mirror.example.net/debian bookworm main\n"
    assert parse_mirror(sources) == "http://mirror.example.net/debian"


def test_no_mirror() -> None:
    assert parse_mirror("# nothing here\n") is None


def test_mountinfo_of_this_machine_parses() -> None:
    # The real file of this kernel: the root mount must be among what the parser finds.
    points = {point for point, _ in parse_mountinfo(Path("/proc/self/mountinfo").read_text())}
    assert "/" in points


def test_stale_pid_file_naming_another_process_is_not_trusted(tmp_path: Path) -> None:
    # After a restart, a lab pid file may hold the number of an unrelated process (once: the
    # controller itself, which then SIGKILLed itself). Only a pid inside the lab cgroup counts.
    pid_file = tmp_path / "lxcfs.pid"
    pid_file.write_text(f"{os.getpid()}\n")
    assert cgroups.owned_pid(pid_file, "patchkit-lab-nosuchlab/services") is None
    assert not cgroups.member(os.getpid(), "patchkit-lab-nosuchlab")


def test_pid_inside_the_group_is_trusted(tmp_path: Path) -> None:
    paths = [line.split(":", 2)[2] for line in Path("/proc/self/cgroup").read_text().splitlines()]
    own = max(paths, key=len).strip("/")  # the deepest group we are in, in some hierarchy
    pid_file = tmp_path / "x.pid"
    pid_file.write_text(str(os.getpid()))
    assert cgroups.owned_pid(pid_file, own) == os.getpid()
    assert cgroups.owned_pid(tmp_path / "missing.pid", own) is None
