"""Make the plan: scope → window → exceptions → selection → priority → batches → timing.

Pure: the policy, hosts, findings and the time ``at`` come in as arguments; nothing is read
from disk, the network or the clock. The same inputs give the same plan, byte for byte, and
the same hash.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any

from patchkit.advisories.fleet import FleetMatcher
from patchkit.advisories.knowledge import URGENCY_ORDER, CveFacts, Knowledge
from patchkit.advisories.types import Urgency
from patchkit.errors import PlanningError
from patchkit.model import Finding, Host, PendingUpdate, Severity
from patchkit.planning import batches as batching
from patchkit.planning import codec, quorum
from patchkit.planning import priority as prio
from patchkit.planning import scope as scoping
from patchkit.planning.codec import jsonable
from patchkit.planning.history import POLICY_BASIS, History, environment_of, promotion_verdict
from patchkit.planning.history import host_estimate as history_estimate
from patchkit.planning.severity import Rating, rate
from patchkit.planning.types import (
    ApprovalRules,
    CveRef,
    ExceptionUse,
    FreezeSpan,
    HeldUpdate,
    HostPlan,
    NodeGroup,
    Phases,
    Plan,
    RunRules,
    SelectedUpdate,
    Settings,
    SkipKind,
    SkippedHost,
    WindowSlot,
)
from patchkit.planning.windows import Occurrence, next_occurrence
from patchkit.policy.model import Policy, SeverityRule, Window
from patchkit.policy.values import format_duration

STALE_FINDINGS = timedelta(days=7)
Urgencies = Mapping[str, "Urgency | None"]  # CVE → its urgency on one host


def _worse(one: Urgency, other: Urgency) -> bool:
    return URGENCY_ORDER.index(one) < URGENCY_ORDER.index(other)


def make_plan(
    policy: Policy,
    hosts: Sequence[Host],
    findings: Mapping[str, Finding],
    at: datetime,
    window: str | None = None,
    history: History | None = None,
    allowed_signers: str = "",
    knowledge: Knowledge | None = None,
) -> Plan:
    """The plan for the next occurrence of ``window`` (default: the earliest window with work).

    ``history`` (what the ledger remembers) holds back updates not yet promoted from the
    environment before (policy ``promotion``) and gives estimates from past durations.
    ``allowed_signers`` is the content of the policy's allowed_signers file (roles.signatures),
    which the plan carries so that the signers approved with it are the ones checked at run.
    ``knowledge`` (the imported advisories) names the CVEs each update fixes on its host, which
    the policy's severity rules may rate it by.
    """
    if at.tzinfo is None:
        raise PlanningError("the plan time must carry a timezone")
    history = history or History()
    hosts = sorted(hosts, key=lambda h: h.name)
    match = scoping.matcher(hosts)
    context = _Context(policy, hosts, history, at, match, knowledge or Knowledge())
    entries = scoping.resolve(hosts, policy, at.date(), match)
    in_scope = [e.host for e in entries if e.in_scope]
    unrated = [  # in-scope hosts the CVE rules cannot see into
        h.name for h in in_scope if (f := findings.get(h.name)) is not None and f.reachable
        and f.software is None
    ]  # fmt: skip
    chosen, occurrence = _pick_window(policy, in_scope, at, window, match)
    served = match(chosen.hosts)
    live = scoping.live_exceptions(policy, at.date())

    skipped = [SkippedHost(e.host.name, e.kind, e.reason) for e in entries if e.kind is not None]
    applied: dict[int, list[str]] = {}
    for e in entries:
        if e.kind is SkipKind.EXCEPTION:
            exc = scoping.host_exception(e.host, live, match)
            if exc is not None:
                applied.setdefault(id(exc), []).append(e.host.name)

    candidates: list[HostPlan] = []
    for host in in_scope:
        if host.name not in served:
            others = [w.name for w in policy.windows if host.name in match(w.hosts)]
            where = f"served by {', '.join(others)}" if others else "served by no window"
            skipped.append(SkippedHost(host.name, SkipKind.OTHER_WINDOW, where))
            continue
        finding = findings.get(host.name)
        if finding is None:
            skipped.append(
                SkippedHost(host.name, SkipKind.NOT_ASSESSED, "never assessed: run patchkit assess")
            )
            continue
        if not finding.reachable:
            reason = f"unreachable when assessed {finding.assessed_at:%Y-%m-%d %H:%M}"
            reason += f": {finding.message}" if finding.message else ""
            skipped.append(SkippedHost(host.name, SkipKind.UNREACHABLE, reason))
            continue
        planned = _host_plan(host, finding, context, live, applied)
        if planned.updates:
            candidates.append(planned)
        else:
            what = f"all {len(planned.held)} pending updates held" if planned.held else "up to date"
            skipped.append(SkippedHost(host.name, SkipKind.NOTHING_TO_DO, what, planned.held))

    _check_placement(policy, candidates)
    rollout = policy.rollout
    anti = rollout.anti_affinity
    # max_unavailable: a cluster with as many members down as it allows gets none patched
    wanted = {h.cluster for h in candidates if h.cluster is not None}
    clusters = quorum.cluster_states(hosts, findings, anti, wanted) if anti else {}
    candidates, blocked = quorum.hold_back(candidates, clusters)
    skipped += blocked

    ordered = _order(candidates, policy)
    size = rollout.batch_size.of(len(ordered))
    canary_size = rollout.canary.size.of(len(ordered)) if rollout.canary and ordered else 0
    pool = match(rollout.canary.hosts) if rollout.canary else frozenset()
    canary, rest = batching.cut(
        ordered,
        size=size,
        max_per_cluster=anti.max_per_batch if anti else None,
        canary_size=canary_size,
        canary_pool=pool,
        cluster_caps=quorum.batch_caps(clusters),
    )
    groups = ([(True, canary)] if canary else []) + [(False, b) for b in rest]
    scheduled = batching.schedule(
        groups,
        start=max(occurrence.start.astimezone(UTC), at.astimezone(UTC)).astimezone(
            occurrence.start.tzinfo
        ),
        cutoff=occurrence.cutoff,
        concurrency=rollout.concurrency.of(size),
        end=occurrence.end,
    )
    warnings = _warnings(policy, scheduled, occurrence, ordered, canary_size, canary, at)
    warnings += _advisory_warnings(policy, knowledge, at, unrated)
    plan = Plan(
        id="",
        hash="",
        policy=policy.name,
        made_at=at,
        inputs=input_hashes(policy, hosts, findings, history, context.knowledge),
        window=WindowSlot(
            name=chosen.name,
            timezone=chosen.timezone,
            start=occurrence.start,
            end=occurrence.end,
            cutoff=occurrence.cutoff,
            frozen=tuple(f"{s.start:%Y-%m-%d %H:%M}: {s.reason}" for s in occurrence.skipped),
            freezes=tuple(FreezeSpan(f.start, f.end, f.reason) for f in chosen.freeze),
        ),
        settings=_settings(policy, allowed_signers),
        batches=scheduled,
        skipped=tuple(sorted(skipped, key=lambda s: (list(SkipKind).index(s.kind), s.host))),
        exceptions=_exception_uses(policy, at.date(), applied),
        warnings=warnings,
        clusters=tuple(clusters.values()),
        owner=policy.roles.owner,
        description=policy.description,
    )
    digest = content_hash(plan)
    return dataclasses.replace(plan, id=codec.plan_id(digest), hash=digest)


# ---------------------------------------------------------------- steps


def _pick_window(
    policy: Policy,
    in_scope: Sequence[Host],
    at: datetime,
    name: str | None,
    match: prio.Matcher,
) -> tuple[Window, Occurrence]:
    if name is not None:
        try:
            chosen = policy.window(name)
        except KeyError:
            known = ", ".join(w.name for w in policy.windows)
            raise PlanningError(
                f"policy {policy.name} has no window {name!r}", hint=f"windows: {known}"
            ) from None
        occurrence = next_occurrence(chosen, at)
        if occurrence is None:
            raise PlanningError(
                f"window {name} has no occurrence after {at:%Y-%m-%d %H:%M %Z}",
                hint="check its recurrence and freeze dates",
            )
        return chosen, occurrence
    names = {h.name for h in in_scope}
    options: list[tuple[datetime, str, Window, Occurrence]] = []
    for candidate in policy.windows:
        if not names & match(candidate.hosts):
            continue
        occurrence = next_occurrence(candidate, at)
        if occurrence is not None:
            options.append(
                (occurrence.start.astimezone(UTC), candidate.name, candidate, occurrence)
            )
    if not options:
        raise PlanningError(
            "no window serves any in-scope host in the coming year",
            hint="check the policy's scope, window hosts and freeze dates",
        )
    _, _, chosen, occurrence = min(options, key=lambda o: (o[0], o[1]))
    return chosen, occurrence


class _Context:
    """What every host's plan needs besides its own finding: policy, time, history, and the
    inventory seen through them (environments, tiers), worked out once."""

    def __init__(
        self,
        policy: Policy,
        hosts: Sequence[Host],
        history: History,
        at: datetime,
        match: prio.Matcher,
        knowledge: Knowledge,
    ) -> None:
        self.policy, self.history, self.at, self.match = policy, history, at, match
        self.knowledge = knowledge
        self.matcher = FleetMatcher(knowledge)  # once per host image, not once per host
        self._refs: dict[tuple[str, Urgency | None], tuple[CveFacts, CveRef]] = {}
        promotion = policy.promotion
        self.envs = {h.name: environment_of(h, promotion) if promotion else None for h in hosts}
        self.tiers = {h.name: prio.criticality_of(h, policy, match)[1] for h in hosts}
        self.by_tier: dict[str, list[str]] = {}
        for name, label in self.tiers.items():
            self.by_tier.setdefault(label, []).append(name)
        self._estimates: dict[tuple[str, bool], tuple[timedelta, str] | None] = {}
        # per image match (FleetMatcher keeps each alive, so ids stay theirs), per distinct
        # pending update, per (update, environment): the hosts of an image share all three
        self._fixes: dict[int, tuple[Mapping[str, tuple[str, ...]], Urgencies]] = {}
        self._judged: dict[_UpdateKey, _Judged] = {}
        self._promoted: dict[tuple[int, str | None], tuple[str | None, str | None]] = {}

    def fixes(self, finding: Finding) -> tuple[Mapping[str, tuple[str, ...]], Urgencies]:
        """Pending package → the CVEs its update fixes on this host, and each CVE's urgency
        for this host's release and package (empty without data)."""
        found = self.matcher.match(finding)
        if found is None:
            return {}, {}
        known = self._fixes.get(id(found))
        if known is not None:
            return known
        urgencies: dict[str, Urgency | None] = {}
        for v in found.vulnerable:
            have = urgencies.get(v.vulnerability)
            if v.urgency is not None and (have is None or _worse(v.urgency, have)):
                urgencies[v.vulnerability] = v.urgency
        known = self._fixes[id(found)] = (found.fixes_by_update, urgencies)
        return known

    def judge(
        self,
        update: PendingUpdate,
        first_seen: datetime,
        fixed: Sequence[str],
        urgencies: Urgencies,
    ) -> _Judged:
        """What the policy makes of ``update`` wherever it is pending with these CVEs: security,
        rating, the classification's hold; worked out once per distinct update."""
        key = (
            update.package, update.installed, update.candidate, update.origin, first_seen,
            tuple(fixed), tuple(urgencies.get(cve) for cve in fixed),
        )  # fmt: skip
        judged = self._judged.get(key)
        if judged is None:
            policy = self.policy
            security = prio.is_security(update, policy)
            facts, refs = self.cves(fixed, urgencies)
            rating = rate(update, security, policy, facts)
            judged = self._judged[key] = _Judged(
                security=security,
                rating=rating,
                rated_by=rating.why(policy),
                refs=refs,
                hold=prio.hold_reason(update, security, first_seen, self.at, policy),
                reboot=prio.reboot_needed(update.package, policy),
            )
        return judged

    def promotion(
        self, update: PendingUpdate, judged: _Judged, host: str
    ) -> tuple[str | None, str | None]:
        """``promotion_verdict`` for ``update`` on ``host``: it depends on the host only through
        its environment, so it is worked out once per (update, environment)."""
        env = self.envs.get(host)
        key = (id(judged), env)
        found = self._promoted.get(key)
        if found is None:
            found = self._promoted[key] = promotion_verdict(
                update.package, update.candidate, judged.rating.severity, env, self.envs,
                self.history, self.policy.promotion, self.at,
            )  # fmt: skip
        return found

    def cves(
        self, ids: Sequence[str], urgencies: Urgencies
    ) -> tuple[list[CveFacts], tuple[CveRef, ...]]:
        """The facts of ``ids`` (for the rules) and their plan form, known-exploited first.

        A CVE's urgency is the one the feed gives for this host's release and package, not the
        worst over every release: the tracker often rates one release's issue unimportant.
        """
        pairs = [self._ref(cve, urgencies.get(cve)) for cve in ids]
        pairs.sort(key=lambda p: (not p[1].kev, -(p[1].cvss or -1.0), p[1].cve))
        return [p[0] for p in pairs], tuple(p[1] for p in pairs)

    def _ref(self, cve: str, urgency: Urgency | None) -> tuple[CveFacts, CveRef]:
        cached = self._refs.get((cve, urgency))
        if cached is None:
            facts = dataclasses.replace(self.knowledge.facts(cve), urgency=urgency)
            ref = CveRef(
                cve=cve,
                cvss=facts.cvss.base_score if facts.cvss else None,
                cvss_version=facts.cvss.version if facts.cvss else None,
                kev=facts.known_exploited,
                epss=facts.epss.epss if facts.epss else None,
                urgency=facts.urgency.value if facts.urgency else None,
            )
            cached = self._refs[(cve, urgency)] = (facts, ref)
        return cached

    def estimate(self, host: str, packages: int, reboot: bool) -> tuple[timedelta, str]:
        """From the history of the host's tier when there is enough, else the policy's."""
        key = (self.tiers[host], reboot)
        if key not in self._estimates:
            found = history_estimate(
                self.by_tier[key[0]], 0, reboot, self.history, self.policy.rollout.estimate
            )
            self._estimates[key] = found if found[1] != POLICY_BASIS else None
        cached = self._estimates[key]
        if cached is not None:
            return cached
        return batching.host_estimate(packages, reboot, self.policy.rollout.estimate), POLICY_BASIS


