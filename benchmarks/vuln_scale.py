"""Benchmark: plan, CVE audit and compliance of a big fleet with its software, against a
tracker-sized advisory feed (issue 17). No lab, no network.

    .venv/bin/python benchmarks/vuln_scale.py [--hosts 50000] [--cves 40000] [--images 20]
        [--packages 600] [--epss 250000] [--repeat 1] [--keep DIR]

Builds: the example fleet's inventory at ``--hosts`` (examples/generate_fleet.py); ``--images``
host images of about ``--packages`` installed packages each (Debian-like source and binary
packages, versions with epochs, ``+debNNuN``, binNMUs), on bookworm and a few on bullseye; every
host on one image, with the image's pending updates (on some hosts one fewer: held back); one
assessment of every host, recorded with ``Ledger.record_assessment``; a Debian Security Tracker
JSON of ``--cves`` CVEs over the installed source packages and others (bullseye, bookworm,
trixie, sid), a KEV catalog of about 1,400 entries and an EPSS CSV of ``--epss`` rows, imported
with ``patchkit advisories import``. The policy is the example's, with one window serving every
host, so that the plan holds the whole fleet.

Then runs, each as a process of its own, timing it and taking its peak RSS (wait4):
``ansible-inventory -i INV --list``, ``patchkit plan … --format json -o``, ``patchkit audit CVE
… --format json -o`` (a CVE with the fix pending on most hosts) and ``patchkit report compliance
… --format json -o``; prints them with the issue's ratios, then where the plan's and the audit's
time goes, measured in this process with the library calls the commands make. It never asserts
a time: the figures are for people.
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import random
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import yaml
from _common import AT, BIN, Measured, measure, patchkit, spread

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "examples"))

import generate_fleet  # noqa: E402 - examples/ is no package

from patchkit.model import Finding, InstalledPackage, PackageSet, PendingUpdate  # noqa: E402

Tracker = dict[str, dict[str, Any]]  # source package -> CVE -> the tracker's entry
AUDIT_CVE = "CVE-2026-31337"  # planted in openssl: fixed by the update most images have pending
ASSESSED = AT - timedelta(hours=6)
# (codename, version, number, suffix of its security uploads, its suite's name in apt)
RELEASES = {
    "bookworm": ("12.8", "12", "deb12u", "stable"),
    "bullseye": ("11.11", "11", "deb11u", "oldstable"),
}
TRACKER_RELEASES = ("bullseye", "bookworm", "trixie", "sid")
# Source packages on every image (binaries; ":all" marks architecture-independent ones).
CORE = {
    "glibc": "libc6 libc-bin locales:all", "openssl": "openssl libssl3",
    "openssh": "openssh-server openssh-client openssh-sftp-server",
    "systemd": "systemd libsystemd0 libudev1 udev systemd-sysv", "linux": "linux-image-amd64",
    "curl": "curl libcurl4", "sudo": "sudo", "tzdata": "tzdata:all", "dbus": "dbus libdbus-1-3",
    "apt": "apt libapt-pkg6.0", "bash": "bash", "coreutils": "coreutils", "dpkg": "dpkg",
    "gnupg2": "gnupg gpgv", "zlib": "zlib1g", "xz-utils": "xz-utils liblzma5",
    "libxml2": "libxml2", "expat": "libexpat1", "sqlite3": "libsqlite3-0",
    "python3.11": "python3.11 python3.11-minimal libpython3.11-stdlib",
    "perl": "perl perl-base libperl5.36", "krb5": "libkrb5-3 libgssapi-krb5-2 libk5crypto3",
    "gnutls28": "libgnutls30", "pam": "libpam0g libpam-modules", "shadow": "passwd login",
    "util-linux": "util-linux mount libblkid1", "e2fsprogs": "e2fsprogs", "tar": "tar",
    "gzip": "gzip", "less": "less", "vim": "vim-tiny vim-common:all",
    "bind9": "bind9-host bind9-libs", "ca-certificates": "ca-certificates:all",
    "libxslt": "libxslt1.1", "nss": "libnss3", "ncurses": "libncursesw6 ncurses-base:all",
    "readline": "libreadline8", "pcre2": "libpcre2-8-0", "libgcrypt20": "libgcrypt20",
    "nghttp2": "libnghttp2-14", "libssh2": "libssh2-1", "libzstd": "libzstd1",
    "rsyslog": "rsyslog", "logrotate": "logrotate", "cron": "cron", "procps": "procps",
    "iproute2": "iproute2", "wget": "wget", "rsync": "rsync", "file": "file libmagic1",
    "libtasn1-6": "libtasn1-6", "p11-kit": "libp11-kit0", "libcap2": "libcap2",
    "cyrus-sasl2": "libsasl2-2", "openldap": "libldap-2.5-0", "libidn2": "libidn2-0",
    "json-c": "libjson-c5", "elfutils": "libelf1", "sed": "sed", "grep": "grep",
}  # fmt: skip
ROLE_SOURCES = {
    "web": {"nginx": "nginx nginx-common:all"},
    "app": {"openjdk-17": "openjdk-17-jre-headless", "git": "git"},
    "db": {"postgresql-15": "postgresql-15 postgresql-client-15"},
    "cache": {"redis": "redis-server redis-tools"},
    "lb": {"haproxy": "haproxy"},
    "ops": {"git": "git", "openjdk-17": "openjdk-17-jre-headless"},
    "laptop": {"firefox-esr": "firefox-esr", "cups": "cups libcups2",
               "libreoffice": "libreoffice-core"},
}  # fmt: skip
_STEM_TEXT = (
    "acl attr audit avahi brotli bzip2 cairo cjson dav1d djvu exif flac freetype fribidi gdk gif "
    "glib gmp gpgme graphite gsasl harfbuzz heif icu idn jansson jbig jpeg json kmod lcms ldns "
    "lz4 lzo mpfr mpg123 nettle newt nftnl numa ogg opus orc pango pcap pci pixman png popt "
    "protobuf psl pulse raw rtmp sass seccomp sndfile snappy soup speex sratom ssh tiff tirpc "
    "uring usb uv vorbis vpx webp wmf x264 xcb xkb xmlsec yaml yubikey zip zmq zvbi aom ass "
    "bluray caca dc1394 dvdread exempi fftw gc gd geoip gphoto hdf5 iec61883 imath jack kate "
    "lept lilv mad mng mysofa nfs openal openexr opencore openjp plist pqxx quvi rabbitmq "
    "rdkafka samplerate shout soxr srt tag theora twolame unwind vidstab vmaf wavpack x265 zimg"
)
STEMS = _STEM_TEXT.split()
FORMS = ("{}", "lib{}", "python-{}", "golang-{}", "node-{}", "ruby-{}", "{}-tools", "php-{}",
         "rust-{}", "haskell-{}", "r-cran-{}", "lib{}-perl")  # fmt: skip


# ---------------------------------------------------------------- the software


@dataclass(frozen=True)
class Source:
    name: str
    binaries: tuple[tuple[str, str], ...]  # (binary, arch)
    history: dict[str, tuple[str, ...]]  # release → versions, oldest first; the last: unreleased
    binnmu: frozenset[str] = frozenset()  # binaries rebuilt (+b1) without a new source version


def _history(rng: random.Random, release: str, steps: int, bumps: bool) -> tuple[str, ...]:
    """``steps`` released versions of one source on ``release``, and one newer, unreleased."""
    tag = RELEASES.get(release, ("", "", "deb13u", ""))[2]
    older = release == "bullseye"
    major, minor, patch = rng.randint(0, 9), rng.randint(0 if older else 3, 40), rng.randint(0, 20)
    epoch = "1:" if rng.random() < 0.07 else ""
    dfsg = "+dfsg" if rng.random() < 0.06 else ""
    revision = rng.randint(1, 6)
    if bumps:  # a kernel: every upload a new upstream point release
        return tuple(f"{epoch}{major}.{minor}.{patch + i}-1" for i in range(steps + 1))
    base = f"{epoch}{major}.{minor}.{patch}{dfsg}-{revision}"
    return (base, *(f"{base}+{tag}{k}" for k in range(1, steps + 1)))


def _binaries(name: str, rng: random.Random, taken: set[str]) -> tuple[tuple[str, str], ...]:
    if name.startswith("python-"):
        wanted = [(f"python3-{name[7:]}", "all")]
    elif name.startswith(("golang-", "node-", "ruby-", "php-", "r-cran-")):
        wanted = [(name if not name.startswith("golang-") else f"{name}-dev", "all")]
    elif name.startswith("lib"):
        wanted = [(f"{name}{rng.randint(0, 9)}", "amd64")]
        if rng.random() < 0.3:
            wanted.append((f"{name}-dev", "amd64"))
    else:
        wanted = [(name, "amd64")]
    if rng.random() < 0.2:
        wanted.append((f"{name}-common", "all"))
    out = tuple(b for b in wanted if b[0] not in taken)
    taken.update(b for b, _ in out)
    return out


def universe(rng: random.Random) -> tuple[dict[str, Source], list[str], list[str]]:
    """Every source package: the named ones, generated ones images install, and generated ones
    no image installs (the tracker speaks of them too); names of the latter two."""
    taken: set[str] = set()
    sources: dict[str, Source] = {}

    def add(name: str, binaries: tuple[tuple[str, str], ...], steps: int, bumps: bool) -> None:
        history = {r: _history(rng, r, steps, bumps) for r in TRACKER_RELEASES}
        rebuilt = frozenset(b for b, _ in binaries if rng.random() < 0.03)
        sources[name] = Source(name, binaries, history, rebuilt)

    named = {**CORE, **{k: v for role in ROLE_SOURCES.values() for k, v in role.items()}}
    for name, text in named.items():
        binaries = tuple(
            (b.split(":")[0], "all" if b.endswith(":all") else "amd64") for b in text.split()
        )
        taken.update(b for b, _ in binaries)
        add(name, binaries, 40 if name == "linux" else 8, name == "linux")
    generated = [
        form.format(stem) + suffix
        for suffix in ("", "2", "3", "4")
        for stem in STEMS
        for form in FORMS
    ]
    rng.shuffle(generated)
    installable, others = [], []
    for name in generated:
        if name in sources:
            continue
        binaries = _binaries(name, rng, taken)
        if not binaries:
            continue
        add(name, binaries, rng.choice((3, 4, 6, 8)), False)
        (installable if len(installable) < 1200 else others).append(name)
    return sources, installable, others


@dataclass(frozen=True)
class Image:
    name: str
    release: str
    software: PackageSet
    pending: tuple[PendingUpdate, ...]


def make_images(
    rng: random.Random, sources: dict[str, Source], pool: list[str], count: int, packages: int
) -> list[Image]:
    """``count`` images: the core and a role's packages, filled up from ``pool``; each a little
    behind its repositories (``linux`` and ``openssl`` on most of them)."""
    roles = list(ROLE_SOURCES)
    images = []
    for number in range(count):
        release = "bullseye" if number % 7 == 6 else "bookworm"
        _, major, _, suite = RELEASES[release]
        role = roles[number % len(roles)]
        chosen = [*CORE, *ROLE_SOURCES[role]]
        size = sum(len(sources[s].binaries) for s in chosen)
        for name in rng.sample(pool, len(pool)):
            if size >= packages:
                break
            chosen.append(name)
            size += len(sources[name].binaries)
        lag = rng.uniform(0.005, 0.02)
        installed: list[InstalledPackage] = []
        pending: list[PendingUpdate] = []
        for name in chosen:
            source = sources[name]
            released = source.history[release][:-1]
            behind = rng.random() < (0.8 if name in ("linux", "openssl") else lag)
            at = len(released) - 1 - (rng.choice((1, 1, 2)) if behind else 0)
            have = released[max(at, 0)]
            origin = f"{major}/{suite}-security" if rng.random() < 0.6 else f"{major}/{suite}"
            for binary, arch in source.binaries:
                rebuild = "+b1" if binary in source.binnmu else ""
                installed.append(InstalledPackage(binary, have + rebuild, arch, name, have))
                if have != released[-1]:
                    pending.append(
                        PendingUpdate(
                            binary, have + rebuild, released[-1] + rebuild, origin,
                            ASSESSED - timedelta(days=rng.randint(0, 30), hours=rng.randint(0, 23)),
                        )
                    )  # fmt: skip
        pending.sort(key=lambda u: u.package)
        images.append(
            Image(f"{role}-{release}-{number}", release, PackageSet(installed), tuple(pending))
        )
    return images


def fleet_findings(rng: random.Random, hosts: int, images: list[Image]) -> list[Finding]:
    """One finding per host of the generated inventory: its image's software and pending
    updates; a tenth of the hosts hold one update back, 0.5 % were unreachable."""
    layout = generate_fleet.build(hosts, generate_fleet.DEFAULT_SEED)
    names = sorted([s.name for s in layout.servers] + [n for n, _ in layout.laptops])
    weights = [1 / (i + 1) ** 0.6 for i in range(len(images))]
    out = []
    for name in names:
        if rng.random() < 0.005:
            out.append(Finding(name, ASSESSED, False, message="ssh: connect to host: timed out"))
            continue
        image = rng.choices(images, weights)[0]
        updates = image.pending
        if updates and rng.random() < 0.1:  # held back: one of three per image, not any
            dropped = updates[rng.randrange(min(3, len(updates)))]
            updates = tuple(u for u in updates if u is not dropped)
        version = RELEASES[image.release][0]
        out.append(
            Finding(
                name, ASSESSED, True, updates, release=image.release, software=image.software,
                distribution="Debian", release_version=version,
            )
        )  # fmt: skip
    return out


# ---------------------------------------------------------------- the feeds

URGENCIES = ("low", "medium", "high", "unimportant", "not yet assigned", "low**", "medium**",
             "high**", "end-of-life")  # fmt: skip
WORDS = ("buffer overflow in", "use-after-free in", "out-of-bounds read in", "integer overflow in",
         "NULL pointer dereference in", "improper validation in", "race condition in")  # fmt: skip


def _status(
    rng: random.Random, release: str, versions: tuple[str, ...], recent: float
) -> dict[str, Any]:
    """The tracker's entry for one release: fixed in one of its released versions (the first,
    that is before the release came out, unless ``recent``), fixed only in a version its
    repositories lack, open, never affected, or undetermined."""
    roll = rng.random()
    urgency = rng.choices(URGENCIES, (20, 25, 8, 15, 10, 8, 8, 3, 3))[0]
    repos = {"repositories": {release: versions[-2]}}
    if roll < 0.78:
        later = rng.random() < recent
        fixed = versions[rng.randrange(1, len(versions) - 1) if later else 0]
        return {"status": "resolved", "fixed_version": fixed, "urgency": urgency, **repos}
    if roll < 0.80:
        return {"status": "resolved", "fixed_version": versions[-1], "urgency": urgency, **repos}
    if roll < 0.90:
        return {"status": "open", "urgency": urgency, **repos}
    if roll < 0.95:
        return {"status": "resolved", "fixed_version": "0", "urgency": "unimportant", **repos}
    return {"status": "undetermined", "urgency": "not yet assigned", **repos}


def tracker_data(
    rng: random.Random, sources: dict[str, Source], installed: list[str], cves: int
) -> Tracker:
    """``cves`` CVEs: 5 % in the kernel, 35 % in installed sources, the rest in others;
    every tenth CVE is listed under two sources, as the tracker lists a CVE under each."""
    names = list(sources)
    installed_weights = [1 / (i + 1) ** 0.5 for i in range(len(installed))]
    data: Tracker = {}
    numbers = rng.sample(range(1000, 99999), cves - 1)
    ids = [AUDIT_CVE, *(f"CVE-{2014 + n % 13}-{n}" for n in numbers)]
    for cve in ids[1:]:
        roll = rng.random()
        if roll < 0.05:
            where = ["linux"]
        elif roll < 0.4:
            where = [rng.choices(installed, installed_weights)[0]]
        else:
            where = [rng.choice(names)]
        if rng.random() < 0.1:
            where.append(rng.choice(names))
        description = f"{rng.choice(WORDS)} {where[0]} {rng.randrange(10**6):06x} " * 2
        for source in dict.fromkeys(where):
            history = sources[source].history
            recent = 0.5 if source == "linux" else 0.25  # the kernel: a flood since 2024
            releases = {r: _status(rng, r, history[r], recent) for r in TRACKER_RELEASES}
            entry = {"description": description.strip(), "releases": releases}
            entry["scope"] = rng.choice(("local", "remote"))
            data.setdefault(source, {})[cve] = entry
    openssl = sources["openssl"].history
    data["openssl"][AUDIT_CVE] = {
        "description": "openssl: the planted CVE the benchmark audits",
        "scope": "remote",
        "releases": {
            r: {"status": "resolved", "fixed_version": openssl[r][-2], "urgency": "high"}
            for r in TRACKER_RELEASES
        },
    }
    return data


def kev_data(rng: random.Random, tracker: Tracker, entries: int) -> dict[str, Any]:
    """``entries`` KEV entries: the audited CVE, others of the tracker, 100 it does not name."""
    known = sorted({cve for found in tracker.values() for cve in found} - {AUDIT_CVE})
    unnamed = [f"CVE-2025-9{n:04d}" for n in range(100)]
    chosen = [AUDIT_CVE, *rng.sample(known, entries - 1 - len(unnamed)), *unnamed]
    rows = []
    for cve in chosen:
        added = AT.date() - timedelta(days=rng.randint(1, 1500))
        rows.append({
            "cveID": cve, "vendorProject": "Debian", "product": "bench",
            "vulnerabilityName": f"{cve} bench", "dateAdded": added.isoformat(),
            "shortDescription": "A flaw the benchmark made up.",
            "requiredAction": "Apply updates per vendor instructions.",
            "dueDate": (added + timedelta(days=21)).isoformat(),
            "knownRansomwareCampaignUse": rng.choice(("Known", "Unknown")), "notes": "",
            "cwes": ["CWE-787"],
        })  # fmt: skip
    return {
        "title": "CISA Catalog of Known Exploited Vulnerabilities",
        "catalogVersion": f"{AT:%Y.%m.%d}",
        "dateReleased": f"{AT - timedelta(hours=2):%Y-%m-%dT%H:%M:%S.000Z}",
        "count": len(rows),
        "vulnerabilities": rows,
    }


def epss_text(rng: random.Random, tracker: Tracker, rows: int) -> str:
    """An EPSS CSV: every CVE of the tracker, and others up to ``rows`` (the real file scores
    every published CVE); most scores tiny, a few high."""
    cves = sorted({cve for found in tracker.values() for cve in found})
    cves += [f"CVE-{1999 + n % 27}-{200000 + n}" for n in range(max(rows - len(cves), 0))]
    lines = [f"#model_version:v2025.03.14,score_date:{AT:%Y-%m-%d}T00:00:00+0000"]
    lines.append("cve,epss,percentile")
    for cve in cves:
        score = rng.random() ** 6
        lines.append(f"{cve},{score:.5f},{min(score * 3, 1.0):.5f}")
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------- building it all


@contextmanager
def said(label: str, times: dict[str, list[float]] | None = None) -> Iterator[None]:
    """Time the block: print it (``times`` None) or add it to ``times[label]``."""
    start = time.perf_counter()
    yield
    seconds = time.perf_counter() - start
    if times is None:
        print(f"  {label:<52} {seconds:8.2f} s")
    else:
        times.setdefault(label, []).append(seconds)


def policy_file(work: Path) -> Path:
    """The example policy with one window serving every host (so the plan holds the fleet)."""
    data = yaml.safe_load((ROOT / "policies" / "example.yml").read_text(encoding="utf-8"))
    data["windows"] = [
        {
            "name": "fleet-weekly", "hosts": ["all"], "timezone": "Europe/Berlin",
            "rrule": "FREQ=WEEKLY;BYDAY=SA;BYHOUR=22;BYMINUTE=0;BYSECOND=0",
            "duration": "8h", "cutoff": "45m",
        }
    ]  # fmt: skip
    path = work / "policy.yml"
    path.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
    return path


def write_feeds(rng: random.Random, folder: Path, tracker: Tracker, epss_rows: int) -> list[Path]:
    """The tracker JSON (dated an hour before AT by its mtime), the KEV file, the EPSS CSV."""
    folder.mkdir(exist_ok=True)
    paths = [folder / "tracker.json", folder / "known_exploited_vulnerabilities.json"]
    paths[0].write_text(json.dumps(tracker), encoding="utf-8")
    dated = (AT - timedelta(hours=1)).timestamp()
    os.utime(paths[0], (dated, dated))  # the tracker is dated by its file (curl -R)
    paths[1].write_text(json.dumps(kev_data(rng, tracker, 1400)), encoding="utf-8")
    epss = folder / f"epss_scores-{AT:%Y-%m-%d}.csv.gz"
    epss.write_bytes(gzip.compress(epss_text(rng, tracker, epss_rows).encode()))
    return [*paths, epss]


def build(work: Path, args: argparse.Namespace, env: dict[str, str]) -> None:
    from patchkit.ledger import Ledger

    rng = random.Random(17)  # noqa: S311 - reproducible test data, not secrets
    inventory = work / "inventory"
    generator = [sys.executable, str(ROOT / "examples" / "generate_fleet.py")]
    with said("inventory (examples/generate_fleet.py)"):
        command = [*generator, "--hosts", str(args.hosts), str(inventory)]
        subprocess.run(command, check=True, capture_output=True)
    sources, installable, _ = universe(rng)
    images = make_images(rng, sources, installable, args.images, args.packages)
    found = fleet_findings(rng, args.hosts, images)
    ledger = Ledger(env["PATCHKIT_LEDGER"])
    with said("assessment (Ledger.record_assessment)"):
        ledger.record_assessment(found, source=str(inventory), started=ASSESSED)
    ledger.close()
    tracker = tracker_data(rng, sources, [*CORE, *installable], args.cves)
    paths = write_feeds(rng, work / "feeds", tracker, args.epss)
    for path in paths:
        with said(f"patchkit advisories import {path.name}"):
            patchkit("advisories", "import", str(path), env=env)
    pending = [len(f.updates) for f in found if f.reachable]
    sizes = [len(i.software.packages) for i in images]
    pairs = sum(len(v) for v in tracker.values())
    print(
        f"  {len(found)} hosts on {len(images)} images of {min(sizes)}-{max(sizes)} packages, "
        f"{sum(pending) / len(pending):.1f} pending updates per reachable host\n"
        f"  tracker: {pairs} (source, CVE) pairs over {len(tracker)} sources, "
        f"{paths[0].stat().st_size / 2**20:.0f} MiB; EPSS {args.epss} rows"
    )
    (work / "built").write_text(json.dumps(vars(args), default=str), encoding="utf-8")


# ---------------------------------------------------------------- measuring


def commands(work: Path, policy: Path) -> dict[str, list[str]]:
    """What the issue measures, by name: each runs as a process of its own."""
    inventory = str(work / "inventory" / "hosts.yml")
    out = work / "out"
    out.mkdir(exist_ok=True)
    pk = str(BIN / "patchkit")
    common = ["-p", str(policy), "-i", inventory, "--at", AT.isoformat(), "--format", "json"]
    cold = [pk, "--inventory-cache", "off", "plan", *common, "-o", str(out / "plan-cold.json")]
    return {
        "ansible-inventory --list": [str(BIN / "ansible-inventory"), "-i", inventory, "--list"],
        "patchkit plan, inventory cache off": [*cold, "--by", "bench"],
        "patchkit plan": [pk, "plan", *common, "-o", str(out / "plan.json"), "--by", "bench"],
        f"patchkit audit {AUDIT_CVE}": [
            pk, "audit", AUDIT_CVE, *common, "-o", str(out / "audit.json")
        ],
        # CSV: the JSON lists every host's open CVEs, about 300 KiB a host on this fleet
        "patchkit report compliance --format csv": [
            pk, "report", "compliance", *common[:-2], "--format", "csv",
            "-o", str(out / "compliance.csv"),
        ],
    }  # fmt: skip


def forget_plans(work: Path) -> None:
    """Remove saved plans, so that every plan run stores its plan (a saved one is skipped)."""
    with sqlite3.connect(work / "ledger.sqlite") as db:
        db.execute("DELETE FROM plans")


def prime_cache(work: Path, env: dict[str, str]) -> None:
    """Fill the benchmark's inventory cache (ansible-core parses the inventory once here)."""
    from patchkit import inventory

    start = time.perf_counter()
    inventory.load(work / "inventory" / "hosts.yml", cache=Path(env["PATCHKIT_INVENTORY_CACHE"]))
    print(f"inventory cache filled in {time.perf_counter() - start:.1f} s")


