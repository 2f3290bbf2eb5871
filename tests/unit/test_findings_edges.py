"""Unit: malformed findings files, down to the odd corners of JSON and of Python's json module.
Each is a FindingsError naming the file and, where the value has one, its JSON path; none
crashes, hangs or reads a huge file whole."""

from __future__ import annotations

import json
import os
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from patchkit import findings
from patchkit.errors import ExitCode, FindingsError

from .test_findings import document

# the valid host entry of test_findings, without the keys that have defaults
HOST = {k: v for k, v in document()["hosts"][0].items() if k not in ("reboot_pending", "message")}


def text_of(**changes: Any) -> str:
    """A valid document's text, with top-level (or, as ``host=...``, host) values replaced.

    Values are JSON text, so that NaN, huge numbers and duplicate keys can be written."""
    host = dict(HOST)
    top = {"format": '"patchkit-findings"', "version": "1"}
    pieces = {}
    for key, value in changes.items():
        if key.startswith("host_"):
            pieces[key.removeprefix("host_")] = value
        else:
            top[key] = value
    host_text = ", ".join(
        [f"{json.dumps(k)}: {json.dumps(v)}" for k, v in host.items() if k not in pieces]
        + [f"{json.dumps(k)}: {v}" for k, v in pieces.items()]
    )
    fields = ", ".join(f"{json.dumps(k)}: {v}" for k, v in top.items())
    return f'{{{fields}, "hosts": [{{{host_text}}}]}}'


def error_of(text: str) -> str:
    with pytest.raises(FindingsError) as caught:
        findings.loads(text, "findings.json")
    assert caught.value.exit_code is ExitCode.BAD_INPUT
    assert caught.value.hint
    return str(caught.value)


def test_the_helper_writes_a_valid_document() -> None:
    (finding,) = findings.loads(text_of(), "findings.json")
    assert finding.host == "web1"


@pytest.mark.parametrize(
    ("version", "expected"),
    [
        ("true", "expected 1 or 2, found true"),
        ("false", "expected 1 or 2, found false"),
        ("1.0", "expected 1 or 2, found 1.0"),
        ("-1", "expected 1 or 2, found -1"),
        ("null", "expected 1 or 2, found null"),
        ("[1]", "expected 1 or 2, found a list"),
        ("NaN", "expected 1 or 2, found NaN (not a JSON value)"),
        ("1" + "0" * 50, "expected 1 or 2, found a number of 51 digits"),
        ("1e400", "expected 1 or 2, found inf"),
    ],
)
def test_the_version_is_exactly_a_known_integer(version: str, expected: str) -> None:
    assert error_of(text_of(version=version)) == f"findings.json: version: {expected}"


def test_a_huge_version_is_still_newer() -> None:
    message = error_of(text_of(version=str(10**20)))
    assert message.endswith("is newer than this patchkit reads (2); upgrade patchkit")


@pytest.mark.parametrize(
    ("field", "value", "expected"),
    [
        ("host", "true", "hosts[0].host: expected a string, found true"),
        ("host", "7", "hosts[0].host: expected a string, found a number (7)"),
        ("reachable", "1", "hosts[0].reachable: expected true or false, found a number (1)"),
        ("reachable", "Infinity", "hosts[0].reachable: expected true or false, found Infinity"),
        ("reboot_pending", "-Infinity", "hosts[0].reboot_pending: expected true or false, found"),
        ("message", "NaN", "hosts[0].message: expected a string, found NaN (not a JSON value)"),
        ("assessed_at", "9" * 5000, "hosts[0].assessed_at: expected an ISO 8601 time, found a"),
        ("assessed_at", "true", "hosts[0].assessed_at: expected an ISO 8601 time, found true"),
        ("updates", "1e400", "hosts[0].updates: expected a list, found a number (inf)"),
        ("updates", "[[]]", "hosts[0].updates[0]: expected an object, found a list"),
    ],
)
def test_wrong_types_name_their_path(field: str, value: str, expected: str) -> None:
    assert error_of(text_of(**{f"host_{field}": value})).startswith(f"findings.json: {expected}")


def test_a_number_too_long_is_described_not_printed() -> None:
    message = error_of(text_of(host_assessed_at="9" * 5000))
    assert message.endswith("found a number of 5,000 digits")


@pytest.mark.parametrize("value", ["true", "NaN", "1e999"])
def test_wrong_types_in_an_update(value: str) -> None:
    text = text_of().replace('"installed": "3.0.15-1~deb12u1"', f'"installed": {value}')
    assert error_of(text).startswith(
        "findings.json: hosts[0].updates[0].installed: expected a string, found"
    )


def test_not_json_at_the_top() -> None:
    assert (
        error_of("NaN") == "findings.json: (top): expected an object, found NaN (not a JSON value)"
    )


@pytest.mark.parametrize("text", ["[" * 100_000, '{"a": ' * 100_000])
def test_deep_nesting_is_refused(text: str) -> None:
    assert (
        error_of(text) == "findings.json: not a findings file: lists or objects nested too deeply"
    )