# What makes two pending updates the same to the policy: package, versions, origin, first
# seen, and the CVEs the update fixes with their urgencies on the host.
_UpdateKey = tuple[
    str, str | None, str, str, datetime, tuple[str, ...], tuple["Urgency | None", ...]
]


@dataclass(slots=True)
class _Judged:
    """One distinct pending update as the policy sees it, and the plan values made of it (one
    object for every host that plans it alike: a fleet repeats a few hundred updates)."""

    security: bool
    rating: Rating
    rated_by: str
    refs: tuple[CveRef, ...]
    hold: str | None  # the classification's reason to hold it back, if any
    reboot: bool
    _selected: dict[str | None, SelectedUpdate] = field(default_factory=dict)
    _held: dict[str, HeldUpdate] = field(default_factory=dict)

    def selected(
        self, update: PendingUpdate, first_seen: datetime, note: str | None
    ) -> SelectedUpdate:
        made = self._selected.get(note)
        if made is None:
            made = self._selected[note] = SelectedUpdate(
                package=update.package,
                installed=update.installed,
                candidate=update.candidate,
                origin=update.origin,
                security=self.security,
                severity=self.rating.severity,
                reboot=self.reboot,
                first_seen=first_seen,
                note=note,
                rated_by=self.rated_by,
                cves=self.refs,
            )
        return made

    def held(self, update: PendingUpdate, reason: str) -> HeldUpdate:
        made = self._held.get(reason)
        if made is None:
            made = self._held[reason] = HeldUpdate(
                update.package, update.candidate, reason, self.refs
            )
        return made


