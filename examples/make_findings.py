"""Write findings.json: a realistic assessment of the example fleet, for planning without hosts.

    .venv/bin/python examples/make_findings.py   # rewrites examples/findings.json beside it

Deterministic: a fixed seed (SEED) and a fixed assessment time (AT, Friday 2026-11-20 06:30 UTC,
the day before the prod window) give the same bytes on every run. It reads the fleet from
inventories/example/hosts.yml (with its group_vars/ and host_vars/) through patchkit.inventory
and writes the file with patchkit.findings, so the file is exactly what 'patchkit assess
--export' writes.

The story it tells (every version is a real Debian 12 version from the Debian archive; Debian 12
is oldstable by then, so apt names the suites 12/oldstable-security, 12.15/oldstable and
12-updates/oldstable-updates):
- advisories published between late September and the eve of the assessment, each on the hosts
  whose role installs the package (nginx on web, haproxy on lb, redis on cache, PostgreSQL on
  db, browsers on laptops …); a new kernel brings a new ABI package (``installed`` null);
- each host was last patched in its environment's last window (prod Saturday 14th, staging and
  dev Tuesday 17th); about one server in six missed windows and is weeks behind; db-prod-03
  waits for its vendor (an exception of the policy) since August; laptops patch when they are on;
- PostgreSQL updates stay pending on db hosts (the policy denies them to patchkit) and nginx on
  web-staging hosts (an exception until the 30th);
- ``first_seen`` is the first daily assessment (06:30 UTC) after a release; laptops, often off,
  saw updates a few days later;
- some servers and laptops could not be reached (or the simulation failed), a tenth of the
  laptops and the legacy RedHat hosts (out of the policy's scope) were never assessed; some
  hosts wait for a reboot already (a kernel installed, not yet booted); some have nothing
  pending; one could not refresh its package lists.
"""

from __future__ import annotations

import random
import sys
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT))  # run from a source tree without installing patchkit

from patchkit import findings, inventory  # noqa: E402
from patchkit.model import Finding, Host, PendingUpdate  # noqa: E402

SEED = 20261120
AT = datetime(2026, 11, 20, 6, 30, tzinfo=UTC)
# The fleet's directory holds inventory only (Ansible reads every file in it), so not there.
FLEET = ROOT / "inventories" / "example" / "hosts.yml"
OUT = HERE / "findings.json"

SECURITY = "12/oldstable-security"
POINT = "12.15/oldstable"
UPDATES = "12-updates/oldstable-updates"

SERVER = "servers"  # every Debian server
LAPTOP = "laptops"
ANY = (SERVER, LAPTOP)


@dataclass(frozen=True)
class Advisory:
    """Updates published together: (package, version before, version after) on some hosts."""

    published: date
    origin: str
    groups: tuple[str, ...]  # hosts in any of these groups have the packages installed
    packages: tuple[tuple[str, str | None, str], ...]
    share: float = 1.0  # the fraction of those hosts that have the packages at all


