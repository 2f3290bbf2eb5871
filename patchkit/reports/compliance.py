"""The compliance report: every in-scope host's outstanding updates against the policy's
deadline per severity, the exceptions in force, time to patch, and how windows went.

Pure: built from the policy, the inventory's hosts, the newest finding per host, the updates runs
installed and the list of runs (plain data the ledger adapter loads), at a given time.
"""

from __future__ import annotations

import csv
import io
from collections import Counter, defaultdict
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from rich.console import Group
from rich.text import Text

from patchkit.advisories.fleet import FleetMatcher
from patchkit.advisories.knowledge import CveFacts, Knowledge
from patchkit.advisories.matching import Exposure, HostMatch, Vulnerable
from patchkit.model import Finding, Host, PendingUpdate, Severity
from patchkit.planning import scope as scoping
from patchkit.planning.priority import (
    Matcher,
    PackageExceptions,
    criticality_of,
    is_security,
)
from patchkit.planning.severity import rate
from patchkit.policy.model import Policy, PolicyException
from patchkit.reports import charts, jsondoc
from patchkit.reports.plan import md, md_table, template_environment
from patchkit.reports.terminal import Fit, FittedTable, shown, visible

FORMAT = "patchkit-compliance-report/1"
_RANK = tuple(Exposure)  # worst first
# Worst first: a host's status is the worst of its updates'.
STATUSES = ("overdue", "due soon", "unknown", "excepted", "compliant")
COLOURS = {"overdue": "red", "due soon": "yellow", "unknown": "magenta", "compliant": "green"}


@dataclass(frozen=True)
class Outstanding:
    package: str
    installed: str | None
    candidate: str
    severity: str
    first_seen: datetime
    age_days: float
    deadline: datetime
    status: str  # overdue / due soon / compliant / excepted
    exception: str  # "owner, until DATE: reason" when an exception holds it
    cves: tuple[str, ...] = ()  # the CVEs it fixes on the host, known exploited first
    clock: str = "first seen"  # what the deadline runs from: "first seen" or "advisory"


@dataclass(frozen=True)
class OpenCve:
    """A CVE that affects a host, as its newest assessment and the imported advisories say."""

    cve: str
    exposure: str  # fix pending / fix not available here / no fix yet
    source: str  # the source package it is in
    kev: bool
    cvss: float | None


@dataclass(frozen=True)
class HostCompliance:
    host: str
    tier: str
    env: str
    groups: tuple[str, ...]
    status: str  # the worst of its updates; unknown when never assessed or unreachable
    assessed_at: datetime | None
    note: str  # why unknown, or the host's exception
    updates: tuple[Outstanding, ...]
    open_cves: tuple[OpenCve, ...] = ()  # known exploited first; empty without advisories


@dataclass(frozen=True)
class ExceptionRow:
    hosts: tuple[str, ...]
    packages: tuple[str, ...]
    owner: str
    reason: str
    expires: str
    expired: bool
    applies_to: tuple[str, ...]  # inventory hosts it names (all of them, for package-only ones)


@dataclass(frozen=True)
class Total:
    by: str  # group / tier / env
    name: str
    hosts: int
    statuses: Mapping[str, int]


@dataclass(frozen=True)
class TimeToPatch:
    severity: str
    updates: int
    mean_days: float
    within_deadline: int


@dataclass(frozen=True)
class WindowStats:
    period: str  # YYYY-MM
    runs: int
    completed: int
    success_rate: float  # completed / runs, 0..1


@dataclass(frozen=True)
class ComplianceReport:
    policy: str
    at: datetime
    deadlines: Mapping[str, int]
    due_soon_days: int
    hosts: tuple[HostCompliance, ...]
    counts: Mapping[str, int]  # hosts per status
    by_severity: Mapping[str, Mapping[str, int]]  # severity -> update status -> count
    totals: tuple[Total, ...]
    exceptions: tuple[ExceptionRow, ...]
    time_to_patch: tuple[TimeToPatch, ...]
    latency: tuple[tuple[str, float], ...]  # per run (oldest first): mean days to patch
    windows: tuple[WindowStats, ...]
    clock: str = "first-seen"  # reporting.clock
    advisories: bool = False  # whether tracker or OSV advisories were there to match against
    open_cves: int = 0  # distinct CVEs affecting at least one host
    known_exploited: int = 0  # distinct KEV CVEs affecting at least one host
    kev_hosts: int = 0  # hosts affected by at least one KEV CVE