def _host_plan(
    host: Host,
    finding: Finding,
    ctx: _Context,
    live: Sequence[Any],
    applied: dict[int, list[str]],
) -> HostPlan:
    policy, match = ctx.policy, ctx.match
    selected: list[SelectedUpdate] = []
    held: list[HeldUpdate] = []
    fixes, urgencies = ctx.fixes(finding)
    for update in sorted(finding.updates, key=lambda u: u.package):
        first_seen = update.first_seen or finding.assessed_at
        fixed = fixes.get(update.package.split(":", 1)[0], ())
        judged = ctx.judge(update, first_seen, fixed, urgencies)
        reason = judged.hold
        if reason is None:
            exc = prio.package_exception(host, update.package, live, match)
            if exc is not None:
                reason = scoping.describe_exception(exc)
                applied.setdefault(id(exc), []).append(host.name)
        note = None
        if reason is None:
            reason, note = ctx.promotion(update, judged, host.name)
        if reason is not None:
            held.append(judged.held(update, reason))
        else:
            selected.append(judged.selected(update, first_seen, note))
    criticality, label = prio.criticality_of(host, policy, match)
    severity = max((u.severity for u in selected), key=lambda s: s.rank, default=Severity.LOW)
    reboot = bool(selected) and prio.expects_reboot(
        any(u.reboot for u in selected), finding, policy
    )
    # Any update may leave the reboot flag behind, predicted or not: a host whose downtime
    # needs approval needs it whenever the policy lets it reboot at all.
    approval = (
        bool(selected)
        and policy.downtime.reboot != "never"
        and host.name in match(policy.downtime.reboot_approval)
    )
    estimate, basis = ctx.estimate(host.name, len(selected), reboot)
    cluster_var = policy.rollout.anti_affinity.variable if policy.rollout.anti_affinity else None
    # the variable staged promotion reads (``env`` without promotion), as tier and cluster are
    env_var = policy.promotion.variable if policy.promotion else "env"
    checks = tuple(i for i, c in enumerate(policy.verification) if host.name in match(c.hosts))
    return HostPlan(
        host=host.name,
        env=_text(host.var(env_var)),
        tier=_text(host.var(policy.criticality.variable)),
        cluster=_text(host.var(cluster_var)) if cluster_var else None,
        criticality=criticality,
        criticality_label=label,
        severity=severity,
        priority=severity.rank * criticality if selected else 0,
        updates=tuple(selected),
        held=tuple(held),
        reboot=reboot,
        reboot_needs_approval=approval,
        reboot_pending=finding.reboot_pending,
        assessed_at=finding.assessed_at,
        estimate=estimate,
        contact=_contact(host, policy),
        estimate_basis=basis,
        checks=checks,
        node_group=node_group_of(host, policy, match),
    )