def run_commands(
    work: Path, policy: Path, env: dict[str, str], repeat: int
) -> dict[str, list[Measured]]:
    found: dict[str, list[Measured]] = {}
    for round_ in range(repeat):
        print(f"round {round_ + 1} of {repeat}:")
        for name, argv in commands(work, policy).items():
            if name.startswith("patchkit plan"):
                forget_plans(work)
            done = measure(argv, env=env, cwd=work, ok=(0, 1))  # audit: 1, hosts are affected
            found.setdefault(name, []).append(done)
            print(
                f"  {name:<44} {done.seconds:8.2f} s  {done.peak_mb:7.0f} MB peak "
                f"({done.own_mb:.0f} MB its own, {done.tree_mb:.0f} MB process tree)"
            )
    return found


def plan_figures(path: Path) -> str:
    body = json.loads(path.read_text(encoding="utf-8"))
    hosts = [h for b in body["batches"] for h in b["hosts"]]
    per_host = max(len(hosts), 1)
    updates = sum(len(h["updates"]) for h in hosts)
    refs = sum(len(u["cves"]) for h in hosts for u in h["updates"])
    return (
        f"{len(hosts)} hosts in {len(body['batches'])} batches, {len(body['skipped'])} skipped; "
        f"{updates / per_host:.1f} updates and {refs / per_host:.1f} CVE refs per planned "
        f"host; the JSON is {path.stat().st_size / 2**20:.0f} MiB"
    )