def _describe(exc: PolicyException) -> str:
    return f"{exc.owner}, until {exc.expires}: {exc.reason}"


def _update_status(
    first: datetime, severity: Severity, policy: Policy, at: datetime
) -> tuple[datetime, str]:
    deadline = first + timedelta(days=policy.reporting.deadlines.get(severity, 30))
    if at > deadline:
        return deadline, "overdue"
    if at >= deadline - timedelta(days=policy.reporting.due_soon):
        return deadline, "due soon"
    return deadline, "compliant"


def _worst(statuses: Sequence[str]) -> str:
    return min(statuses, key=STATUSES.index) if statuses else "compliant"


def build(
    policy: Policy,
    hosts: Sequence[Host],
    findings: Mapping[str, Finding],
    installed: Sequence[Mapping[str, Any]],
    runs: Sequence[Mapping[str, Any]],
    at: datetime,
    knowledge: Knowledge | None = None,
) -> ComplianceReport:
    """Compliance of ``hosts`` under ``policy`` at ``at``.

    ``installed``: ``Ledger.installed_updates()``; ``runs``: ``Ledger.runs()``. ``knowledge``
    (the imported advisories) rates updates by the CVEs they fix, as the planner does, lists
    each host's open CVEs, and dates deadlines from the advisory under ``reporting.clock``.
    """
    knowledge = knowledge or Knowledge()
    match = scoping.matcher(hosts)
    live = scoping.live_exceptions(policy, at.date())
    judge = _Judge(policy, knowledge, at, live, match, installed)
    rows: list[HostCompliance] = []
    for entry in scoping.resolve(hosts, policy, at.date(), match):
        whole = scoping.host_exception(entry.host, live, match)
        if not entry.in_scope and whole is None:
            continue  # out of scope or excluded: not governed by this policy
        rows.append(judge.host(entry.host, findings.get(entry.host.name), whole))
    rows.sort(key=lambda h: (STATUSES.index(h.status), h.host))
    lists = {id(h.open_cves): h.open_cves for h in rows}.values()  # hosts of an image share one
    open_ids = {c.cve for cves in lists for c in cves}
    exploited = {c.cve for cves in lists for c in cves if c.kev}
    with_kev = {id(cves) for cves in lists if any(c.kev for c in cves)}
    return ComplianceReport(
        policy=policy.name,
        at=at,
        deadlines={s.value: d for s, d in policy.reporting.deadlines.items()},
        due_soon_days=policy.reporting.due_soon,
        hosts=tuple(rows),
        counts=dict(Counter(h.status for h in rows)),
        by_severity={k: dict(v) for k, v in judge.by_severity.items()},
        totals=_totals(rows),
        exceptions=_exceptions(policy, hosts, match, at),
        time_to_patch=_time_to_patch(policy, installed),
        latency=_latency(installed, runs),
        windows=_windows(runs),
        clock=policy.reporting.clock,
        advisories=judge.vulns.active,
        open_cves=len(open_ids),
        known_exploited=len(exploited),
        kev_hosts=sum(1 for h in rows if id(h.open_cves) in with_kev),
    )


@dataclass(frozen=True, slots=True)
class _Rated:
    """What an update is worth wherever it is pending with the same CVEs to fix."""

    update: PendingUpdate
    fixes: tuple[str, ...]  # the CVEs it fixes there, as the match gives them
    severity: Severity
    cves: tuple[str, ...]  # the same, known exploited first, then by CVSS
    published: datetime | None  # the earliest publication of any of them


