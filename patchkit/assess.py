"""Pending updates per host: run playbooks/assess.yml in check mode and read what it reports.

The playbook only collects raw text on the hosts (apt's simulation, dpkg's list of installed
packages, the reboot flag); the pure functions here turn it into ``Finding`` values, so they are
tested on captured output.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from patchkit import content
from patchkit.execution.placed import Job, Placement
from patchkit.execution.runner import TaskResult, run_playbook
from patchkit.findings import natural_key
from patchkit.model import Finding, InstalledPackage, PackageSet, PendingUpdate

log = logging.getLogger(__name__)

PLAYBOOK = "assess.yml"
RESULT_TASK = "Patchkit assess result"  # the one task whose msg the playbook reports through
REPORT_FORMAT = 2  # the playbook's report format (playbooks/assess.yml's header)
REPORT_FORMATS = (1, 2)  # the formats this module reads: 1 has no software and no release
FORKS = 20
# A job timeout so one stuck host cannot hold the assessment forever; hosts without a result
# by then are reported as not assessed. apt's own HTTP timeout (120 s) bounds each refresh.
TIMEOUT = 1800

# ``Inst NAME[:ARCH] [INSTALLED] (CANDIDATE ORIGINS [ARCH])`` and then, sometimes, notes on
# broken dependencies in brackets. apt (apt-pkg/algorithms.cc, pkgSimulate::Describe) leaves the
# installed version out for a new install; ORIGINS is ``Label:Version/Suite`` entries separated
# by ", " (pkgCache::VerIterator::RelStr), and may be empty.
_INST = re.compile(
    r"^Inst (?P<package>[^\s\[\]()]+)"
    r"(?: \[(?P<installed>[^\]\s]+)\])?"
    r" \((?P<candidate>\S+) (?P<origins>.*?) ?\[(?P<arch>[^\]\s]+)\]\)"
)
_REMOVE = re.compile(r"^(?:Remv|Purg) (?P<package>\S+)")
# Titles of apt's list of upgrades it will not make: held packages, or (Ubuntu) phased updates.
# The second of each pair is apt >= 2.9's output format (APT::Output-Version 30).
_KEPT_TITLES = (
    "The following packages have been kept back:",
    "Not upgrading:",
    "The following upgrades have been deferred due to phasing:",
    "Not upgrading yet due to phasing:",
)


# The second letter of dpkg's ${db:Status-Abbrev} for a package whose files of its version are
# on disk: installed, unpacked, half-configured, triggers-awaited, triggers-pending. Vulnerable
# code is there in each of them. Left out: config-files (c: only conffiles remain),
# half-installed (H: an install or removal stopped midway, the files are neither version's) and
# not-installed (n). The first letter (wanted: install, hold, deinstall, purge) says nothing of
# what is on disk: "ri", a package marked for removal, is still installed.
_ON_DISK = frozenset("iUFWt")
_PACKAGE_FIELDS = 6  # binary:Package, Version, Architecture, source:Package, source:Version, status


class SimulationError(ValueError):
    """apt's simulation output has a line this parser does not understand."""


class PackageListError(ValueError):
    """dpkg-query's list of installed packages has a line this parser does not understand."""


@dataclass(frozen=True)
class Simulation:
    """What ``apt-get --simulate dist-upgrade`` would do on one host."""

    updates: tuple[PendingUpdate, ...]  # what it would install, by package name
    removals: tuple[str, ...] = ()  # packages it would remove to get there
    kept_back: tuple[str, ...] = ()  # upgrades it would not make (held or phased)


def suite_of(origin: str) -> str:
    """``Debian-Security:12/stable-security`` -> ``12/stable-security``.

    apt writes ``Label:Version/Suite`` (label and version only when the Release file has them);
    a label may hold spaces or colons, a suite holds neither, so the part after the last colon
    is the suite. A repository without a Release file shows as its host name (or ``localhost``).
    """
    return origin.rpartition(":")[2].strip()


