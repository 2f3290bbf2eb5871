"""The CVE audit: for each CVE asked about, the state of every host the policy governs.

"Are we exposed to CVE-X?" answered from the newest assessment of each host (its installed
software and pending updates) and the imported advisories; for a host with the fix pending, the
window that will install it. Pure: built from the policy, the inventory's hosts, the findings
and the advisories at a given time; rendering below (text, JSON, CSV, HTML).
"""

from __future__ import annotations

import csv
import enum
import io
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from rich.console import Group
from rich.text import Text

from patchkit.advisories.fleet import FleetMatcher
from patchkit.advisories.knowledge import Knowledge
from patchkit.advisories.matching import Exposure, HostMatch
from patchkit.model import Finding, Host, PendingUpdate
from patchkit.planning import priority as prio
from patchkit.planning import scope as scoping
from patchkit.planning.priority import Matcher
from patchkit.planning.windows import next_occurrence
from patchkit.policy.model import Policy
from patchkit.reports import jsondoc
from patchkit.reports.plan import template_environment
from patchkit.reports.terminal import Fit, FittedTable, shown, visible

FORMAT = "patchkit-cve-audit/1"
STALE = timedelta(days=7)  # as the plan: an assessment older than this is not trusted


class AuditState(enum.StrEnum):
    """A host's state for one CVE, worst first."""

    FIX_PENDING = "affected: fix pending"
    NO_FIX_HERE = "affected: no fix here"
    NO_FIX_YET = "affected: no fix yet"
    UNKNOWN = "unknown"
    NOT_AFFECTED = "not affected"

    @property
    def affected(self) -> bool:
        return self.value.startswith("affected")


_FROM_EXPOSURE = {
    Exposure.FIX_PENDING: AuditState.FIX_PENDING,
    Exposure.NO_FIX_HERE: AuditState.NO_FIX_HERE,
    Exposure.NO_FIX_YET: AuditState.NO_FIX_YET,
    Exposure.NOT_AFFECTED: AuditState.NOT_AFFECTED,
}
ORDER = (
    AuditState.FIX_PENDING,
    AuditState.NO_FIX_HERE,
    AuditState.NO_FIX_YET,
    AuditState.UNKNOWN,
    AuditState.NOT_AFFECTED,
)
_ORDER_RANK = {state: i for i, state in enumerate(ORDER)}


@dataclass(frozen=True)
class HostAudit:
    host: str
    state: AuditState
    detail: str  # the package and versions, or why the state is unknown
    source: str | None = None  # the affected source package
    installed: str | None = None  # its installed source version
    fixed_version: str | None = None
    updates: tuple[str, ...] = ()  # pending updates that bring the fix
    window: str | None = None  # the window that serves the host
    window_start: datetime | None = None  # its next opening
    assessed_at: datetime | None = None


@dataclass(frozen=True)
class CveAudit:
    cve: str
    known: bool  # some imported tracker or OSV feed names it
    cvss: float | None
    kev: bool
    kev_due: str | None  # CISA's due date for federal agencies, when in KEV
    epss: float | None
    description: str
    hosts: tuple[HostAudit, ...]  # worst first, then by name
    totals: Mapping[str, int]  # state -> hosts


@dataclass(frozen=True)
class AuditReport:
    policy: str
    at: datetime
    feeds: tuple[str, ...]  # "kind source (date)" of each feed used
    cves: tuple[CveAudit, ...]

    @property
    def affected(self) -> int:
        """Hosts affected by any of the CVEs."""
        return len({h.host for c in self.cves for h in c.hosts if h.state.affected})

    @property
    def unknown(self) -> int:
        return len({h.host for c in self.cves for h in c.hosts if h.state is AuditState.UNKNOWN})


def governed(
    policy: Policy, hosts: Sequence[Host], at: datetime, match: Matcher | None = None
) -> list[Host]:
    """The hosts the policy governs: in scope, or out of it only by a whole-host exception.

    ``match``: ``scoping.matcher(hosts)``, when the caller has it already."""
    match = match or scoping.matcher(hosts)
    live = scoping.live_exceptions(policy, at.date())
    return [
        e.host
        for e in scoping.resolve(hosts, policy, at.date(), match)
        if e.in_scope or scoping.host_exception(e.host, live, match) is not None
    ]


def _windows(
    policy: Policy, at: datetime, match: Matcher
) -> dict[str, tuple[str, datetime | None]]:
    """Host → (the first window serving it, its next opening)."""
    out: dict[str, tuple[str, datetime | None]] = {}
    for window in policy.windows:
        served = match(window.hosts)
        if not served - out.keys():
            continue
        occurrence = next_occurrence(window, at)
        for name in served:
            out.setdefault(name, (window.name, occurrence.start if occurrence else None))
    return out