class _Judge:
    """Each governed host's row, with what hosts share worked out once for them all.

    A fleet's 50,000 hosts repeat a few hundred pending updates (the same objects: the ledger
    interns them) and a few dozen matches; rating an update and listing a match's open CVEs
    once per host took minutes and, for the CVEs, more memory than a controller has.
    """

    def __init__(
        self,
        policy: Policy,
        knowledge: Knowledge,
        at: datetime,
        live: Sequence[PolicyException],
        match: Matcher,
        installed: Sequence[Mapping[str, Any]],
    ) -> None:
        self.policy = policy
        self.knowledge = knowledge
        self.at = at
        self.match = match
        self.vulns = FleetMatcher(knowledge)
        self.patched = {
            (r["host"], r["package"], r["version"]): r["installed_at"] for r in installed
        }
        self.open_cves = _OpenCves(knowledge, self.patched)
        # severity -> update status -> count, counted in the order hosts and updates come
        self.by_severity: dict[str, Counter[str]] = {s.value: Counter() for s in Severity}
        self._rated: dict[tuple[int, int], _Rated] = {}
        self._rows: dict[tuple[int, datetime, int], tuple[_Rated, Outstanding]] = {}
        self._holding = PackageExceptions(live, match)

    def host(
        self, host: Host, finding: Finding | None, whole: PolicyException | None
    ) -> HostCompliance:
        _, tier = criticality_of(host, self.policy, self.match)
        env = str(host.var("env") or "-")
        if finding is None or not finding.reachable:
            note = "never assessed" if finding is None else f"unreachable: {finding.message}"
            return HostCompliance(
                host.name, tier, env, host.groups, "unknown",
                finding.assessed_at if finding else None, note, (),
            )  # fmt: skip
        matched = self.vulns.match(finding)
        fixes = matched.fixes_by_update if matched is not None else {}
        outstanding = []
        for update in finding.updates:
            done = self.patched.get((host.name, update.package, update.candidate))
            if done is not None and done >= finding.assessed_at:
                continue  # a run installed it after this assessment: no longer outstanding
            rated = self._rate(update, fixes.get(update.package.split(":", 1)[0], ()))
            held = whole or self._holding.holding(host, update.package)
            row = self._outstanding(rated, update.first_seen or finding.assessed_at, held)
            self.by_severity[row.severity][row.status] += 1
            outstanding.append(row)
        outstanding.sort(key=lambda o: (STATUSES.index(o.status), o.deadline, o.package))
        status = _worst([o.status for o in outstanding if o.status != "excepted"])
        return HostCompliance(
            host.name, tier, env, host.groups, status, finding.assessed_at,
            _note(whole, matched, finding), tuple(outstanding),
            self.open_cves.of(matched, finding),
        )  # fmt: skip

    def _rate(self, update: PendingUpdate, fixes: tuple[str, ...]) -> _Rated:
        """The update's severity by the rules and the CVEs it fixes (as the planner rates)."""
        key = (id(update), id(fixes))
        rated = self._rated.get(key)
        if rated is not None and rated.update is update and rated.fixes is fixes:
            return rated
        facts = [self.knowledge.facts(c) for c in fixes]
        facts.sort(key=lambda f: (not f.known_exploited, -(_score(f) or -1.0), f.cve))
        severity = rate(update, is_security(update, self.policy), self.policy, facts).severity
        published = [f.published for f in facts if f.published is not None]
        rated = _Rated(
            update, fixes, severity, tuple(f.cve for f in facts), min(published, default=None)
        )
        self._rated[key] = rated
        return rated

    def _outstanding(
        self, rated: _Rated, first_seen: datetime, held: PolicyException | None
    ) -> Outstanding:
        """The row of one outstanding update (hosts with the same one share it)."""
        key = (id(rated), first_seen, id(held))
        found = self._rows.get(key)
        if found is not None and found[0] is rated:
            return found[1]
        first, clock = first_seen, "first seen"
        if self.policy.reporting.clock == "advisory" and rated.published is not None:
            first, clock = rated.published, "advisory"
        deadline, status = _update_status(first, rated.severity, self.policy, self.at)
        if held is not None:
            status = "excepted"
        row = Outstanding(
            package=rated.update.package,
            installed=rated.update.installed,
            candidate=rated.update.candidate,
            severity=rated.severity.value,
            first_seen=first,
            age_days=round((self.at - first).total_seconds() / 86400, 1),
            deadline=deadline,
            status=status,
            exception=_describe(held) if held else "",
            cves=rated.cves,
            clock=clock,
        )
        self._rows[key] = (rated, row)
        return row