def breakdown(work: Path, policy_path: Path, env: dict[str, str], repeat: int) -> None:
    """Where ``plan`` and ``audit`` spend their time: the library calls the commands make."""
    from patchkit import inventory
    from patchkit import policy as policy_lib
    from patchkit.advisories.fleet import FleetMatcher
    from patchkit.advisories.matching import host_releases
    from patchkit.ledger import Ledger
    from patchkit.planning import plan as planning
    from patchkit.reports import audit as audit_report
    from patchkit.reports import plan as plan_report

    source = work / "inventory" / "hosts.yml"
    url = env["PATCHKIT_LEDGER"]
    cache = Path(env["PATCHKIT_INVENTORY_CACHE"])
    times: dict[str, list[float]] = {}
    for _ in range(repeat):
        with said("plan: policy", times):
            loaded = policy_lib.load(policy_path)
        with said("plan: inventory read (cached)", times):
            hosts = inventory.load(source, cache=cache)
        ledger = Ledger(url)
        names = {h.name for h in hosts}
        with said("plan: ledger findings", times):
            found = ledger.latest_findings(names)
        with said("plan: ledger history", times):
            history = ledger.history(names)
        with said("plan: advisories load", times):
            knowledge = ledger.advisories(host_releases(found.values()))
        with said("plan: planning (make_plan)", times):
            made = planning.make_plan(loaded, hosts, found, AT, None, history, "", knowledge)
        forget_plans(work)
        with said("plan: saving (plan_body, save_plan)", times):
            ledger.save_plan(planning.plan_body(made), saved_at=AT, made_by="bench")
        with said("plan: rendering JSON (plan_json)", times):
            text = plan_report.plan_json(made)
        with said("plan: writing the file", times):
            (work / "out" / "plan-in-process.json").write_text(text, encoding="utf-8")
        del made, text, found, knowledge
        ledger.close()

        with said("audit: policy", times):
            loaded = policy_lib.load(policy_path)
        with said("audit: inventory read (cached)", times):
            hosts = inventory.load(source, cache=cache)
        ledger = Ledger(url)
        with said("audit: governed hosts", times):
            governed = audit_report.governed(loaded, hosts, AT)
        with said("audit: ledger findings", times):
            found = ledger.latest_findings([h.name for h in governed])
        with said("audit: advisories load (its CVE)", times):
            knowledge = ledger.advisories(host_releases(found.values()), [AUDIT_CVE])
        with said("audit: build", times):
            made_audit = audit_report.build(
                loaded, hosts, found, knowledge, [AUDIT_CVE], AT, (), governed
            )
        with said("audit: rendering JSON", times):
            audit_report.to_json(made_audit)
        with said("audit --kev only: advisories load (whole)", times):
            knowledge = ledger.advisories(host_releases(found.values()))
        with said("audit --kev only: the KEV sweep", times):
            audit_report.kev_touching(found.values(), knowledge, FleetMatcher(knowledge))
        del made_audit, found, knowledge
        ledger.close()
    print("\nwhere the time goes (in this process, the library calls the commands make):")
    for label, values in times.items():
        print(f"  {label:<44} {spread(values)}")
    for command in ("plan", "audit"):
        steps = [v for k, v in times.items() if k.startswith(f"{command}:")]
        totals = [sum(v[i] for v in steps) for i in range(repeat)]
        read = times[f"{command}: inventory read (cached)"]
        after = [total - read[i] for i, total in enumerate(totals)]
        print(f"  {command}: all steps {spread(totals)}; after the inventory read {spread(after)}")


