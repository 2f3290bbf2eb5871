"""The lab's demo packages: what they contain, which origin ships each version. Pure data."""

from __future__ import annotations

import fnmatch
import hashlib
from collections.abc import Callable
from dataclasses import dataclass

from patchkit.errors import LabUsageError

INSTALLED_VERSION = "1.0"
UPDATE_VERSION = "1.1"

# Two origins, so that security-only selection can be tested: apt reports the suite of the
# repository a candidate comes from, and a suite ending in "-security" marks a security update.
MAIN = "main"
SECURITY = "security"
ORIGINS = {MAIN: "lab-updates", SECURITY: "lab-security"}


@dataclass(frozen=True)
class DemoFile:
    path: str
    content: str
    mode: int = 0o644


@dataclass(frozen=True)
class DemoPackage:
    """One version of one demo package, and the origin (repository) that ships it."""

    name: str
    version: str
    origin: str
    description: str
    depends: str = ""
    postinst: str = ""
    files: tuple[DemoFile, ...] = ()
    source: str = ""  # the source package it is built from; empty: the same name
    fixes: tuple[str, ...] = ()  # the CVEs its changelog entry says this version fixes

    @property
    def source_name(self) -> str:
        return self.source or self.name

    @property
    def is_update(self) -> bool:
        return self.version != INSTALLED_VERSION

    @property
    def key(self) -> str:
        """``name_version``: what publish/withdraw patterns with a version match against."""
        return f"{self.name}_{self.version}"

    @property
    def filename(self) -> str:
        return f"{self.name}_{self.version}_all.deb"


def _health_server(version: str, status: int) -> str:
    """demo-svc's program: an HTTP server whose /health answers ``status``."""
    word = "ok" if status == 200 else "broken"
    return f"""#!/usr/bin/python3
import http.server

class Health(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        code = {status} if self.path == "/health" else 200
        self.send_response(code)
        self.end_headers()
        self.wfile.write(b"{word} {version}\\n")

    def log_message(self, *args):
        pass

http.server.HTTPServer(("0.0.0.0", 8081), Health).serve_forever()
"""


_HEALTH_CHECK = """#!/usr/bin/python3
import sys
import urllib.request

try:
    with urllib.request.urlopen("http://127.0.0.1:8081/health", timeout=3) as reply:
        sys.exit(0 if reply.status == 200 else 1)
except Exception as exc:
    print(exc)
    sys.exit(1)
"""

_SVC_UNIT = """[Unit]
Description=patchkit lab demo service (HTTP health on port 8081)

[Service]
ExecStart=/usr/bin/demo-svc
Restart=on-failure

[Install]
WantedBy=multi-user.target
"""

_KERNEL_UNIT = """[Unit]
Description=patchkit lab: record the demo kernel version running since boot

[Service]
Type=oneshot
ExecStart=/bin/cp /usr/lib/demo-kernel/VERSION /run/demo-kernel.running

[Install]
WantedBy=multi-user.target
"""

# Inside a chroot (the golden image build) there is no running systemd: enable only.
_SVC_POSTINST = """systemctl enable demo-svc.service >/dev/null 2>&1 || true
if [ -d /run/systemd/system ]; then systemctl restart demo-svc.service || true; fi"""

# What Debian's kernel packages do through update-notifier: ask for a reboot.
_KERNEL_POSTINST = """systemctl enable demo-kernel.service >/dev/null 2>&1 || true
if [ "$1" = configure ] && [ -d /run/systemd/system ]; then
  touch /run/reboot-required
  echo demo-kernel >> /run/reboot-required.pkgs
fi"""


def _svc_status(version: str) -> int:
    """The update of demo-svc is the one that breaks its health check."""
    return 200 if version == INSTALLED_VERSION else 500


def _app(version: str) -> str:
    return f'#!/bin/sh\necho "demo-app {version} (demo-lib $(cat /usr/lib/demo-lib/VERSION))"\n'


def _versions(
    name: str,
    update_origin: str,
    description: str,
    files: Callable[[str], list[DemoFile]],
    depends: str = "",
    postinst: str = "",
    source: str = "",
    fixes: tuple[str, ...] = (),
) -> list[DemoPackage]:
    """The installed version (from the main origin) and the update (from ``update_origin``),
    which fixes ``fixes``."""
    return [
        DemoPackage(
            name=name,
            version=version,
            origin=origin,
            description=f"{description} {version}",
            depends=depends.format(version=version),
            postinst=postinst,
            files=tuple(files(version)),
            source=source,
            fixes=fixed,
        )
        for version, origin, fixed in (
            (INSTALLED_VERSION, MAIN, ()),
            (UPDATE_VERSION, update_origin, fixes),
        )
    ]