def node_group_of(host: Host, policy: Policy, match: prio.Matcher) -> str:
    """The execution node group that patches ``host`` ("": the controller): the one its
    variable (execution.variable) names, else the first whose host patterns select it."""
    execution = policy.execution
    named = host.var(execution.variable)
    if named is not None and str(named) != "":
        known = [g.name for g in execution.node_groups]
        if str(named) not in known:
            raise PlanningError(
                f"host {host.name}: {execution.variable} is {str(named)!r}, which names no node "
                f"group of policy {policy.name}",
                hint=f"node groups: {', '.join(known) or 'none'} (execution.node_groups); or "
                f"remove the variable to patch the host from the controller",
            )
        return str(named)
    for group in execution.node_groups:
        if group.hosts and host.name in match(group.hosts):
            return group.name
    return ""


def placements(hosts: Sequence[Host], policy: Policy) -> dict[str, str]:
    """Host name -> its node group, for the hosts of ``hosts`` that run on one (what jobs
    without a plan go by: assess and release)."""
    if not policy.execution.node_groups:
        return {}
    match = scoping.matcher(hosts)
    found = {h.name: node_group_of(h, policy, match) for h in hosts}
    return {name: group for name, group in found.items() if group}


def _check_placement(policy: Policy, candidates: Sequence[HostPlan]) -> None:
    """Refuse to place hosts on nodes when a phase would run on the controller for them: the
    lab snapshot backend and the backup hook run there (delegate_to: localhost), and on a node
    localhost is the node, which has neither the lab nor the hook's tools."""
    placed = sorted(h.host for h in candidates if h.node_group)
    if not placed:
        return
    prep = policy.preparation
    what = (
        "the snapshot backend 'lab'" if prep.snapshot.backend == "lab"
        else "the backup hook" if prep.backup else None
    )  # fmt: skip
    if what is not None:
        shown = ", ".join(placed[:5]) + (f" and {len(placed) - 5} more" if len(placed) > 5 else "")
        raise PlanningError(
            f"{what} runs on the controller, which hosts patched through execution nodes "
            f"({shown}) cannot use",
            hint="use preparation.snapshot.backend: package (taken on the host itself) and no "
            "backup hook for them, or patch them from the controller",
        )


