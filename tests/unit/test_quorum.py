"""Unit: quorum under anti-affinity (max_unavailable) at planning and at run time."""

from __future__ import annotations

from collections import Counter
from datetime import timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from patchkit.model import Finding, Severity
from patchkit.planning import codec
from patchkit.planning.batches import cut
from patchkit.planning.plan import make_plan
from patchkit.planning.quorum import cluster_states, held_for_quorum, limit_of
from patchkit.planning.types import ClusterState, HostPlan, Plan, SkipKind
from patchkit.policy import loads
from patchkit.policy.model import AntiAffinity
from patchkit.policy.values import Amount
from patchkit.reports.plan import plan_html, plan_markdown, plan_plain_text
from tests.unit.test_planner import AT, POLICY, SEC, found, host

# ---------------------------------------------------------------- helpers


def quorum_policy(limit: str = "1", per_batch: int = 1, batch: int = 3) -> str:
    return POLICY.replace("BATCH", str(batch)).replace(
        "max_per_batch: 1}", f"max_per_batch: {per_batch}, max_unavailable: {limit!r}}}"
    )


def unreachable(name: str) -> Finding:
    return Finding(host=name, assessed_at=AT, reachable=False, message="ssh timed out")


def etcd_plan(limit: str = "1", down: tuple[str, ...] = ("etcd2",), **kw: int) -> Plan:
    """Three etcd members and a web pair, all needing openssl; ``down`` unreachable."""
    fleet = [host(f"etcd{i}", tier=1, cluster="etcd") for i in (1, 2, 3)]
    fleet += [host("web1", tier=1, cluster="web"), host("web2", tier=1, cluster="web")]
    findings = {h.name: found(h.name, ("openssl", SEC)) for h in fleet}
    findings.update({name: unreachable(name) for name in down})
    return make_plan(loads(quorum_policy(limit, **kw)), fleet, findings, AT)


def planned(plan: Plan) -> list[str]:
    return [h.host for b in plan.batches for h in b.hosts]


def member(name: str, cluster: str | None) -> HostPlan:
    """A host plan as the run sees it: only its name and cluster matter here."""
    return HostPlan(
        host=name, env=None, tier=None, cluster=cluster, criticality=1, criticality_label="t",
        severity=Severity.LOW,
        priority=1, updates=(), held=(), reboot=False, reboot_needs_approval=False,
        reboot_pending=False, assessed_at=AT, estimate=timedelta(minutes=1),
    )  # fmt: skip


ETCD = ClusterState("etcd", 3, 1, (), ("etcd1", "etcd2", "etcd3"))


# ---------------------------------------------------------------- the limit


@pytest.mark.parametrize(
    ("value", "percent", "size", "limit"),
    [
        (50, True, 3, 1),  # 1.5 rounds down: 2 of 3 down would lose the majority
        (50, True, 5, 2),
        (40, True, 5, 2),
        (66, True, 3, 1),  # 1.98: down, never up
        (67, True, 3, 2),
        (100, True, 3, 3),
        (20, True, 3, 1),  # 0.6: at least one, or the cluster is never patched
        (50, True, 1, 1),
        (0.3, True, 1000, 3),  # the decimal as written, not the float just under it
        (1, False, 3, 1),
        (2, False, 5, 2),
        (5, False, 3, 5),  # a count is taken as written
    ],
)
def test_the_limit_rounds_a_percentage_down_but_allows_one(
    value: float, percent: bool, size: int, limit: int
) -> None:
    assert limit_of(Amount(value=value, percent=percent), size) == limit


def test_a_percentage_is_of_the_whole_cluster_in_scope_or_not() -> None:
    fleet = [host(f"m{i}", tier=1, cluster="pg") for i in range(5)]
    fleet += [host("legacy1", "legacy", tier=1, cluster="pg"), host("solo", tier=1)]
    findings = {"m0": unreachable("m0"), "legacy1": unreachable("legacy1"), "m1": found("m1")}
    affinity = AntiAffinity(max_unavailable=Amount(value=50, percent=True))
    states = cluster_states(fleet, findings, affinity, {"pg"})
    assert states == {
        "pg": ClusterState("pg", 6, 3, ("legacy1", "m0"), ("legacy1", "m0", "m1", "m2", "m3", "m4"))
    }  # m2..m4 were never assessed: unknown, not down
    assert cluster_states(fleet, findings, AntiAffinity(), {"pg"}) == {}  # no max_unavailable
    assert cluster_states(fleet, findings, affinity, set()) == {}


