"""Unit: the advisory readers on small files in the real formats, bad files, Debian versions."""

from __future__ import annotations

import copy
import dataclasses
import gc
import gzip
import hashlib
import json
import os
import zipfile
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import pytest

from patchkit.advisories import (
    AdvisoryError,
    Distro,
    FeedDating,
    FeedKind,
    FixStatus,
    Release,
    Scope,
    Urgency,
    detect,
    is_fixed,
    parse_version,
    read_epss,
    read_feed,
    read_kev,
    read_osv,
    read_tracker,
)
from patchkit.errors import ExitCode, PatchkitError

BOOKWORM = Release(Distro.DEBIAN, "bookworm")
DEBIAN_12 = Release(Distro.DEBIAN, "12")
JAMMY = Release(Distro.UBUNTU, "22.04")
CRITICAL_V31 = "CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H"  # 9.8
HIGH_V40 = "CVSS:4.0/AV:N/AC:L/AT:N/PR:N/UI:N/VC:H/VI:H/VA:H/SC:N/SI:N/SA:N"  # 9.3


def write_json(path: Path, data: object) -> Path:
    path.write_text(json.dumps(data, indent=1), encoding="utf-8")
    return path


def raised(call: Any, path: Path) -> AdvisoryError:
    with pytest.raises(AdvisoryError) as caught:
        call(path)
    return caught.value


# --- the Debian security tracker ---------------------------------------------------------------


def tracker() -> dict[str, Any]:
    return {
        "openssl": {
            "CVE-2024-0001": {
                "description": "Buffer overread in X.509 name checks",
                "scope": "remote",
                "debianbug": 1060001,
                "releases": {
                    "bookworm": {
                        "status": "resolved",
                        "repositories": {
                            "bookworm": "3.0.11-1~deb12u2",
                            "bookworm-security": "3.0.13-1~deb12u1",
                        },
                        "fixed_version": "3.0.13-1~deb12u1",
                        "urgency": "high",
                    },
                    "bullseye": {
                        "status": "open",
                        "repositories": {"bullseye": "1.1.1w-0+deb11u1"},
                        "urgency": "medium**",
                        "nodsa": "Minor issue",
                        "nodsa_reason": "postponed",
                    },
                    "trixie": {
                        "status": "resolved",
                        "repositories": {"trixie": "3.3.0-1"},
                        "fixed_version": "0",
                        "urgency": "unimportant",
                    },
                    "sid": {
                        "status": "undetermined",
                        "repositories": {"sid": "3.3.0-1"},
                        "urgency": "not yet assigned",
                        "next_point_update": True,
                    },
                },
            },
        },
        "demo-lib": {
            "CVE-2024-0001": {"releases": {"bookworm": {"status": "open", "urgency": "low"}}},
            "TEMP-0000000-A1B2C3": {
                "description": "Something not yet named",
                "releases": {"bookworm": {"status": "open", "urgency": "end-of-life"}},
            },
        },
    }


def test_tracker_fixes_per_release_and_package(tmp_path: Path) -> None:
    path = write_json(tmp_path / "tracker.json", tracker())
    os.utime(path, (1_790_000_000, 1_790_000_000))
    feed = read_tracker(path)

    (fixed,) = feed.fixes_for(BOOKWORM, "openssl")
    assert (fixed.vulnerability, fixed.status, fixed.fixed_version) == (
        "CVE-2024-0001",
        FixStatus.FIXED,
        "3.0.13-1~deb12u1",
    )
    assert fixed.urgency is Urgency.HIGH and not fixed.urgency_by_nvd
    assert fixed.notes is not None
    assert fixed.notes.repositories == (
        ("bookworm", "3.0.11-1~deb12u2"),
        ("bookworm-security", "3.0.13-1~deb12u1"),
    )

    (open_,) = feed.fixes_for(Release(Distro.DEBIAN, "bullseye"), "openssl")
    assert open_.status is FixStatus.OPEN and open_.fixed_version is None
    assert open_.urgency is Urgency.MEDIUM and open_.urgency_by_nvd  # "medium**"
    assert open_.notes is not None and open_.notes.no_dsa_reason == "postponed"

    (unaffected,) = feed.fixes_for(Release(Distro.DEBIAN, "trixie"), "openssl")
    assert unaffected.status is FixStatus.NOT_AFFECTED and unaffected.fixed_version == "0"
    (sid,) = feed.fixes_for(Release(Distro.DEBIAN, "sid"), "openssl")
    assert sid.status is FixStatus.UNDETERMINED
    assert sid.notes is not None and sid.notes.next_point_update

    demo = feed.fixes_for(BOOKWORM, "demo-lib")
    assert [f.vulnerability for f in demo] == ["CVE-2024-0001", "TEMP-0000000-A1B2C3"]
    assert demo[1].urgency is Urgency.END_OF_LIFE
    assert feed.fixes_for(BOOKWORM, "no-such-package") == ()
    assert Release(Distro.DEBIAN, "bullseye") in feed.releases()

    # the CVE is listed under two packages; it is one advisory
    (advisory,) = feed.advisories_for("CVE-2024-0001")
    assert advisory.description == "Buffer overread in X.509 name checks"
    assert advisory.scope is Scope.REMOTE and advisory.debian_bugs == (1060001,)
    assert advisory.cvss == ()  # the tracker gives no vectors

    assert feed.feed.kind is FeedKind.DEBIAN_TRACKER
    assert feed.feed.dated_by is FeedDating.FILE_TIME
    assert feed.feed.date == datetime.fromtimestamp(1_790_000_000, UTC)
    assert (feed.feed.records, feed.feed.cves) == (3, 2)
    assert feed.feed.sha256 == hashlib.sha256(path.read_bytes()).hexdigest()


