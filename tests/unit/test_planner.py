"""Unit: the pure planner on hand-built policies, hosts and findings (plus properties)."""

from __future__ import annotations

import itertools
import random
import textwrap
from collections import Counter
from datetime import UTC, datetime, timedelta

import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from patchkit.model import Finding, Host, PendingUpdate, Severity, freeze
from patchkit.planning.plan import make_plan, plan_body
from patchkit.planning.types import Plan, SkipKind
from patchkit.policy import loads
from patchkit.policy.model import Policy

AT = datetime(2026, 11, 25, 10, 0, tzinfo=UTC)  # a Wednesday

POLICY = """\
name: test
roles: {owner: ops, approvers: [alice]}
scope:
  include: [all]
  exclude: [legacy]
classification:
  security_origins: ["*-security"]
  severity_rules:
    - {severity: critical, packages: [openssl], security: true}
    - {severity: low, packages: [tzdata]}
criticality:
  variable: tier
  tiers:
    - {label: laptop, criticality: 1, groups: [laptops]}
    - {label: tier 1, criticality: 10, values: [1]}
    - {label: tier 2, criticality: 5, values: [2]}
windows:
  - name: daily
    rrule: FREQ=DAILY;BYHOUR=22;BYMINUTE=0;BYSECOND=0
    timezone: UTC
    duration: 4h
    cutoff: 30m
rollout:
  batch_size: BATCH
  concurrency: 10
  anti_affinity: {variable: cluster, max_per_batch: 1}
  estimate: {base: 5m, per_package: 0s, reboot: 5m}
downtime:
  reboot_packages: [linux-image-*]
  reboot_approval: [db]
"""


def policy(extra: str = "", batch: str = "3") -> Policy:
    """The test policy; top-level sections in ``extra`` replace the policy's own."""
    data = yaml.safe_load(POLICY.replace("BATCH", batch))
    data.update(yaml.safe_load(textwrap.dedent(extra)) or {})
    return loads(yaml.safe_dump(data))


def host(name: str, *groups: str, **variables: object) -> Host:
    return Host(name=name, groups=tuple(sorted(groups)), vars=freeze(variables))


def found(name: str, *updates: tuple[str, str], at: datetime = AT - timedelta(days=2)) -> Finding:
    pending = tuple(PendingUpdate(p, "1.0", "2.0", origin) for p, origin in updates)
    return Finding(host=name, assessed_at=at, reachable=True, updates=pending)


SEC = "stable-security"
REG = "stable-updates"


def hosts_of(plan: Plan) -> list[str]:
    return [h.host for b in plan.batches for h in b.hosts]


def skipped(plan: Plan) -> dict[str, SkipKind]:
    return {s.host: s.kind for s in plan.skipped}


def test_server_before_laptop_and_critical_patch_first() -> None:
    fleet = [
        host("laptop1", "laptops"),
        host("web1", "web", tier=1),
        host("tool1", "tools", tier=2),
        host("web2", "web", tier=1),
    ]
    findings = {
        "laptop1": found("laptop1", ("openssl", SEC)),
        "web1": found("web1", ("tzdata", REG)),
        "tool1": found("tool1", ("openssl", SEC)),
        "web2": found("web2", ("openssl", SEC), ("tzdata", REG)),
    }
    plan = make_plan(policy(batch="1"), fleet, findings, AT)
    assert hosts_of(plan) == ["web2", "tool1", "web1", "laptop1"]
    first = plan.batches[0].hosts[0]
    assert first.severity is Severity.CRITICAL and first.priority == 4 * 10
    assert plan.batches[-1].hosts[0].criticality_label == "laptop"


