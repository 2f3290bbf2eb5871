"""Unit: the findings file round-trips, is stable, and names every problem of a bad file."""

from __future__ import annotations

import importlib.util
import json
import sys
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from patchkit import findings, inventory
from patchkit.errors import ExitCode, FindingsError
from patchkit.model import Finding, PendingUpdate

AT = datetime(2026, 11, 20, 8, 15, tzinfo=UTC)
PARIS = timezone(timedelta(hours=1))


def fleet() -> tuple[Finding, ...]:
    return (
        Finding(
            host="web10",
            assessed_at=AT,
            reachable=True,
            updates=(
                PendingUpdate(
                    "libssl3", "3.0.15-1~deb12u1", "3.0.17-1~deb12u2", "12/stable-security", AT
                ),
                PendingUpdate(
                    "linux-image-6.1.0-28-amd64",
                    None,
                    "6.1.119-1",
                    "12/stable-security",
                    datetime(2026, 10, 30, 9, 0, tzinfo=PARIS),
                ),
            ),
            reboot_pending=True,
        ),
        Finding(host="web2", assessed_at=AT, reachable=True),
        Finding(
            host="db1",
            assessed_at=AT,
            reachable=False,
            message="unreachable: ssh: connect to host db1 port 22: Connection timed out",
        ),
    )


def test_round_trip() -> None:
    text = findings.dumps(fleet())
    back = findings.loads(text, "findings.json")
    assert {f.host: f for f in back} == {f.host: f for f in fleet()}
    # offsets are kept as written, not moved to UTC
    update = next(f for f in back if f.host == "web10").updates[1]
    assert update.first_seen is not None
    assert update.first_seen.utcoffset() == timedelta(hours=1)


def test_dumps_is_stable_and_sorted() -> None:
    text = findings.dumps(fleet())
    assert text == findings.dumps(reversed(fleet()))
    data = json.loads(text)
    assert data["format"] == "patchkit-findings"
    assert data["version"] == 2
    assert data["package_sets"] == {}  # nothing in fleet() lists its software
    assert [h["host"] for h in data["hosts"]] == ["db1", "web2", "web10"]
    assert [u["package"] for u in data["hosts"][2]["updates"]] == [
        "libssl3",
        "linux-image-6.1.0-28-amd64",
    ]
    assert data["hosts"][2]["updates"][1]["installed"] is None
    assert data["hosts"][2]["assessed_at"] == "2026-11-20T08:15:00+00:00"
    assert text.endswith("}\n")


def test_dumps_refuses_a_time_without_offset() -> None:
    naive = Finding(host="h", assessed_at=datetime(2026, 11, 20, 8, 15), reachable=True)
    with pytest.raises(ValueError, match="UTC offset"):
        findings.dumps([naive])


def test_load_reads_a_file(tmp_path: Path) -> None:
    path = tmp_path / "findings.json"
    path.write_text(findings.dumps(fleet()))
    assert len(findings.load(path)) == 3


names = st.from_regex(r"[a-z][a-z0-9.-]{0,12}", fullmatch=True)
times = st.datetimes(
    min_value=datetime(2000, 1, 1),
    max_value=datetime(2100, 1, 1),
    timezones=st.sampled_from([UTC, PARIS, timezone(timedelta(hours=-5, minutes=-30))]),
)
updates = st.builds(
    PendingUpdate,
    package=names,
    installed=st.none() | names,
    candidate=names,
    origin=st.text(max_size=20),
    first_seen=st.none() | times,
)


@st.composite
def findings_lists(draw: st.DrawFn) -> list[Finding]:
    out = []
    for host in draw(st.lists(names, unique=True, max_size=5)):
        reachable = draw(st.booleans())
        pending = draw(st.lists(updates, unique_by=lambda u: u.package, max_size=4))
        out.append(
            Finding(
                host=host,
                assessed_at=draw(times),
                reachable=reachable,
                updates=tuple(sorted(pending, key=lambda u: u.package)) if reachable else (),
                reboot_pending=draw(st.booleans()),
                message=draw(st.text(max_size=30)),
            )
        )
    return out


@given(findings_lists())
def test_any_findings_round_trip(found: list[Finding]) -> None:
    text = findings.dumps(found)
    back = findings.loads(text, "x.json")
    assert sorted(back, key=lambda f: f.host) == sorted(found, key=lambda f: f.host)
    assert findings.dumps(back) == text