def _note(whole: PolicyException | None, matched: HostMatch | None, finding: Finding) -> str:
    notes = [f"host exception: {_describe(whole)}"] if whole else []
    if matched is not None and not matched.covered:
        release = " ".join(x for x in (finding.distribution, finding.release) if x) or "unknown"
        notes.append(f"open CVEs unknown: no imported feed covers its release ({release})")
    return "; ".join(notes)


def _score(facts: CveFacts) -> float | None:
    return facts.cvss.base_score if facts.cvss is not None else None


class _OpenCves:
    """Each host's open CVEs: one tuple for all hosts of an image that runs left alone.

    A fleet's hosts share a few dozen matches of thousands of CVEs each; a tuple of rows per
    host was 50,000 hosts times 2,000 CVEs, more memory than a controller has.
    """

    def __init__(
        self, knowledge: Knowledge, patched: Mapping[tuple[str, str, str], datetime]
    ) -> None:
        self._knowledge = knowledge
        self._patched = patched
        self._hosts = frozenset(host for host, _, _ in patched)
        # (id of the match, the fixes pending it leaves out) → (the match, its rows)
        self._made: dict[tuple[int, frozenset[Vulnerable]], tuple[HostMatch, tuple[OpenCve, ...]]]
        self._made = {}

    def of(self, matched: HostMatch | None, finding: Finding) -> tuple[OpenCve, ...]:
        """One row per CVE (the worst state over the source packages it is in), leaving out
        a fix pending that a run installed after the assessment, as the updates leave it."""
        if matched is None:
            return ()
        done = self._installed_since(matched, finding)
        key = (id(matched), done)
        made = self._made.get(key)
        if made is None:
            made = self._made[key] = (matched, self._rows(matched, done))
        return made[1]

    def _installed_since(self, matched: HostMatch, finding: Finding) -> frozenset[Vulnerable]:
        """The fixes pending on the host that a run installed after its assessment."""
        if finding.host not in self._hosts:
            return frozenset()
        candidates = {u.package.split(":", 1)[0]: u.candidate for u in finding.updates}

        def installed_since(package: str) -> bool:
            done = self._patched.get((finding.host, package, candidates.get(package, "")))
            return done is not None and done >= finding.assessed_at

        return frozenset(
            v
            for v in matched.vulnerable
            if v.exposure is Exposure.FIX_PENDING and any(installed_since(p) for p in v.updates)
        )

    def _rows(self, matched: HostMatch, done: frozenset[Vulnerable]) -> tuple[OpenCve, ...]:
        worst: dict[str, Vulnerable] = {}
        for v in matched.vulnerable:
            if done and v in done:
                continue
            have = worst.get(v.vulnerability)
            if have is None or _RANK.index(v.exposure) < _RANK.index(have.exposure):
                worst[v.vulnerability] = v
        out = []
        for v in worst.values():
            facts = self._knowledge.facts(v.vulnerability)
            out.append(
                OpenCve(v.vulnerability, v.exposure.value, v.source, facts.known_exploited,
                        _score(facts))
            )  # fmt: skip
        out.sort(key=lambda c: (not c.kev, -(c.cvss if c.cvss is not None else -1.0), c.cve))
        return tuple(out)


def _totals(rows: Sequence[HostCompliance]) -> tuple[Total, ...]:
    groups: dict[tuple[str, str], Counter[str]] = defaultdict(Counter)
    for h in rows:
        groups[("env", h.env)][h.status] += 1
        groups[("tier", h.tier)][h.status] += 1
        for g in h.groups:
            if g not in ("all", "ungrouped"):
                groups[("group", g)][h.status] += 1
    order = {"env": 0, "tier": 1, "group": 2}
    return tuple(
        Total(by, name, sum(c.values()), dict(c))
        for (by, name), c in sorted(groups.items(), key=lambda kv: (order[kv[0][0]], kv[0][1]))
    )