def choose_origin(origins: Iterable[str]) -> str:
    """The origin a pending update is filed under: its first security suite, else its first.

    apt lists the origins in the order of the package lists, not by importance. A security fix
    that a point release has since included shows as ``Debian:12.5/stable,
    Debian-Security:12/stable-security``: taking the first would file it as a regular update.
    """
    suites = [suite_of(o) for o in origins if o.strip()]
    for suite in suites:
        if "security" in suite:
            return suite
    return suites[0] if suites else ""


def read_simulation(text: str, first_seen: datetime | None = None) -> Simulation:
    """Parse the output of ``apt-get --simulate [-V] dist-upgrade`` (pure).

    Only ``Inst`` lines are pending updates (``Conf`` lines repeat them); ``Remv``/``Purg`` lines
    are removals; the kept-back list (names, or ``name (a => b)`` with ``-V``) is what a
    dist-upgrade would leave alone. Raises SimulationError for an ``Inst`` line it cannot read,
    rather than dropping an update silently.
    """
    updates: dict[str, PendingUpdate] = {}
    removals: list[str] = []
    kept: list[str] = []
    in_kept = False
    for number, line in enumerate(text.splitlines(), start=1):
        if line.startswith("Inst "):
            match = _INST.match(line)
            if match is None:
                raise SimulationError(f"line {number}: cannot read {line!r}")
            update = PendingUpdate(
                package=match["package"],
                installed=match["installed"],
                candidate=match["candidate"],
                origin=choose_origin(match["origins"].split(", ")),
                first_seen=first_seen,
            )
            updates[update.package] = update
        elif (removal := _REMOVE.match(line)) is not None:
            removals.append(removal["package"])
        if line in _KEPT_TITLES:
            in_kept = True
        elif in_kept and line.startswith(" "):
            # "   name (1.0 => 1.1)" with -V; without it, names wrapped several to a line
            body = re.sub(r"\([^)]*\)", " ", line)
            kept.extend(body.split())
        else:
            in_kept = False
    return Simulation(
        updates=tuple(updates[name] for name in sorted(updates)),
        removals=tuple(sorted(set(removals))),
        kept_back=tuple(sorted(set(kept))),
    )


def parse_simulation(text: str, first_seen: datetime | None = None) -> tuple[PendingUpdate, ...]:
    """The updates ``apt-get --simulate dist-upgrade`` would install, sorted by package (pure).

    ``origin`` is the suite (``lab-security``, ``12/stable-security``; see ``choose_origin``);
    ``installed`` is None for a package the upgrade would newly install (a new kernel ABI).
    """
    return read_simulation(text, first_seen).updates


def read_packages(text: str) -> PackageSet:
    """Parse the assess playbook's ``dpkg-query -W -f=…`` output into the host's set (pure).

    Each line is ``${binary:Package}\\t${Version}\\t${Architecture}\\t${source:Package}\\t
    ${source:Version}\\t${db:Status-Abbrev}``. dpkg qualifies the names of Multi-Arch: same and
    foreign packages (``libc6:amd64``); the qualifier is the architecture, which has its own
    field, so it is dropped from the name. ``${source:Package}`` is the bare source name even
    where the status file says ``Source: lvm2 (2.03.16-2)``, and ``${source:Version}`` that
    version (else the binary's own): both default to the binary's when there is no Source
    field. Packages whose files are not on disk (see ``_ON_DISK``) are left out. Raises
    PackageListError for a line it cannot read, rather than dropping a package silently.
    """
    packages = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        fields = line.split("\t")
        if len(fields) != _PACKAGE_FIELDS:
            raise PackageListError(
                f"line {number}: expected {_PACKAGE_FIELDS} tab-separated fields, found"
                f" {len(fields)} in {line!r}"
            )
        name, version, arch, source, source_version, status = fields
        if len(status) < 2 or status[1] not in _ON_DISK:
            continue
        bare, colon, qualifier = name.partition(":")
        if colon and qualifier != arch:
            raise PackageListError(
                f"line {number}: {name!r} is qualified with another architecture than {arch!r}"
            )
        if not all((bare, version, arch, source, source_version)):
            raise PackageListError(f"line {number}: an empty field in {line!r}")
        packages.append(InstalledPackage(bare, version, arch, source, source_version))
    return PackageSet(packages)


