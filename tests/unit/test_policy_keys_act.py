"""Unit: policy keys acting in the plan beyond what test_keys_in_the_plan.py shows: through a
policy file and the real planner, each against the same inputs at the key's default.
"""

from __future__ import annotations

import dataclasses
from datetime import timedelta

from patchkit.model import Finding, Host, PendingUpdate, Severity, freeze
from patchkit.planning import codec
from patchkit.planning.plan import make_plan
from patchkit.planning.types import HostPlan, Plan
from patchkit.reports.plan import plan_html, plan_markdown, plan_plain_text
from tests.unit.test_planner import AT, REG, found, host, hosts_of, policy


def by_host(plan: Plan) -> dict[str, HostPlan]:
    return {h.host: h for h in plan.hosts()}


def test_estimate_per_package_lengthens_batches_and_moves_the_last_to_the_next_window() -> None:
    # 4h window, cutoff at 3h30; one host per batch, an hour each before any package counts
    def plan(per_package: str) -> Plan:
        extra = f"""
        rollout:
          batch_size: 1
          anti_affinity: null
          estimate: {{base: 60m, per_package: {per_package}, reboot: 0s}}
        """
        fleet = [host(f"h{i}", tier=1) for i in range(1, 5)]
        three = (("curl", REG), ("vim", REG), ("less", REG))
        findings = {"h1": found("h1", ("curl", REG))}
        findings |= {h.name: found(h.name, *three) for h in fleet[1:]}
        return make_plan(policy(extra), fleet, findings, AT)

    flat, priced = plan("0s"), plan("10m")
    assert {h.estimate for h in flat.hosts()} == {timedelta(minutes=60)}
    assert [b.next_window for b in flat.batches] == [False, False, False, False]
    estimates = {name: h.estimate for name, h in by_host(priced).items()}
    assert estimates == {
        "h1": timedelta(minutes=70),  # one update
        "h2": timedelta(minutes=90),  # three
        "h3": timedelta(minutes=90),
        "h4": timedelta(minutes=90),
    }
    first, second = priced.batches[:2]
    assert (first.duration, second.duration) == (timedelta(minutes=70), timedelta(minutes=90))
    # batch 3 would start at 2h40, before the cutoff, but end at 4h10, after the window
    assert [b.next_window for b in priced.batches] == [False, False, True, True]


def test_criticality_default_gives_an_untiered_host_its_priority_and_place() -> None:
    fleet = [host("mid1", tier=2), host("odd1")]  # odd1 matches no tier
    findings = {n: found(n, ("curl", REG)) for n in ("mid1", "odd1")}
    medium = Severity.MEDIUM.rank
    before = make_plan(policy(batch="1"), fleet, findings, AT)
    odd = by_host(before)["odd1"]
    assert (odd.criticality, odd.criticality_label, odd.priority) == (1, "default", medium)
    assert hosts_of(before) == ["mid1", "odd1"]  # 5 x medium before 1 x medium
    extra = """
    criticality:
      default: 7
      tiers:
        - {label: tier 2, criticality: 5, values: [2]}
    """
    after = make_plan(policy(extra, batch="1"), fleet, findings, AT)
    odd = by_host(after)["odd1"]
    assert (odd.criticality, odd.criticality_label, odd.priority) == (7, "default", 7 * medium)
    assert hosts_of(after) == ["odd1", "mid1"]


def test_criticality_variable_is_the_tier_the_plan_and_its_previews_show() -> None:
    fleet = [host("a1", tier=1, weight="gold")]
    findings = {"a1": found("a1", ("curl", REG))}
    before = by_host(make_plan(policy(), fleet, findings, AT))["a1"]
    assert (before.tier, before.criticality_label) == ("1", "tier 1")
    extra = """
    criticality:
      variable: weight
      tiers: [{label: precious, criticality: 9, values: [gold]}]
    """
    plan = make_plan(policy(extra), fleet, findings, AT)
    after = by_host(plan)["a1"]
    assert (after.tier, after.criticality, after.criticality_label) == ("gold", 9, "precious")
    assert "| gold (precious, 9) |" in plan_markdown(plan)
    assert "| 1 (tier 1, 10) |" in plan_markdown(make_plan(policy(), fleet, findings, AT))


def held_on(plan: Plan, name: str) -> list[tuple[str, str]]:
    skipped = next(s for s in plan.skipped if s.host == name)
    return [(h.package, h.reason) for h in skipped.held]


def test_promotion_variable_decides_which_hosts_are_gated_and_their_env_in_the_plan() -> None:
    # env says the opposite of stage: whichever the policy names decides
    fleet = [
        Host("d1", ("all",), freeze({"stage": "dev", "env": "prod", "tier": 1})),
        Host("p1", ("all",), freeze({"stage": "prod", "env": "dev", "tier": 1})),
    ]
    pending = (PendingUpdate("curl", "1.0", "2.0", REG, AT - timedelta(days=3)),)
    findings = {h.name: Finding(h.name, AT - timedelta(hours=1), True, pending) for h in fleet}

    def plan(variable: str) -> Plan:
        extra = f"""
        promotion: {{{variable}order: [dev, prod], min_hosts: 1, soak: 0s}}
        """
        return make_plan(policy(extra), fleet, findings, AT)

    by_env = plan("")  # the default, env: p1 is in dev, the first environment, d1 in prod
    assert [u.package for u in by_host(by_env)["p1"].updates] == ["curl"]
    waiting = [("curl", "awaiting promotion: verified on 0/1 dev hosts")]
    assert held_on(by_env, "d1") == waiting
    by_stage = plan("variable: stage, ")
    assert [u.package for u in by_host(by_stage)["d1"].updates] == ["curl"]
    assert held_on(by_stage, "p1") == waiting
    assert by_host(by_stage)["d1"].env == "dev" and by_host(by_env)["p1"].env == "dev"


def test_an_older_plan_body_without_owner_and_description_still_decodes() -> None:
    fleet = [host("web1", tier=1)]
    findings = {"web1": found("web1", ("curl", REG))}
    extra = """
    description: patch the web tier
    roles: {owner: platform-team, approvers: [alice]}
    """
    plan = make_plan(policy(extra), fleet, findings, AT)
    body = codec.encode(plan)
    assert codec.decode(body) == plan and body["owner"] == "platform-team"
    # a body stored before the plan carried them: hashed without them, same format
    older = {k: v for k, v in body.items() if k not in ("owner", "description")}
    digest = codec.body_hash(older)
    older |= {"hash": digest, "id": codec.plan_id(digest)}
    codec.verify(older, digest)
    decoded = codec.decode(older)
    assert (decoded.owner, decoded.description) == ("", "")
    assert decoded == dataclasses.replace(
        plan, owner="", description="", hash=digest, id=codec.plan_id(digest)
    )
    for text in (plan_plain_text(decoded), plan_markdown(decoded), plan_html(decoded)):
        assert "platform-team" not in text and "patch the web tier" not in text
    for text in (plan_plain_text(plan), plan_markdown(plan), plan_html(plan)):
        assert "platform-team" in text and "patch the web tier" in text