def _exceptions(
    policy: Policy, hosts: Sequence[Host], match: Matcher, at: datetime
) -> tuple[ExceptionRow, ...]:
    out = []
    for exc in policy.exceptions:
        named = sorted(match(exc.hosts)) if exc.hosts else sorted(h.name for h in hosts)
        out.append(
            ExceptionRow(
                tuple(exc.hosts), tuple(exc.packages), exc.owner, exc.reason,
                exc.expires.isoformat(), exc.expires < at.date(), tuple(named),
            )
        )  # fmt: skip
    return tuple(out)


def _severity(row: Mapping[str, Any], policy: Policy) -> Severity:
    """The severity the plan that installed it gave it (its CVEs counted), else the rules'."""
    if row.get("severity") in Severity.__members__.values():
        return Severity(row["severity"])
    update = PendingUpdate(row["package"], None, row["version"], row["origin"] or "")
    return rate(update, is_security(update, policy), policy).severity


def _time_to_patch(
    policy: Policy, installed: Sequence[Mapping[str, Any]]
) -> tuple[TimeToPatch, ...]:
    days: dict[Severity, list[float]] = defaultdict(list)
    for row in installed:
        if row["first_seen"] is None:
            continue  # installed without an assessment having seen it: no clock to measure
        took = (row["installed_at"] - row["first_seen"]).total_seconds() / 86400
        days[_severity(row, policy)].append(max(took, 0.0))
    out = []
    for severity in Severity:
        values = days.get(severity, [])
        if not values:
            continue
        deadline = policy.reporting.deadlines.get(severity, 30)
        out.append(
            TimeToPatch(
                severity.value, len(values), round(sum(values) / len(values), 2),
                sum(1 for v in values if v <= deadline),
            )
        )  # fmt: skip
    return tuple(out)


def _latency(
    installed: Sequence[Mapping[str, Any]], runs: Sequence[Mapping[str, Any]]
) -> tuple[tuple[str, float], ...]:
    per_run: dict[str, list[float]] = defaultdict(list)
    for row in installed:
        if row["first_seen"] is not None:
            took = (row["installed_at"] - row["first_seen"]).total_seconds() / 86400
            per_run[row["run"]].append(max(took, 0.0))
    ordered = sorted(runs, key=lambda r: r["started"])
    return tuple(
        (f"{r['started']:%Y-%m-%d} {r['id'][-6:]}", round(sum(v) / len(v), 2))
        for r in ordered
        if (v := per_run.get(r["id"]))
    )


def _windows(runs: Sequence[Mapping[str, Any]]) -> tuple[WindowStats, ...]:
    periods: dict[str, list[str]] = defaultdict(list)
    for r in runs:
        if r["status"] != "running":
            periods[f"{r['started']:%Y-%m}"].append(r["status"])
    return tuple(
        WindowStats(p, len(s), s.count("completed"), round(s.count("completed") / len(s), 3))
        for p, s in sorted(periods.items())
    )


# ---------------------------------------------------------------- renderers


def to_json(report: ComplianceReport) -> str:
    return jsondoc.dumps({"format": FORMAT, **jsondoc.fields(report)})


def json_pieces(report: ComplianceReport) -> Iterator[str]:
    """:func:`to_json`'s text in pieces, for writing as it comes: a big fleet's report (every
    host lists its open CVEs) is more than memory holds whole."""
    return jsondoc.pieces({"format": FORMAT, **jsondoc.fields(report)})