def test_tracker_is_read_the_same_from_gzip_and_twice(tmp_path: Path) -> None:
    plain = write_json(tmp_path / "tracker.json", tracker())
    packed = tmp_path / "tracker.json.gz"
    packed.write_bytes(gzip.compress(plain.read_bytes()))
    assert read_tracker(packed).fixes == read_tracker(plain).fixes == read_tracker(plain).fixes
    assert detect(packed) is FeedKind.DEBIAN_TRACKER


def test_tracker_values_are_frozen(tmp_path: Path) -> None:
    feed = read_tracker(write_json(tmp_path / "tracker.json", tracker()))
    with pytest.raises(dataclasses.FrozenInstanceError):
        feed.fixes[0].fixed_version = "9"  # type: ignore[misc]


def test_tracker_null_fields_read_as_absent(tmp_path: Path) -> None:
    plain = read_tracker(write_json(tmp_path / "plain.json", tracker()))
    data = tracker()
    entry = data["openssl"]["CVE-2024-0001"]["releases"]["bookworm"]
    entry.update(nodsa=None, next_point_update=None)  # the tracker drops nulls; others may not
    with_nulls = read_tracker(write_json(tmp_path / "nulls.json", data))
    assert with_nulls.fixes == plain.fixes


def test_tracker_unknown_status_names_file_record_and_field(tmp_path: Path) -> None:
    data = tracker()
    data["openssl"]["CVE-2024-0001"]["releases"]["bookworm"]["status"] = "maybe"
    path = write_json(tmp_path / "tracker.json", data)
    error = raised(read_tracker, path)
    assert str(error).startswith(
        f"{path}: openssl/CVE-2024-0001: releases.bookworm.status: unknown value 'maybe'"
    )
    assert isinstance(error, PatchkitError) and isinstance(error, ValueError)
    assert error.exit_code is ExitCode.BAD_INPUT and error.hint


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (
            lambda d: d["openssl"]["CVE-2024-0001"].update(debianbug="1060001"),
            "openssl/CVE-2024-0001: debianbug: expected an integer, found '1060001' (a string)",
        ),
        (
            lambda d: d["openssl"]["CVE-2024-0001"]["releases"]["bookworm"].pop("fixed_version"),
            "openssl/CVE-2024-0001: releases.bookworm.fixed_version: missing",
        ),
        (
            lambda d: d["openssl"]["CVE-2024-0001"]["releases"]["bullseye"].update(
                fixed_version="1.1.1w-0+deb11u2"
            ),
            "releases.bullseye.fixed_version: given for status 'open'",
        ),
        (
            lambda d: d["openssl"]["CVE-2024-0001"]["releases"]["bookworm"].update(
                fixed_version="3.0 13"
            ),
            "releases.bookworm.fixed_version: not a Debian version: '3.0 13'",
        ),
        (
            lambda d: d["openssl"]["CVE-2024-0001"]["releases"]["sid"].update(urgency="urgent"),
            "releases.sid.urgency: unknown value 'urgent'",
        ),
        (
            lambda d: d["openssl"]["CVE-2024-0001"].update(scope="everywhere"),
            "scope: unknown value 'everywhere'",
        ),
        (
            lambda d: d["openssl"]["CVE-2024-0001"].pop("releases"),
            "openssl/CVE-2024-0001: releases: missing",
        ),
        (lambda d: d["openssl"].update({"CVE-2024": {}}), "openssl/CVE-2024: not a CVE"),
        (lambda d: d.update(zlib=["CVE-2024-0002"]), "zlib: expected an object of CVEs"),
    ],
)
def test_tracker_bad_fields(tmp_path: Path, change: Any, expected: str) -> None:
    data = copy.deepcopy(tracker())
    change(data)
    error = raised(read_tracker, write_json(tmp_path / "tracker.json", data))
    assert expected in str(error)