def kev_touching(
    findings: Iterable[Finding], knowledge: Knowledge, matcher: FleetMatcher | None = None
) -> tuple[str, ...]:
    """The KEV CVEs that affect at least one of these hosts, newest added first."""
    if knowledge.kev is None:
        return ()
    matcher = matcher or FleetMatcher(knowledge)
    seen: set[int] = set()
    hit: set[str] = set()
    for finding in findings:
        if not finding.reachable:
            continue
        matched = matcher.match(finding)
        if matched is None or id(matched) in seen:
            continue
        seen.add(id(matched))
        hit.update(
            v.vulnerability for v in matched.vulnerable if knowledge.kev.entry(v.vulnerability)
        )
    entries = [e for e in knowledge.kev.entries if e.cve in hit]
    entries.sort(key=lambda e: (-e.date_added.toordinal(), e.cve))
    return tuple(e.cve for e in entries)


def unjudged(
    hosts: Sequence[Host], findings: Mapping[str, Finding], matcher: FleetMatcher, at: datetime
) -> dict[str, str]:
    """Governed hosts whose exposure cannot be told at all, and why (host → reason)."""
    out = {}
    for host in hosts:
        finding = findings.get(host.name)
        reason = _unknown_why(finding, matcher.active, _match(matcher, finding), at)
        if reason is not None:
            out[host.name] = reason
    return out


def _match(matcher: FleetMatcher, finding: Finding | None) -> HostMatch | None:
    return matcher.match(finding) if finding is not None else None


def _unknown_why(
    finding: Finding | None, active: bool, matched: HostMatch | None, at: datetime
) -> str | None:
    """Why nothing can be said of this host's CVEs; None when its exposure can be judged.

    ``active``: whether the matcher has feeds; ``matched``: what it found of the host."""
    if finding is None:
        return "never assessed: run patchkit assess"
    when = finding.assessed_at
    if not finding.reachable:
        return f"unreachable when last assessed ({when:%Y-%m-%d %H:%M})"
    if at - when > STALE:
        return f"last assessed {when:%Y-%m-%d}, more than {STALE.days} days ago: assess again"
    if finding.software is None:
        return "assessed without its software inventory: assess again with this patchkit"
    if not active:
        return "no tracker or OSV advisories imported: patchkit advisories import FILE"
    if matched is not None and not matched.covered:
        release = " ".join(
            x for x in (finding.distribution, finding.release, finding.release_version) if x
        )
        return f"no imported feed covers its release ({release or 'release unknown'})"
    return None


class _Rules:
    """What decides whether a pending fix is planned: the policy, its live exceptions, when.

    A fleet's hosts repeat a few hundred pending updates (the same objects: the ledger interns
    them); what the policy says of each, and which exceptions name its package, is worked out
    once for them all.
    """

    def __init__(self, policy: Policy, hosts: Sequence[Host], match: Matcher, at: datetime) -> None:
        self.policy = policy
        self.live = scoping.live_exceptions(policy, at.date())
        self.match = match
        self.at = at
        self.by_name = {h.name: h for h in hosts}
        self._reasons: dict[int, tuple[PendingUpdate, str | None]] = {}
        self.exceptions = prio.PackageExceptions(self.live, match)

    def reason(self, update: PendingUpdate) -> str | None:
        """Why the policy's classification keeps ``update`` out on any host, or None."""
        known = self._reasons.get(id(update))
        if known is not None and known[0] is update:
            return known[1]
        security = prio.is_security(update, self.policy)
        first = update.first_seen or self.at
        reason = prio.hold_reason(update, security, first, self.at, self.policy)
        self._reasons[id(update)] = (update, reason)
        return reason