# ---------------------------------------------------------------- playbook results -> findings


def finding_from_report(
    host: str,
    report: Mapping[str, Any],
    at: datetime,
    pool: dict[str, PackageSet] | None = None,
) -> Finding:
    """The Finding for a host whose playbook run reached the result task (pure, but for
    ``pool``: package sets interned by digest, so hosts with the same packages share one)."""
    version = report.get("format")
    if version not in REPORT_FORMATS or report.get("manager") != "apt":
        return Finding(
            host=host,
            assessed_at=at,
            reachable=False,
            message=(
                f"the assess playbook reported format {version!r} for package"
                f" manager {report.get('manager')!r}; this patchkit reads formats"
                f" {' and '.join(map(str, REPORT_FORMATS))} from apt"
            ),
        )
    try:
        simulation = read_simulation(str(report.get("simulation", "")), first_seen=at)
    except SimulationError as exc:
        return Finding(
            host=host,
            assessed_at=at,
            reachable=False,
            message=f"cannot read apt's simulation: {exc}",
        )
    if simulation.removals:
        log.warning("%s: the upgrade would remove %s", host, ", ".join(simulation.removals))
    if simulation.kept_back:
        log.info("%s: kept back (held or phased): %s", host, ", ".join(simulation.kept_back))
    warnings = []
    rc = report.get("refresh_rc")
    if rc is not None and rc != 0:
        # Assessed all the same, from the lists the host already had: say so, do not fail.
        errors = "; ".join(str(e) for e in report.get("refresh_errors") or ())
        warnings.append(
            f"package lists not refreshed (apt-get update exit {rc}"
            f"{': ' + errors if errors else ''}); pending updates are as of the last refresh"
        )
    software, problem = _software(report) if version != 1 else (None, "")
    if problem:
        warnings.append(problem)
    if software is not None and pool is not None:
        software = pool.setdefault(software.digest, software)
    for warning in warnings:
        log.warning("%s: %s", host, warning)
    return Finding(
        host=host,
        assessed_at=at,
        reachable=True,
        updates=simulation.updates,
        reboot_pending=report.get("reboot_required") is True,
        message="; ".join(warnings),
        release=_fact(report.get("release")),
        software=software,
        distribution=_fact(report.get("distribution")),
        release_version=_fact(report.get("release_version")),
    )


def _software(report: Mapping[str, Any]) -> tuple[PackageSet | None, str]:
    """The host's package set from a format 2 report, or None and why not (a warning: the
    pending updates stand without it)."""
    rc = report.get("packages_rc")
    if rc != 0:
        errors = " | ".join(_lines(str(report.get("packages_errors") or "")))
        return None, (
            f"installed packages not listed (dpkg-query exit {rc}{': ' + errors if errors else ''})"
        )
    try:
        return read_packages(str(report.get("packages", ""))), ""
    except PackageListError as exc:
        return None, f"cannot read dpkg-query's list of installed packages: {exc}"


def _fact(value: Any) -> str | None:
    """A distribution fact as reported, None when Ansible did not know it (``NA``, empty)."""
    text = str(value).strip() if value is not None else ""
    return text if text and text.upper() not in ("NA", "N/A") else None


def failure_message(task: TaskResult) -> str:
    """Why a host could not be assessed, from its failed or unreachable task (pure)."""
    result = task.result
    # One line: messages end up in tables, the ledger and the findings file.
    text = " | ".join(_lines(str(result.get("msg", "")))) or "no message"
    if task.status == "unreachable":
        return f"unreachable: {text}"
    stderr = _lines(str(result.get("stderr", "")))
    rc = result.get("rc")
    detail = f" (exit {rc})" if rc is not None else ""
    tail = f": {' | '.join(stderr[-3:])}" if stderr else ""
    return f"failed at {task.task!r}: {text}{detail}{tail}"


def _lines(text: str) -> list[str]:
    return [line.strip() for line in text.splitlines() if line.strip()]


