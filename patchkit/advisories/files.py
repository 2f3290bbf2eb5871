"""Bytes in: bounded reads of a feed file (gzip undone), JSON decoding, OSV's directories and zips.

Every limit here is far above what a real feed holds, and low enough that a wrong file (a disk
image, a zip bomb) is refused before it takes the machine's memory.
"""

from __future__ import annotations

import contextlib
import gc
import gzip
import hashlib
import io
import json
import os
import stat
import zipfile
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from patchkit.advisories.problems import Problems

# Well above the largest feed (the tracker's JSON, tens of MB); EPSS and KEV are far smaller.
MAX_BYTES = 1024 * 1024 * 1024
MAX_RECORD_BYTES = 64 * 1024 * 1024  # one OSV record, which is kilobytes
MAX_RECORDS = 2_000_000  # members of an OSV zip or directory
GZIP_MAGIC = b"\x1f\x8b"
_CHUNK = 1024 * 1024
# What reading one member of a damaged zip raises: RuntimeError for an encrypted member,
# NotImplementedError for a compression method Python lacks.
_ZIP_MEMBER_ERRORS = (
    OSError,
    EOFError,
    RuntimeError,
    NotImplementedError,
    zipfile.BadZipFile,
    zlib.error,
)


@contextlib.contextmanager
def bulk() -> Iterator[None]:
    """Pause the cyclic garbage collector while a feed is parsed and its values are made.

    A feed becomes hundreds of thousands of small objects, none of them in a cycle; the
    collector, run every few hundred allocations, would walk them all again and again (it
    doubles the time of reading the tracker's JSON).
    """
    was_on = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_on:
            gc.enable()


@dataclass(frozen=True)
class Raw:
    """A file's content (decompressed if it was gzip), with the hash and time of what was read."""

    data: bytes
    sha256: str
    mtime: float


class _NotJsonError(ValueError):
    pass


def _reject_constant(name: str) -> object:
    raise _NotJsonError(f"{name} is not a JSON value")


def _reason(exc: BaseException) -> str:
    return exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc) or repr(exc)


def read_file(path: Path, problems: Problems, *, max_bytes: int = MAX_BYTES) -> Raw:
    """The bytes of regular file ``path``, gunzipped when they are gzip; problems.fail otherwise."""
    try:
        with path.open("rb") as stream:
            info = os.fstat(stream.fileno())  # of what was opened, not what the path names now
            if not stat.S_ISREG(info.st_mode):
                problems.fail("cannot read: not a regular file")
            if info.st_size > max_bytes:
                problems.fail(f"cannot read: larger than {max_bytes:,} bytes, more than any feed")
            raw = stream.read(max_bytes + 1)
    except OSError as exc:
        problems.fail(f"cannot read: {_reason(exc)}")
    if len(raw) > max_bytes:  # the file grew while being read
        problems.fail(f"cannot read: larger than {max_bytes:,} bytes, more than any feed")
    digest = hashlib.sha256(raw).hexdigest()
    data = _gunzip(raw, problems, max_bytes) if raw.startswith(GZIP_MAGIC) else raw
    return Raw(data, digest, info.st_mtime)


def _gunzip(raw: bytes, problems: Problems, max_bytes: int) -> bytes:
    try:
        with gzip.GzipFile(fileobj=io.BytesIO(raw)) as stream:
            data = stream.read(max_bytes + 1)
    except (OSError, EOFError, zlib.error) as exc:
        problems.fail(f"cannot read: a broken gzip file ({_reason(exc)})")
    if len(data) > max_bytes:
        problems.fail(f"cannot read: unpacks to more than {max_bytes:,} bytes")
    return data


def decode_json(data: bytes, problems: Problems, record: str = "") -> tuple[bool, object]:
    """Parse ``data`` as JSON; on failure note a problem for ``record`` and return (False, None).

    NaN and Infinity, which Python's json takes and JSON does not, are refused.
    """
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        problems.add(record, "", f"not UTF-8 text (byte {exc.start})")
        return False, None
    try:
        return True, json.loads(text, parse_constant=_reject_constant)
    except json.JSONDecodeError as exc:
        problems.add(record, "", f"not JSON: {exc.msg} (line {exc.lineno}, column {exc.colno})")
    except _NotJsonError as exc:
        problems.add(record, "", f"not JSON: {exc}")
    except (ValueError, RecursionError) as exc:  # integers past 4,300 digits; deep nesting
        problems.add(record, "", f"not JSON: {_reason(exc)}")
    return False, None


@dataclass(frozen=True)
class Record:
    """One OSV record file: its name inside the source (empty for a single file) and bytes."""

    name: str
    data: bytes


class RecordSource:
    """The OSV records of a file, a directory (``*.json`` below it) or a zip, in name order.

    ``sha256`` and ``mtime`` are known once ``records()`` has been consumed.
    """

    def __init__(self, path: Path, problems: Problems, *, max_bytes: int = MAX_BYTES) -> None:
        self.path = path
        self.problems = problems
        self.max_bytes = max_bytes
        self.sha256 = ""
        self.mtime = 0.0

    def records(self) -> Iterator[Record]:
        """Each record's bytes; unreadable members are noted as problems and skipped."""
        if self.path.is_dir():
            yield from self._directory()
        elif zipfile.is_zipfile(self.path):
            yield from self._zip()
        else:
            raw = read_file(self.path, self.problems, max_bytes=self.max_bytes)
            self.sha256, self.mtime = raw.sha256, raw.mtime
            yield Record("", raw.data)

    def _directory(self) -> Iterator[Record]:
        digest = hashlib.sha256()
        names = sorted(p for p in self.path.rglob("*.json") if p.is_file())
        self._check_count(len(names))
        for path in names:
            name = path.relative_to(self.path).as_posix()
            try:
                with path.open("rb") as stream:
                    data = stream.read(MAX_RECORD_BYTES + 1)
                self.mtime = max(self.mtime, path.stat().st_mtime)
            except OSError as exc:
                self.problems.add(name, "", f"cannot read: {_reason(exc)}")
                continue
            if self._too_big(name, len(data)):
                continue
            digest.update(name.encode() + b"\0" + data + b"\0")
            yield Record(name, data)
        self.sha256 = digest.hexdigest()

    def _zip(self) -> Iterator[Record]:
        try:
            archive = zipfile.ZipFile(self.path)
        except (OSError, zipfile.BadZipFile) as exc:
            self.problems.fail(f"cannot read: a broken zip file ({_reason(exc)})")
        with archive:
            members = sorted(
                (i for i in archive.infolist() if not i.is_dir() and i.filename.endswith(".json")),
                key=lambda i: i.filename,
            )
            self._check_count(len(members))
            for info in members:
                if self._too_big(info.filename, info.file_size):
                    continue
                try:
                    with archive.open(info) as stream:
                        data = stream.read(MAX_RECORD_BYTES + 1)
                except _ZIP_MEMBER_ERRORS as exc:
                    self.problems.add(info.filename, "", f"cannot read: {_reason(exc)}")
                    continue
                if not self._too_big(info.filename, len(data)):
                    yield Record(info.filename, data)
        self.sha256 = _hash_file(self.path)
        self.mtime = self.path.stat().st_mtime

    def _check_count(self, count: int) -> None:
        if count > MAX_RECORDS:
            self.problems.fail(f"cannot read: {count:,} records, more than any OSV export")

    def _too_big(self, name: str, size: int) -> bool:
        if size > MAX_RECORD_BYTES:
            self.problems.add(name, "", f"larger than {MAX_RECORD_BYTES:,} bytes, not a record")
            return True
        return False


def _hash_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as stream:
        while chunk := stream.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()