def summary(found: dict[str, list[Measured]]) -> None:
    inventory = found["ansible-inventory --list"]
    plan = found["patchkit plan"]
    audit = next(v for k, v in found.items() if k.startswith("patchkit audit"))
    print("\nfigures (median (min-max) over the rounds; peak RSS from wait4):")
    for name, runs in found.items():
        seconds = spread([m.seconds for m in runs])
        peak = spread([m.peak_mb for m in runs], "MB", 0)
        tree = spread([m.tree_mb for m in runs], "MB", 0)
        own = spread([m.own_mb for m in runs], "MB", 0)
        print(f"  {name:<44} {seconds:<24} peak {peak:<20} own {own:<20} process tree {tree}")
    cold = found["patchkit plan, inventory cache off"]
    for label, runs in (("plan, cache off", cold), ("plan, inventory cached", plan)):
        ratios = [p.seconds / i.seconds for p, i in zip(runs, inventory, strict=True)]
        print(f"  {label + ' / ansible-inventory':<44} {spread(ratios, 'x')} (budget 1.2 x)")
        peaks = spread([m.peak_mb for m in runs], "MB", 0)
        print(f"  {label + ', peak RSS':<44} {peaks} (budget 400 MB)")
        own = spread([m.own_mb for m in runs], "MB", 0)
        tree = spread([m.tree_mb for m in runs], "MB", 0)
        print(f"  {'':<44} the controller alone {own}, with its inventory child {tree}")
    print(f"  {'audit, the whole command':<44} {spread([m.seconds for m in audit])} (target < 5 s)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hosts", type=int, default=50_000)
    parser.add_argument("--cves", type=int, default=40_000)
    parser.add_argument("--images", type=int, default=20)
    parser.add_argument("--packages", type=int, default=600, help="installed packages per image")
    parser.add_argument("--epss", type=int, default=250_000, help="rows of the EPSS file")
    parser.add_argument("--repeat", type=int, default=1, help="rounds of measurements")
    parser.add_argument("--keep", type=Path, help="build in this directory, keep it, reuse it")
    parser.add_argument("--no-breakdown", action="store_true", help="only the commands")
    parser.add_argument("--build-only", action="store_true", help="build (see --keep), stop")
    args = parser.parse_args()
    work = (args.keep or Path(tempfile.mkdtemp(prefix="pkvuln-"))).resolve()
    work.mkdir(parents=True, exist_ok=True)
    env = {
        **os.environ,
        "PATCHKIT_LEDGER": f"sqlite:///{work / 'ledger.sqlite'}",
        # the benchmark's own cache, filled before the rounds: "cached" is then what a
        # controller sees on every run after the first for an unchanged inventory
        "PATCHKIT_INVENTORY_CACHE": str(work / "inventory-cache"),
    }
    policy = policy_file(work)
    if (work / "built").exists():
        print(f"reusing what {work} holds: {(work / 'built').read_text(encoding='utf-8')}")
    else:
        print(f"building in {work}:")
        build(work, args, env)
    if args.build_only:
        return
    prime_cache(work, env)
    found = run_commands(work, policy, env, args.repeat)
    print(f"\nthe plan: {plan_figures(work / 'out' / 'plan.json')}")
    summary(found)
    if not args.no_breakdown:
        breakdown(work, policy, env, args.repeat)
    if args.keep is None:
        shutil.rmtree(work)


if __name__ == "__main__":
    main()
