"""Unit: staged promotion and window-fit estimates on hand-built histories (pure rules and the
planner using them)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from patchkit.model import Finding, Host, PendingUpdate, Severity, freeze
from patchkit.planning.history import (
    POLICY_BASIS,
    History,
    Install,
    environment_of,
    host_estimate,
    percentile,
    promotion_verdict,
)
from patchkit.planning.plan import make_plan
from patchkit.policy.model import Estimate, Promotion
from patchkit.reports.plan import plan_html, plan_json, plan_markdown, plan_plain_text
from tests.unit.test_planner import policy

AT = datetime(2026, 11, 25, 10, 0, tzinfo=UTC)
PROMOTION = Promotion.model_validate(
    {"order": ["dev", "staging", "prod"], "min_hosts": 2, "soak": "24h",
     "exempt": {"severities": ["critical"], "packages": ["tzdata", "openssl=3.0.1*"]}}
)  # fmt: skip
ENVS = {"d1": "dev", "d2": "dev", "s1": "staging", "s2": "staging", "p1": "prod", "x": None}


def hist(*installs: tuple[str, str, str, float, bool]) -> History:
    """(package, version, host, hours ago, verified) rows."""
    out: dict[tuple[str, str], list[Install]] = {}
    for package, version, host, hours, ok in installs:
        out.setdefault((package, version), []).append(
            Install(host, AT - timedelta(hours=hours), ok)
        )
    return History(installs={k: tuple(v) for k, v in out.items()})


def verdict(
    history: History, env: str | None = "prod", package: str = "curl", version: str = "8.1"
) -> tuple[str | None, str | None]:
    return promotion_verdict(package, version, Severity.MEDIUM, env, ENVS, history, PROMOTION, AT)


def test_the_first_environment_and_hosts_outside_the_order_are_not_gated() -> None:
    assert verdict(History(), env="dev") == (None, None)
    assert verdict(History(), env=None) == (None, None)
    assert promotion_verdict("curl", "8.1", Severity.LOW, "prod", ENVS, History(), None, AT) == (
        None, None
    )  # fmt: skip


def test_waits_for_enough_verified_hosts_in_the_environment_before() -> None:
    assert verdict(History()) == ("awaiting promotion: verified on 0/2 staging hosts", None)
    one = hist(("curl", "8.1", "s1", 48, True), ("curl", "8.1", "d1", 72, True))
    assert verdict(one)[0] == "awaiting promotion: verified on 1/2 staging hosts"


def test_the_soak_counts_from_the_nth_verified_install() -> None:
    soaking = hist(("curl", "8.1", "s1", 40, True), ("curl", "8.1", "s2", 10, True))
    assert verdict(soaking)[0] == "awaiting promotion: verified on 2/2 staging hosts; 14 h left"
    exactly = hist(("curl", "8.1", "s1", 40, True), ("curl", "8.1", "s2", 24, True))
    assert verdict(exactly) == (None, None)  # exactly 2 hosts, exactly 24 h: eligible


def test_staging_needs_dev_and_other_versions_do_not_count() -> None:
    history = hist(("curl", "8.0", "d1", 99, True), ("curl", "8.1", "d1", 30, True))
    assert verdict(history, env="staging")[0] == "awaiting promotion: verified on 1/2 dev hosts"


def test_a_failed_verification_in_a_lower_environment_blocks_that_version() -> None:
    history = hist(
        ("curl", "8.1", "s1", 90, True), ("curl", "8.1", "s2", 80, True),
        ("curl", "8.1", "d2", 70, False),
    )  # fmt: skip
    reason, _ = verdict(history)
    assert reason == (
        "blocked: failed verification on 1 of 3 host(s) so far (d2 (dev)); "
        "a newer version is needed"
    )
    newer = hist(*[(p, "8.2", h, t, ok) for p, _, h, t, ok in
                   [("curl", "", "s1", 90, True), ("curl", "", "s2", 80, True)]])  # fmt: skip
    assert verdict(History(installs={**history.installs, **newer.installs}), version="8.2") == (
        None, None
    )  # fmt: skip


def test_a_version_that_broke_the_first_environment_is_not_offered_to_it_again() -> None:
    history = hist(("curl", "8.1", "d1", 5, False))
    reason, _ = verdict(history, env="dev")
    assert reason is not None and reason.startswith("blocked: failed verification on 1 of 1")
    assert verdict(history, env="dev", version="8.2") == (None, None)


def test_a_failure_rate_under_the_threshold_lets_it_through() -> None:
    lenient = PROMOTION.model_copy(update={"max_failure_rate": 0.5})
    history = hist(
        ("curl", "8.1", "s1", 90, True), ("curl", "8.1", "s2", 80, True),
        ("curl", "8.1", "d2", 70, False),
    )  # fmt: skip
    got = promotion_verdict("curl", "8.1", Severity.LOW, "prod", ENVS, history, lenient, AT)
    assert got == (None, None)


@pytest.mark.parametrize(
    ("package", "version", "severity", "note"),
    [
        ("linux", "6.1", Severity.CRITICAL, "exempt from promotion: critical severity"),
        ("tzdata", "2026a", Severity.LOW, "exempt from promotion: tzdata"),
        ("openssl", "3.0.15", Severity.HIGH, "exempt from promotion: openssl=3.0.1*"),
    ],
)
def test_exemptions_skip_the_stages_and_say_so(
    package: str, version: str, severity: Severity, note: str
) -> None:
    got = promotion_verdict(package, version, severity, "prod", ENVS, History(), PROMOTION, AT)
    assert got == (None, note)


def test_a_version_outside_an_exempt_pattern_is_gated() -> None:
    got = promotion_verdict(
        "openssl", "3.1.0", Severity.HIGH, "prod", ENVS, History(), PROMOTION, AT
    )
    assert got[0] is not None and got[0].startswith("awaiting promotion")


def test_environments_by_variable_or_group() -> None:
    assert environment_of(Host("a", ("all",), freeze({"env": "staging"})), PROMOTION) == "staging"
    assert environment_of(Host("b", ("all", "prod")), PROMOTION) == "prod"
    assert environment_of(Host("c", ("all",), freeze({"env": "qa"})), PROMOTION) is None


# ---------------------------------------------------------------- estimates

FALLBACK = Estimate.model_validate({"base": "3m", "per_package": "20s", "reboot": "3m"})


def durations(**per_host: dict[str, list[float]]) -> History:
    return History(
        durations={h: {p: tuple(v) for p, v in phases.items()} for h, phases in per_host.items()}
    )


def test_percentile_is_nearest_rank() -> None:
    assert percentile([5.0, 1.0, 3.0, 2.0, 4.0, 6.0, 7.0, 8.0, 9.0, 10.0]) == 9.0
    assert percentile([4.0]) == 4.0


def test_without_enough_history_the_policy_estimate_is_used() -> None:
    got = host_estimate(["a"], 2, True, History(), FALLBACK)
    assert got == (timedelta(minutes=6, seconds=40), POLICY_BASIS)
    few = durations(a={p: [10.0, 10.0] for p in ("precheck", "snapshot", "patch", "verify")})
    assert host_estimate(["a"], 2, False, few, FALLBACK)[1] == POLICY_BASIS


def test_with_history_each_phase_takes_its_90th_percentile_over_similar_hosts() -> None:
    phases = {"precheck": [1.0, 2.0, 3.0], "snapshot": [1.0, 1.0, 1.0], "patch": [10.0, 20.0, 30.0],
              "reboot": [40.0, 50.0, 60.0], "verify": [2.0, 2.0, 2.0]}  # fmt: skip
    history = durations(a=phases, b={"patch": [100.0]})
    estimate, basis = host_estimate(["a", "b"], 5, True, history, FALLBACK)
    # p90 over a and b: precheck 3, snapshot 1, patch 100 (of 4 values), reboot 60, verify 2
    assert estimate == timedelta(seconds=166)
    assert basis == "p90 of 4 past runs of similar hosts"
    no_reboot, _ = host_estimate(["a", "b"], 5, False, history, FALLBACK)
    assert no_reboot == timedelta(seconds=106)


# ---------------------------------------------------------------- the planner with history

PROMOTED = """
promotion:
  order: [dev, staging, prod]
  min_hosts: 1
  soak: 24h
  exempt: {severities: [critical]}