# The CVEs the demo packages' changelogs name. They are made up (the numbers are far past what
# MITRE has assigned) so that the lab's advisory feeds, written by the tests in the real formats,
# never claim anything about real software. demo-lib's update fixes two, the first of them
# known exploited in the tests' KEV file.
LIB_CVES = ("CVE-2026-940001", "CVE-2026-940002")
KERNEL_CVES = ("CVE-2026-940010",)


CATALOG: tuple[DemoPackage, ...] = tuple(
    _versions(
        "demo-lib",
        SECURITY,
        "patchkit lab demo library",
        files=lambda v: [DemoFile("usr/lib/demo-lib/VERSION", v + "\n")],
        source="libdemo",  # a binary named apart from its source, as libssl3 from openssl
        fixes=LIB_CVES,
    )
    + _versions(
        "demo-app",
        MAIN,
        "patchkit lab demo application",
        depends="demo-lib (>= {version})",
        files=lambda v: [DemoFile("usr/bin/demo-app", _app(v), 0o755)],
    )
    + _versions(
        "demo-kernel",
        SECURITY,
        "patchkit lab stand-in for a kernel (asks for a reboot)",
        postinst=_KERNEL_POSTINST,
        fixes=KERNEL_CVES,
        files=lambda v: [
            DemoFile("usr/lib/demo-kernel/VERSION", v + "\n"),
            DemoFile("lib/systemd/system/demo-kernel.service", _KERNEL_UNIT),
        ],
    )
    + _versions(
        "demo-svc",
        MAIN,
        "patchkit lab demo service (its update breaks /health)",
        depends="python3",
        postinst=_SVC_POSTINST,
        files=lambda v: [
            DemoFile("usr/bin/demo-svc", _health_server(v, _svc_status(v)), 0o755),
            DemoFile("usr/bin/demo-svc-check", _HEALTH_CHECK, 0o755),
            DemoFile("lib/systemd/system/demo-svc.service", _SVC_UNIT),
        ],
    )
)


def changelog(package: DemoPackage) -> str:
    """The Debian changelog of ``package``: one entry per version up to its own, newest first."""
    entries = []
    for version in (v for v in (UPDATE_VERSION, INSTALLED_VERSION) if v <= package.version):
        same = next(p for p in CATALOG if p.name == package.name and p.version == version)
        suite = ORIGINS[same.origin]
        changes = [f"  * Fix {cve}." for cve in same.fixes] or ["  * Release of the lab."]
        day = (
            "Mon, 30 Nov 2026 12:00:00 +0000"
            if same.is_update
            else "Mon, 02 Nov 2026 12:00:00 +0000"
        )
        urgency = "high" if same.fixes else "medium"
        entries.append(
            f"{package.source_name} ({version}) {suite}; urgency={urgency}\n\n"
            + "\n".join(changes)
            + f"\n\n -- patchkit lab <lab@example.invalid>  {day}\n"
        )
    return "\n".join(entries)


def installed_packages() -> tuple[DemoPackage, ...]:
    """The versions the golden image ships installed."""
    return tuple(p for p in CATALOG if not p.is_update)


def installed_stamp() -> str:
    """12 hex digits that change whenever what the golden image installs changes."""
    return hashlib.sha256(repr(installed_packages()).encode()).hexdigest()[:12]


def select(pattern: str | None) -> tuple[DemoPackage, ...]:
    """The packages a publish/withdraw ``pattern`` names.

    No pattern: every update. A pattern without ``_`` (``demo-svc``, ``demo-*``) matches the
    *updates* of packages by name; one with ``_`` (``demo-lib_1.0``, ``*_1.0``) matches any
    version by ``name_version``, so installed versions can be withdrawn too.
    """
    if pattern is None:
        chosen = tuple(p for p in CATALOG if p.is_update)
    elif "_" in pattern:
        chosen = tuple(p for p in CATALOG if fnmatch.fnmatchcase(p.key, pattern))
    else:
        chosen = tuple(p for p in CATALOG if p.is_update and fnmatch.fnmatchcase(p.name, pattern))
    if not chosen:
        names = ", ".join(sorted({p.key for p in CATALOG}))
        raise LabUsageError(
            f"no demo package matches {pattern!r}", hint=f"the lab's packages are: {names}"
        )
    return chosen