def test_tracker_lists_every_problem_at_once(tmp_path: Path) -> None:
    data = tracker()
    for name in ("bookworm", "bullseye", "trixie", "sid"):
        data["openssl"]["CVE-2024-0001"]["releases"][name]["status"] = 3
    error = raised(read_tracker, write_json(tmp_path / "tracker.json", data))
    assert str(error).startswith(f"{tmp_path / 'tracker.json'}: 4 problems:")
    assert len(error.problems) == 4
    assert "releases.sid.status: expected a string, found 3 (a number)" in error.problems[3]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ('{"openssl": {"CVE-2024-0001": {"releases": {', "not JSON:"),  # a cut download
        ('{"openssl": {"CVE-2024-0001": {"debianbug": NaN, "releases": {}}}}', "NaN"),
        ("[1, 2]", "expected an object of source packages, found a list"),
        ("", "not JSON"),
    ],
)
def test_tracker_not_json(tmp_path: Path, text: str, expected: str) -> None:
    path = tmp_path / "tracker.json"
    path.write_text(text, encoding="utf-8")
    error = raised(read_tracker, path)
    assert str(error).startswith(f"{path}: ") and expected in str(error)


def test_a_failed_read_leaves_the_garbage_collector_on(tmp_path: Path) -> None:
    path = tmp_path / "tracker.json"
    path.write_text("{", encoding="utf-8")
    assert gc.isenabled()
    raised(read_tracker, path)
    assert gc.isenabled()


def test_a_file_that_is_not_there_or_too_big(tmp_path: Path) -> None:
    assert "cannot read" in str(raised(read_tracker, tmp_path / "nothing.json"))
    path = write_json(tmp_path / "tracker.json", tracker())
    with pytest.raises(AdvisoryError, match="larger than 100 bytes"):
        read_tracker(path, max_bytes=100)
    with pytest.raises(AdvisoryError, match="cannot read: Is a directory"):
        read_tracker(tmp_path)
    with pytest.raises(AdvisoryError, match="not a regular file"):  # a device would never end
        read_tracker(Path("/dev/zero"))


# --- OSV ---------------------------------------------------------------------------------------


def debian_record(ident: str = "DEBIAN-CVE-2024-0001", **changes: Any) -> dict[str, Any]:
    record: dict[str, Any] = {
        "schema_version": "1.6.0",
        "id": ident,
        "modified": "2026-11-02T08:00:00Z",
        "published": "2026-10-30T12:00:00.123456789Z",
        "upstream": [ident.removeprefix("DEBIAN-")],
        "summary": "Buffer overread in X.509 name checks",
        "severity": [{"type": "CVSS_V3", "score": CRITICAL_V31}],
        "affected": [
            {
                "package": {
                    "ecosystem": "Debian:12",
                    "name": "openssl",
                    "purl": "pkg:deb/debian/openssl?arch=source",
                },
                "ranges": [
                    {
                        "type": "ECOSYSTEM",
                        "events": [{"introduced": "0"}, {"fixed": "3.0.13-1~deb12u1"}],
                    }
                ],
                "ecosystem_specific": {"urgency": "high"},
            },
            {
                "package": {"ecosystem": "Debian:13", "name": "openssl"},
                "ranges": [{"type": "ECOSYSTEM", "events": [{"introduced": "0"}]}],
            },
        ],
    }
    record.update(changes)
    return record