def test_every_host_left_out_has_its_reason() -> None:
    fleet = [
        host("legacy1", "legacy"),
        host("new1", tier=2),
        host("down1", tier=2),
        host("clean1", tier=2),
        host("held1", tier=2),
        host("db1", "db", tier=1),
    ]
    down = Finding(host="down1", assessed_at=AT, reachable=False, message="ssh timed out")
    findings = {
        "down1": down,
        "clean1": found("clean1"),
        "held1": found("held1", ("nginx", REG)),
        "db1": found("db1", ("openssl", SEC)),
    }
    extra = """
    exceptions:
      - {packages: [nginx], owner: web, reason: load test, expires: 2026-12-31}
      - {hosts: [db1], owner: dba, reason: vendor build, expires: 2026-12-31}
    """
    plan = make_plan(policy(extra), fleet, findings, AT)
    assert skipped(plan) == {
        "legacy1": SkipKind.EXCLUDED,
        "db1": SkipKind.EXCEPTION,
        "new1": SkipKind.NOT_ASSESSED,
        "down1": SkipKind.UNREACHABLE,
        "clean1": SkipKind.NOTHING_TO_DO,
        "held1": SkipKind.NOTHING_TO_DO,
    }
    reasons = {s.host: s.reason for s in plan.skipped}
    assert "ssh timed out" in reasons["down1"]
    assert "vendor build" in reasons["db1"] and "dba" in reasons["db1"]
    held = next(s for s in plan.skipped if s.host == "held1").held
    assert held[0].package == "nginx" and "load test" in held[0].reason
    used = {e.owner: e.applied_to for e in plan.exceptions}
    assert used == {"web": ("held1",), "dba": ("db1",)}
    assert hosts_of(plan) == []


def test_expired_exception_no_longer_applies_and_is_reported() -> None:
    extra = """
    exceptions:
      - {packages: [curl], owner: sec, reason: regression, expires: 2026-10-01}
    """
    plan = make_plan(policy(extra), [host("a", tier=1)], {"a": found("a", ("curl", REG))}, AT)
    assert hosts_of(plan) == ["a"]
    assert plan.exceptions[0].expired
    assert any("expired on 2026-10-01" in w for w in plan.warnings)


def test_classification_holds_updates_with_reasons() -> None:
    extra = """
    classification:
      updates: security
      deny: [postgresql-*]
      minimum_age: 3d
      security_origins: ["*-security"]
    """
    fresh = AT - timedelta(days=1)
    finding = Finding(
        host="a",
        assessed_at=fresh,
        reachable=True,
        updates=(
            PendingUpdate("curl", "1", "2", REG, AT - timedelta(days=9)),
            PendingUpdate("postgresql-15", "1", "2", SEC, AT - timedelta(days=9)),
            PendingUpdate("openssl", "1", "2", SEC, fresh),
            PendingUpdate("libc6", "1", "2", SEC, AT - timedelta(days=4)),
        ),
    )
    plan = make_plan(policy(extra), [host("a", tier=1)], {"a": finding}, AT)
    (planned,) = plan.hosts()
    assert [u.package for u in planned.updates] == ["libc6"]
    reasons = {h.package: h.reason for h in planned.held}
    assert "security only" in reasons["curl"]
    assert "denied" in reasons["postgresql-15"]
    assert "too new" in reasons["openssl"]


def test_anti_affinity_and_canary() -> None:
    fleet = [host(f"db{i}", "prod", tier=1, cluster="pg") for i in range(1, 4)]
    fleet += [host(f"web{i}", "prod", tier=1, cluster="web") for i in range(1, 4)]
    fleet += [host("stage1", "staging", tier=2, cluster="pg-staging")]
    findings = {h.name: found(h.name, ("openssl", SEC)) for h in fleet}
    text = POLICY.replace("BATCH", "4").replace(
        "  concurrency: 10\n", "  concurrency: 10\n  canary: {size: 1, hosts: [staging]}\n"
    )
    plan = make_plan(loads(text), fleet, findings, AT)
    assert plan.batches[0].canary and [h.host for h in plan.batches[0].hosts] == ["stage1"]
    for batch in plan.batches:
        clusters = Counter(h.cluster for h in batch.hosts)
        assert max(clusters.values()) == 1
    assert sorted(hosts_of(plan)) == sorted(h.name for h in fleet)


def test_batches_past_the_cutoff_are_left_for_the_next_window() -> None:
    fleet = [host(f"h{i:02}", tier=1) for i in range(12)]
    findings = {h.name: found(h.name, ("linux-image-amd64", SEC)) for h in fleet}
    plan = make_plan(policy(batch="1"), fleet, findings, AT)  # 10 min per host, 4h window
    assert plan.window.start == datetime(2026, 11, 25, 22, 0, tzinfo=UTC)
    # 3h30m to the cutoff at 10 minutes per batch: 21 batches fit, all 12 do here
    assert not plan.deferred
    many = [host(f"h{i:02}", tier=1) for i in range(30)]
    findings = {h.name: found(h.name, ("linux-image-amd64", SEC)) for h in many}
    plan = make_plan(policy(batch="1"), many, findings, AT)
    assert len(plan.planned) == 21 and len(plan.deferred) == 9
    assert all(b.start < plan.window.cutoff for b in plan.planned)
    assert all(b.start >= plan.window.cutoff for b in plan.deferred)
    assert any("left for the next window" in w for w in plan.warnings)