def build(
    policy: Policy,
    hosts: Sequence[Host],
    findings: Mapping[str, Finding],
    knowledge: Knowledge,
    cves: Sequence[str],
    at: datetime,
    installed: Sequence[Mapping[str, Any]] = (),
    fleet: Sequence[Host] | None = None,
) -> AuditReport:
    """The state of every governed host for each of ``cves`` (ids as given, upper-cased).

    ``installed`` (``Ledger.installed_updates()``): a fix a run installed after the host's
    newest assessment counts as installed, as in the compliance report. A pending fix the
    policy holds back (deny, allow, minimum_age, security-only, an exception) is named as held,
    with no window. ``fleet``: ``governed(policy, hosts, at)``, when the caller has it.
    """
    wanted = tuple(dict.fromkeys(c.upper() for c in cves))
    match = scoping.matcher(hosts)
    fleet = governed(policy, hosts, at, match) if fleet is None else fleet
    patched = {(r["host"], r["package"], r["version"]): r["installed_at"] for r in installed}
    windows = _windows(policy, at, match)
    matcher = FleetMatcher(knowledge, only=wanted)  # the others are not asked about
    rules = _Rules(policy, hosts, match, at)
    judged = []  # (host, its finding, what matched it, why it cannot be judged)
    for host in fleet:
        finding = findings.get(host.name)
        matched = _match(matcher, finding)
        judged.append((host, finding, matched, _unknown_why(finding, matcher.active, matched, at)))
    fixed: frozenset[str] | None = None  # what the fixes name, gathered when first needed
    audits = []
    for cve in wanted:
        # advisories are read whole (fixes only for the fleet's releases): a CVE no feed has a
        # record of cannot be judged on any host
        known = any(feed.advisories_for(cve) for feed in knowledge.feeds)
        if not known:
            if fixed is None:
                fixed = frozenset(x.vulnerability for f in knowledge.feeds for x in f.fixes)
            known = cve in fixed
        rows = []
        for host, finding, matched, why in judged:
            when = finding.assessed_at if finding is not None else None
            if finding is None or matched is None or why is not None:
                why = why or "never assessed: run patchkit assess"
                rows.append(HostAudit(host.name, AuditState.UNKNOWN, why, assessed_at=when))
            elif not known:
                why = f"no imported feed names {cve}"
                rows.append(HostAudit(host.name, AuditState.UNKNOWN, why, assessed_at=when))
            else:
                rows.append(_host(host.name, cve, finding, matched, windows, patched, rules))
        rows.sort(key=lambda r: (_ORDER_RANK[r.state], r.host))
        facts = knowledge.facts(cve)
        counts = Counter(r.state for r in rows)
        audits.append(
            CveAudit(
                cve=cve,
                known=known,
                cvss=facts.cvss.base_score if facts.cvss else None,
                kev=facts.known_exploited,
                kev_due=facts.kev.due_date.isoformat() if facts.kev else None,
                epss=facts.epss.epss if facts.epss else None,
                description=facts.description,
                hosts=tuple(rows),
                totals={s.value: counts.get(s, 0) for s in ORDER},
            )
        )
    feeds = tuple(f"{f.kind.value} {f.source} ({f.date:%Y-%m-%d})" for f in knowledge.sources())
    return AuditReport(policy.name, at, feeds, tuple(audits))


_EXPOSURE_RANK = tuple(Exposure)  # worst first: no fix yet is worse than a fix pending


def _host(
    name: str,
    cve: str,
    finding: Finding,
    matched: HostMatch,
    windows: Mapping[str, tuple[str, datetime | None]],
    patched: Mapping[tuple[str, str, str], datetime],
    rules: _Rules,
) -> HostAudit:
    when = finding.assessed_at
    if cve in matched.unjudged:
        return HostAudit(name, AuditState.UNKNOWN, matched.unjudged[cve], assessed_at=when)
    candidates = {u.package.split(":", 1)[0]: u for u in finding.updates}

    def installed_since(package: str) -> datetime | None:
        update = candidates.get(package)
        done = patched.get((name, package, update.candidate)) if update is not None else None
        return done if done is not None and done >= when else None

    hits = matched.affecting(cve)
    # a fix pending that a run installed since counts as installed, source by source: a CVE
    # also in another source package stays as that one stands
    open_hits = [
        v for v in hits
        if not (v.exposure is Exposure.FIX_PENDING and any(installed_since(p) for p in v.updates))
    ]  # fmt: skip
    if not open_hits:
        if not hits:
            return HostAudit(name, AuditState.NOT_AFFECTED, "", assessed_at=when)
        done = hits[0]
        package = next(p for p in done.updates if installed_since(p))
        at = installed_since(package)
        detail = (
            f"{done.source} {done.installed}, fixed in {done.fixed_version}; {package} "
            f"{candidates[package].candidate} installed by a run at {at:%Y-%m-%d %H:%M %Z}, "
            "after the last assessment (assess again to confirm)"
        )
        return HostAudit(
            name, AuditState.NOT_AFFECTED, detail, done.source, done.installed,
            done.fixed_version, done.updates, assessed_at=when,
        )  # fmt: skip
    worst = min(open_hits, key=lambda v: _EXPOSURE_RANK.index(v.exposure))
    state = _FROM_EXPOSURE[worst.exposure]
    detail = f"{worst.source} {worst.installed}"
    if worst.fixed_version:
        detail += f", fixed in {worst.fixed_version}"
    others = sorted({v.source for v in open_hits} - {worst.source})
    if others:
        detail += f" (also in {', '.join(others)})"
    if state is not AuditState.FIX_PENDING:
        return HostAudit(
            name, state, detail, worst.source, worst.installed, worst.fixed_version,
            assessed_at=when,
        )  # fmt: skip
    detail += f" by {', '.join(worst.updates)}"
    held = _held(rules, name, [candidates[p] for p in worst.updates if p in candidates])
    window, start = windows.get(name, (None, None))
    if held is not None:
        detail += f"; held by the policy: {held}"
        window, start = None, None
    elif window is None:
        detail += "; no window serves this host"
    elif start is None:
        detail += f"; window {window} has no opening within a year"
    elif start <= rules.at:
        detail += f"; window {window}, open now"
    else:
        detail += f"; window {window}, opens {start:%Y-%m-%d %H:%M %Z}"
    return HostAudit(
        name, state, detail, worst.source, worst.installed, worst.fixed_version, worst.updates,
        window, start, when,
    )  # fmt: skip