def _text(value: Any) -> str | None:
    return None if value is None else str(value)


def _contact(host: Host, policy: Policy) -> str | None:
    for group, contact in policy.roles.contacts.items():
        if group in host.groups or group == host.name:
            return contact
    return None


def _order(hosts: Sequence[HostPlan], policy: Policy) -> list[HostPlan]:
    if policy.rollout.order == "name":
        return sorted(hosts, key=lambda h: h.host)
    return sorted(hosts, key=lambda h: (-h.priority, h.host))


def _warnings(
    policy: Policy,
    scheduled: Sequence[Any],
    occurrence: Occurrence,
    ordered: Sequence[HostPlan],
    canary_size: int,
    canary: Sequence[HostPlan],
    at: datetime,
) -> tuple[str, ...]:
    out = []
    if not policy.connection.host_key_checking:
        out.append(
            "SSH host keys are not checked (connection.host_key_checking: false): whatever "
            "answers at a host's address gets root; turn it on, or opt out single hosts in "
            "the inventory"
        )
    deferred = [b for b in scheduled if b.next_window]
    if deferred:
        count = sum(len(b.hosts) for b in deferred)
        out.append(
            f"the window cannot hold every batch: {count} host(s) in {len(deferred)} batch(es) "
            f"would start after the cutoff ({occurrence.cutoff:%H:%M %Z}) and are left for the "
            "next window"
        )
    for batch in scheduled:
        closes = occurrence.end.astimezone(UTC)
        if not batch.next_window and batch.end.astimezone(UTC) > closes:
            over = batch.end.astimezone(UTC) - closes
            out.append(
                f"batch {batch.number} is estimated to end {_minutes(over)} after the window closes"
            )
    if canary_size and len(canary) < min(canary_size, len(ordered)):
        out.append(
            f"only {len(canary)} of {canary_size} canary host(s) match "
            f"{', '.join(policy.rollout.canary.hosts if policy.rollout.canary else [])}"
        )
    approvals = [h.host for h in ordered if h.reboot_needs_approval]
    if approvals:
        out.append(f"reboot needs explicit approval on: {', '.join(approvals)}")
    stale = [h.host for h in ordered if at - h.assessed_at > STALE_FINDINGS]
    if stale:
        out.append(
            f"{len(stale)} host(s) were last assessed more than {STALE_FINDINGS.days} days ago: "
            "run patchkit assess again before approving"
        )
    for exc in policy.exceptions:
        if exc.expires < at.date():
            what = ", ".join(exc.packages or exc.hosts)
            out.append(
                f"exception for {what} (owner {exc.owner}) expired on {exc.expires}: "
                "it no longer applies"
            )
    return tuple(out)