def to_csv(report: ComplianceReport) -> str:
    """One row per outstanding update (and one per host with none, or unknown)."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(
        ["host", "tier", "env", "host_status", "package", "installed", "candidate", "severity",
         "first_seen", "age_days", "deadline", "status", "exception", "note", "cves",
         "deadline_from", "host_open_cves", "host_known_exploited"]
    )  # fmt: skip
    for h in report.hosts:
        head = [h.host, h.tier, h.env, h.status]
        tail = [len(h.open_cves), sum(1 for c in h.open_cves if c.kev)]
        if not h.updates:
            writer.writerow([*head, "", "", "", "", "", "", "", "", "", h.note, "", "", *tail])
        for u in h.updates:
            writer.writerow(
                [*head, u.package, u.installed or "", u.candidate, u.severity,
                 u.first_seen.isoformat(), u.age_days, u.deadline.isoformat(), u.status,
                 u.exception, h.note, " ".join(u.cves), u.clock, *tail]
            )  # fmt: skip
    return visible(out.getvalue())  # control characters shown escaped: a CSV gets cat too


def vulnerability_summary(report: ComplianceReport) -> str:
    """``5 open CVE(s), 1 known exploited (on 2 host(s))``, or why nothing can be said."""
    if not report.advisories:
        return "no advisories imported (patchkit advisories import): open CVEs unknown"
    return (
        f"{report.open_cves} open CVE(s), {report.known_exploited} known exploited "
        f"(on {report.kev_hosts} host(s))"
    )


def open_cves_text(host: HostCompliance, limit: int = 5) -> str:
    """``2 (1 KEV): CVE-a KEV fix pending, CVE-b no fix yet``; ``-`` for none."""
    if not host.open_cves:
        return "-"
    kev = sum(1 for c in host.open_cves if c.kev)
    shown_cves = [f"{c.cve}{' KEV' if c.kev else ''} {c.exposure}" for c in host.open_cves[:limit]]
    more = len(host.open_cves) - limit
    tail = f", and {more} more" if more > 0 else ""
    return f"{len(host.open_cves)} ({kev} KEV): " + ", ".join(shown_cves) + tail


def _update_line(u: Outstanding) -> str:
    fixes = f", fixes {' '.join(u.cves)}" if u.cves else ""
    since = ", clock from the advisory" if u.clock == "advisory" else ""
    due = f"due {u.deadline:%Y-%m-%d}{since}"
    return f"{u.package} {u.candidate} ({u.severity}, {u.status}, {due}{fixes})"


def _counts(counts: Mapping[str, int]) -> str:
    return ", ".join(f"{counts[s]} {s}" for s in STATUSES if counts.get(s))


def to_markdown(report: ComplianceReport) -> str:
    lines = [
        f"# Patch compliance: policy {md(report.policy)}",
        "",
        f"- at: {report.at:%Y-%m-%d %H:%M %Z}",
        "- deadlines (days): "
        + ", ".join(f"{s} {d}" for s, d in report.deadlines.items())
        + f"; due soon: {report.due_soon_days} days before",
        f"- hosts: {md(_counts(report.counts)) or 'none'}",
        f"- vulnerabilities: {vulnerability_summary(report)}",
        f"- deadlines run from: {_clock_words(report.clock)}",
        "",
        "## Hosts",
        "",
    ]
    lines += md_table(
        ["host", "status", "tier", "env", "outstanding", "open CVEs", "note"],
        [
            [h.host, h.status, h.tier, h.env, "; ".join(_update_line(u) for u in h.updates),
             open_cves_text(h), h.note]
            for h in report.hosts
        ],
    )  # fmt: skip
    lines += ["", "## Totals", ""]
    lines += md_table(
        ["by", "name", "hosts", "statuses"],
        [[t.by, t.name, t.hosts, _counts(t.statuses)] for t in report.totals],
    )
    lines += ["", "## Exceptions", ""]
    lines += md_table(
        ["hosts", "packages", "owner", "expires", "reason"],
        [
            [", ".join(e.hosts) or "any", ", ".join(e.packages) or "all", e.owner,
             e.expires + (" (EXPIRED)" if e.expired else ""), e.reason]
            for e in report.exceptions
        ],
    )  # fmt: skip
    lines += ["", "## Time to patch", ""]
    lines += md_table(
        ["severity", "updates", "mean days", "within deadline"],
        [[t.severity, t.updates, t.mean_days, t.within_deadline] for t in report.time_to_patch],
    )
    lines += ["", "## Windows", ""]
    lines += md_table(
        ["month", "runs", "completed", "success rate"],
        [[w.period, w.runs, w.completed, f"{w.success_rate:.0%}"] for w in report.windows],
    )
    return "\n".join(lines) + "\n"


def _clock_words(clock: str) -> str:
    if clock == "advisory":
        return "the advisory's publication date (first seen where none is known)"
    return "the first assessment that saw the update"


def to_text(report: ComplianceReport) -> Group:
    head = shown(
        f"compliance of policy {report.policy} at {report.at:%Y-%m-%d %H:%M %Z}: "
        f"{_counts(report.counts) or 'no hosts'}; {vulnerability_summary(report)}; "
        f"deadlines from {_clock_words(report.clock)}"
    )
    hosts = FittedTable("hosts (worst first)")
    hosts.add_column("host", Fit.WHOLE)
    hosts.add_column("status", Fit.WHOLE)
    for column in ("tier", "env", "outstanding updates", "open CVEs"):
        hosts.add_column(column, Fit.WORDS)
    hosts.add_column("note", Fit.FREE)
    for h in report.hosts:
        updates = "\n".join(
            f"{u.package} {u.candidate} {u.severity}: {u.status}, due {u.deadline:%Y-%m-%d}"
            + (" (clock from the advisory)" if u.clock == "advisory" else "")
            + (f"; fixes {' '.join(u.cves)}" if u.cves else "")
            for u in h.updates
        )
        hosts.add_row(
            shown(h.host), Text(h.status, style=COLOURS.get(h.status, "")), shown(h.tier),
            shown(h.env), shown(updates), shown(open_cves_text(h)), shown(h.note),
        )  # fmt: skip
    totals = FittedTable("totals")
    totals.add_column("by", Fit.WHOLE)
    totals.add_column("name", Fit.WORDS)
    totals.add_column("hosts", Fit.WHOLE)
    totals.add_column("statuses", Fit.WORDS)
    for t in report.totals:
        totals.add_row(t.by, shown(t.name), str(t.hosts), _counts(t.statuses))
    excs = FittedTable("exceptions")
    for column in ("hosts", "packages", "owner", "expires"):
        excs.add_column(column, Fit.WORDS)
    excs.add_column("reason", Fit.FREE)
    for e in report.exceptions:
        excs.add_row(
            shown(", ".join(e.hosts) or "any"), shown(", ".join(e.packages) or "all"),
            shown(e.owner), Text(e.expires + (" EXPIRED" if e.expired else ""),
                               style="red" if e.expired else ""), shown(e.reason),
        )  # fmt: skip
    ttp = FittedTable("time to patch")
    for column in ("severity", "updates", "mean days", "within deadline"):
        ttp.add_column(column, Fit.WHOLE)
    for x in report.time_to_patch:
        ttp.add_row(x.severity, str(x.updates), f"{x.mean_days:.2f}", str(x.within_deadline))
    windows = FittedTable("windows")
    for column in ("month", "runs", "completed", "success rate"):
        windows.add_column(column, Fit.WHOLE)
    for w in report.windows:
        windows.add_row(w.period, str(w.runs), str(w.completed), f"{w.success_rate:.0%}")
    return Group(head, hosts, totals, excs, ttp, windows)


def severity_chart(report: ComplianceReport) -> charts.BarChart:
    rows = [(s, report.by_severity.get(s, {})) for s in report.deadlines]
    order = ("compliant", "due soon", "overdue", "excepted")
    return charts.stacked_bars("Outstanding updates by severity and status", rows, order)


def to_html(report: ComplianceReport) -> str:
    """One self-contained page: tables, and inline SVG charts (by severity, latency, windows)."""
    latency = charts.line(
        "Mean days from known to installed, per run", list(report.latency), unit=" d"
    )
    success = charts.line(
        "Windows completed, per month (%)",
        [(w.period, round(100 * w.success_rate, 1)) for w in report.windows],
        unit="%",
    )
    template = template_environment().get_template("compliance.html.j2")
    return template.render(
        report=report,
        severity=severity_chart(report),
        latency=latency,
        success=success,
        statuses=STATUSES,
    )
