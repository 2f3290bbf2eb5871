"""Unit: policy keys that act in the plan, each set away from its default and compared with it.

docs/policy-reference.md names these tests: each would fail if its key were read and ignored.
"""

from __future__ import annotations

import json
import re

from patchkit.model import Host, Severity, freeze
from patchkit.planning.codec import decode
from patchkit.planning.history import environment_of
from patchkit.planning.plan import make_plan
from patchkit.planning.types import HostPlan, Plan
from patchkit.policy.model import Promotion
from patchkit.reports.plan import plan_html, plan_json, plan_markdown, plan_plain_text
from tests.unit.test_planner import AT, REG, SEC, found, host, hosts_of, policy


def hostplan(plan: Plan, name: str) -> HostPlan:
    return next(h for b in plan.batches for h in b.hosts if h.host == name)


def severities(plan: Plan, name: str) -> dict[str, Severity]:
    return {u.package: u.severity for u in hostplan(plan, name).updates}


def test_classification_allow_plans_only_what_it_matches() -> None:
    findings = {"web1": found("web1", ("openssl", SEC), ("tzdata", REG))}
    fleet = [host("web1", tier=1)]
    everything = make_plan(policy(), fleet, findings, AT)
    assert set(severities(everything, "web1")) == {"openssl", "tzdata"}
    allowed = make_plan(
        policy("classification: {allow: [open*], security_origins: ['*-security']}"),
        fleet,
        findings,
        AT,
    )
    assert set(severities(allowed, "web1")) == {"openssl"}
    held = {h.package: h.reason for h in hostplan(allowed, "web1").held}
    assert held == {"tzdata": "not in the policy's allow list"}


def test_a_severity_rule_on_origins_judges_by_the_suite() -> None:
    findings = {"web1": found("web1", ("curl", SEC), ("vim", REG))}
    rules = """
    classification:
      security_origins: ['*-security']
      severity_rules: [{severity: critical, origins: ['*-security']}]
    """
    plan = make_plan(policy(rules), [host("web1", tier=1)], findings, AT)
    assert severities(plan, "web1") == {"curl": Severity.CRITICAL, "vim": Severity.MEDIUM}


def test_a_severity_rule_on_security_takes_one_kind_only() -> None:
    findings = {"web1": found("web1", ("curl", SEC), ("vim", REG))}
    fleet = [host("web1", tier=1)]

    def rule(security: str) -> dict[str, Severity]:
        extra = f"""
        classification:
          security_origins: ['*-security']
          severity_rules: [{{severity: low, packages: ['*'], security: {security}}}]
        """
        return severities(make_plan(policy(extra), fleet, findings, AT), "web1")

    # without the rule: curl is high (security default), vim medium (the default)
    assert rule("true") == {"curl": Severity.LOW, "vim": Severity.MEDIUM}
    assert rule("false") == {"curl": Severity.HIGH, "vim": Severity.LOW}


def test_security_and_default_severities_rate_what_no_rule_matched() -> None:
    findings = {"web1": found("web1", ("curl", SEC), ("vim", REG))}
    fleet = [host("web1", tier=1)]
    plain = make_plan(
        policy("classification: {security_origins: ['*-security']}"), fleet, findings, AT
    )
    assert severities(plain, "web1") == {"curl": Severity.HIGH, "vim": Severity.MEDIUM}
    extra = """
    classification:
      security_origins: ['*-security']
      security_severity: critical
      default_severity: low
    """
    changed = make_plan(policy(extra), fleet, findings, AT)
    assert severities(changed, "web1") == {"curl": Severity.CRITICAL, "vim": Severity.LOW}
    assert hostplan(changed, "web1").priority == Severity.CRITICAL.rank * 10


def test_criticality_variable_and_default_weigh_hosts() -> None:
    fleet = [host("a1", weight="gold"), host("b1", tier=1)]
    findings = {n: found(n, ("curl", REG)) for n in ("a1", "b1")}
    extra = """
    criticality:
      variable: weight
      default: 3
      tiers: [{label: gold, criticality: 9, values: [gold]}]
    """
    plan = make_plan(policy(extra), fleet, findings, AT)
    gold, other = hostplan(plan, "a1"), hostplan(plan, "b1")
    assert (gold.criticality, gold.criticality_label) == (9, "gold")
    # b1's tier: 1 no longer counts (the variable is weight): it gets the default
    assert (other.criticality, other.criticality_label) == (3, "default")
    before = make_plan(policy(), fleet, findings, AT)
    assert hostplan(before, "b1").criticality == 10 and hostplan(before, "a1").criticality == 1


def test_rollout_order_name_ignores_priority() -> None:
    fleet = [host("a1", tier=2), host("b1", tier=1), host("c1", tier=2)]
    findings = {n: found(n, ("openssl", SEC)) for n in ("a1", "b1", "c1")}
    by_priority = make_plan(policy(batch="1"), fleet, findings, AT)
    assert hosts_of(by_priority) == ["b1", "a1", "c1"]
    extra = """
    rollout:
      batch_size: 1
      order: name
      anti_affinity: {variable: cluster, max_per_batch: 1}
      estimate: {base: 5m, per_package: 0s, reboot: 5m}
    """
    assert hosts_of(make_plan(policy(extra), fleet, findings, AT)) == ["a1", "b1", "c1"]