def test_a_batch_that_would_end_after_the_window_waits_for_the_next_one() -> None:
    # 4h window, cutoff at 3h30. 100 minutes per host: batches 1 and 2 end at 1h40 and 3h20;
    # batch 3 would start at 3h20, before the cutoff, but end at 5h: it waits.
    slow = "rollout:\n  batch_size: 1\n  estimate: {base: 100m, per_package: 0s, reboot: 0s}\n"
    fleet = [host(f"h{i}", tier=1) for i in range(3)]
    findings = {h.name: found(h.name, ("curl", REG)) for h in fleet}
    plan = make_plan(policy(slow), fleet, findings, AT)
    assert [b.next_window for b in plan.batches] == [False, False, True]
    slower = slow.replace("100m", "130m")  # batch 2 would start at 2h10 and end at 4h20
    plan = make_plan(policy(slower), fleet, findings, AT)
    assert [b.next_window for b in plan.batches] == [False, True, True]
    assert plan.batches[1].start < plan.window.cutoff  # it would start in time, not end


def test_reboot_expectation_and_approval() -> None:
    fleet = [host("db1", "db", tier=1), host("web1", tier=1)]
    findings = {
        "db1": found("db1", ("linux-image-amd64", SEC)),
        "web1": found("web1", ("openssl", SEC)),
    }
    plan = make_plan(policy(), fleet, findings, AT)
    by_host = {h.host: h for h in plan.hosts()}
    assert by_host["db1"].reboot and by_host["db1"].reboot_needs_approval
    assert not by_host["web1"].reboot
    assert any("reboot needs explicit approval on: db1" in w for w in plan.warnings)


def test_a_plan_made_inside_the_window_starts_now() -> None:
    inside = datetime(2026, 11, 25, 23, 0, tzinfo=UTC)
    plan = make_plan(policy(), [host("a", tier=1)], {"a": found("a", ("x", SEC))}, inside)
    assert plan.window.start == datetime(2026, 11, 25, 22, 0, tzinfo=UTC)
    assert plan.batches[0].start == inside


def test_same_inputs_same_plan_and_hash() -> None:
    fleet = [host(f"h{i}", tier=1 + i % 2, cluster=f"c{i % 3}") for i in range(20)]
    findings = {h.name: found(h.name, ("openssl", SEC)) for h in fleet}
    one = make_plan(policy(), fleet, findings, AT)
    shuffled = list(fleet)
    random.Random(4).shuffle(shuffled)  # noqa: S311 - a fixed shuffle, not a secret
    two = make_plan(policy(), shuffled, dict(reversed(list(findings.items()))), AT)
    assert one == two and one.hash == two.hash and one.id == f"plan-{one.hash[:12]}"
    assert plan_body(one) == plan_body(two)
    changed = dict(findings)
    changed["h0"] = found("h0", ("openssl", SEC), ("curl", REG))
    assert make_plan(policy(), fleet, changed, AT).hash != one.hash
    # the instant it was made is not part of what the plan decides: a minute later, the same
    # plan (issue 16: the page the board read is the plan it approves)
    later = make_plan(policy(), fleet, findings, AT + timedelta(minutes=1))
    assert later.id == one.id and later.made_at != one.made_at
    assert make_plan(policy(), fleet, findings, AT + timedelta(days=10)).hash != one.hash


# ---------------------------------------------------------------- properties

names = st.lists(
    st.from_regex(r"[a-z]{1,6}[0-9]{0,2}", fullmatch=True), min_size=1, max_size=40, unique=True
)