def ubuntu_notice() -> dict[str, Any]:
    return {
        "id": "USN-7000-1",
        "modified": "2026-11-05T10:00:00Z",
        "upstream": ["CVE-2024-0002", "CVE-2024-0003"],
        "related": ["UBUNTU-CVE-2024-0002"],
        "details": "  Several flaws in demo-lib.\n",
        "severity": [{"type": "Ubuntu", "score": "medium"}, {"type": "CVSS_V4", "score": HIGH_V40}],
        "affected": [
            {
                "package": {"ecosystem": "Ubuntu:22.04:LTS", "name": "demo-lib"},
                "ranges": [
                    {
                        "type": "ECOSYSTEM",
                        "events": [{"introduced": "1.0-1"}, {"fixed": "1.1-0ubuntu0.22.04.1"}],
                    }
                ],
                "versions": ["1.0-1"],
            },
            {
                "package": {"ecosystem": "Ubuntu:Pro:FIPS-updates:20.04:LTS", "name": "demo-lib"},
                "ranges": [
                    {
                        "type": "ECOSYSTEM",
                        "events": [{"introduced": "0"}, {"fixed": "1.0-1ubuntu0.1"}],
                    }
                ],
            },
        ],
    }


def pypi_record() -> dict[str, Any]:
    return {
        "id": "GHSA-aaaa-bbbb-cccc",
        "modified": "2026-12-01T00:00:00Z",
        "aliases": ["CVE-2024-0009"],
        "affected": [
            {
                "package": {"ecosystem": "PyPI", "name": "django"},
                "ranges": [
                    {"type": "ECOSYSTEM", "events": [{"introduced": "0"}, {"fixed": "4.2.1"}]}
                ],
            }
        ],
    }


def test_osv_debian_record(tmp_path: Path) -> None:
    feed = read_osv(write_json(tmp_path / "DEBIAN-CVE-2024-0001.json", debian_record()))
    (fixed,) = feed.fixes_for(DEBIAN_12, "openssl")
    assert (fixed.vulnerability, fixed.advisory) == ("CVE-2024-0001", "DEBIAN-CVE-2024-0001")
    assert (fixed.status, fixed.fixed_version, fixed.introduced) == (
        FixStatus.FIXED,
        "3.0.13-1~deb12u1",
        None,
    )
    assert fixed.urgency is Urgency.HIGH  # the tracker's, carried in ecosystem_specific
    (open_,) = feed.fixes_for(Release(Distro.DEBIAN, "13"), "openssl")
    assert open_.status is FixStatus.OPEN and open_.fixed_version is None

    (advisory,) = feed.advisories_for("CVE-2024-0001")
    assert advisory.id == "DEBIAN-CVE-2024-0001" and advisory.aliases == ("CVE-2024-0001",)
    (cvss,) = advisory.cvss
    assert (cvss.version, cvss.base_score) == ("3.1", 9.8)
    assert advisory.published == datetime(2026, 10, 30, 12, 0, 0, 123456, tzinfo=UTC)
    assert feed.feed.kind is FeedKind.OSV and feed.feed.dated_by is FeedDating.NEWEST_RECORD
    assert feed.feed.date == datetime(2026, 11, 2, 8, 0, tzinfo=UTC)


def test_osv_ubuntu_notice_covers_each_cve(tmp_path: Path) -> None:
    feed = read_osv(write_json(tmp_path / "USN-7000-1.json", ubuntu_notice()))
    jammy = feed.fixes_for(JAMMY, "demo-lib")
    assert [f.vulnerability for f in jammy] == ["CVE-2024-0002", "CVE-2024-0003"]
    assert {(f.introduced, f.fixed_version, f.urgency) for f in jammy} == {
        ("1.0-1", "1.1-0ubuntu0.22.04.1", Urgency.MEDIUM)
    }
    fips = Release(Distro.UBUNTU, "20.04", "pro:fips-updates")
    assert str(fips) == "ubuntu:pro:fips-updates:20.04"
    assert [f.fixed_version for f in feed.fixes_for(fips, "demo-lib")] == ["1.0-1ubuntu0.1"] * 2
    (advisory,) = feed.advisories
    assert advisory.cves == ("CVE-2024-0002", "CVE-2024-0003")
    assert advisory.description == "Several flaws in demo-lib."
    assert [(c.version, c.base_score) for c in advisory.cvss] == [("4.0", 9.3)]


