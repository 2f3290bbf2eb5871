"""The findings file: an assessment exported as versioned JSON, and read back with checks.

It lets a plan be previewed for hosts that cannot be reached from where the plan is made: assess
where the hosts are, carry the file over, plan from it. docs/findings-format.md is its reference;
``FORMAT`` and ``VERSION`` identify it, and a reader refuses versions it does not know.
"""

from __future__ import annotations

import json
import os
import re
import stat
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, BinaryIO

from patchkit.errors import FindingsError
from patchkit.model import Finding, InstalledPackage, PackageSet, PendingUpdate

FORMAT = "patchkit-findings"
VERSION = 2  # what this patchkit writes
VERSIONS = (1, 2)  # what it reads: 1 has no software, no release (None on reading)
HINT = "see docs/findings-format.md; 'patchkit assess --export FILE' writes a valid file"
_MAX_PROBLEMS = 20  # past this many, a file is wrong in the same way throughout: stop listing
# About 2 KB a host with its updates: 256 MiB is over 100,000 hosts. Past it, a file is not an
# export, and parsing it would take gigabytes.
MAX_BYTES = 256 * 1024 * 1024
_MAX_DIGITS = 30  # longer integers are not ours; Python refuses past 4,300 digits, and slowly
_YEARS = range(1970, 9000)  # deadlines are computed from these times: keep far from datetime.max
_CHUNK = 1024 * 1024

_HOST_KEYS = {"host", "assessed_at", "reachable", "reboot_pending", "message", "updates"}
_RELEASE_KEYS = ("distribution", "release", "release_version")
_HOST_KEYS_2 = _HOST_KEYS | {*_RELEASE_KEYS, "software"}
_UPDATE_KEYS = {"package", "installed", "candidate", "origin", "first_seen"}
_PACKAGE_KEYS = ("name", "version", "arch", "source", "source_version")  # InstalledPackage's
_DIGEST = re.compile(r"[0-9a-f]{64}\Z")


def _timestamp(value: datetime | None) -> str | None:
    if value is None:
        return None
    if value.utcoffset() is None:
        # A time without an offset means a different instant on every reader's machine.
        raise ValueError(f"refusing to export a time without a UTC offset: {value.isoformat()}")
    return value.isoformat()


def natural_key(name: str) -> tuple[tuple[int, int | str], ...]:
    """Host order in the file and in an assessment: digit runs by value, web2 before web10."""
    return tuple(
        (0, int(part)) if part.isdigit() else (1, part) for part in re.split(r"(\d+)", name) if part
    )


def to_data(findings: Iterable[Finding]) -> dict[str, Any]:
    """The JSON document for ``findings`` as plain data: hosts in name order, updates by package,
    each distinct package set once under its digest."""
    hosts = []
    sets: dict[str, PackageSet] = {}
    for finding in sorted(findings, key=lambda f: (natural_key(f.host), f.host)):
        if finding.software is not None:
            sets.setdefault(finding.software.digest, finding.software)
        hosts.append(
            {
                "host": finding.host,
                "assessed_at": _timestamp(finding.assessed_at),
                "reachable": finding.reachable,
                "reboot_pending": finding.reboot_pending,
                "message": finding.message,
                "distribution": finding.distribution,
                "release": finding.release,
                "release_version": finding.release_version,
                "software": finding.software.digest if finding.software is not None else None,
                "updates": [
                    {
                        "package": u.package,
                        "installed": u.installed,
                        "candidate": u.candidate,
                        "origin": u.origin,
                        "first_seen": _timestamp(u.first_seen),
                    }
                    for u in sorted(finding.updates, key=lambda u: (u.package, u.candidate))
                ],
            }
        )
    package_sets = {
        digest: [dict(zip(_PACKAGE_KEYS, p.line().split("\t"), strict=True)) for p in s.packages]
        for digest, s in sets.items()
    }
    return {"format": FORMAT, "version": VERSION, "hosts": hosts, "package_sets": package_sets}