# ---------------------------------------------------------------- bad files


def document(**host: Any) -> dict[str, Any]:
    entry: dict[str, Any] = {
        "host": "web1",
        "assessed_at": "2026-11-20T08:15:00+00:00",
        "reachable": True,
        "reboot_pending": False,
        "message": "",
        "updates": [
            {
                "package": "openssl",
                "installed": "3.0.15-1~deb12u1",
                "candidate": "3.0.17-1~deb12u2",
                "origin": "12/stable-security",
                "first_seen": "2026-11-01T08:00:00+00:00",
            }
        ],
    }
    entry.update(host)
    return {"format": "patchkit-findings", "version": 1, "hosts": [entry]}


def error_of(data: Any) -> FindingsError:
    text = data if isinstance(data, str) else json.dumps(data)
    with pytest.raises(FindingsError) as caught:
        findings.loads(text, "findings.json")
    assert caught.value.exit_code == ExitCode.BAD_INPUT
    assert caught.value.hint is not None
    return caught.value


def without(mapping: dict[str, Any], key: str) -> dict[str, Any]:
    return {k: v for k, v in mapping.items() if k != key}


def test_the_example_document_is_valid() -> None:
    (finding,) = findings.loads(json.dumps(document()), "findings.json")
    assert finding.updates[0].candidate == "3.0.17-1~deb12u2"


def test_a_missing_candidate_names_file_and_path() -> None:
    data = document()
    data["hosts"] = [document(host=f"web{i}")["hosts"][0] for i in range(4)]
    data["hosts"][3]["updates"][0] = without(data["hosts"][3]["updates"][0], "candidate")
    assert str(error_of(data)) == "findings.json: hosts[3].updates[0].candidate: missing"


@pytest.mark.parametrize(
    "data, expected",
    [
        ("{not json", "findings.json: not JSON: Expecting property name enclosed in double"),
        ([], "findings.json: (top): expected an object, found a list"),
        ({"format": "other"}, "findings.json: format: expected 'patchkit-findings', found"),
        (
            {"format": "patchkit-findings", "version": 7, "hosts": []},
            "findings.json: version: 7 is newer than this patchkit reads (2); upgrade patchkit",
        ),
        (
            {"format": "patchkit-findings", "version": "1", "hosts": []},
            "findings.json: version: expected 1 or 2, found '1'",
        ),
        ({"format": "patchkit-findings", "version": 1}, "findings.json: hosts: missing"),
        (
            {"format": "patchkit-findings", "version": 1, "hosts": {}},
            "findings.json: hosts: expected a list, found an object",
        ),
        (
            {"format": "patchkit-findings", "version": 1, "hosts": ["web1"]},
            "findings.json: hosts[0]: expected an object, found a string ('web1')",
        ),
        (document(host=""), "findings.json: hosts[0].host: must not be empty"),
        (document(reachable="yes"), "findings.json: hosts[0].reachable: expected true or false"),
        (document(reboot_pending=1), "findings.json: hosts[0].reboot_pending: expected true or"),
        (document(message=None), "findings.json: hosts[0].message: expected a string, found null"),
        (document(assessed_at=None), "findings.json: hosts[0].assessed_at: must be a time, not"),
        (
            document(assessed_at="2026-11-20T08:15:00"),
            "findings.json: hosts[0].assessed_at: '2026-11-20T08:15:00' has no UTC offset",
        ),
        (
            document(assessed_at="20 Nov 2026"),
            "findings.json: hosts[0].assessed_at: '20 Nov 2026' is not an ISO 8601 time",
        ),
        (
            document(assessed_at=1763626500),
            "findings.json: hosts[0].assessed_at: expected an ISO 8601 time, found a number",
        ),
        (document(reboot_pendng=True), "findings.json: hosts[0].reboot_pendng: unknown key"),
        (document(updates={}), "findings.json: hosts[0].updates: expected a list, found an"),
        (document(updates=[None]), "findings.json: hosts[0].updates[0]: expected an object"),
        (
            document(reachable=False),
            "findings.json: hosts[0].updates: an unreachable host cannot have pending updates",
        ),
    ],
)
def test_bad_files(data: Any, expected: str) -> None:
    assert str(error_of(data)).startswith(expected)