"""


def env_host(name: str, env: str) -> Host:
    return Host(name=name, groups=("all",), vars=freeze({"env": env, "tier": 1}))


def fleet_findings() -> tuple[list[Host], dict[str, Finding]]:
    fleet = [env_host("dev1", "dev"), env_host("stg1", "staging"), env_host("prod1", "prod")]
    pending = (
        PendingUpdate("curl", "1.0", "2.0", "stable-updates", AT - timedelta(days=3)),
        PendingUpdate("openssl", "1.0", "2.0", "stable-security", AT - timedelta(days=3)),
    )
    found = {h.name: Finding(h.name, AT - timedelta(hours=1), True, pending) for h in fleet}
    return fleet, found


def test_the_plan_holds_back_what_is_not_promoted_and_notes_exemptions() -> None:
    fleet, found = fleet_findings()
    history = hist(("curl", "2.0", "dev1", 30, True))
    plan = make_plan(policy(PROMOTED), fleet, found, AT, history=history)
    hosts = {h.host: h for b in plan.batches for h in b.hosts}
    assert [u.package for u in hosts["dev1"].updates] == ["curl", "openssl"]
    assert [u.package for u in hosts["stg1"].updates] == ["curl", "openssl"]  # soaked 30 h
    prod = hosts["prod1"]
    assert [u.package for u in prod.updates] == ["openssl"]
    assert prod.updates[0].note == "exempt from promotion: critical severity"
    assert [(h.package, h.reason) for h in prod.held] == [
        ("curl", "awaiting promotion: verified on 0/1 staging hosts")
    ]
    assert "history" in plan.inputs


def test_same_inputs_and_history_same_plan_and_history_changes_the_hash() -> None:
    fleet, found = fleet_findings()
    history = hist(("curl", "2.0", "dev1", 30, True))
    first = make_plan(policy(PROMOTED), fleet, found, AT, history=history)
    again = make_plan(policy(PROMOTED), fleet, found, AT, history=history)
    assert first.hash == again.hash
    other = hist(("curl", "2.0", "dev1", 31, True))
    assert make_plan(policy(PROMOTED), fleet, found, AT, history=other).hash != first.hash
    assert "history" not in make_plan(policy(PROMOTED), fleet, found, AT).inputs


def test_estimates_from_history_are_shown_per_host() -> None:
    fleet, found = fleet_findings()
    runs = {p: [5.0, 5.0, 5.0] for p in ("precheck", "snapshot", "patch", "reboot", "verify")}
    plan = make_plan(policy(), fleet, found, AT, history=durations(dev1=runs))
    hosts = {h.host: h for b in plan.batches for h in b.hosts}
    # every host is tier 1: dev1's history speaks for all three
    assert {h.estimate for h in hosts.values()} == {timedelta(seconds=20)}
    assert hosts["prod1"].estimate_basis == "p90 of 3 past runs of similar hosts"


def test_every_preview_format_says_where_an_update_skips_the_stages() -> None:
    fleet, found = fleet_findings()
    plan = make_plan(policy(PROMOTED), fleet, found, AT, history=hist())
    note = "exempt from promotion: critical severity"
    held = "awaiting promotion: verified on 0/1 dev hosts"
    for text in (plan_plain_text(plan, width=250), plan_markdown(plan), plan_html(plan)):
        assert note in text and held in text
    assert note in plan_json(plan) and held in plan_json(plan)
