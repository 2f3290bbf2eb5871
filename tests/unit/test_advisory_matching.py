"""Matching a host's installed source packages and pending updates against advisories (unit)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

import pytest

from patchkit.advisories import (
    AdvisoryFeed,
    Distro,
    Feed,
    FeedDating,
    FeedKind,
    FixStatus,
    PackageFix,
    Release,
    Urgency,
)
from patchkit.advisories.matching import (
    Exposure,
    match_host,
    release_keys,
    source_version_of,
    updates_reaching,
)

BOOKWORM = Release(Distro.DEBIAN, "bookworm")
TWELVE = Release(Distro.DEBIAN, "12")


@dataclass(frozen=True)
class Pkg:
    name: str
    version: str
    source: str
    source_version: str


@dataclass(frozen=True)
class Update:
    package: str
    candidate: str


def feed(*fixes: PackageFix, kind: FeedKind = FeedKind.DEBIAN_TRACKER) -> AdvisoryFeed:
    meta = Feed(kind, "test", "0" * 64, datetime(2026, 12, 1, tzinfo=UTC), FeedDating.STATED, 1, 1)
    return AdvisoryFeed(meta, (), tuple(sorted(fixes, key=PackageFix.sort_key)))


def fix(
    cve: str,
    status: FixStatus = FixStatus.FIXED,
    fixed: str | None = None,
    *,
    package: str = "demo",
    release: Release = BOOKWORM,
    introduced: str | None = None,
    urgency: Urgency | None = None,
) -> PackageFix:
    return PackageFix(cve, package, release, status, fixed, introduced, urgency)


LIB = Pkg("libdemo1", "1.0-1", "demo", "1.0-1")
TOOL = Pkg("demo-tool", "1.0-1", "demo", "1.0-1")


def test_the_four_states_of_a_vulnerability() -> None:
    advisories = feed(
        fix("CVE-2026-0001", fixed="1.1-1", urgency=Urgency.HIGH),  # the update reaches it
        fix("CVE-2026-0002", fixed="1.2-1"),  # fixed upstream in a version not offered here
        fix("CVE-2026-0003", FixStatus.OPEN),
        fix("CVE-2026-0004", fixed="0.9-1"),  # installed already has the fix
        fix("CVE-2026-0005", FixStatus.NOT_AFFECTED, "0"),
    )
    match = match_host([BOOKWORM], [LIB, TOOL], [Update("libdemo1", "1.1-1")], [advisories])
    states = {v.vulnerability: v.exposure for v in match.vulnerable}
    assert states == {
        "CVE-2026-0001": Exposure.FIX_PENDING,
        "CVE-2026-0002": Exposure.NO_FIX_HERE,
        "CVE-2026-0003": Exposure.NO_FIX_YET,
    }
    assert match.exposure("CVE-2026-0004") is Exposure.NOT_AFFECTED
    assert match.exposure("CVE-2026-9999") is Exposure.NOT_AFFECTED
    pending = next(v for v in match.vulnerable if v.vulnerability == "CVE-2026-0001")
    assert pending.updates == ("libdemo1",) and pending.urgency is Urgency.HIGH
    assert pending.fixed_version == "1.1-1" and pending.installed == "1.0-1"
    assert match.fixes_by_update == {"libdemo1": ("CVE-2026-0001",)}


@pytest.mark.parametrize(
    ("installed", "fixed", "candidate", "exposure"),
    [
        ("1:1.0-1", "2.0-1", None, Exposure.NOT_AFFECTED),  # an epoch outranks any version
        ("1.0~rc1-1", "1.0-1", "1.0-1", Exposure.FIX_PENDING),  # ~ sorts before the release
        ("3.0.11-1~deb12u2", "3.0.11-1", None, Exposure.NO_FIX_HERE),  # a backport is older
        ("3.0.11-1", "3.0.11-1+deb12u1", "3.0.11-1+deb12u1", Exposure.FIX_PENDING),
        ("3.0.11-1+deb12u1", "3.0.11-1+deb12u1", None, Exposure.NOT_AFFECTED),
        ("3.0.11-1+deb12u1", "3.0.11-1+deb12u2", "3.0.11-1+deb12u1.1", Exposure.NO_FIX_HERE),
    ],
)
def test_debian_version_rules_decide(
    installed: str, fixed: str, candidate: str | None, exposure: Exposure
) -> None:
    host = [Pkg("demo", installed, "demo", installed)]
    updates = [Update("demo", candidate)] if candidate else []
    match = match_host([BOOKWORM], host, updates, [feed(fix("CVE-1", fixed=fixed))])
    assert match.exposure("CVE-1") is exposure


def test_a_binnmu_update_brings_its_sources_version() -> None:
    host = [Pkg("libdemo1", "1.0-1+b1", "demo", "1.0-1")]
    assert source_version_of("1.1-1+b2", host[0]) == "1.1-1"
    match = match_host(
        [BOOKWORM], host, [Update("libdemo1", "1.1-1+b2")], [feed(fix("C", fixed="1.1-1"))]
    )
    assert match.exposure("C") is Exposure.FIX_PENDING


def test_versions_before_the_flaw_came_in_are_not_affected() -> None:
    osv = feed(fix("C", fixed="2.0-1", introduced="1.5-1", release=TWELVE), kind=FeedKind.OSV)
    old = match_host([TWELVE], [Pkg("demo", "1.0-1", "demo", "1.0-1")], [], [osv])
    new = match_host([TWELVE], [Pkg("demo", "1.6-1", "demo", "1.6-1")], [], [osv])
    assert old.exposure("C") is Exposure.NOT_AFFECTED
    assert new.exposure("C") is Exposure.NO_FIX_HERE


def test_feeds_that_disagree_give_the_worst_state() -> None:
    tracker = feed(fix("C", FixStatus.NOT_AFFECTED, "0"))
    osv = feed(fix("C", fixed="1.1-1", release=TWELVE), kind=FeedKind.OSV)
    match = match_host(release_keys("Debian", "bookworm", "12.8"), [LIB], [], [tracker, osv])
    assert match.exposure("C") is Exposure.NO_FIX_HERE


def test_only_the_hosts_release_counts() -> None:
    other = Release(Distro.DEBIAN, "trixie")
    match = match_host([BOOKWORM], [LIB], [], [feed(fix("C", fixed="1.1-1", release=other))])
    assert match.vulnerable == ()


def test_an_update_of_another_source_does_not_fix_it() -> None:
    other = Pkg("other", "1.0", "other", "1.0")
    match = match_host(
        [BOOKWORM], [LIB, other], [Update("other", "9.9")], [feed(fix("C", fixed="1.1-1"))]
    )
    assert match.exposure("C") is Exposure.NO_FIX_HERE and match.fixes_by_update == {}


def test_release_keys_name_the_release_as_each_feed_does() -> None:
    assert release_keys("Debian", "bookworm", "12.8") == (BOOKWORM, TWELVE)
    assert release_keys("Ubuntu", "jammy", "22.04") == (
        Release(Distro.UBUNTU, "jammy"),
        Release(Distro.UBUNTU, "22.04"),
    )
    assert release_keys("RedHat", "", "9.3") == ()


def test_debian_signed_kernels_are_matched_as_linux() -> None:
    """linux-image-* comes from linux-signed-amd64 (6.1.76+1); the tracker files kernel CVEs
    under linux, at the version the signed binaries carry (6.1.76-1)."""
    host = [Pkg("linux-image-amd64", "6.1.76-1", "linux-signed-amd64", "6.1.76+1")]
    kernel = feed(fix("CVE-2024-1086", fixed="6.1.76-1", package="linux"))
    assert match_host([BOOKWORM], host, [], [kernel]).exposure("CVE-2024-1086") is (
        Exposure.NOT_AFFECTED
    )
    newer = feed(fix("CVE-2026-1", fixed="6.1.119-1", package="linux"))
    pending = [Update("linux-image-amd64", "6.1.119-1")]
    match = match_host([BOOKWORM], host, pending, [newer])
    assert match.exposure("CVE-2026-1") is Exposure.FIX_PENDING
    assert match.fixes_by_update == {"linux-image-amd64": ("CVE-2026-1",)}
    assert match_host([BOOKWORM], host, [], [newer]).exposure("CVE-2026-1") is (
        Exposure.NO_FIX_HERE
    )


def test_a_half_upgraded_source_counts_at_its_oldest_binary() -> None:
    fixed = feed(fix("C", fixed="3.0.11-1~deb12u2", package="openssl"))
    for order in (1, -1):
        host = [
            Pkg("libssl3", "3.0.11-1~deb12u2", "openssl", "3.0.11-1~deb12u2"),
            Pkg("openssl", "3.0.11-1~deb12u1", "openssl", "3.0.11-1~deb12u1"),
        ][::order]
        assert match_host([BOOKWORM], host, [], [fixed]).exposure("C") is Exposure.NO_FIX_HERE


def test_a_binary_versioned_apart_from_its_source_brings_no_fix() -> None:
    """dmsetup 2:1.02.185-2 is built from lvm2 2.03.16-2: its epoch-2 candidate must not read as
    a source version beyond every fix."""
    dmsetup = Pkg("dmsetup", "2:1.02.185-2", "lvm2", "2.03.16-2")
    assert source_version_of("2:1.02.185-3", dmsetup) is None
    lvm = feed(fix("C", fixed="2.03.16-3", package="lvm2"))
    match = match_host([BOOKWORM], [dmsetup], [Update("dmsetup", "2:1.02.185-3")], [lvm])
    assert match.exposure("C") is Exposure.NO_FIX_HERE and match.fixes_by_update == {}


def test_a_version_that_is_no_debian_version_is_passed_over_not_a_crash() -> None:
    host = [Pkg("demo", "1.0-1", "demo", "1.0-1"), Pkg("odd", "1:", "odd", "1:")]
    fixes = feed(fix("C", fixed="1.1-1"), fix("D", fixed="2.0-1", package="odd"))
    match = match_host([BOOKWORM], host, [Update("demo", "1:")], [fixes])
    assert match.exposure("C") is Exposure.NO_FIX_HERE  # the odd candidate brings nothing
    assert match.unjudged == {"D": "odd 1: is not a Debian version"}  # unknown, not "fine"


def test_a_release_no_feed_speaks_of_is_not_covered() -> None:
    debian = feed(fix("C", fixed="1.1-1"))
    host = [Pkg("demo", "1.0-1", "demo", "1.0-1")]
    jammy = release_keys("Ubuntu", "jammy", "22.04")
    assert not match_host(jammy, host, [], [debian]).covered
    assert not match_host(release_keys("Devuan", "daedalus", "5"), host, [], [debian]).covered
    assert match_host([BOOKWORM], host, [], [debian]).covered


@dataclass(frozen=True)
class Built:
    name: str
    arch: str
    source: str


def test_the_updates_that_can_reach_a_source_are_named_as_match_files_them() -> None:
    image = [
        Built("libssl3", "amd64", "openssl"),
        Built("openssl", "amd64", "openssl"),
        Built("libc6", "i386", "glibc"),  # a foreign architecture: its updates carry ':i386'
        Built("linux-image-amd64", "amd64", "linux-signed-amd64"),  # filed under linux
        Built("vim", "amd64", "vim"),
    ]
    names = updates_reaching({"openssl", "linux", "newsrc"}, [image, [Built("x", "all", "x")]])
    plain = {"libssl3", "openssl", "linux-image-amd64", "linux", "newsrc"}
    # the source names themselves: an update of a binary not installed is filed under its name
    assert plain <= names
    assert {"libssl3:i386", "openssl:amd64", "linux-image-amd64:all"} <= names
    assert not {n.split(":", 1)[0] for n in names} & {"vim", "libc6", "x"}
    assert updates_reaching(set(), [image]) == frozenset()