class FindingCollector:
    """Turns the playbook's task results, in the order they arrive, into one Finding per host.

    The first decisive result for a host wins: the result task, or the task that failed or
    could not reach it (Ansible drops a host from the play after either).
    """

    def __init__(self, at: datetime) -> None:
        self.at = at
        self.found: dict[str, Finding] = {}
        self.seen: dict[str, None] = {}  # hosts in the order they first showed (a set: 50,000)
        self.sets: dict[str, PackageSet] = {}  # by digest: one object per distinct set

    def add(self, task: TaskResult) -> Finding | None:
        """Take one task result; return the host's Finding if this result decided it."""
        self.seen.setdefault(task.host)
        if task.host in self.found:
            return None
        if task.status in ("unreachable", "failed"):
            finding = Finding(
                host=task.host, assessed_at=self.at, reachable=False, message=failure_message(task)
            )
        elif task.task == RESULT_TASK and task.status in ("ok", "changed"):
            report = task.result.get("msg")
            if not isinstance(report, Mapping):
                report = {}
            finding = finding_from_report(task.host, report, self.at, self.sets)
        else:
            return None
        self.found[task.host] = finding
        return finding

    def finish(self, status: str, targeted: Iterable[str] = ()) -> tuple[Finding, ...]:
        """Decide the hosts the playbook started on but never reported (a timeout, a crash),
        and those of ``targeted`` it never started on (a node lost before their first task)."""
        for host in targeted:
            self.seen.setdefault(host)
        late = tuple(
            Finding(
                host=host,
                assessed_at=self.at,
                reachable=False,
                message=f"no result from the assess playbook (run {status})",
            )
            for host in self.seen
            if host not in self.found
        )
        self.found.update((f.host, f) for f in late)
        return late

    def findings(self) -> tuple[Finding, ...]:
        """Every decided host's Finding, in natural name order (host2 before host10)."""
        return tuple(self.found[h] for h in sorted(self.found, key=lambda h: (natural_key(h), h)))


def assess(
    inventory: Path,
    *,
    limit: str | None,
    at: datetime,
    on_host: Callable[[Finding], None] | None = None,
    host_key_checking: bool = True,
    pass_env: Sequence[str] = (),
    placement: Placement | None = None,
) -> tuple[Finding, ...]:
    """Ask every host ``limit`` selects what it has pending; one Finding per host targeted.

    Runs playbooks/assess.yml in check mode (installed packages are not touched; the package
    lists are refreshed unless ``patchkit_assess_refresh`` is false for the host). Unreachable
    and failed hosts come back with ``reachable=False`` and the reason in ``message``. ``at`` is
    the assessment time (the caller reads the clock); it is also every update's ``first_seen``,
    which the ledger lowers to the earliest assessment that saw it. ``on_host`` is called with
    each host's Finding as soon as it is known. ``host_key_checking`` and ``pass_env`` are the
    policy's connection settings. With ``placement``, ``limit`` is a comma-separated list of
    host names, each asked where it is placed (its execution node, or here); a node that cannot
    run its part leaves its hosts unreachable with the reason. Raises RunnerError if the
    playbook cannot run.
    """
    collector = FindingCollector(at)

    def on_task(task: TaskResult) -> None:
        finding = collector.add(task)
        if finding is not None and on_host is not None:
            on_host(finding)

    if placement is not None and placement.where:
        names = [n for n in (limit or "").split(",") if n]
        job = Job({}, TIMEOUT, host_key_checking, pass_env, check=True, forks=FORKS)
        done = placement.run(PLAYBOOK, names, job, on_task)
        late: list[Finding] = []
        for group, part in done.parts.items():
            part_hosts = [n for n in names if placement.group(n) == group]
            late += collector.finish(part.status, part_hosts)
    else:
        result = run_playbook(
            content.playbook(PLAYBOOK),
            inventory,
            limit=limit,
            check=True,
            forks=FORKS,
            timeout=TIMEOUT,
            on_task=on_task,
            host_key_checking=host_key_checking,
            pass_env=pass_env,
        )
        late = list(collector.finish(result.status))
    for finding in late:
        if on_host is not None:
            on_host(finding)
    return collector.findings()