def _advisory_warnings(
    policy: Policy, given: Knowledge | None, at: datetime, unrated: Sequence[str]
) -> tuple[str, ...]:
    """What keeps the severity rules on CVEs from seeing what they test, and stale feeds."""
    out: list[str] = []
    knowledge = given or Knowledge()
    rules = policy.classification
    severity_rules = list(enumerate(rules.severity_rules, start=1))

    def numbered(test: Callable[[SeverityRule], bool]) -> str:
        return ", ".join(str(i) for i, r in severity_rules if test(r))

    testing = numbered(lambda r: r.tests_vulnerabilities)
    if testing and given is None:
        out.append(
            f"severity rule(s) {testing} test the CVEs an update fixes, but this plan was made "
            "without advisories: they match nothing"
        )
    elif testing and not knowledge.feeds:
        out.append(
            f"severity rule(s) {testing} test the CVEs an update fixes, but no tracker or OSV "
            "feed is imported: they match nothing (patchkit advisories import FILE)"
        )
    elif testing:
        lacking = [
            (numbered(lambda r: r.kev is not None), knowledge.kev is None, "kev", "KEV catalog"),
            (numbered(lambda r: r.epss_min is not None), knowledge.epss is None, "epss_min",
             "EPSS scores"),
            (numbered(lambda r: r.cvss_min is not None), not knowledge.has_cvss, "cvss_min",
             "CVSS vector (the tracker's JSON carries none: import OSV records)"),
        ]  # fmt: skip
        for numbers, missing, key, what in lacking:
            if numbers and missing:
                out.append(
                    f"severity rule(s) {numbers} test {key}, but no imported feed gives a {what}: "
                    "they match nothing"
                )
        if unrated:
            names = ", ".join(unrated[:5]) + (", …" if len(unrated) > 5 else "")
            out.append(
                f"{len(unrated)} host(s) were assessed without a software inventory, so the "
                f"CVEs their updates fix are not known and rules on CVEs pass them by: {names}; "
                "assess them again"
            )
    limit = rules.advisory_max_age
    for feed in knowledge.sources():
        age = at - feed.date
        if age > limit:
            out.append(
                f"advisory feed {feed.kind.value} ({feed.source}) is {age.days} days old, "
                f"older than classification.advisory_max_age ({format_duration(limit)}): "
                "import a fresh one before approving"
            )
    return tuple(out)