def test_osv_directory_and_zip_read_alike(tmp_path: Path) -> None:
    records = {
        "DEBIAN-CVE-2024-0001.json": debian_record(),
        "USN-7000-1.json": ubuntu_notice(),
        # not Debian or Ubuntu: left out unread, so its bad vector does not stop the import
        "GHSA-aaaa-bbbb-cccc.json": {
            **pypi_record(),
            "severity": [{"type": "CVSS_V3", "score": "?"}],
        },
        "DEBIAN-CVE-2023-0001.json": debian_record(
            "DEBIAN-CVE-2023-0001", withdrawn="2026-11-01T00:00:00Z"
        ),
    }
    folder = tmp_path / "osv"
    (folder / "2024").mkdir(parents=True)
    for name, record in records.items():
        write_json(folder / "2024" / name, record)
    (folder / "README.txt").write_text("not a record", encoding="utf-8")
    packed = tmp_path / "all.zip"
    with zipfile.ZipFile(packed, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, record in records.items():
            archive.writestr(name, json.dumps(record))

    from_folder, from_zip = read_osv(folder), read_osv(packed)
    assert from_folder.fixes == from_zip.fixes and from_folder.advisories == from_zip.advisories
    assert [a.id for a in from_zip.advisories] == ["DEBIAN-CVE-2024-0001", "USN-7000-1"]
    assert (from_zip.feed.records, from_zip.feed.ignored, from_zip.feed.cves) == (2, 2, 3)
    # the newest modified among every record read, the ignored ones too
    assert from_zip.feed.date == datetime(2026, 12, 1, tzinfo=UTC)
    assert detect(packed) is FeedKind.OSV and detect(folder) is FeedKind.OSV


def test_osv_ranges_that_are_not_debian_versions_are_left_out(tmp_path: Path) -> None:
    record = debian_record()
    entry = _affected(record)
    entry["ranges"].insert(
        0,
        {"type": "GIT", "repo": "https://example.invalid/openssl", "events": [{"introduced": "0"}]},
    )
    entry["ranges"][1]["events"].append({"limit": "*"})  # the implicit limit, written out
    feed = read_osv(write_json(tmp_path / "record.json", record))
    assert [f.fixed_version for f in feed.fixes_for(DEBIAN_12, "openssl")] == ["3.0.13-1~deb12u1"]


def test_osv_zip_with_one_bad_record_returns_nothing(tmp_path: Path) -> None:
    bad = debian_record("DEBIAN-CVE-2024-0002")
    bad["severity"] = [{"type": "CVSS_V3", "score": "CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H"}]
    packed = tmp_path / "debian.zip"
    with zipfile.ZipFile(packed, "w") as archive:
        archive.writestr("DEBIAN-CVE-2024-0001.json", json.dumps(debian_record()))
        archive.writestr("DEBIAN-CVE-2024-0002.json", json.dumps(bad))
        archive.writestr("USN-7000-1.json", json.dumps(ubuntu_notice()))
    error = raised(read_osv, packed)
    assert str(error).startswith(
        f"{packed}: DEBIAN-CVE-2024-0002.json: severity[0].score: bad CVSS_V3 vector"
    )
    assert "Missing mandatory metrics" in str(error)


def test_osv_bad_json_member_is_named(tmp_path: Path) -> None:
    packed = tmp_path / "debian.zip"
    with zipfile.ZipFile(packed, "w") as archive:
        archive.writestr("DEBIAN-CVE-2024-0001.json", json.dumps(debian_record()))
        archive.writestr("DEBIAN-CVE-2024-0003.json", '{"id": "DEBIAN-CVE-2024-0003", ')
    error = raised(read_osv, packed)
    assert str(error).startswith(f"{packed}: DEBIAN-CVE-2024-0003.json: not JSON")


def _affected(record: dict[str, Any]) -> dict[str, Any]:
    entry: dict[str, Any] = record["affected"][0]
    return entry


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (
            lambda r: _affected(r)["ranges"][0]["events"].__setitem__(1, {"last_affected": "3.0"}),
            "affected[0].ranges[0].events[1].last_affected: not supported",
        ),
        (
            lambda r: _affected(r)["ranges"][0]["events"].__setitem__(1, {"fixed": "3.0 13"}),
            "affected[0].ranges[0].events[1].fixed: not a Debian version: '3.0 13'",
        ),
        (
            lambda r: _affected(r)["ranges"][0]["events"].reverse(),
            "events[0].fixed: a 'fixed' with no 'introduced' before it",
        ),
        (
            lambda r: _affected(r)["package"].update(ecosystem="Ubuntu:Jammy"),
            "affected[0].package.ecosystem: not an Ubuntu release: 'Ubuntu:Jammy'",
        ),
        (
            lambda r: _affected(r)["package"].pop("name"),
            "affected[0].package.name: missing",
        ),
        (lambda r: r.update(affected={"package": {}}), "affected: expected a list"),
        (lambda r: r.pop("modified"), "DEBIAN-CVE-2024-0001: modified: missing"),
        (lambda r: r.update(modified="2026-11-02 08:00"), "modified: a time without a UTC offset"),
        (lambda r: r.update(aliases="CVE-2024-0001"), "aliases: expected a list"),
        (
            lambda r: r["severity"].append({"type": "CVSS_V5", "score": "x"}),
            "severity[1].type: unknown value 'CVSS_V5'",
        ),
        (
            lambda r: r["severity"].__setitem__(0, {"type": "CVSS_V4", "score": CRITICAL_V31}),
            "severity[0].score: bad CVSS_V4 vector",
        ),
        (
            lambda r: _affected(r)["ecosystem_specific"].update(urgency="maybe"),
            "affected[0].ecosystem_specific.urgency: unknown value 'maybe'",
        ),
    ],
)
def test_osv_bad_records(tmp_path: Path, change: Any, expected: str) -> None:
    record = debian_record()
    change(record)
    path = write_json(tmp_path / "record.json", record)
    error = raised(read_osv, path)
    assert str(error).startswith(f"{path}: ") and expected in str(error)