def dumps(findings: Iterable[Finding]) -> str:
    """The findings file's text: stable (the same findings give the same bytes), sorted keys.

    Raises ValueError for a time without a UTC offset (a bug upstream, not bad input).
    """
    return json.dumps(to_data(findings), indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def load(path: Path, *, max_bytes: int = MAX_BYTES) -> tuple[Finding, ...]:
    """Read a findings file; FindingsError names the file and the JSON path of every problem.

    A regular file or a pipe (``--findings <(ssh bastion cat findings.json)``) is read, up to
    ``max_bytes``; a directory, a device or a larger file is refused without reading it all.
    """
    try:
        with path.open("rb") as stream:
            raw = _bounded(stream, path, max_bytes)
        text = raw.decode("utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise FindingsError(f"{path}: cannot read: {reason}", hint=HINT) from None
    return loads(text, str(path))


def _bounded(stream: BinaryIO, path: Path, max_bytes: int) -> bytes:
    info = os.fstat(stream.fileno())  # of what was opened, not of what the path names now
    too_big = FindingsError(
        f"{path}: cannot read: larger than {max_bytes:,} bytes, more than any findings file",
        hint=HINT,
    )
    if stat.S_ISREG(info.st_mode):
        if info.st_size > max_bytes:
            raise too_big
    elif not stat.S_ISFIFO(info.st_mode):
        raise FindingsError(f"{path}: cannot read: not a file (a device or socket)", hint=HINT)
    chunks: list[bytes] = []
    size = 0
    while chunk := stream.read(_CHUNK):
        size += len(chunk)
        if size > max_bytes:  # a file that grew, or a pipe that does not end
            raise too_big
        chunks.append(chunk)
    return b"".join(chunks)


def loads(text: str, source: str) -> tuple[Finding, ...]:
    """Parse a findings file's text; ``source`` names it in errors (usually its path)."""
    try:
        data = json.loads(
            text,
            parse_constant=_not_json,
            parse_int=_integer,
            object_pairs_hook=_Object.of,
        )
    except json.JSONDecodeError as exc:
        raise FindingsError(
            f"{source}: not JSON: {exc.msg} (line {exc.lineno}, column {exc.colno})", hint=HINT
        ) from None
    except RecursionError:
        raise FindingsError(
            f"{source}: not a findings file: lists or objects nested too deeply", hint=HINT
        ) from None
    reader = _Reader()
    findings = reader.document(data)
    if reader.count:
        problems = [f"{source}: {p}" for p in reader.problems]
        if reader.count > len(problems):
            problems.append(f"{source}: … and {reader.count - len(problems)} more")
        head = (
            problems[0]
            if len(problems) == 1
            else f"{source}: {reader.count} problems:\n  " + "\n  ".join(problems)
        )
        raise FindingsError(head, hint=HINT)
    return findings


@dataclass(frozen=True)
class _Odd:
    """A value Python's json accepts and JSON does not (NaN, Infinity), or an integer too long
    for any field: kept as a value, so that the reader says where it is."""

    described: str


def _not_json(name: str) -> _Odd:
    return _Odd(f"{name} (not a JSON value)")


def _integer(text: str) -> int | _Odd:
    digits = len(text.lstrip("-"))
    return int(text) if digits <= _MAX_DIGITS else _Odd(f"a number of {digits:,} digits")


class _Object(dict[str, Any]):
    """A JSON object that remembers the keys it held twice (json keeps the last silently)."""

    twice: tuple[str, ...] = ()

    @classmethod
    def of(cls, pairs: list[tuple[str, Any]]) -> _Object:
        made = cls(pairs)
        if len(made) < len(pairs):
            counted = Counter(key for key, _ in pairs)
            made.twice = tuple(sorted(key for key, n in counted.items() if n > 1))
        return made


class _Reader:
    """Checks a parsed document and builds Findings, collecting every problem with its path."""

    def __init__(self) -> None:
        self.problems: list[str] = []  # the first _MAX_PROBLEMS of them
        self.count = 0
        self.version = VERSION
        self.sets: dict[str, PackageSet] = {}  # package_sets, read: one object per digest
        self.bad_sets: set[str] = set()  # in package_sets, with problems of their own

    def problem(self, where: str, what: str) -> None:
        self.count += 1
        if len(self.problems) < _MAX_PROBLEMS:
            self.problems.append(f"{where}: {what}")

    def document(self, data: Any) -> tuple[Finding, ...]:
        if not isinstance(data, dict):
            self.problem("(top)", f"expected an object, found {_kind(data)}")
            return ()
        self.twice("", data)
        if data.get("format") != FORMAT:
            self.problem("format", f"expected {FORMAT!r}, found {_value(data.get('format'))}")
            return ()
        version = data.get("version")
        # type() and not ==: true == 1 and 1.0 == 1 in Python, and neither is version 1
        if type(version) is not int or version not in VERSIONS:
            what = (
                f"{version!r} is newer than this patchkit reads ({VERSION}); upgrade patchkit"
                if type(version) is int and version > VERSION
                else f"expected {' or '.join(map(str, VERSIONS))}, found {_value(version)}"
            )
            self.problem("version", what)
            return ()
        self.version = version
        top = {"format", "version", "hosts"} | ({"package_sets"} if version >= 2 else set())
        self.unknown_keys("", data, top)
        if version >= 2:
            self.package_sets(data.get("package_sets"))
        hosts = data.get("hosts")
        if not isinstance(hosts, list):
            self.problem(
                "hosts", "missing" if hosts is None else f"expected a list, found {_kind(hosts)}"
            )
            return ()
        findings = []
        first_at: dict[str, str] = {}
        for index, item in enumerate(hosts):
            where = f"hosts[{index}]"
            finding = self.host(where, item)
            if finding is None:
                continue
            if finding.host in first_at:
                self.problem(
                    f"{where}.host",
                    f"{finding.host!r} appears twice (first at {first_at[finding.host]})",
                )
                continue
            first_at[finding.host] = where
            findings.append(finding)
        return tuple(findings)

    def host(self, where: str, item: Any) -> Finding | None:
        if not isinstance(item, dict):
            self.problem(where, f"expected an object, found {_kind(item)}")
            return None
        before = self.count
        self.unknown_keys(where, item, _HOST_KEYS_2 if self.version >= 2 else _HOST_KEYS)
        name = self.string(where, item, "host", required=True, empty=False)
        assessed_at = self.time(where, item, "assessed_at", required=True)
        reachable = self.boolean(where, item, "reachable", required=True)
        reboot_pending = self.boolean(where, item, "reboot_pending", required=False)
        message = self.string(where, item, "message", required=False) or ""
        updates = self.updates(where, item.get("updates", []))
        if reachable is False and updates:
            self.problem(f"{where}.updates", "an unreachable host cannot have pending updates")
        release = {
            k: self.string(where, item, k, required=False, empty=False, nullable=True)
            for k in _RELEASE_KEYS
        }
        software = self.software(where, item, name)
        if reachable is False and software is not None:
            self.problem(f"{where}.software", "an unreachable host cannot have software listed")
        if self.count > before or name is None or assessed_at is None:
            return None
        return Finding(
            host=name,
            assessed_at=assessed_at,
            reachable=bool(reachable),
            updates=updates,
            reboot_pending=bool(reboot_pending),
            message=message,
            software=software,
            **release,
        )

    def software(self, where: str, item: dict[str, Any], host: str | None) -> PackageSet | None:
        """The package set a host refers to by digest, from the document's package_sets."""
        digest = self.string(where, item, "software", required=False, empty=False, nullable=True)
        if digest is None:
            return None
        found = self.sets.get(digest)
        if found is None and digest not in self.bad_sets:
            shown = repr(digest) if _DIGEST.match(digest) else _value(digest)
            self.problem(
                f"{where}.software",
                f"host {host!r} refers to package set {shown}, which package_sets does not hold",
            )
        return found

    def package_sets(self, data: Any) -> None:
        """Read ``package_sets``: digest -> packages; each digest must be its packages' own."""
        if not isinstance(data, dict):
            what = "missing" if data is None else f"expected an object, found {_kind(data)}"
            self.problem("package_sets", f"{what} (digest -> packages; {{}} for none)")
            return
        self.twice("package_sets", data)
        for digest, items in data.items():
            # a digest in full (64 characters: _key would cut it short)
            where = f"package_sets.{digest if _DIGEST.match(digest) else _key(digest)}"
            self.bad_sets.add(digest)  # until read whole
            if not _DIGEST.match(digest):
                self.problem(where, "not a digest (64 lowercase hexadecimal digits, SHA-256)")
                continue
            if not isinstance(items, list):
                self.problem(where, f"expected a list of packages, found {_kind(items)}")
                continue
            before = self.count
            packages: dict[tuple[str, str], InstalledPackage] = {}
            for index, entry in enumerate(items):
                package = self.package(f"{where}[{index}]", entry)
                if package is None:
                    continue
                if (package.name, package.arch) in packages:
                    self.problem(
                        f"{where}[{index}]",
                        f"{package.name!r} ({package.arch}) is listed twice in this set",
                    )
                packages[(package.name, package.arch)] = package
            if self.count > before:
                continue
            made = PackageSet(packages.values())
            if made.digest != digest:
                self.problem(
                    where,
                    f"the packages' digest is {made.digest}: the set was changed after it"
                    " was written (a set's key is the SHA-256 of its packages)",
                )
                continue
            self.sets[digest] = made
            self.bad_sets.discard(digest)

    def package(self, where: str, entry: Any) -> InstalledPackage | None:
        if not isinstance(entry, dict):
            self.problem(where, f"expected an object, found {_kind(entry)}")
            return None
        before = self.count
        self.unknown_keys(where, entry, set(_PACKAGE_KEYS))
        values = [self.string(where, entry, k, required=True, empty=False) for k in _PACKAGE_KEYS]
        for key, value in zip(_PACKAGE_KEYS, values, strict=True):
            if value is not None and any(c.isspace() for c in value):
                self.problem(f"{where}.{key}", f"{_value(value)} holds a blank (none can)")
        if self.count > before:
            return None
        return InstalledPackage(*(v or "" for v in values))

    def updates(self, where: str, items: Any) -> tuple[PendingUpdate, ...]:
        if not isinstance(items, list):
            self.problem(f"{where}.updates", f"expected a list, found {_kind(items)}")
            return ()
        out: dict[str, PendingUpdate] = {}
        for index, item in enumerate(items):
            at = f"{where}.updates[{index}]"
            if not isinstance(item, dict):
                self.problem(at, f"expected an object, found {_kind(item)}")
                continue
            before = self.count
            self.unknown_keys(at, item, _UPDATE_KEYS)
            package = self.string(at, item, "package", required=True, empty=False)
            if "installed" not in item:
                self.problem(f"{at}.installed", "missing (null for a package not installed yet)")
            installed = self.string(at, item, "installed", required=False, nullable=True)
            candidate = self.string(at, item, "candidate", required=True, empty=False)
            origin = self.string(at, item, "origin", required=True)
            first_seen = self.time(at, item, "first_seen", required=False)
            if package is not None and package in out:
                self.problem(f"{at}.package", f"{package!r} is listed twice for this host")
            if self.count > before or package is None or candidate is None:
                continue
            out[package] = PendingUpdate(
                package=package,
                installed=installed,
                candidate=candidate,
                origin=origin or "",
                first_seen=first_seen,
            )
        return tuple(out[name] for name in sorted(out))

    # ------------------------------------------------------------ typed fields

    def unknown_keys(self, where: str, item: dict[str, Any], known: set[str]) -> None:
        if where:  # the document's own keys are checked first, in document()
            self.twice(where, item)
        for key in sorted(set(item) - known):
            path = f"{where}.{_key(key)}" if where else _key(key)
            self.problem(path, f"unknown key (expected one of: {', '.join(sorted(known))})")

    def twice(self, where: str, item: dict[str, Any]) -> None:
        for key in getattr(item, "twice", ()):
            path = f"{where}.{_key(key)}" if where else _key(key)
            self.problem(path, "appears twice in one object (which one is meant?)")

    def string(
        self,
        where: str,
        item: dict[str, Any],
        key: str,
        *,
        required: bool,
        empty: bool = True,
        nullable: bool = False,
    ) -> str | None:
        path = f"{where}.{key}"
        if key not in item:
            if required:
                self.problem(path, "missing")
            return None
        value = item[key]
        if value is None and nullable:
            return None
        if not isinstance(value, str):
            self.problem(path, f"expected a string, found {_kind(value)}")
            return None
        if not _encodable(value):
            self.problem(path, f"{_value(value)} holds a lone surrogate (\\ud800 to \\udfff)")
            return None
        if not empty and not value.strip():
            self.problem(path, "must not be empty")
            return None
        return value

    def boolean(self, where: str, item: dict[str, Any], key: str, *, required: bool) -> bool | None:
        path = f"{where}.{key}"
        if key not in item:
            if required:
                self.problem(path, "missing")
            return None
        value = item[key]
        if not isinstance(value, bool):
            self.problem(path, f"expected true or false, found {_kind(value)}")
            return None
        return value

    def time(
        self, where: str, item: dict[str, Any], key: str, *, required: bool
    ) -> datetime | None:
        path = f"{where}.{key}"
        if key not in item:
            if required:
                self.problem(path, "missing")
            return None
        value = item[key]
        if value is None:
            if required:
                self.problem(path, "must be a time, not null")
            return None
        if not isinstance(value, str):
            self.problem(path, f"expected an ISO 8601 time, found {_kind(value)}")
            return None
        try:
            parsed = datetime.fromisoformat(value)
        except ValueError:
            self.problem(
                path, f"{_value(value)} is not an ISO 8601 time, e.g. 2026-11-20T08:15:00+00:00"
            )
            return None
        if parsed.utcoffset() is None:
            self.problem(path, f"{_value(value)} has no UTC offset (add e.g. +00:00 or Z)")
            return None
        if parsed.year not in _YEARS:
            self.problem(path, f"{_value(value)} is out of range (years {_YEARS[0]} to 8999)")
            return None
        return parsed


def _kind(value: Any) -> str:
    """How a JSON value reads in an error message."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return f"a number ({value})"
    if isinstance(value, str):
        return f"a string ({_value(value)})"
    if isinstance(value, _Odd):
        return value.described
    if isinstance(value, list):
        return "a list"
    return "an object"


def _value(value: Any) -> str:
    """A string or number as written in a message, cut short; other values by their kind."""
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        return _kind(value)
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "…"


def _key(key: str) -> str:
    """An object key as part of a JSON path: as is, unless it would garble the message."""
    if key.isprintable() and len(key) <= 60 and key.strip() == key and key:
        return key
    return _value(key)


def _encodable(text: str) -> bool:
    """Whether ``text`` is valid Unicode: JSON's \\udXXX escapes can make lone surrogates."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True