def test_deep_nesting_inside_a_valid_document_is_refused() -> None:
    deep = "[" * 50_000 + "]" * 50_000
    assert "nested too deeply" in error_of(text_of(host_message=deep))


def test_a_key_given_twice_is_a_problem() -> None:
    # json.loads would keep the last one silently
    top = text_of().replace('"version": 1', '"version": 2, "version": 1')
    assert error_of(top) == (
        "findings.json: version: appears twice in one object (which one is meant?)"
    )
    host = text_of().replace('"reachable": true', '"reachable": false, "reachable": true')
    assert error_of(host) == (
        "findings.json: hosts[0].reachable: appears twice in one object (which one is meant?)"
    )


def test_a_lone_surrogate_is_refused() -> None:
    message = error_of(text_of(host_host='"web\\ud800"'))
    assert (
        message
        == "findings.json: hosts[0].host: 'web\\ud800' holds a lone surrogate (\\ud800 to \\udfff)"
    )
    message.encode("utf-8")  # the message itself prints anywhere


def test_a_pair_of_surrogates_is_one_character() -> None:
    (finding,) = findings.loads(text_of(host_message='"\\ud83d\\ude00"'), "findings.json")
    assert finding.message == "\N{GRINNING FACE}"


def test_long_values_are_cut_short_in_messages() -> None:
    message = error_of(text_of(host_assessed_at=json.dumps("x" * 100_000)))
    assert len(message) < 200
    assert message.startswith("findings.json: hosts[0].assessed_at: 'xxxx")


def test_an_odd_unknown_key_is_quoted() -> None:
    text = text_of().replace('"reachable": true', '"reachable": true, "bad\\nkey\\u001b[31m": 1')
    assert error_of(text).startswith("findings.json: hosts[0].'bad\\nkey\\x1b[31m': unknown key")


@pytest.mark.parametrize(
    "value", ["0001-01-01T00:00:00+01:00", "9999-12-31T23:59:59-01:00", "1969-12-31T23:59:59Z"]
)
def test_times_far_from_now_are_out_of_range(value: str) -> None:
    assert error_of(text_of(host_assessed_at=json.dumps(value))) == (
        f"findings.json: hosts[0].assessed_at: {value!r} is out of range (years 1970 to 8999)"
    )


@pytest.mark.parametrize(("value", "shown"), [("5", "5"), ("[]", "a list"), ("null", "null")])
def test_a_format_of_the_wrong_type(value: str, shown: str) -> None:
    assert error_of(text_of(format=value)) == (
        f"findings.json: format: expected 'patchkit-findings', found {shown}"
    )


# ------------------------------------------------------------ reading the file


def load_error(path: Path, **options: Any) -> str:
    with pytest.raises(FindingsError) as caught:
        findings.load(path, **options)
    assert str(path) in caught.value.message
    return caught.value.message


def test_latin1_text_is_not_utf8(tmp_path: Path) -> None:
    path = tmp_path / "findings.json"
    path.write_bytes(text_of(host_message=json.dumps("café", ensure_ascii=False)).encode("latin-1"))
    assert "cannot read: 'utf-8' codec can't decode byte 0xe9" in load_error(path)


def test_a_file_over_the_bound_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "findings.json"
    path.write_text(text_of())
    assert findings.load(path, max_bytes=len(path.read_bytes()))
    message = load_error(path, max_bytes=100)
    assert message.endswith("cannot read: larger than 100 bytes, more than any findings file")


def test_a_2_gb_file_is_refused_without_reading_it(tmp_path: Path) -> None:
    path = tmp_path / "findings.json"
    with path.open("wb") as sparse:  # takes no disk: the bytes are a hole
        sparse.truncate(2 * 1024**3)
    started = time.monotonic()
    assert "larger than 268,435,456 bytes" in load_error(path)
    assert time.monotonic() - started < 2


def test_a_device_is_refused() -> None:
    assert load_error(Path("/dev/zero")).endswith("cannot read: not a file (a device or socket)")


def test_a_directory_is_refused(tmp_path: Path) -> None:
    assert load_error(tmp_path).endswith("cannot read: Is a directory")


def pipe_writing(fifo: Path, data: bytes, repeat: int = 1) -> threading.Thread:
    def write() -> None:
        try:
            with fifo.open("wb") as end:
                for _ in range(repeat):
                    end.write(data)
        except BrokenPipeError:
            pass  # the reader stopped reading, as it should

    thread = threading.Thread(target=write, daemon=True)
    thread.start()
    return thread


def test_a_pipe_is_read(tmp_path: Path) -> None:
    fifo = tmp_path / "findings.json"
    os.mkfifo(fifo)
    writer = pipe_writing(fifo, text_of().encode())
    (finding,) = findings.load(fifo)
    writer.join(5)
    assert finding.host == "web1"


def test_a_pipe_that_does_not_end_is_cut_at_the_bound(tmp_path: Path) -> None:
    fifo = tmp_path / "findings.json"
    os.mkfifo(fifo)
    writer = pipe_writing(fifo, b" " * 65536, repeat=1000)
    assert "larger than 100,000 bytes" in load_error(fifo, max_bytes=100_000)
    writer.join(5)
    assert not writer.is_alive()