def test_osv_the_same_record_twice_and_no_records(tmp_path: Path) -> None:
    folder = tmp_path / "osv"
    folder.mkdir()
    write_json(folder / "a.json", debian_record())
    write_json(folder / "b.json", debian_record())
    assert "b.json: id: 'DEBIAN-CVE-2024-0001' again (first in a.json)" in str(
        raised(read_osv, folder)
    )
    empty = tmp_path / "empty"
    empty.mkdir()
    assert "no OSV records" in str(raised(read_osv, empty))


# --- KEV ---------------------------------------------------------------------------------------


def kev_entry(cve: str, **changes: Any) -> dict[str, Any]:
    entry: dict[str, Any] = {
        "cveID": cve,
        "vendorProject": "Demo",
        "product": "demo-lib",
        "vulnerabilityName": "Demo demo-lib Buffer Overread Vulnerability",
        "dateAdded": "2026-11-20",
        "shortDescription": "demo-lib contains a buffer overread.",
        "requiredAction": "Apply mitigations per vendor instructions.",
        "dueDate": "2026-12-11",
        "knownRansomwareCampaignUse": "Known",
        "notes": "https://example.invalid/advisory",
        "cwes": ["CWE-125"],
    }
    entry.update(changes)
    return entry


def kev(*entries: dict[str, Any]) -> dict[str, Any]:
    return {
        "title": "CISA Catalog of Known Exploited Vulnerabilities",
        "catalogVersion": "2026.11.20",
        "dateReleased": "2026-11-20T17:01:22.3676Z",
        "count": len(entries),
        "vulnerabilities": list(entries),
    }