ADVISORIES = (
    Advisory(
        date(2026, 9, 29),
        SECURITY,
        ("cache",),
        (
            ("redis-server", "5:7.0.15-1~deb12u7", "5:7.0.15-1~deb12u10"),
            ("redis-tools", "5:7.0.15-1~deb12u7", "5:7.0.15-1~deb12u10"),
        ),
    ),
    Advisory(
        date(2026, 10, 6),
        SECURITY,
        ANY,
        (
            ("libpython3.11-minimal", "3.11.2-6+deb12u8", "3.11.2-6+deb12u9"),
            ("libpython3.11-stdlib", "3.11.2-6+deb12u8", "3.11.2-6+deb12u9"),
            ("python3.11", "3.11.2-6+deb12u8", "3.11.2-6+deb12u9"),
            ("python3.11-minimal", "3.11.2-6+deb12u8", "3.11.2-6+deb12u9"),
        ),
    ),
    Advisory(
        date(2026, 10, 14),
        SECURITY,
        ANY,
        (("libexpat1", "2.5.0-1+deb12u2", "2.5.0-1+deb12u5"),),
    ),
    Advisory(
        date(2026, 10, 16),
        SECURITY,
        ("db",),
        (
            ("libpq5", "15.18-0+deb12u1", "15.20-0+deb12u1"),
            ("postgresql-15", "15.18-0+deb12u1", "15.20-0+deb12u1"),
            ("postgresql-client-15", "15.18-0+deb12u1", "15.20-0+deb12u1"),
        ),
    ),
    Advisory(
        date(2026, 10, 16),
        SECURITY,
        ("app", "batch"),
        (("libpq5", "15.18-0+deb12u1", "15.20-0+deb12u1"),),
    ),
    Advisory(
        date(2026, 10, 22),
        SECURITY,
        ("app",),
        (("openjdk-17-jre-headless", "17.0.19+10-1~deb12u2", "17.0.21.1+2-1~deb12u1"),),
        share=0.5,
    ),
    Advisory(
        date(2026, 10, 24),
        UPDATES,
        ANY,
        (("tzdata", "2026b-0+deb12u1", "2026f-0+deb12u1"),),
    ),
    Advisory(
        date(2026, 10, 28),
        SECURITY,
        ANY,
        (
            ("libssl3", "3.0.20-1~deb12u2", "3.0.22-1~deb12u2"),
            ("openssl", "3.0.20-1~deb12u2", "3.0.22-1~deb12u2"),
        ),
    ),
    Advisory(
        date(2026, 11, 4),
        SECURITY,
        ("lb",),
        (("haproxy", "2.6.12-1+deb12u3", "2.6.12-1+deb12u4"),),
    ),
    # the point release 12.15: a Saturday, as Debian point releases are
    Advisory(
        date(2026, 11, 7),
        POINT,
        ANY,
        (
            ("base-files", "12.4+deb12u14", "12.4+deb12u15"),
            ("curl", "7.88.1-10+deb12u14", "7.88.1-10+deb12u15"),
            ("libcurl3-gnutls", "7.88.1-10+deb12u14", "7.88.1-10+deb12u15"),
            ("libcurl4", "7.88.1-10+deb12u14", "7.88.1-10+deb12u15"),
            ("libglib2.0-0", "2.74.6-2+deb12u8", "2.74.6-2+deb12u9"),
            ("libxml2", "2.9.14+dfsg-1.3~deb12u5", "2.9.14+dfsg-1.3~deb12u6"),
            ("sudo", "1.9.13p3-1+deb12u2", "1.9.13p3-1+deb12u4"),
        ),
    ),
    Advisory(
        date(2026, 11, 7),
        POINT,
        (SERVER,),
        (
            ("openssh-client", "1:9.2p1-2+deb12u9", "1:9.2p1-2+deb12u10"),
            ("openssh-server", "1:9.2p1-2+deb12u9", "1:9.2p1-2+deb12u10"),
            ("openssh-sftp-server", "1:9.2p1-2+deb12u9", "1:9.2p1-2+deb12u10"),
        ),
    ),
    Advisory(
        date(2026, 11, 7),
        POINT,
        (LAPTOP,),
        (
            ("libreoffice-core", "4:7.4.7-1+deb12u13", "4:7.4.7-1+deb12u14"),
            ("openssh-client", "1:9.2p1-2+deb12u9", "1:9.2p1-2+deb12u10"),
        ),
    ),
    Advisory(
        date(2026, 11, 7),
        POINT,
        ("ci",),
        (("git", "1:2.39.5-0+deb12u2", "1:2.39.5-0+deb12u3"),),
    ),
    Advisory(
        date(2026, 11, 10),
        SECURITY,
        ANY,
        (
            ("linux-image-6.1.0-47-amd64", None, "6.1.192-2"),
            ("linux-image-amd64", "6.1.176-1", "6.1.192-2"),
        ),
    ),
    Advisory(
        date(2026, 11, 13),
        SECURITY,
        ("web", "lb"),
        (
            ("nginx", "1.22.1-9+deb12u9", "1.22.1-9+deb12u11"),
            ("nginx-common", "1.22.1-9+deb12u9", "1.22.1-9+deb12u11"),
        ),
    ),
    Advisory(
        date(2026, 11, 17),
        SECURITY,
        (LAPTOP,),
        (
            ("firefox-esr", "153.6.0esr-1~deb12u1", "153.7.0esr-1~deb12u1"),
            ("thunderbird", "1:153.6.0esr-1~deb12u1", "1:153.7.0esr-1~deb12u1"),
        ),
    ),
    Advisory(
        date(2026, 11, 18),
        SECURITY,
        (LAPTOP,),
        (("chromium", "155.0.7990.120-1~deb12u1", "156.0.8078.79-1~deb12u1"),),
        share=0.6,
    ),
    Advisory(
        date(2026, 11, 19),
        SECURITY,
        ANY,
        (
            ("bind9-dnsutils", "1:9.18.49-1~deb12u1", "1:9.18.49-1~deb12u3"),
            ("bind9-host", "1:9.18.49-1~deb12u1", "1:9.18.49-1~deb12u3"),
            ("bind9-libs", "1:9.18.49-1~deb12u1", "1:9.18.49-1~deb12u3"),
        ),
        share=0.5,
    ),
)

# The last window each environment had (local dates; a window's updates are those published
# before it). Servers that missed windows were last patched one of the earlier ones.
LAST_WINDOW = {"prod": date(2026, 11, 14), "staging": date(2026, 11, 17), "dev": date(2026, 11, 17)}
MISSED = (date(2026, 10, 3), date(2026, 10, 17), date(2026, 10, 31), date(2026, 11, 7))
VENDOR_HOLD = {"db-prod-03": date(2026, 8, 29)}  # the policy's vendor exception
STAGING_NGINX = "web-staging-"  # the policy's nginx exception (until 2026-11-30)


def assessed(published: date, delay_days: int = 0) -> datetime:
    """The first daily assessment (06:30 UTC) after an update was published, and a delay."""
    first = datetime.combine(published + timedelta(days=1), time(6, 30), tzinfo=UTC)
    return min(first + timedelta(days=delay_days), AT)