def _held(rules: _Rules, name: str, updates: Sequence[PendingUpdate]) -> str | None:
    """Why the plan would hold every one of these fixing updates back; None if one goes in."""
    host = rules.by_name.get(name)
    if host is None or not updates:
        return None
    whole = scoping.host_exception(host, rules.live, rules.match)
    if whole is not None:
        return scoping.describe_exception(whole)
    reasons = []
    for update in updates:
        reason = rules.reason(update)
        if reason is None:
            exc = rules.exceptions.holding(host, update.package)
            reason = scoping.describe_exception(exc) if exc is not None else None
        if reason is None:
            return None
        reasons.append(reason)
    return "; ".join(dict.fromkeys(reasons))


# ---------------------------------------------------------------- renderers


def _facts_line(c: CveAudit) -> str:
    parts = [f"CVSS {c.cvss:.1f}" if c.cvss is not None else "no CVSS"]
    parts.append(f"known exploited (KEV, due {c.kev_due})" if c.kev else "not in KEV")
    if c.epss is not None:
        parts.append(f"EPSS {c.epss:.2f}")
    if not c.known:
        parts.append("named by no imported tracker or OSV feed: its hosts cannot be judged")
    return ", ".join(parts)


def _totals_line(c: CveAudit) -> str:
    return ", ".join(f"{n} {s}" for s, n in c.totals.items() if n) or "no hosts"


def to_text(report: AuditReport) -> Group:
    parts: list[Text | FittedTable] = [
        shown(
            f"CVE audit under policy {report.policy} at {report.at:%Y-%m-%d %H:%M %Z}; "
            f"feeds: {'; '.join(report.feeds) or 'none imported'}"
        )
    ]
    for c in report.cves:
        parts.append(Text(f"\n{c.cve}: {_facts_line(c)}", style="bold red" if c.kev else "bold"))
        if c.description:
            parts.append(shown(c.description[:300]))
        parts.append(shown(f"hosts: {_totals_line(c)}"))
        listed = [h for h in c.hosts if h.state is not AuditState.NOT_AFFECTED]
        if not listed:
            continue
        fine = len(c.hosts) - len(listed)
        tail = f"; {fine} not affected, counted above (json and csv list them)" if fine else ""
        table = FittedTable(f"{c.cve}: hosts affected or unknown{tail}")
        table.add_column("host", Fit.WHOLE)
        table.add_column("state", Fit.WORDS)
        table.add_column("detail", Fit.FREE)
        for h in listed:
            style = (
                "red" if h.state.affected else "magenta" if h.state is AuditState.UNKNOWN else ""
            )
            table.add_row(shown(h.host), Text(h.state.value, style=style), shown(h.detail or "-"))
        parts.append(table)
    return Group(*parts)


def to_json(report: AuditReport) -> str:
    return jsondoc.dumps({"format": FORMAT, **jsondoc.fields(report), "affected": report.affected})


def to_csv(report: AuditReport) -> str:
    """One row per CVE and host."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(
        ["cve", "cvss", "kev", "epss", "host", "state", "source", "installed", "fixed_version",
         "updates", "window", "window_start", "assessed_at", "detail"]
    )  # fmt: skip
    for c in report.cves:
        for h in c.hosts:
            writer.writerow(
                [c.cve, "" if c.cvss is None else c.cvss, "yes" if c.kev else "no",
                 "" if c.epss is None else c.epss, h.host, h.state.value, h.source or "",
                 h.installed or "", h.fixed_version or "", " ".join(h.updates), h.window or "",
                 h.window_start.isoformat() if h.window_start else "",
                 h.assessed_at.isoformat() if h.assessed_at else "", h.detail]
            )  # fmt: skip
    return visible(out.getvalue())


def to_html(report: AuditReport) -> str:
    template = template_environment().get_template("audit.html.j2")
    return template.render(report=report, facts_line=_facts_line, totals_line=_totals_line)