def test_kev_catalog(tmp_path: Path) -> None:
    path = write_json(
        tmp_path / "known_exploited_vulnerabilities.json",
        kev(
            kev_entry("CVE-2024-0001"),
            kev_entry("CVE-2024-0002", knownRansomwareCampaignUse="Unknown"),
        ),
    )
    catalog = read_kev(path)
    entry = catalog.entry("CVE-2024-0001")
    assert entry is not None and entry.known_ransomware and entry.cwes == ("CWE-125",)
    assert (entry.date_added, entry.due_date) == (date(2026, 11, 20), date(2026, 12, 11))
    assert (entry.vendor_project, entry.product) == ("Demo", "demo-lib")
    other = catalog.entry("CVE-2024-0002")
    assert other is not None and not other.known_ransomware
    assert catalog.entry("CVE-2020-0001") is None
    assert catalog.feed.kind is FeedKind.KEV and catalog.feed.version == "2026.11.20"
    assert catalog.feed.date == datetime(2026, 11, 20, 17, 1, 22, 367600, tzinfo=UTC)
    assert (catalog.feed.records, catalog.feed.dated_by) == (2, FeedDating.STATED)
    assert detect(path) is FeedKind.KEV


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        (
            {**kev(kev_entry("CVE-2024-0001")), "count": 2},
            "count: says 2, the catalog holds 1 entries",
        ),
        (
            kev(kev_entry("CVE-2024-0001", dueDate="11/12/2026")),
            "vulnerabilities[0] (CVE-2024-0001): dueDate: not a date (YYYY-MM-DD): '11/12/2026'",
        ),
        (kev(kev_entry("CVE-24-1")), "vulnerabilities[0] (CVE-24-1): cveID: not a CVE id"),
        (
            kev(kev_entry("CVE-2024-0001", knownRansomwareCampaignUse="Yes")),
            "knownRansomwareCampaignUse: unknown value 'Yes'",
        ),
        (
            kev(kev_entry("CVE-2024-0001", product=None)),
            "vulnerabilities[0] (CVE-2024-0001): product: missing",
        ),
        (
            kev(kev_entry("CVE-2024-0001"), kev_entry("CVE-2024-0001")),
            "vulnerabilities[1] (CVE-2024-0001): cveID: listed twice",
        ),
        ({**kev(), "dateReleased": None}, "dateReleased: missing"),
        ({"catalogVersion": "1"}, "not the KEV catalog"),
    ],
)
def test_kev_bad_catalogs(tmp_path: Path, data: dict[str, Any], expected: str) -> None:
    path = write_json(tmp_path / "kev.json", data)
    error = raised(read_kev, path)
    assert str(error).startswith(f"{path}: ") and expected in str(error)


# --- EPSS --------------------------------------------------------------------------------------

EPSS = (
    "#model_version:v2025.03.14,score_date:2026-11-30T00:00:00+0000\n"
    "cve,epss,percentile\n"
    "CVE-2024-0001,0.94334,0.99912\n"
    "CVE-2024-0002,0.00043,0.11020\n"
)


def test_epss_scores(tmp_path: Path) -> None:
    path = tmp_path / "epss_scores-2026-11-30.csv.gz"
    path.write_bytes(gzip.compress(EPSS.encode()))
    scores = read_epss(path)
    score = scores.score("CVE-2024-0001")
    assert score is not None and (score.epss, score.percentile) == (0.94334, 0.99912)
    assert score.score_date == datetime(2026, 11, 30, tzinfo=UTC)
    assert scores.score("CVE-2020-0001") is None
    assert scores.model_version == "v2025.03.14" and scores.feed.version == "v2025.03.14"
    assert (scores.feed.kind, scores.feed.records) == (FeedKind.EPSS, 2)
    assert detect(path) is FeedKind.EPSS


def test_epss_newer_score_date_in_z(tmp_path: Path) -> None:
    path = tmp_path / "epss.csv"
    path.write_text(
        EPSS.replace("2026-11-30T00:00:00+0000", "2026-11-30T12:03:21Z"), encoding="utf-8"
    )
    assert read_epss(path).feed.date == datetime(2026, 11, 30, 12, 3, 21, tzinfo=UTC)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (EPSS.replace("0.00043", "abc"), "line 4 (CVE-2024-0002): epss: not a number: 'abc'"),
        (EPSS.replace("0.99912", "1.5"), "line 3 (CVE-2024-0001): percentile: not between 0 and 1"),
        (EPSS.replace("0.00043", "nan"), "epss: not between 0 and 1: 'nan'"),
        (EPSS + "CVE-2024-0001,0.1,0.2\n", "line 5 (CVE-2024-0001): cve: listed twice"),
        (EPSS + "CVE-2024-0003,0.1\n", "line 5: 2 columns, the header has 3"),
        (EPSS.replace("CVE-2024-0002", "2024-0002"), "line 4 (2024-0002): cve: not a CVE id"),
        (EPSS.split("\n", 1)[1], "line 1: expected '#model_version:…,score_date:…'"),
        (EPSS.replace(",score_date:2026-11-30T00:00:00+0000", ""), "line 1: no score_date"),
        (EPSS.replace("+0000", ""), "score_date: a time without a UTC offset"),
        (EPSS.replace("cve,epss,percentile", "cve,score"), "line 2: expected the header"),
        ("", "empty"),
    ],
)
def test_epss_bad_files(tmp_path: Path, text: str, expected: str) -> None:
    path = tmp_path / "epss.csv"
    path.write_text(text, encoding="utf-8")
    error = raised(read_epss, path)
    assert str(error).startswith(f"{path}: ") and expected in str(error)


