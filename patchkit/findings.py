"""The findings file: an assessment exported as versioned JSON, and read back with checks.

It lets a plan be previewed for hosts that cannot be reached from where the plan is made: assess
where the hosts are, carry the file over, plan from it. docs/findings-format.md is its reference;
``FORMAT`` and ``VERSION`` identify it, and a reader refuses versions it does not know.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from datetime import datetime
from pathlib import Path
from typing import Any

from patchkit.errors import FindingsError
from patchkit.model import Finding, PendingUpdate

FORMAT = "patchkit-findings"
VERSION = 1
HINT = "see docs/findings-format.md; 'patchkit assess --export FILE' writes a valid file"
_MAX_PROBLEMS = 20  # past this many, a file is wrong in the same way throughout: stop listing

_HOST_KEYS = {"host", "assessed_at", "reachable", "reboot_pending", "message", "updates"}
_UPDATE_KEYS = {"package", "installed", "candidate", "origin", "first_seen"}


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
    """The JSON document for ``findings`` as plain data: hosts in name order, updates by package."""
    hosts = []
    for finding in sorted(findings, key=lambda f: (natural_key(f.host), f.host)):
        hosts.append(
            {
                "host": finding.host,
                "assessed_at": _timestamp(finding.assessed_at),
                "reachable": finding.reachable,
                "reboot_pending": finding.reboot_pending,
                "message": finding.message,
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
    return {"format": FORMAT, "version": VERSION, "hosts": hosts}


def dumps(findings: Iterable[Finding]) -> str:
    """The findings file's text: stable (the same findings give the same bytes), sorted keys.

    Raises ValueError for a time without a UTC offset (a bug upstream, not bad input).
    """
    return json.dumps(to_data(findings), indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def load(path: Path) -> tuple[Finding, ...]:
    """Read a findings file; FindingsError names the file and the JSON path of every problem."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise FindingsError(f"{path}: cannot read: {reason}", hint=HINT) from None
    return loads(text, str(path))


def loads(text: str, source: str) -> tuple[Finding, ...]:
    """Parse a findings file's text; ``source`` names it in errors (usually its path)."""
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise FindingsError(
            f"{source}: not JSON: {exc.msg} (line {exc.lineno}, column {exc.colno})", hint=HINT
        ) from None
    reader = _Reader()
    findings = reader.document(data)
    if reader.problems:
        problems = [f"{source}: {p}" for p in reader.problems[:_MAX_PROBLEMS]]
        if len(reader.problems) > _MAX_PROBLEMS:
            problems.append(f"{source}: … and {len(reader.problems) - _MAX_PROBLEMS} more")
        head = (
            problems[0]
            if len(problems) == 1
            else f"{source}: {len(reader.problems)} problems:\n  " + "\n  ".join(problems)
        )
        raise FindingsError(head, hint=HINT)
    return findings


class _Reader:
    """Checks a parsed document and builds Findings, collecting every problem with its path."""

    def __init__(self) -> None:
        self.problems: list[str] = []

    def problem(self, where: str, what: str) -> None:
        self.problems.append(f"{where}: {what}")

    def document(self, data: Any) -> tuple[Finding, ...]:
        if not isinstance(data, dict):
            self.problem("(top)", f"expected an object, found {_kind(data)}")
            return ()
        if data.get("format") != FORMAT:
            self.problem("format", f"expected {FORMAT!r}, found {data.get('format')!r}")
            return ()
        version = data.get("version")
        if version != VERSION:
            what = (
                f"{version!r} is newer than this patchkit reads ({VERSION}); upgrade patchkit"
                if isinstance(version, int) and not isinstance(version, bool) and version > VERSION
                else f"expected {VERSION}, found {version!r}"
            )
            self.problem("version", what)
            return ()
        self.unknown_keys("", data, {"format", "version", "hosts"})
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
        before = len(self.problems)
        self.unknown_keys(where, item, _HOST_KEYS)
        name = self.string(where, item, "host", required=True, empty=False)
        assessed_at = self.time(where, item, "assessed_at", required=True)
        reachable = self.boolean(where, item, "reachable", required=True)
        reboot_pending = self.boolean(where, item, "reboot_pending", required=False)
        message = self.string(where, item, "message", required=False) or ""
        updates = self.updates(where, item.get("updates", []))
        if reachable is False and updates:
            self.problem(f"{where}.updates", "an unreachable host cannot have pending updates")
        if len(self.problems) > before or name is None or assessed_at is None:
            return None
        return Finding(
            host=name,
            assessed_at=assessed_at,
            reachable=bool(reachable),
            updates=updates,
            reboot_pending=bool(reboot_pending),
            message=message,
        )

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
            before = len(self.problems)
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
            if len(self.problems) > before or package is None or candidate is None:
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
        for key in sorted(set(item) - known):
            path = f"{where}.{key}" if where else key
            self.problem(path, f"unknown key (expected one of: {', '.join(sorted(known))})")

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
            self.problem(path, f"{value!r} is not an ISO 8601 time, e.g. 2026-11-20T08:15:00+00:00")
            return None
        if parsed.utcoffset() is None:
            self.problem(path, f"{value!r} has no UTC offset (add e.g. +00:00 or Z)")
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
        return f"a string ({value!r})"
    if isinstance(value, list):
        return "a list"
    return "an object"
