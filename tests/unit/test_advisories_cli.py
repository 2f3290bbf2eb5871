"""Unit: ``patchkit advisories import|status`` on feed files and a ledger in tmp_path.

Run through ``patchkit.cli.main`` (not click's CliRunner alone): exit codes and the
"what to do" line of an error are made there.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pytest

from patchkit.advisories import read_tracker
from patchkit.errors import ExitCode
from patchkit.ledger import Ledger
from tests.unit.advisory_files import AT, dated, epss_file, osv_zip, tracker_file
from tests.unit.cli_process import Run, in_process
from tests.unit.test_advisory_feeds import EPSS, kev, kev_entry, tracker, ubuntu_notice, write_json


@pytest.fixture
def run_cli(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> Run:
    """``patchkit --ledger <tmp> ARGV`` in this process, from tmp_path."""
    monkeypatch.chdir(tmp_path)
    return in_process(monkeypatch, capsys, "--ledger", f"sqlite:///{tmp_path / 'ledger.sqlite'}")


@pytest.fixture
def feeds(tmp_path: Path) -> dict[str, Path]:
    """One file of each kind, named as they are downloaded."""
    return {
        "tracker": tracker_file(tmp_path, "json"),
        "osv": osv_zip(tmp_path / "ubuntu.zip", ubuntu_notice()),
        "kev": write_json(
            tmp_path / "known_exploited_vulnerabilities.json", kev(kev_entry("CVE-2024-0001"))
        ),
        "epss": epss_file(tmp_path / "epss_scores-2026-11-30.csv.gz", "2026-11-30"),
    }


def stored(tmp_path: Path) -> list[str]:
    ledger = Ledger(f"sqlite:///{tmp_path / 'ledger.sqlite'}")
    try:
        return [s.feed.source for s in ledger.feed_status()]
    finally:
        ledger.close()


def test_import_says_what_each_file_was(run_cli: Run, feeds: dict[str, Path]) -> None:
    done = run_cli("advisories", "import", *(p.name for p in feeds.values()))
    assert done.code == ExitCode.OK, done.err
    lines = done.out.splitlines()
    assert lines == [
        "json: debian-tracker of 2026-12-01 09:00 UTC, 3 records, 2 CVEs: imported (#1)",
        "ubuntu.zip: osv of 2026-11-05 10:00 UTC, 1 record, 2 CVEs: imported (#2)",
        "known_exploited_vulnerabilities.json: kev 2026.11.20 of 2026-11-20 17:01 UTC, 1 record,"
        " 1 CVE: imported (#3)",
        "epss_scores-2026-11-30.csv.gz: epss v2025.03.14 of 2026-11-30 00:00 UTC, 2 records,"
        " 2 CVEs: imported (#4)",
    ]
    again = run_cli("advisories", "import", "json")
    assert again.code == ExitCode.OK
    assert "json: debian-tracker" in again.out and "already imported (#1, " in again.out
    assert "not again" in again.out


def test_import_says_what_a_newer_feed_replaces(
    run_cli: Run, feeds: dict[str, Path], tmp_path: Path
) -> None:
    assert run_cli("advisories", "import", "json").code == ExitCode.OK
    newer = tracker_file(tmp_path, "newer.json", when=datetime(2026, 12, 2, tzinfo=UTC), said="x")
    done = run_cli("advisories", "import", newer.name)
    assert done.out.strip().endswith("imported (#2), replaces #1 of 2026-12-01 09:00 UTC")
    older = tracker_file(tmp_path, "older.json", when=datetime(2026, 11, 2, tzinfo=UTC), said="y")
    done = run_cli("advisories", "import", older.name)
    assert "imported (#3), not in use: a newer debian-tracker is current" in done.out


def test_import_json(run_cli: Run, feeds: dict[str, Path]) -> None:
    done = run_cli("advisories", "import", "--json", "--by", "cron", "json", "json")
    assert done.code == ExitCode.OK, done.err
    report = json.loads(done.out)
    first, second = report["files"]
    assert (first["outcome"], second["outcome"]) == ("imported", "already-imported")
    feed = first["feed"]
    assert (feed["kind"], feed["source"], feed["records"], feed["cves"]) == (
        "debian-tracker",
        "json",
        3,
        2,
    )
    assert feed["date"] == AT.isoformat() and feed["dated_by"] == "file-time"
    assert feed["imported_by"] == "cron" and feed["current"] is True
    assert feed["location"] == str(feeds["tracker"])
    assert second["feed"]["id"] == feed["id"] and first["replaced"] is None


def test_a_bad_file_is_named_and_imports_nothing_the_others_do(
    run_cli: Run, feeds: dict[str, Path], tmp_path: Path
) -> None:
    bad = tracker()
    bad["openssl"]["CVE-2024-0001"]["releases"]["bookworm"]["status"] = "weird"
    write_json(tmp_path / "bad.json", bad)
    done = run_cli("advisories", "import", "bad.json", "known_exploited_vulnerabilities.json")
    assert done.code == ExitCode.BAD_INPUT
    assert "known_exploited_vulnerabilities.json: kev" in done.out  # the good one went in
    assert done.message.startswith(
        "patchkit: error: bad.json: openssl/CVE-2024-0001: releases.bookworm.status: "
        "unknown value 'weird'"
    )
    assert "what to do: fetch the file again" in done.message
    assert stored(tmp_path) == ["known_exploited_vulnerabilities.json"]


def test_several_bad_files_are_each_named(run_cli: Run, tmp_path: Path) -> None:
    (tmp_path / "cut.json").write_text('{"openssl": {"CVE-2024-0001": {', encoding="utf-8")
    (tmp_path / "epss.csv").write_text(EPSS.replace("0.00043", "abc"), encoding="utf-8")
    done = run_cli("advisories", "import", "cut.json", "missing.json", "epss.csv")
    assert done.code == ExitCode.BAD_INPUT
    assert "3 of 3 files were not imported" in done.message
    assert "cut.json: not JSON" in done.message
    assert "missing.json: cannot read" in done.message
    assert "epss.csv: line 4 (CVE-2024-0002): epss: not a number: 'abc'" in done.message
    assert "what to do:" in done.message
    assert done.out == "" and stored(tmp_path) == []


def test_a_bad_file_in_json(run_cli: Run, tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("hello", encoding="utf-8")
    done = run_cli("advisories", "import", "--json", "notes.txt")
    assert done.code == ExitCode.BAD_INPUT
    (entry,) = json.loads(done.out)["files"]
    assert entry["outcome"] == "error" and entry["file"] == "notes.txt"
    assert entry["error"]["message"].startswith("notes.txt: not an advisory feed")
    assert entry["error"]["hint"]


def test_status_with_no_feeds_says_how_to_import(run_cli: Run) -> None:
    done = run_cli("advisories", "status")
    assert done.code == ExitCode.OK and done.out == ""
    assert "no advisory feeds loaded in sqlite:///" in done.message
    assert "patchkit advisories import FILE" in done.message
    as_json = run_cli("advisories", "status", "--json")
    assert as_json.code == ExitCode.OK and json.loads(as_json.out)["feeds"] == []


def test_status_lists_the_feeds_in_use_with_their_age(
    run_cli: Run, feeds: dict[str, Path], tmp_path: Path
) -> None:
    assert run_cli("advisories", "import", *(p.name for p in feeds.values())).code == 0
    older = dated(
        write_json(tmp_path / "old.json", {**tracker(), "zlib": {}}), AT.replace(month=11)
    )
    assert read_tracker(older).feed.date < AT
    assert run_cli("advisories", "import", "old.json").code == ExitCode.OK

    at = "2026-12-02T09:30:00+00:00"
    done = run_cli("advisories", "status", "--at", at)
    assert done.code == ExitCode.OK, done.err
    assert "4 advisory feed(s) in use" in done.out
    rows = {line.split("│")[2].strip(): line for line in done.out.splitlines() if "│" in line}
    ages = {kind: line.split("│")[5].strip() for kind, line in rows.items()}
    assert ages == {
        "debian-tracker": "1 day old",
        "osv": "26 days old",
        "kev 2026.11.20": "11 days old",
        "epss v2025.03.14": "2 days old",
    }
    assert "old.json" not in done.out
    assert "1 older import(s) kept, not used: --all lists them" in done.message

    every = run_cli("advisories", "status", "--all", "--at", at)
    assert "1 older import(s), kept but not used" in every.out
    (old,) = (line for line in every.out.splitlines() if "old.json" in line)
    assert "31 days old" in old


def test_status_json(run_cli: Run, feeds: dict[str, Path], tmp_path: Path) -> None:
    assert run_cli("advisories", "import", *(p.name for p in feeds.values())).code == 0
    tracker_file(tmp_path, "old.json", when=AT.replace(month=11), said="older")
    assert run_cli("advisories", "import", "old.json").code == ExitCode.OK
    at = "2026-12-02T09:00:00+00:00"
    done = run_cli("advisories", "status", "--json", "--at", at)
    report = json.loads(done.out)
    assert report["at"] == at
    assert [(f["kind"], f["age_days"]) for f in report["feeds"]] == [
        ("debian-tracker", 1),
        ("osv", 26),
        ("kev", 11),
        ("epss", 2),
    ]
    assert all(f["current"] for f in report["feeds"])
    every = json.loads(run_cli("advisories", "status", "--json", "--all", "--at", at).out)
    assert [(f["source"], f["current"]) for f in every["feeds"]][-1] == ("old.json", False)


def test_status_refuses_a_time_that_is_no_time(run_cli: Run) -> None:
    done = run_cli("advisories", "status", "--at", "yesterday")
    assert done.code == ExitCode.BAD_INPUT and "'--at'" in done.message