# --- detection ---------------------------------------------------------------------------------


def test_read_feed_reads_each_kind(tmp_path: Path) -> None:
    epss = tmp_path / "epss.csv"
    epss.write_text(EPSS, encoding="utf-8")
    paths = {
        FeedKind.DEBIAN_TRACKER: write_json(tmp_path / "tracker.json", tracker()),
        FeedKind.OSV: write_json(tmp_path / "osv.json", debian_record()),
        FeedKind.KEV: write_json(tmp_path / "kev.json", kev(kev_entry("CVE-2024-0001"))),
        FeedKind.EPSS: epss,
    }
    for kind, path in paths.items():
        assert detect(path) is kind
        assert read_feed(path).feed.kind is kind


@pytest.mark.parametrize("text", ['{"hosts": []}', "hello", "{}", '["CVE-2024-0001"]'])
def test_detect_refuses_what_is_no_feed(tmp_path: Path, text: str) -> None:
    path = tmp_path / "findings.json"
    path.write_text(text, encoding="utf-8")
    error = raised(detect, path)
    assert str(error).startswith(f"{path}: not an advisory feed patchkit reads")
    assert error.exit_code is ExitCode.BAD_INPUT


# --- Debian versions ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("installed", "fixed", "expected"),
    [
        ("1:1.0-1", "2.0-1", True),  # an epoch outweighs everything after it
        ("2.0-1", "1:1.0-1", False),
        ("1.0~rc1-1", "1.0-1", False),  # a tilde sorts before the release itself
        ("1.0-1", "1.0~rc1-1", True),
        ("3.0.11-1~deb12u1", "3.0.11-1~deb12u2", False),  # a bookworm update not yet installed
        ("3.0.11-1~deb12u2", "3.0.11-1~deb12u2", True),
        ("3.0.11-1~deb12u2", "3.0.11-1", False),  # ~deb12u2 is *before* the unstable upload
        ("3.0.11-1", "3.0.11-1~deb12u2", True),
        ("1.2-3+deb12u1", "1.2-3", True),  # +deb12u1 is *after* the upload it patches
        ("1.2-3", "1.2-3+deb12u1", False),
        ("1.2.10-1", "1.2.9-1", True),  # numbers compare as numbers, not text
        ("1.2-10", "1.2-9", True),
        ("1.0-1", "0", True),  # the tracker's "0": the release was never affected
        ("1.0-1", "unfixed", False),  # no fix exists
        ("1.0-1", None, False),
    ],
)
def test_is_fixed(installed: str, fixed: str | None, expected: bool) -> None:
    assert is_fixed(installed, fixed) is expected


def test_is_fixed_refuses_what_is_no_version() -> None:
    with pytest.raises(ValueError, match="not a Debian version"):
        is_fixed("1.0 1", "1.0-1")
    with pytest.raises(ValueError, match="not a Debian version"):
        is_fixed("1.0-1", "a:1")
    assert parse_version("1:2.0-1").epoch == "1"


def test_tracker_fix_with_is_fixed(tmp_path: Path) -> None:
    feed = read_tracker(write_json(tmp_path / "tracker.json", tracker()))
    (fixed,) = feed.fixes_for(BOOKWORM, "openssl")
    assert not is_fixed("3.0.11-1~deb12u2", fixed.fixed_version)  # the point-release version
    assert is_fixed("3.0.13-1~deb12u1", fixed.fixed_version)  # the security update
    (unaffected,) = feed.fixes_for(Release(Distro.DEBIAN, "trixie"), "openssl")
    assert is_fixed("3.2.0-1", unaffected.fixed_version)


def test_an_empty_kev_catalog_or_epss_file_is_refused(tmp_path: Path) -> None:
    """A cut download or a placeholder, imported, would replace the current feed with nothing
    and silently stop every kev and epss_min rule from matching."""
    empty = write_json(tmp_path / "known_exploited_vulnerabilities.json", kev())
    assert "vulnerabilities: empty" in str(raised(read_kev, empty))
    header_only = tmp_path / "epss_scores-2026-11-30.csv"
    header_only.write_text(EPSS.split("CVE-2024-0001")[0])
    assert "no scores after the header" in str(raised(read_epss, header_only))