def test_a_cluster_value_that_is_a_number_names_the_same_cluster_as_its_text() -> None:
    fleet = [host("a", tier=1, cluster=7), host("b", tier=1, cluster="7")]
    affinity = AntiAffinity(max_unavailable=Amount(value=1))
    assert cluster_states(fleet, {}, affinity, {"7"})["7"].members == ("a", "b")


# ---------------------------------------------------------------- planning


def test_a_cluster_with_a_member_down_gets_no_other_member_patched() -> None:
    plan = etcd_plan()
    why = (
        "cluster etcd: 1 of 3 members down (etcd2), max_unavailable 1: "
        "patching another would break quorum"
    )
    skips = {s.host: (s.kind, s.reason) for s in plan.skipped}
    assert skips["etcd1"] == skips["etcd3"] == (SkipKind.QUORUM, why)
    assert skips["etcd2"][0] is SkipKind.UNREACHABLE
    assert sorted(planned(plan)) == ["web1", "web2"]
    assert plan.clusters == (
        ClusterState("etcd", 3, 1, ("etcd2",), ("etcd1", "etcd2", "etcd3")),
        ClusterState("web", 2, 1, (), ("web1", "web2")),
    )
    assert list(SkipKind)[-1] is SkipKind.QUORUM  # checked last: only hosts with work to do


def test_with_room_left_a_cluster_has_at_most_that_many_members_per_batch() -> None:
    # 67% of 3 is 2 down at once; one is down, so one member per batch despite max_per_batch 3
    plan = etcd_plan("67%", per_batch=3, batch=5)
    assert sorted(planned(plan)) == ["etcd1", "etcd3", "web1", "web2"]
    for batch in plan.batches:
        assert Counter(h.cluster for h in batch.hosts)["etcd"] <= 1
    assert [c.budget for c in plan.clusters] == [1, 1]  # web: 67% of 2 is 1.34, so 1
    everyone_up = etcd_plan("67%", down=(), per_batch=3, batch=5)
    assert max(Counter(h.cluster for h in b.hosts)["etcd"] for b in everyone_up.batches) == 2


def test_a_member_out_of_scope_counts_when_it_is_down() -> None:
    # legacy is excluded from the policy's scope, but it is still one of the cluster's members
    fleet = [host("etcd1", tier=1, cluster="etcd"), host("etcd2", tier=1, cluster="etcd")]
    fleet += [host("old1", "legacy", tier=1, cluster="etcd")]
    findings = {h.name: found(h.name, ("openssl", SEC)) for h in fleet}
    findings["old1"] = unreachable("old1")
    plan = make_plan(loads(quorum_policy("1")), fleet, findings, AT)
    kinds = {s.host: s.kind for s in plan.skipped}
    assert kinds == {"old1": SkipKind.EXCLUDED, "etcd1": SkipKind.QUORUM, "etcd2": SkipKind.QUORUM}
    assert plan.clusters[0].size == 3 and plan.clusters[0].down == ("old1",)
    del findings["old1"]  # never assessed: unknown, not down
    assert sorted(planned(make_plan(loads(quorum_policy("1")), fleet, findings, AT))) == [
        "etcd1",
        "etcd2",
    ]


def test_without_max_unavailable_nothing_changes() -> None:
    fleet = [host(f"etcd{i}", tier=1, cluster="etcd") for i in (1, 2, 3)]
    findings = {h.name: found(h.name, ("openssl", SEC)) for h in fleet}
    findings["etcd2"] = unreachable("etcd2")
    plan = make_plan(loads(POLICY.replace("BATCH", "3")), fleet, findings, AT)
    assert plan.clusters == () and plan.settings.rules.max_unavailable is None
    assert sorted(planned(plan)) == ["etcd1", "etcd3"]  # max_per_batch alone
    assert SkipKind.QUORUM not in {s.kind for s in plan.skipped}


def test_the_clusters_are_part_of_the_plan_and_survive_its_codec() -> None:
    one, two = etcd_plan(), etcd_plan(down=("etcd3",))
    assert one.hash != two.hash  # who is down is part of what the board approves
    assert codec.decode(codec.encode(one)) == one
    assert codec.encode(one)["clusters"][0]["down"] == ["etcd2"]


def test_a_cap_below_one_is_refused() -> None:
    with pytest.raises(ValueError, match="below 1"):
        cut([], size=3, max_per_cluster=1, cluster_caps={"etcd": 0})