@settings(max_examples=60, deadline=None)
@given(
    fleet_names=names,
    data=st.data(),
    batch=st.integers(min_value=1, max_value=8),
    per_cluster=st.integers(min_value=1, max_value=3),
)
def test_planner_invariants(
    fleet_names: list[str], data: st.DataObject, batch: int, per_cluster: int
) -> None:
    fleet = [
        host(
            n,
            data.draw(st.sampled_from(["web", "db", "laptops"])),
            tier=data.draw(st.sampled_from([1, 2, 3])),
            cluster=data.draw(st.sampled_from(["a", "b", "c", None])),
        )
        for n in fleet_names
    ]
    findings = {
        h.name: found(h.name, *data.draw(st.lists(st.sampled_from(UPDATES), max_size=3)))
        for h in fleet
        if data.draw(st.booleans()) or h.name == fleet_names[0]
    }
    text = POLICY.replace("BATCH", str(batch)).replace(
        "max_per_batch: 1", f"max_per_batch: {per_cluster}"
    )
    pol = loads(text)
    plan = make_plan(pol, fleet, findings, AT)

    placed = hosts_of(plan)
    wanted = {n for n, f in findings.items() if f.updates}
    assert sorted(placed) == sorted(wanted)  # every host with an update, exactly once
    assert not set(placed) & {s.host for s in plan.skipped}
    assert {*placed, *(s.host for s in plan.skipped)} == set(fleet_names)
    for b in plan.batches:
        assert len(b.hosts) <= batch
        counts = Counter(h.cluster for h in b.hosts if h.cluster)
        assert all(c <= per_cluster for c in counts.values())
    # priority order: a lower-priority host sits in an earlier batch than a higher one only
    # when the higher one's cluster was already full there
    where = {h.host: (b.number, h) for b in plan.batches for h in b.hosts}
    for name_a, (batch_a, a) in where.items():
        for batch_b, other in where.values():
            if batch_b < batch_a and other.priority < a.priority:
                members = [h for h in plan.batches[batch_b - 1].hosts if h.cluster == a.cluster]
                assert a.cluster is not None and len(members) == per_cluster, name_a
    again = make_plan(pol, list(reversed(fleet)), findings, AT)
    assert again.hash == plan.hash


UPDATES = [("openssl", SEC), ("tzdata", REG), ("curl", REG), ("linux-image-amd64", SEC)]


def test_batch_times_are_real_time_across_a_dst_change() -> None:
    extra = """
    windows:
      - name: night
        rrule: FREQ=WEEKLY;BYDAY=SA;BYHOUR=22;BYMINUTE=0;BYSECOND=0
        timezone: Europe/Berlin
        duration: 8h
        cutoff: 30m
    """
    fleet = [host(f"h{i:02}", tier=1) for i in range(40)]
    findings = {h.name: found(h.name, ("linux-image-amd64", SEC)) for h in fleet}
    at = datetime(2027, 3, 27, 12, 0, tzinfo=UTC)  # clocks go forward that night at 02:00
    plan = make_plan(policy(extra, batch="1"), fleet, findings, at)
    starts = [b.start.astimezone(UTC) for b in plan.batches]
    assert all(b - a == timedelta(minutes=10) for a, b in itertools.pairwise(starts))
    cutoff = plan.window.cutoff.astimezone(UTC)
    assert cutoff - plan.window.start.astimezone(UTC) == timedelta(hours=7, minutes=30)
    assert all((b.start.astimezone(UTC) < cutoff) != b.next_window for b in plan.batches)
    assert len(plan.planned) == 40 and not plan.deferred  # 45 ten-minute slots fit


def test_a_policy_that_checks_no_host_keys_says_so_in_the_plan() -> None:
    hosts = [host("web1", tier=1)]
    findings = {"web1": found("web1", ("openssl", SEC))}
    checked = make_plan(policy(), hosts, findings, at=AT)
    unchecked = make_plan(policy("connection: {host_key_checking: false}"), hosts, findings, at=AT)
    assert checked.settings.host_key_checking is True
    assert not any("host keys" in w for w in checked.warnings)
    assert unchecked.settings.host_key_checking is False
    assert any(w.startswith("SSH host keys are not checked") for w in unchecked.warnings)
    assert unchecked.id != checked.id  # what the board approves includes it


def test_a_section_added_later_leaves_the_policy_digest_alone_at_its_default() -> None:
    # plans approved before the connection section existed must still match their policy
    from patchkit.planning.plan import input_hashes

    def digest(extra: str) -> str:
        return input_hashes(policy(extra), [], {})["policy"]

    assert digest("") == digest("connection: {host_key_checking: true}")
    assert digest("") != digest("connection: {host_key_checking: false}")