def _minutes(delta: timedelta) -> str:
    return f"{round(delta.total_seconds() / 60)} min"


def phases_of(policy: Policy) -> Phases:
    """The roles' settings under ``policy`` (the plan carries them; release reads them live)."""
    prep = policy.preparation
    return Phases(
        snapshot_backend=prep.snapshot.backend,
        reboot=policy.downtime.reboot,
        reboot_timeout=policy.downtime.reboot_timeout,
        min_free_disk=prep.prechecks.min_free_disk,
        healthy_before=prep.prechecks.healthy_before,
        pending_reboot=prep.prechecks.pending_reboot,
        backup_command=prep.backup.command if prep.backup else "",
        backup_timeout=prep.backup.timeout if prep.backup else timedelta(minutes=10),
        checks=tuple(c.model_dump(mode="json", exclude={"hosts"}) for c in policy.verification),
    )


def _settings(policy: Policy, allowed_signers: str) -> Settings:
    checks = []
    for check in policy.verification:
        detail = {
            "systemd": lambda c: f"unit {c.unit} active",
            "tcp": lambda c: f"TCP {c.host}:{c.port} open",
            "http": lambda c: f"GET {c.url} → {c.status}",
            "command": lambda c: f"`{c.command}` exits {c.exit_code}",
        }[check.type](check)
        where = "" if check.hosts == ["all"] else f" on {', '.join(check.hosts)}"
        checks.append(detail + where)
    roles, rollout = policy.roles, policy.rollout
    signatures = roles.signatures
    affinity = rollout.anti_affinity
    return Settings(
        approval=ApprovalRules(
            required=roles.approval_required,
            approvers=tuple(roles.approvers),
            needed=roles.approvals_needed,
            separation_of_duties=roles.separation_of_duties,
            expires_after=roles.approval_expires,
            emergency_approvers=tuple(roles.emergency_approvers),
            signatures_required=bool(signatures and signatures.required),
            allowed_signers=allowed_signers if signatures else "",
        ),
        phases=phases_of(policy),
        rules=RunRules(
            error_threshold=rollout.error_threshold,
            on_threshold=policy.failure_handling.on_threshold,
            rollback=policy.failure_handling.rollback,
            retries=policy.failure_handling.retries,
            canary_on_failure=rollout.canary.on_failure if rollout.canary else "halt",
            canary_soak=rollout.canary.soak if rollout.canary else timedelta(0),
            max_unavailable=affinity.max_unavailable if affinity else None,
            host_key_checking=policy.connection.host_key_checking,
            environment=tuple(policy.connection.environment),
            on_node_lost=policy.execution.on_node_lost,
        ),
        verification=tuple(checks),
        node_groups=node_groups_of(policy),
    )