def test_the_previews_show_the_skip_and_each_cluster() -> None:
    plan = etcd_plan()
    why = "cluster etcd: 1 of 3 members down (etcd2), max_unavailable 1"
    text = " ".join(plan_plain_text(plan, detail=False, width=200).split())
    assert "2 quorum" in text and why in text
    assert "max 1 down per cluster" in text and "etcd: 1 of 3 down (etcd2), limit 1" in text
    markdown = plan_markdown(plan)
    assert "held back to keep their cluster's quorum" in markdown
    assert "- Quorum: max 1 down per cluster" in markdown
    assert why.replace("max_unavailable", "max\\_unavailable") in markdown
    html = plan_html(plan)
    assert "<th>Quorum</th>" in html and why in html and "web: 0 of 2 down" in html


# ---------------------------------------------------------------- run time


def test_a_member_failed_in_the_run_holds_the_rest_of_its_cluster() -> None:
    wave = [member("etcd1", "etcd"), member("web1", "web")]
    assert held_for_quorum(wave, [ETCD], down_now=()) == {}
    held = held_for_quorum(wave, [ETCD], down_now={"etcd3", "web2"})
    assert held == {
        "etcd1": "cluster etcd: 1 of 3 members down (etcd3), max_unavailable 1: "
        "patching another would break quorum"
    }  # web is not under quorum here: never held


def test_members_down_at_planning_and_in_the_run_add_up() -> None:
    five = ClusterState("pg", 5, 2, ("pg1",), tuple(f"pg{i}" for i in range(1, 6)))
    wave = [member("pg3", "pg"), member("pg4", "pg")]
    assert set(held_for_quorum(wave, [five], down_now=())) == {"pg4"}
    assert set(held_for_quorum(wave, [five], down_now={"pg2"})) == {"pg3", "pg4"}
    assert held_for_quorum(wave, [five], down_now={"other9"}).keys() == {"pg4"}


def test_no_more_than_the_room_left_start_in_one_go() -> None:
    three = ClusterState("etcd", 3, 2, (), ("etcd1", "etcd2", "etcd3"))
    wave = [member(f"etcd{i}", "etcd") for i in (1, 2, 3)]
    held = held_for_quorum(wave, [three], down_now=())
    assert held == {
        "etcd3": "cluster etcd: 0 of 3 members down, 2 starting now (etcd1, etcd2), "
        "max_unavailable 2: patching another would break quorum"
    }  # the first ones in order go


def test_a_member_already_down_takes_no_room_and_hosts_outside_clusters_go() -> None:
    wave = [member("etcd2", "etcd"), member("etcd1", "etcd"), member("solo", None)]
    held = held_for_quorum(wave, [ETCD], down_now={"etcd2"})
    assert set(held) == {"etcd1"}
    assert held_for_quorum(wave, [], down_now={"etcd2"}) == {}


def test_a_long_list_of_members_down_is_cut_short() -> None:
    names = tuple(f"n{i:02}" for i in range(12))
    big = ClusterState("big", 13, 12, names, (*names, "n12"))
    (why,) = held_for_quorum([member("n12", "big")], [big], down_now=()).values()
    assert "12 of 13 members down (n00, n01, n02, n03, n04, n05, n06, n07 and 4 more)" in why


# ---------------------------------------------------------------- properties


@settings(max_examples=60, deadline=None)
@given(
    data=st.data(),
    per_batch=st.integers(min_value=1, max_value=3),
    batch=st.integers(min_value=1, max_value=6),
    limit=st.sampled_from(["1", "2", "34%", "50%", "100%"]),
)
def test_no_batch_takes_a_cluster_past_its_limit(
    data: st.DataObject, per_batch: int, batch: int, limit: str
) -> None:
    fleet = [
        host(f"h{i:02}", tier=1, cluster=data.draw(st.sampled_from(["a", "b", "c", None])))
        for i in range(data.draw(st.integers(min_value=1, max_value=20)))
    ]
    findings = {
        h.name: unreachable(h.name) if data.draw(st.booleans()) else found(h.name, ("x", SEC))
        for h in fleet
    }
    plan = make_plan(loads(quorum_policy(limit, per_batch, batch)), fleet, findings, AT)
    states = {c.name: c for c in plan.clusters}
    for b in plan.batches:
        for cluster, count in Counter(h.cluster for h in b.hosts if h.cluster).items():
            assert count <= min(per_batch, states[cluster].budget)
    blocked = {s.host for s in plan.skipped if s.kind is SkipKind.QUORUM}
    for h in fleet:
        if h.name in blocked:
            assert states[str(h.var("cluster"))].budget <= 0
    reachable = {n for n, f in findings.items() if f.reachable}
    assert {*planned(plan), *blocked} == reachable  # every host with work: planned or held