@pytest.mark.parametrize(
    "field, value, expected",
    [
        ("installed", ..., "hosts[0].updates[0].installed: missing (null for a package not"),
        ("installed", 3, "hosts[0].updates[0].installed: expected a string, found a number"),
        ("package", "", "hosts[0].updates[0].package: must not be empty"),
        ("origin", ..., "hosts[0].updates[0].origin: missing"),
        ("first_seen", "yesterday", "hosts[0].updates[0].first_seen: 'yesterday' is not an ISO"),
        ("severity", "high", "hosts[0].updates[0].severity: unknown key"),
    ],
)
def test_bad_updates(field: str, value: Any, expected: str) -> None:
    data = document()
    update = data["hosts"][0]["updates"][0]
    if value is ...:
        del update[field]
    else:
        update[field] = value
    assert str(error_of(data)).startswith(f"findings.json: {expected}")


def test_optional_fields_have_defaults() -> None:
    data = document()
    entry = data["hosts"][0]
    for key in ("reboot_pending", "message", "updates"):
        del entry[key]
    (finding,) = findings.loads(json.dumps(data), "findings.json")
    assert (finding.reboot_pending, finding.message, finding.updates) == (False, "", ())


def test_duplicates() -> None:
    data = document()
    data["hosts"].append(dict(data["hosts"][0]))
    assert str(error_of(data)) == (
        "findings.json: hosts[1].host: 'web1' appears twice (first at hosts[0])"
    )
    data = document()
    updates = data["hosts"][0]["updates"]
    updates.append(dict(updates[0]))
    assert str(error_of(data)) == (
        "findings.json: hosts[0].updates[1].package: 'openssl' is listed twice for this host"
    )


def test_every_problem_is_listed() -> None:
    data = document(reachable="yes", assessed_at="2026-11-20")
    del data["hosts"][0]["updates"][0]["candidate"]
    message = str(error_of(data))
    assert message.splitlines() == [
        "findings.json: 3 problems:",
        "  findings.json: hosts[0].assessed_at: '2026-11-20' has no UTC offset (add e.g. +00:00"
        " or Z)",
        "  findings.json: hosts[0].reachable: expected true or false, found a string ('yes')",
        "  findings.json: hosts[0].updates[0].candidate: missing",
    ]


def test_a_flood_of_problems_is_cut_short() -> None:
    data = document()
    data["hosts"] = [{"host": f"h{i}"} for i in range(30)]
    lines = str(error_of(data)).splitlines()
    assert lines[0] == "findings.json: 60 problems:"
    assert lines[-1] == "  findings.json: … and 40 more"


def test_unreadable_files(tmp_path: Path) -> None:
    with pytest.raises(FindingsError, match=r"nothere\.json: cannot read: No such file"):
        findings.load(tmp_path / "nothere.json")
    binary = tmp_path / "binary.json"
    binary.write_bytes(b"\xff\xfe{}")
    with pytest.raises(FindingsError, match=r"binary\.json: cannot read: 'utf-8' codec"):
        findings.load(binary)


def test_the_documented_example_is_valid_and_as_written() -> None:
    doc = (Path(__file__).parents[2] / "docs" / "findings-format.md").read_text()
    block = doc.split("```json\n", 1)[1].split("```", 1)[0]
    assert findings.dumps(findings.loads(block, "docs/findings-format.md")) == block


def test_the_example_findings_are_what_make_findings_writes(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    root = Path(__file__).parents[2]
    examples = root / "examples"
    spec = importlib.util.spec_from_file_location("make_findings", examples / "make_findings.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, spec.name, module)  # dataclasses look their module up
    spec.loader.exec_module(module)
    fleet = inventory.load(root / "inventories" / "example" / "hosts.yml")
    text = (examples / "findings.json").read_text()
    assert findings.dumps(module.assess_fleet(fleet)) == text, "rerun make_findings.py"
    found = findings.loads(text, "findings.json")
    names = {h.name for h in fleet}
    assert {f.host for f in found} <= names
    assert len(names) > len(found)  # some hosts were never assessed
    assert any(not f.reachable for f in found)
    assert any(f.reachable and not f.updates for f in found)
    assert any(f.reboot_pending for f in found)
    assert any(u.installed is None for f in found for u in f.updates)
    origins = {u.origin for f in found for u in f.updates}
    assert any(o.endswith("-security") for o in origins)
    assert any(not o.endswith("-security") for o in origins)
    ages = {(f.assessed_at - u.first_seen).days for f in found for u in f.updates if u.first_seen}
    assert min(ages) == 0 and max(ages) > 30
