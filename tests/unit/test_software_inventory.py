"""Unit: the software inventory, from dpkg-query's output to the findings file and the ledger.

The data files are dpkg-query's own output of the assess playbook's format, captured:
- dpkg-query-lab.txt: a lab host (Debian 12, dpkg 1.21.23): multiarch-qualified names
  (``libc6:amd64``), binNMUs (``libbz2-1.0 1.0.8-5+b1`` from ``bzip2 1.0.8-5``), binaries
  versioned apart from their source (``dmsetup 2:1.02.185-2`` from ``lvm2 2.03.16-2``, whose
  status entry says ``Source: lvm2 (2.03.16-2)``), an epoch on the binary only (``bsdutils``),
  demo-lib from source libdemo;
- dpkg-query-states.txt: dpkg-query 1.21.22 run with ``--admindir`` on a status file written for
  the states no lab host is in: held (hi), marked for removal but installed (ri), unpacked (iU),
  half-configured with reinstall required (iFR), triggers pending (it), config-files (rc),
  half-installed (iH), and libc6 for amd64 and i386.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import sqlite3
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import create_engine, text

from patchkit import findings
from patchkit.assess import (
    RESULT_TASK,
    FindingCollector,
    PackageListError,
    finding_from_report,
    read_packages,
)
from patchkit.errors import FindingsError, LedgerError
from patchkit.execution.runner import TaskResult
from patchkit.ledger import Ledger
from patchkit.ledger import planning as planning_ledger
from patchkit.ledger import schema as t
from patchkit.model import Finding, InstalledPackage, PackageSet, PendingUpdate
from patchkit.planning.codec import canonical, jsonable

DATA = Path(__file__).parent / "data"
AT = datetime(2026, 11, 20, 8, 15, tzinfo=UTC)
LAB = (DATA / "dpkg-query-lab.txt").read_text()
STATES = (DATA / "dpkg-query-states.txt").read_text()
SIMULATION = (DATA / "apt-sim-lab.txt").read_text()


def by_name(packages: PackageSet) -> dict[tuple[str, str], InstalledPackage]:
    return {(p.name, p.arch): p for p in packages.packages}


# ---------------------------------------------------------------- dpkg-query's output


def test_a_lab_host_lists_every_package_with_its_source() -> None:
    lab = read_packages(LAB)
    assert len(lab.packages) == len(LAB.splitlines()) == 159  # every one installed (ii)
    found = by_name(lab)
    assert found[("demo-lib", "all")] == InstalledPackage(
        "demo-lib", "1.0", "all", "libdemo", "1.0"
    )
    # the qualifier goes, the architecture stays
    assert found[("libbz2-1.0", "amd64")] == InstalledPackage(
        "libbz2-1.0", "1.0.8-5+b1", "amd64", "bzip2", "1.0.8-5"
    )
    assert all(":" not in p.name for p in lab.packages)
    # "Source: lvm2 (2.03.16-2)": the name bare, the version from the parentheses
    assert found[("dmsetup", "amd64")] == InstalledPackage(
        "dmsetup", "2:1.02.185-2", "amd64", "lvm2", "2.03.16-2"
    )
    # an epoch on the binary that its source lacks
    assert found[("bsdutils", "amd64")].version == "1:2.38.1-5+deb12u3"
    assert found[("bsdutils", "amd64")].source_version == "2.38.1-5+deb12u3"
    # no Source field: the binary is its own source, at its own version
    assert found[("base-files", "amd64")] == InstalledPackage(
        "base-files", "12.4+deb12u15", "amd64", "base-files", "12.4+deb12u15"
    )


def test_only_packages_whose_files_are_on_disk_are_listed() -> None:
    found = by_name(read_packages(STATES))
    assert sorted(found) == [
        ("cron", "amd64"),  # ri: marked for removal, still installed
        ("libbz2-1.0", "amd64"),
        ("libc6", "amd64"),  # the same package for two architectures: two entries
        ("libc6", "i386"),
        ("libpam-systemd", "amd64"),  # iFR: half-configured, its files are there
        ("man-db", "amd64"),  # it: triggers pending
        ("openssl", "amd64"),  # hi: held
        ("vim-tiny", "amd64"),  # iU: unpacked
    ]  # not nano (rc: config files only) nor tzdata (iH: half-installed)
    assert found[("libc6", "i386")].source == "glibc"
    assert found[("vim-tiny", "amd64")].source == "vim"


@pytest.mark.parametrize(
    ("output", "expected"),
    [
        ("demo-lib\t1.0\tall\tlibdemo\t1.0\n", "line 1: expected 6 tab-separated fields, found 5"),
        (
            "ok\t1\tall\tok\t1\tii \nlibc6:i386\t2.36-9\tamd64\tglibc\t2.36-9\tii \n",
            "line 2: 'libc6:i386' is qualified with another architecture than 'amd64'",
        ),
        ("demo-lib\t1.0\tall\t\t1.0\tii \n", "line 1: an empty field"),
    ],
)
def test_a_line_dpkg_query_would_not_write_is_an_error(output: str, expected: str) -> None:
    with pytest.raises(PackageListError, match=expected):
        read_packages(output)


# ---------------------------------------------------------------- package sets

LIB = InstalledPackage("demo-lib", "1.0", "all", "libdemo", "1.0")
APP = InstalledPackage("demo-app", "1.0", "all", "demo-app", "1.0")
LIBC = InstalledPackage("libc6", "2.36-9+deb12u10", "amd64", "glibc", "2.36-9+deb12u10")


def test_a_digest_is_of_the_sorted_canonical_form_whatever_the_order() -> None:
    one = PackageSet((LIB, APP, LIBC))
    other = PackageSet([LIBC, LIB, APP, LIB])  # another order, one package twice
    assert one.packages == other.packages == (APP, LIB, LIBC)
    assert one == other and hash(one) == hash(other)
    assert one.canonical() == (
        "demo-app\t1.0\tall\tdemo-app\t1.0\n"
        "demo-lib\t1.0\tall\tlibdemo\t1.0\n"
        "libc6\t2.36-9+deb12u10\tamd64\tglibc\t2.36-9+deb12u10\n"
    )
    # stable across versions of patchkit: stored ledgers and files depend on it (printf of the
    # lines above | sha256sum)
    assert one.digest == "494602c42cabda27f21c26476c7cbfe0a0fa324f52f439ade2c6174b5218c3e0"
    assert PackageSet((LIB, APP)).digest != one.digest
    newer = InstalledPackage("demo-lib", "1.1", "all", "libdemo", "1.1")
    assert PackageSet((newer, APP, LIBC)).digest != one.digest


def test_a_digest_is_computed_once() -> None:
    packages = PackageSet((LIB, APP))
    first = packages.digest
    assert packages.digest is first  # the same string object: kept, not computed again


def test_a_set_cannot_be_changed_and_copies_are_itself() -> None:
    packages = PackageSet((LIB, APP))
    with pytest.raises(AttributeError, match="cannot be changed"):
        packages.packages = ()
    assert copy.deepcopy(packages) is packages
    assert repr(packages) == f"PackageSet(2 packages, digest={packages.digest[:12]}…)"


def test_what_walks_dataclasses_sees_a_set_as_its_digest() -> None:
    # The plan's input hash goes through every field of every Finding: a set must cost it one
    # string, not hundreds of packages per host.
    finding = Finding("web1", AT, True, software=read_packages(LAB))
    data = canonical(jsonable(finding)).decode()
    assert finding.software is not None and finding.software.digest in data
    assert "libdemo" not in data


# ---------------------------------------------------------------- the playbook's report


def report(**overrides: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "format": 2,
        "os_family": "Debian",
        "manager": "apt",
        "refreshed": True,
        "refresh_rc": 0,
        "refresh_errors": [],
        "simulation": SIMULATION,
        "reboot_required": False,
        "distribution": "Debian",
        "release": "bookworm",
        "release_version": "12.15",
        "packages": LAB,
        "packages_rc": 0,
        "packages_errors": "",
    }
    return {**base, **overrides}


def test_a_format_2_report_gives_the_release_and_the_software() -> None:
    finding = finding_from_report("host1", report(), AT)
    assert finding.reachable and finding.message == ""
    assert (finding.distribution, finding.release, finding.release_version) == (
        "Debian",
        "bookworm",
        "12.15",
    )
    assert finding.software == read_packages(LAB)
    assert len(finding.updates) == 4


def test_a_format_1_report_has_no_software() -> None:
    old = {k: v for k, v in report(format=1).items() if not k.startswith(("packages", "rel"))}
    finding = finding_from_report("host1", old, AT)
    assert finding.reachable
    assert finding.software is None and finding.release is None
    assert len(finding.updates) == 4


def test_without_the_list_the_host_is_assessed_with_a_warning() -> None:
    failed = report(packages="", packages_rc=2, packages_errors="dpkg-query: error: boom\n")
    finding = finding_from_report("host1", failed, AT)
    assert finding.reachable and len(finding.updates) == 4
    assert finding.software is None
    assert (
        finding.message
        == "installed packages not listed (dpkg-query exit 2: dpkg-query: error: boom)"
    )
    garbled = finding_from_report("host1", report(packages="what\n"), AT)
    assert garbled.software is None
    assert "cannot read dpkg-query's list of installed packages: line 1" in garbled.message
    # an unknown release is None, not Ansible's "NA"
    assert finding_from_report("host1", report(release="NA"), AT).release is None


def test_the_collector_keeps_one_set_for_hosts_with_the_same_packages() -> None:
    collector = FindingCollector(AT)
    for host, packages in (("host1", LAB), ("host2", LAB), ("host3", STATES)):
        result = TaskResult(
            host, RESULT_TASK, "ansible.builtin.debug", "ok", {"msg": report(packages=packages)}
        )
        collector.add(result)
    one, two, three = (f.software for f in collector.findings())
    assert one is two and one is not None
    assert three is not None and three != one
    assert len(collector.sets) == 2


# ---------------------------------------------------------------- the findings file

IMAGE_A = PackageSet((LIB, APP, LIBC))
IMAGE_B = PackageSet((LIB, LIBC))


def fleet() -> list[Finding]:
    update = PendingUpdate("demo-lib", "1.0", "1.1", "lab-security", AT)
    return [
        Finding("web1", AT, True, (update,), release="bookworm", software=IMAGE_A,
                distribution="Debian", release_version="12.15"),
        Finding("web2", AT, True, (update,), release="bookworm", software=PackageSet(
            reversed(IMAGE_A.packages)), distribution="Debian", release_version="12.15"),
        Finding("db1", AT, True, release="bookworm", software=IMAGE_B),
        Finding("db2", AT, False, message="unreachable: timed out"),
        Finding("old1", AT, True),  # assessed without its software (a format 1 playbook)
    ]  # fmt: skip


def test_a_version_2_file_round_trips_and_stores_each_set_once() -> None:
    text = findings.dumps(fleet())
    data = json.loads(text)
    assert data["version"] == 2
    assert sorted(data["package_sets"]) == sorted([IMAGE_A.digest, IMAGE_B.digest])
    assert data["package_sets"][IMAGE_B.digest] == [
        {"name": "demo-lib", "version": "1.0", "arch": "all", "source": "libdemo",
         "source_version": "1.0"},
        {"name": "libc6", "version": "2.36-9+deb12u10", "arch": "amd64", "source": "glibc",
         "source_version": "2.36-9+deb12u10"},
    ]  # fmt: skip
    hosts = {h["host"]: h for h in data["hosts"]}
    assert hosts["web1"]["software"] == hosts["web2"]["software"] == IMAGE_A.digest
    assert hosts["db2"]["software"] is None and hosts["db2"]["release"] is None
    back = {f.host: f for f in findings.loads(text, "findings.json")}
    assert back == {f.host: f for f in fleet()}
    assert back["web1"].software is back["web2"].software  # read once, shared
    assert findings.dumps(back.values()) == text


def test_a_version_1_file_still_loads_with_software_unknown() -> None:
    v1 = {
        "format": "patchkit-findings",
        "version": 1,
        "hosts": [
            {"host": "web1", "assessed_at": "2026-11-20T08:15:00+00:00", "reachable": True,
             "updates": [{"package": "openssl", "installed": "3.0.15-1~deb12u1",
                          "candidate": "3.0.17-1~deb12u2", "origin": "12/stable-security"}]},
        ],
    }  # fmt: skip
    (finding,) = findings.loads(json.dumps(v1), "old.json")
    assert finding.software is None and finding.release is None
    assert finding.distribution is None and finding.release_version is None
    assert finding.updates[0].candidate == "3.0.17-1~deb12u2"
    # and the keys of version 2 are unknown in version 1
    v1["hosts"][0]["release"] = "bookworm"  # type: ignore[index]
    with pytest.raises(FindingsError, match=r"hosts\[0\]\.release: unknown key"):
        findings.loads(json.dumps(v1), "old.json")


def problems(data: dict[str, Any]) -> str:
    with pytest.raises(FindingsError) as caught:
        findings.loads(json.dumps(data), "findings.json")
    return str(caught.value)


def test_a_host_referring_to_an_unknown_set_is_refused_by_name() -> None:
    data = json.loads(findings.dumps(fleet()))
    del data["package_sets"][IMAGE_B.digest]
    assert problems(data) == (
        f"findings.json: hosts[0].software: host 'db1' refers to package set"
        f" '{IMAGE_B.digest}', which package_sets does not hold"
    )


def test_a_set_changed_after_it_was_written_is_refused() -> None:
    data = json.loads(findings.dumps(fleet()))
    data["package_sets"][IMAGE_B.digest][0]["version"] = "1.1"
    message = problems(data)
    assert message.startswith(f"findings.json: package_sets.{IMAGE_B.digest}: the packages'")
    assert "changed after it was written" in message
    assert "refers to package set" not in message  # the set's own problem, said once


def test_bad_package_sets() -> None:
    data = json.loads(findings.dumps(fleet()))
    where = f"package_sets.{IMAGE_B.digest}"
    packages = data["package_sets"][IMAGE_B.digest]
    packages.append(dict(packages[0]))
    packages[1]["source"] = "g libc"
    packages[1]["epoch"] = "1"
    data["package_sets"]["ABC"] = []
    message = problems(data)
    assert f"{where}[2]: 'demo-lib' (all) is listed twice in this set" in message
    assert f"{where}[1].source: 'g libc' holds a blank (none can)" in message
    assert f"{where}[1].epoch: unknown key" in message
    assert "package_sets.ABC: not a digest" in message
    del data["package_sets"]
    assert "package_sets: missing" in problems(data)


def test_an_unreachable_host_cannot_have_software() -> None:
    data = json.loads(findings.dumps(fleet()))
    unreachable = next(h for h in data["hosts"] if h["host"] == "db2")
    unreachable["software"] = IMAGE_B.digest
    assert "cannot have software listed" in problems(data)


# ---------------------------------------------------------------- the ledger


def image(number: int, size: int = 600) -> PackageSet:
    """A host image of ``size`` packages: the lab host's, then more; images differ in a few
    versions (a kernel, a library), as images of one fleet do."""
    lab = list(read_packages(LAB).packages)
    extra = [
        InstalledPackage(f"pkg{i:03d}", f"1.{i % 7}-1", "amd64", f"src{i // 3:03d}", f"1.{i % 7}-1")
        for i in range(size - len(lab))
    ]
    extra[:number] = [
        InstalledPackage(p.name, p.version + f"+img{number}", p.arch, p.source, p.source_version)
        for p in extra[:number]
    ]
    return PackageSet(lab + extra)


def assessment(at: datetime, count: int, images: list[PackageSet]) -> list[Finding]:
    return [
        Finding(f"host{i}", at, True, release="bookworm", distribution="Debian",
                release_version="12.15", software=images[i % len(images)])
        for i in range(count)
    ]  # fmt: skip


def test_a_fleet_of_1000_hosts_over_3_images_stores_and_loads_3_sets(tmp_path: Path) -> None:
    path = tmp_path / "ledger.sqlite"
    ledger = Ledger(f"sqlite:///{path}")
    images = [image(1), image(2), image(3)]
    assert len({s.digest for s in images}) == 3
    ledger.record_assessment(assessment(AT, 1000, images), source="inv", started=AT)
    later = AT + timedelta(days=1)
    second = assessment(later, 1000, images)
    second[7] = Finding("host7", later, False, message="unreachable: timed out")
    ledger.record_assessment(second, source="inv", started=later)  # the sets again: not stored
    engine = create_engine(f"sqlite:///{path}")
    with engine.connect() as conn:
        stored = conn.execute(text("SELECT digest, packages, body FROM package_sets")).all()
        referring = conn.execute(
            text("SELECT count(*) FROM findings WHERE package_set IS NOT NULL")
        ).scalar_one()
    engine.dispose()
    assert sorted(r.digest for r in stored) == sorted(s.digest for s in images)
    assert {r.packages for r in stored} == {600}
    assert referring == 1999
    ledger.close()  # the last connection checkpoints the WAL into the file
    body = sum(len(r.body) for r in stored)
    print(f"3 sets of 600 packages: {body:,} bytes of body; ledger {path.stat().st_size:,} bytes")

    ledger = Ledger(f"sqlite:///{path}")
    latest = ledger.latest_findings()
    assert len(latest) == 1000
    assert len({id(f.software) for f in latest.values() if f.software is not None}) == 3
    assert latest["host4"].software == images[1] and latest["host4"].release == "bookworm"
    assert latest["host7"].software is None  # its newest finding could not list it

    software = ledger.latest_software()
    assert len(software) == 1000 and len({id(s.software) for s in software.values()}) == 3
    host7 = software["host7"]  # as last seen
    assert (host7.assessed_at, host7.software, host7.release) == (AT, images[1], "bookworm")
    assert (host7.distribution, host7.release_version) == ("Debian", "12.15")
    assert software["host8"].assessed_at == later
    assert ledger.latest_software(["host1", "nohost"]).keys() == {"host1"}
    assert ledger.package_set(images[0].digest) == images[0]
    assert ledger.package_set("0" * 64) is None


def test_a_stored_set_changed_by_hand_is_refused(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'ledger.sqlite'}"
    ledger = Ledger(url)
    ledger.record_assessment(assessment(AT, 2, [IMAGE_A]), source="inv", started=AT)
    with sqlite3.connect(tmp_path / "ledger.sqlite") as conn:
        conn.execute("UPDATE package_sets SET body = replace(body, 'demo-lib\t1.0', 'demo-lib\t9')")
    with pytest.raises(LedgerError, match=f"package set {IMAGE_A.digest} in the ledger does not"):
        ledger.latest_findings()


# Back to version 4: findings as patchkit 4 created it on SQLite (SQLite cannot drop a column a
# foreign key names, so the table is made again), no package_sets, and one assessment of two
# hosts in it.
TO_VERSION_4 = """
PRAGMA foreign_keys=OFF;
BEGIN;
DROP TABLE findings;
DROP TABLE package_sets;
CREATE TABLE findings (
    id INTEGER NOT NULL,
    assessment_id INTEGER NOT NULL,
    host VARCHAR(255) NOT NULL,
    assessed_at DATETIME NOT NULL,
    reachable BOOLEAN NOT NULL,
    reboot_pending BOOLEAN NOT NULL,
    message TEXT NOT NULL,
    PRIMARY KEY (id),
    FOREIGN KEY(assessment_id) REFERENCES assessments (id)
);
CREATE INDEX ix_findings_host_time ON findings (host, assessed_at);
INSERT INTO assessments (id, started, source, hosts)
    VALUES (1, '2026-11-01 08:00:00.000000', 'inv', 2);