def last_patched(host: Host, rng: random.Random) -> date:
    if host.name in VENDOR_HOLD:
        return VENDOR_HOLD[host.name]
    if LAPTOP in host.groups:
        return AT.date() - timedelta(days=rng.randint(1, 55))
    env = str(host.var("env", "dev"))
    if rng.random() < 0.16:
        return rng.choice(MISSED)
    return LAST_WINDOW.get(env, LAST_WINDOW["dev"])


def pending_for(host: Host, rng: random.Random) -> tuple[PendingUpdate, ...]:
    groups = set(host.groups)  # every group, parents included (servers, prod, web …)
    since = last_patched(host, rng)
    laptop_delay = rng.randint(0, 4) if LAPTOP in groups else 0
    out: dict[str, PendingUpdate] = {}
    for advisory in ADVISORIES:
        if not groups & set(advisory.groups):
            continue
        # whether this host has these packages at all: decided per host, the same every run
        if advisory.share < 1.0 and rng.random() >= advisory.share:
            continue
        first = advisory.packages[0][0]
        held = ("db" in groups and first.startswith(("postgresql", "libpq"))) or (
            host.name.startswith(STAGING_NGINX) and first == "nginx"
        )
        if advisory.published < since and not held:
            continue  # installed in a window since
        for package, installed, candidate in advisory.packages:
            out[package] = PendingUpdate(
                package=package,
                installed=installed,
                candidate=candidate,
                origin=advisory.origin,
                first_seen=assessed(advisory.published, laptop_delay),
            )
    return tuple(out[name] for name in sorted(out))


def unreachable(host: Host, rng: random.Random) -> str:
    address = str(host.var("ansible_host", f"{host.name}.corp.example.com"))
    if LAPTOP in host.groups:
        reason = rng.choice(
            [
                f"ssh: connect to host {address} port 22: No route to host",
                f"ssh: Could not resolve hostname {address}: Name or service not known",
                f"ssh: connect to host {address} port 22: Connection timed out",
            ]
        )
    else:
        reason = f"ssh: connect to host {address} port 22: Connection timed out"
    return (
        f'unreachable: Task failed: Data could not be sent to remote host "{address}". '
        f"Make sure this host can be reached over ssh: | {reason}"
    )


DPKG_INTERRUPTED = (
    "failed at 'Simulate the upgrade': non-zero return code (exit 100): E: dpkg was interrupted,"
    " you must manually run 'dpkg --configure -a' to correct the problem."
)
REFRESH_FAILED_HOST = "ci-prod-02"  # its proxy to the mirror was down that morning
REFRESH_FAILED = (
    "package lists not refreshed (apt-get update exit 100: E: Failed to fetch"
    " http://deb.debian.org/debian-security/dists/bookworm-security/InRelease  Temporary failure"
    " resolving 'deb.debian.org'; E: Some index files failed to download. They have been"
    " ignored, or old ones used instead.); pending updates are as of the last refresh"
)


def assess_fleet(hosts: tuple[Host, ...]) -> list[Finding]:
    rng = random.Random(SEED)  # noqa: S311 (reproducible example data, not secrets)
    out = []
    for host in hosts:  # sorted by name: the random draws follow a fixed order
        laptop = LAPTOP in host.groups
        if "legacy" in host.groups or str(host.var("os_family", "Debian")) != "Debian":
            continue  # out of the policy's scope: never assessed
        draw = rng.random()
        if laptop and draw < 0.10:
            continue  # never assessed: a new laptop not yet enrolled, or off for weeks
        if draw > (0.84 if laptop else 0.975):
            out.append(Finding(host.name, AT, reachable=False, message=unreachable(host, rng)))
            continue
        if host.name == "batch-prod-02":
            out.append(Finding(host.name, AT, reachable=False, message=DPKG_INTERRUPTED))
            continue
        updates = pending_for(host, rng)
        # The new kernel is installed but not yet booted: laptop users postpone restarts, and a
        # database's reboot waits for its own approval (the policy's reboot_approval).
        kernel_installed = not any(u.package == "linux-image-amd64" for u in updates)
        odds = 0.35 if laptop else 0.5 if "db" in host.groups else 0.03
        reboot = kernel_installed and rng.random() < odds
        message = REFRESH_FAILED if host.name == REFRESH_FAILED_HOST else ""
        out.append(Finding(host.name, AT, True, updates, reboot_pending=reboot, message=message))
    return out


def main() -> None:
    fleet = inventory.load(FLEET)
    found = assess_fleet(fleet)
    OUT.write_text(findings.dumps(found))
    reachable = [f for f in found if f.reachable]
    print(
        f"{OUT.name}: {len(found)} of {len(fleet)} hosts assessed, "
        f"{len(found) - len(reachable)} unreachable, "
        f"{sum(1 for f in reachable if not f.updates)} with nothing pending, "
        f"{sum(len(f.updates) for f in reachable)} pending updates, "
        f"{sum(1 for f in reachable if f.reboot_pending)} waiting for a reboot"
    )


if __name__ == "__main__":
    main()