def node_groups_of(policy: Policy) -> tuple[NodeGroup, ...]:
    """The policy's execution node groups, as plans and runners carry them."""
    return tuple(
        NodeGroup(
            name=g.name,
            nodes=tuple(g.nodes),
            key=g.key or "",
            known_hosts=g.known_hosts or "",
            venv=g.venv,
        )
        for g in policy.execution.node_groups
    )


def _exception_uses(
    policy: Policy, today: date, applied: Mapping[int, list[str]]
) -> tuple[ExceptionUse, ...]:
    return tuple(
        ExceptionUse(
            owner=exc.owner,
            reason=exc.reason,
            expires=exc.expires,
            hosts=tuple(exc.hosts),
            packages=tuple(exc.packages),
            expired=exc.expires < today,
            applied_to=tuple(sorted(set(applied.get(id(exc), [])))),
        )
        for exc in policy.exceptions
    )


# ---------------------------------------------------------------- identity


def plan_body(plan: Plan) -> dict[str, Any]:
    """The plan's stored and printed JSON body (``patchkit.planning.codec``)."""
    return codec.encode(plan)


def content_hash(plan: Plan) -> str:
    """SHA-256 of what the plan decides (``codec.body_hash``)."""
    return codec.body_hash(codec.encode(plan))


def _policy_digest_data(policy: Policy) -> Any:
    # Settings left at their defaults are left out, so that a key added to the policy in a
    # later patchkit does not change the digest of a file that does not use it.
    return policy.model_dump(mode="json", exclude_defaults=True)


def input_hashes(
    policy: Policy,
    hosts: Sequence[Host],
    findings: Mapping[str, Finding],
    history: History | None = None,
    knowledge: Knowledge | None = None,
) -> dict[str, str]:
    digest = codec.digest
    host_data = [[h.name, list(h.groups), jsonable(h.vars)] for h in hosts]
    shared: dict[int, Any] = {}  # hosts of one image share their updates: each encoded once
    finding_data = [jsonable(findings[k], shared) for k in sorted(findings)]
    out = {
        "policy": digest(_policy_digest_data(policy)),
        "hosts": digest(host_data),
        "findings": digest(finding_data),
    }
    if history is not None and (history.installs or history.durations):
        out["history"] = digest(history.digest_data())  # a plan made without any has no key
    if knowledge is not None and not knowledge.empty:
        # which feeds, by their bytes: enough to prove what was known when the plan was made
        sources = sorted([f.kind.value, f.sha256] for f in knowledge.sources())
        out["advisories"] = digest(sources)
    return out