INSERT INTO findings VALUES (1, 1, 'web1', '2026-11-01 08:00:00.000000', 1, 0, '');
INSERT INTO findings VALUES (2, 1, 'web2', '2026-11-01 08:00:00.000000', 0, 0, 'down');
INSERT INTO pending_updates (finding_id, package, installed, candidate, origin, first_seen)
    VALUES (1, 'openssl', '3.0.15-1~deb12u1', '3.0.17-1~deb12u2', '12/stable-security',
            '2026-11-01 08:00:00.000000');
ALTER TABLE plans DROP COLUMN body_z;
ALTER TABLE host_phases DROP COLUMN controller;
ALTER TABLE host_phases DROP COLUMN via;
UPDATE meta SET value = '4' WHERE key = 'schema';
COMMIT;
"""


def version_4_ledger(path: Path) -> None:
    """A ledger as patchkit with schema 4 left it, holding one assessment of two hosts."""
    Ledger(f"sqlite:///{path}").close()  # today's schema, then taken back to version 4
    conn = sqlite3.connect(path, isolation_level=None)
    conn.executescript(TO_VERSION_4)
    conn.close()


def test_a_version_4_ledger_is_migrated_and_keeps_its_findings(tmp_path: Path) -> None:
    path = tmp_path / "ledger.sqlite"
    version_4_ledger(path)
    ledger = Ledger(f"sqlite:///{path}")  # opening migrates
    with sqlite3.connect(path) as conn:
        (version,) = conn.execute("SELECT value FROM meta WHERE key = 'schema'").fetchone()
        columns = {row[1] for row in conn.execute("PRAGMA table_info(findings)")}
        assert conn.execute("PRAGMA foreign_key_check").fetchall() == []
    assert version == str(t.SCHEMA_VERSION)
    assert columns == {c.name for c in t.findings.columns}
    old = ledger.latest_findings()
    assert sorted(old) == ["web1", "web2"]
    assert old["web1"].updates[0].candidate == "3.0.17-1~deb12u2"
    assert old["web1"].software is None and old["web1"].release is None
    assert old["web2"].message == "down"
    assert ledger.latest_software() == {}
    # and the migrated ledger records software
    ledger.record_assessment(assessment(AT, 1, [IMAGE_A]), source="inv", started=AT)
    assert ledger.latest_software()["host0"].software == IMAGE_A
    assert ledger.latest_findings()["web1"].updates[0].first_seen is not None


def test_only_the_pending_updates_of_the_packages_asked_for_are_read(tmp_path: Path) -> None:
    ledger = Ledger(f"sqlite:///{tmp_path / 'ledger.sqlite'}")
    images = [image(1), image(2)]
    pending = (
        PendingUpdate("libssl3", "3.0.1", "3.0.2", "Debian-Security:12/stable-security"),
        PendingUpdate("libssl3:i386", "3.0.1", "3.0.2", "Debian-Security:12/stable-security"),
        PendingUpdate("vim", "2:9.0-1", "2:9.0-2", "Debian:12/stable"),
    )
    fleet = [
        dataclasses.replace(f, updates=pending[: 1 + i % 3])
        for i, f in enumerate(assessment(AT, 20, images))
    ]
    ledger.record_assessment(fleet, source="inv", started=AT)
    whole = ledger.latest_findings()
    asked: list[set[str]] = []

    def wanted(sets: Iterable[PackageSet]) -> set[str]:
        asked.append({s.digest for s in sets})
        return {"libssl3", "libssl3:i386"}

    some = ledger.latest_findings(None, wanted)
    assert asked == [{s.digest for s in images}]  # given the sets of the findings read
    assert any(len(f.updates) == 2 for f in some.values())
    for name, finding in some.items():
        assert finding.updates == tuple(u for u in whole[name].updates if u.package != "vim")
        assert dataclasses.replace(finding, updates=whole[name].updates) == whole[name]
    assert ledger.latest_findings(None, lambda sets: None) == whole  # None: all of them
    many = {f"pkg{n}" for n in range(planning_ledger.NAMES_READ)} | {"libssl3"}
    assert ledger.latest_findings(None, lambda sets: many) == whole  # too many to name: all