def _batches(plan: Plan) -> list[list[str]]:
    return [[h.host for h in b.hosts] for b in plan.batches]


def test_anti_affinity_null_and_its_variable() -> None:
    fleet = [
        host("db1", tier=1, cluster="pg", rack="r1"),
        host("db2", tier=1, cluster="pg", rack="r1"),
    ]
    findings = {n: found(n, ("openssl", SEC)) for n in ("db1", "db2")}
    rollout = (
        "rollout: {{batch_size: 2, anti_affinity: {0},"
        " estimate: {{base: 5m, per_package: 0s, reboot: 5m}}}}"
    )
    assert _batches(make_plan(policy(), fleet, findings, AT)) == [["db1"], ["db2"]]
    assert _batches(make_plan(policy(rollout.format("null")), fleet, findings, AT)) == [
        ["db1", "db2"]
    ]
    by_rack = rollout.format("{variable: rack, max_per_batch: 1}")
    assert _batches(make_plan(policy(by_rack), fleet, findings, AT)) == [["db1"], ["db2"]]
    other = [
        host("db1", tier=1, cluster="pg", rack="r1"),
        host("db2", tier=1, cluster="pg", rack="r2"),
    ]
    assert _batches(make_plan(policy(by_rack), other, findings, AT)) == [["db1", "db2"]]


def test_estimate_per_package_grows_with_the_updates() -> None:
    fleet = [host("web1", tier=1)]
    findings = {"web1": found("web1", ("a", SEC), ("b", SEC), ("c", SEC))}
    estimate = "rollout: {{batch_size: 1, estimate: {{base: 5m, per_package: {0}, reboot: 5m}}}}"
    none = hostplan(make_plan(policy(estimate.format("0s")), fleet, findings, AT), "web1")
    some = hostplan(make_plan(policy(estimate.format("2m")), fleet, findings, AT), "web1")
    assert (some.estimate - none.estimate).total_seconds() == 3 * 120


def test_roles_contacts_name_a_hosts_contact_by_group_or_name() -> None:
    fleet = [host("web1", "web", tier=1), host("db1", "db", tier=1), host("misc1", tier=1)]
    findings = {n: found(n, ("openssl", SEC)) for n in ("web1", "db1", "misc1")}
    extra = """
    roles:
      owner: ops
      approvers: [alice]
      contacts: {web: '#web-oncall', db1: dba@example.org}
    """
    plan = make_plan(policy(extra), fleet, findings, AT)
    contacts = {n: hostplan(plan, n).contact for n in ("web1", "db1", "misc1")}
    assert contacts == {"web1": "#web-oncall", "db1": "dba@example.org", "misc1": None}
    assert all(
        hostplan(make_plan(policy(), fleet, findings, AT), n).contact is None for n in contacts
    )
    document = json.loads(plan_json(plan))
    shown = {h["host"]: h.get("contact") for b in document["batches"] for h in b["hosts"]}
    assert shown["web1"] == "#web-oncall" and shown["db1"] == "dba@example.org"
    assert "#web-oncall" in plan_markdown(plan)


def test_verification_hosts_limit_a_check_to_the_hosts_it_names() -> None:
    fleet = [host("web1", "web", tier=1), host("db1", "db", tier=1)]
    findings = {n: found(n, ("openssl", SEC)) for n in ("web1", "db1")}
    extra = """
    verification:
      - {type: systemd, unit: nginx.service, hosts: [web]}
      - {type: tcp, port: 22}
    """
    plan = make_plan(policy(extra), fleet, findings, AT)
    assert hostplan(plan, "web1").checks == (0, 1)
    assert hostplan(plan, "db1").checks == (1,)


def test_promotion_variable_names_the_environment_variable() -> None:
    promotion = Promotion.model_validate({"variable": "stage", "order": ["dev", "prod"]})
    staged = Host("a", ("all",), freeze({"stage": "dev", "env": "prod"}))
    assert environment_of(staged, promotion) == "dev"
    default = Promotion.model_validate({"order": ["dev", "prod"]})
    assert environment_of(staged, default) == "prod"


def test_the_policys_owner_and_description_reach_every_preview() -> None:
    fleet = [host("web1", tier=1)]
    findings = {"web1": found("web1", ("openssl", SEC))}
    extra = """
    description: "Monthly patching of the web tier <b>\\nagreed with the CAB"
    roles: {owner: platform-team, approvers: [alice]}
    """
    plan = make_plan(policy(extra), fleet, findings, AT)
    assert (plan.owner, plan.description.splitlines()[1]) == (
        "platform-team",
        "agreed with the CAB",
    )
    text = plan_plain_text(plan)
    assert re.search(r"^owner +platform-team$", text, re.MULTILINE)
    assert "Monthly patching of the web tier" in text
    markdown = plan_markdown(plan)
    assert "Policy owner: platform-team." in markdown
    assert "> Monthly patching of the web tier" in markdown and "> agreed with the CAB" in markdown
    page = plan_html(plan)
    assert "(owner platform-team)" in page and "web tier &lt;b&gt;" in page
    document = json.loads(plan_json(plan))
    assert document["owner"] == "platform-team" and document["description"] == plan.description
    assert decode(document) == plan
    bare = make_plan(policy(), fleet, findings, AT)
    assert bare.description == "" and "description" not in plan_plain_text(bare)
    assert bare.id != plan.id  # what the approvers read is part of what they approve
