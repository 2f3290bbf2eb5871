"""Unit: which hosts the plan places on execution node groups (policy ``execution``), and how the
runner splits a job by group and picks each group's node (ansible-runner faked: unit tests)."""

from __future__ import annotations

import threading
from pathlib import Path
from types import MappingProxyType
from typing import Any

import pytest

from patchkit.errors import PlanningError, PolicyError
from patchkit.execution import ansible, nodes, placed
from patchkit.execution.runner import PlaybookResult, TaskResult
from patchkit.planning.plan import make_plan
from patchkit.planning.types import NodeGroup
from tests.unit.test_planner import AT, SEC, found, host, policy

GROUPS = """
execution:
  variable: site
  node_groups:
    - name: dc2
      nodes: [ops@10.2.0.5, "ops@10.2.0.6:2222"]
      key: /etc/patchkit/dc2.key
      known_hosts: /etc/patchkit/dc2.known_hosts
      venv: /srv/patchkit-node
      hosts: ["db*"]
    - name: dmz
      nodes: [10.9.0.5]
preparation:
  snapshot: {backend: package}
"""


def _placed(extra: str = GROUPS, **variables: dict[str, object]) -> dict[str, str]:
    fleet = [host(n, "servers", **variables.get(n, {})) for n in ("app1", "db1", "web1")]
    findings = {h.name: found(h.name, ("openssl", SEC)) for h in fleet}
    plan = make_plan(policy(extra, batch="3"), fleet, findings, AT)
    return {h.host: h.node_group for b in plan.batches for h in b.hosts}


def test_the_variable_wins_then_the_group_patterns_then_the_controller() -> None:
    assert _placed(web1={"site": "dmz"}, db1={"site": "dmz"}) == {
        "app1": "", "db1": "dmz", "web1": "dmz",
    }  # fmt: skip
    assert _placed() == {"app1": "", "db1": "dc2", "web1": ""}


def test_the_default_variable_is_patchkit_node_group() -> None:
    extra = GROUPS.replace("  variable: site\n", "")
    assert _placed(extra, app1={"patchkit_node_group": "dmz"})["app1"] == "dmz"


def test_the_plan_carries_the_groups_as_the_policy_defines_them() -> None:
    fleet = [host("db1", "servers")]
    plan = make_plan(policy(GROUPS), fleet, {"db1": found("db1", ("openssl", SEC))}, AT)
    assert plan.settings.node_groups == (
        NodeGroup(
            name="dc2", nodes=("ops@10.2.0.5", "ops@10.2.0.6:2222"),
            key="/etc/patchkit/dc2.key", known_hosts="/etc/patchkit/dc2.known_hosts",
            venv="/srv/patchkit-node",
        ),
        NodeGroup(name="dmz", nodes=("10.9.0.5",)),
    )  # fmt: skip


def test_a_variable_naming_no_group_is_an_error_naming_the_host() -> None:
    with pytest.raises(PlanningError, match="host web1: site is 'dc9', which names no node group"):
        _placed(web1={"site": "dc9"})


def test_controller_side_phases_are_refused_for_hosts_on_nodes() -> None:
    lab = GROUPS.replace("backend: package", "backend: lab")
    with pytest.raises(PlanningError, match="the snapshot backend 'lab' runs on the controller"):
        _placed(lab)
    hook = GROUPS + "  backup: {command: /usr/local/bin/backup}\n"
    with pytest.raises(PlanningError, match=r"the backup hook runs on the controller.*db1"):
        _placed(hook)


@pytest.mark.parametrize(
    "old, new, message",
    [
        ("nodes: [10.9.0.5]", "nodes: []", "at least 1 item"),
        ("nodes: [10.9.0.5]", "nodes: ['ops@']", "name a node as user@host"),
        ("- name: dmz", "- name: DMZ", "should match pattern"),
    ],
)
def test_a_malformed_node_group_is_refused_by_the_policy_check(
    old: str, new: str, message: str
) -> None:
    with pytest.raises(PolicyError, match=message):
        policy(GROUPS.replace(old, new))


def test_two_groups_of_one_name_are_refused() -> None:
    with pytest.raises(PolicyError, match="node group names must be unique: dmz"):
        policy(GROUPS.replace("- name: dc2", "- name: dmz"))


# ---------------------------------------------------------------- the runner's split


class _Fakes:
    """Stand-ins for the two ways a job runs, recording what each part was given."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, answering: set[str]) -> None:
        self.local: list[str] = []
        self.remote: list[tuple[str, list[str], str]] = []  # node, hosts, its key
        self.probed: list[nodes.ExecutionNode] = []
        self.together: threading.Barrier | None = None  # parts that must be running at once
        monkeypatch.setattr(placed, "run_playbook", self._local)
        monkeypatch.setattr(placed, "run_on_node", self._remote)
        monkeypatch.setattr(nodes, "probe", self._probe(answering))
        monkeypatch.setattr(nodes, "refuse_unless_ready", lambda facts, wanted: None)
        monkeypatch.setattr(nodes, "node_job", self._job)

    def _probe(self, answering: set[str]) -> Any:
        def probe(node: nodes.ExecutionNode) -> nodes.NodeFacts:
            self.probed.append(node)
            if node.name not in answering:
                raise nodes.NodeError(f"cannot reach execution node {node.name}")
            return nodes.NodeFacts(node.name, "3.11.2", "x86_64", MappingProxyType({}))

        return probe

    def _job(self, node: nodes.ExecutionNode, hosts: list[Any], **_: Any) -> Any:
        return (node, [h.name for h in hosts])

    def _local(self, playbook: Path, inventory: Path, *, limit: str, on_task: Any, **_: Any) -> Any:
        if self.together is not None:
            self.together.wait(10)
        self.local += limit.split(",")
        for name in limit.split(","):
            on_task(TaskResult(name, "patchkit patch result", "debug", "ok", MappingProxyType({})))
        return PlaybookResult("successful", 0, (), tuple(limit.split(",")))

    def _remote(self, playbook: Path, job: Any, *, on_task: Any, **_: Any) -> Any:
        if self.together is not None:
            self.together.wait(10)
        node, names = job
        self.remote.append((node.name, names, str(node.key)))
        for name in names:
            on_task(TaskResult(name, "patchkit patch result", "debug", "ok", MappingProxyType({})))
        return PlaybookResult("successful", 0, (), tuple(names))


def _runner(run_id: str = "run-1") -> ansible.AnsibleRunner:
    groups = {
        "dc2": NodeGroup("dc2", ("ops@10.2.0.5", "ops@10.2.0.6:2222"), key="/k/dc2"),
        "dmz": NodeGroup("dmz", ("10.9.0.5",), venv="/srv/v"),
    }
    placement = {"db1": "dc2", "db2": "dc2", "web1": "dmz"}
    records = {n: host(n) for n in ("app1", "db1", "db2", "web1")}
    return ansible.AnsibleRunner(
        placed.Placement(Path("inv.yml"), groups, placement, run_id, records)
    )


def _settings() -> Any:
    fleet = [host("app1", "servers")]
    plan = make_plan(policy(GROUPS), fleet, {"app1": found("app1", ("openssl", SEC))}, AT)
    return plan.settings


def test_a_job_is_split_by_group_and_every_outcome_reaches_the_loop(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    fakes = _Fakes(monkeypatch, {"ops@10.2.0.5", "ops@10.2.0.6:2222", "root@10.9.0.5"})
    fakes.together = threading.Barrier(3)  # each part waits for the other two: side by side
    told: list[str] = []
    result = _runner()._run(
        "patch.yml", ["app1", "db1", "db2", "web1"], {}, _settings(), lambda t: told.append(t.host),
        lambda: False,
    )  # fmt: skip
    assert fakes.local == ["app1"]
    parts = {tuple(names): node for node, names, _ in fakes.remote}
    assert set(parts) == {("db1", "db2"), ("web1",)}
    assert parts[("db1", "db2")] in ("ops@10.2.0.5", "ops@10.2.0.6:2222")
    assert parts[("web1",)] == "root@10.9.0.5"
    assert sorted(told) == ["app1", "db1", "db2", "web1"]
    assert not result.canceled and result.lost == ""
    dmz = next(n for n in fakes.probed if n.address == "10.9.0.5")
    assert dmz.venv == "/srv/v" and dmz.user == "root"
    assert all(str(n.key) == "/k/dc2" for n in fakes.probed if n.address.startswith("10.2"))


def test_a_run_sticks_to_one_node_per_group_chosen_by_its_id(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    both = {"ops@10.2.0.5", "ops@10.2.0.6:2222", "root@10.9.0.5"}
    chosen: dict[str, str] = {}
    for run_id in (f"run-{i}" for i in range(12)):
        fakes = _Fakes(monkeypatch, both)
        runner = _runner(run_id)
        for _ in range(2):  # two jobs of one run: one choice, made once
            runner._run("patch.yml", ["db1"], {}, _settings(), lambda t: None, lambda: False)
        assert len({n for n, _, _ in fakes.remote}) == 1
        assert len(fakes.probed) == 1
        chosen[run_id] = fakes.remote[0][0]
    assert set(chosen.values()) == {"ops@10.2.0.5", "ops@10.2.0.6:2222"}  # spread over runs
    fakes = _Fakes(monkeypatch, both)
    _runner("run-3")._run("patch.yml", ["db1"], {}, _settings(), lambda t: None, lambda: False)
    assert fakes.remote[0][0] == chosen["run-3"]  # stable: the same run id, the same node


def test_a_node_that_does_not_answer_is_passed_over_and_a_group_without_one_is_refused(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    fakes = _Fakes(monkeypatch, {"ops@10.2.0.6:2222"})
    told: list[TaskResult] = []
    result = _runner("run-0")._run(
        "patch.yml", ["db1", "web1"], {}, _settings(), told.append, lambda: False
    )
    assert [n for n, _, _ in fakes.remote] == ["ops@10.2.0.6:2222"]
    refused = [t for t in result.tasks if t.host == "web1"]
    assert [t.status for t in refused] == ["unreachable"]
    assert "no execution node of group dmz can run it" in refused[0].message
    assert "cannot reach execution node root@10.9.0.5" in refused[0].message
    assert "web1" in {t.host for t in told}  # the loop hears of it as of any outcome


def test_a_lost_node_makes_the_job_stop_like_a_cancel_and_says_which(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    fakes = _Fakes(monkeypatch, {"ops@10.2.0.5", "ops@10.2.0.6:2222"})

    def lost(playbook: Path, job: Any, **_: Any) -> PlaybookResult:
        return PlaybookResult("lost", -1, (), ())

    monkeypatch.setattr(placed, "run_on_node", lost)
    result = _runner()._run("patch.yml", ["db1", "app1"], {}, _settings(), lambda t: None,
                            lambda: False)  # fmt: skip
    assert result.canceled
    assert result.lost.startswith("execution node ops@10.2.0.")
    assert result.lost.endswith("(group dc2) was lost mid-job")
    assert fakes.local == ["app1"]  # the controller's part ran to its end


def test_a_node_lost_mid_job_is_not_chosen_again_and_the_group_moves_to_its_next_node(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    fakes = _Fakes(monkeypatch, {"ops@10.2.0.5", "ops@10.2.0.6:2222"})
    answered = fakes._remote
    used: list[str] = []

    def first_lost(playbook: Path, job: Any, **kwargs: Any) -> PlaybookResult:
        used.append(job[0].name)
        if len(used) == 1:
            return PlaybookResult("lost", -1, (), ())
        return answered(playbook, job, **kwargs)  # type: ignore[no-any-return]

    monkeypatch.setattr(placed, "run_on_node", first_lost)
    runner = _runner()
    first = runner._run("patch.yml", ["db1"], {}, _settings(), lambda t: None, lambda: False)
    second = runner._run("patch.yml", ["db2"], {}, _settings(), lambda t: None, lambda: False)
    assert first.lost and not second.canceled and second.lost == ""
    assert len(used) == 2 and used[0] != used[1]  # the next job went to the other node
    assert f"execution node {used[0]} (group dc2)" in first.lost
    third = runner._run("patch.yml", ["db1"], {}, _settings(), lambda t: None, lambda: False)
    assert used[2] == used[1] and not third.canceled  # and stays there for the run


def test_a_group_whose_every_node_was_lost_refuses_its_hosts_naming_the_loss(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    _Fakes(monkeypatch, {"root@10.9.0.5"})
    monkeypatch.setattr(
        placed, "run_on_node", lambda playbook, job, **_: PlaybookResult("lost", -1, (), ())
    )
    runner = _runner()
    runner._run("patch.yml", ["web1"], {}, _settings(), lambda t: None, lambda: False)
    again = runner._run("patch.yml", ["web1"], {}, _settings(), lambda t: None, lambda: False)
    (refused,) = again.tasks
    assert refused.status == "unreachable"
    assert "execution node root@10.9.0.5 was lost mid-job earlier" in refused.message


def test_every_preview_says_which_hosts_go_through_which_nodes() -> None:
    from rich.console import Console

    from patchkit.reports.plan import plan_html, plan_markdown, plan_text

    fleet = [host(n, "servers") for n in ("app1", "db1")]
    findings = {h.name: found(h.name, ("openssl", SEC)) for h in fleet}
    plan = make_plan(policy(GROUPS), fleet, findings, AT)
    said = "db1 through node group dc2 (one of ops@10.2.0.5, ops@10.2.0.6:2222)"
    console = Console(width=400, record=True)
    console.print(plan_text(plan))
    text = console.export_text()
    assert said in " ".join(text.split())
    assert "app1 from this controller" in text
    assert said in plan_markdown(plan)
    assert said in plan_html(plan)
    alone = make_plan(policy(), fleet, findings, AT)
    assert "every host from this controller" in plan_markdown(alone)
    assert "a node lost mid-job: the run stops there, interrupted" in plan_markdown(plan)
    assert "node lost" not in plan_markdown(alone)
    going_on = make_plan(
        policy(GROUPS.replace("  node_groups:", "  on_node_lost: continue\n  node_groups:")),
        fleet,
        findings,
        AT,
    )
    assert going_on.settings.rules.on_node_lost == "continue"
    said = "a node lost mid-job: its hosts wait without a verdict and the rest of the window"
    assert said in plan_markdown(going_on)


def test_the_runner_uses_the_inventory_the_command_read(monkeypatch: pytest.MonkeyPatch) -> None:
    from patchkit import inventory

    def never(*_args: object, **_kwargs: object) -> None:
        raise AssertionError("the inventory was read a second time")

    monkeypatch.setattr(inventory, "load", never)
    fakes = _Fakes(monkeypatch, {"root@10.9.0.5"})
    fleet = [host("web1", "servers", site="dmz")]
    plan = make_plan(policy(GROUPS), fleet, {"web1": found("web1", ("openssl", SEC))}, AT)
    runner = ansible.AnsibleRunner.for_plan(plan, Path("inv.yml"), "run-1", hosts=fleet)
    runner._run("patch.yml", ["web1"], {}, plan.settings, lambda t: None, lambda: False)
    assert fakes.remote == [("root@10.9.0.5", ["web1"], "None")]


# ---------------------------------------------------------------- jobs without a plan


def test_assess_asks_hosts_on_nodes_through_them_in_check_mode(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A host the controller may not reach is assessed by its node; a group whose node does not
    answer leaves its hosts unreachable with the reason, and the rest is assessed."""
    from datetime import UTC, datetime

    from patchkit import assess

    fakes = _Fakes(monkeypatch, {"ops@10.2.0.5", "ops@10.2.0.6:2222"})
    given: list[dict[str, Any]] = []

    def remote(playbook: Path, job: Any, **kwargs: Any) -> PlaybookResult:
        given.append(kwargs | {"playbook": playbook.name, "hosts": job[1]})
        return PlaybookResult("successful", 0, (), ())

    monkeypatch.setattr(placed, "run_on_node", remote)
    fleet = [host("app1", "servers"), host("db1", "servers"), host("web1", "servers", site="dmz")]
    placement = placed.Placement.of_policy(
        policy(GROUPS), fleet, Path("inv.yml"), "2026-12-03T00:00:00"
    )
    assert placement.where == {"db1": "dc2", "web1": "dmz"}
    findings = assess.assess(
        Path("inv.yml"), limit="app1,db1,web1", at=datetime(2026, 12, 3, tzinfo=UTC),
        placement=placement,
    )  # fmt: skip
    assert fakes.local == ["app1"]
    assert [(g["playbook"], g["hosts"], g["check"]) for g in given] == [
        ("assess.yml", ["db1"], True)
    ]
    by_host = {f.host: f for f in findings}
    assert set(by_host) == {"app1", "db1", "web1"}
    assert not by_host["web1"].reachable
    assert "no execution node of group dmz can run it" in (by_host["web1"].message or "")
    assert "no result from the assess playbook" in (by_host["db1"].message or "")


def test_a_node_that_cannot_start_the_job_leaves_its_hosts_unreachable_naming_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from patchkit.errors import RunnerError

    _Fakes(monkeypatch, {"ops@10.2.0.5", "ops@10.2.0.6:2222", "root@10.9.0.5"})

    def broken(playbook: Path, job: Any, **_: Any) -> PlaybookResult:
        raise RunnerError("ansible-playbook patch.yml could not run on execution node x")

    monkeypatch.setattr(placed, "run_on_node", broken)
    result = _runner()._run(
        "patch.yml", ["db1", "app1"], {}, _settings(), lambda t: None, lambda: False
    )
    (refused,) = [t for t in result.tasks if t.host == "db1"]
    assert refused.status == "unreachable"
    assert "(group dc2) did not run the job: ansible-playbook patch.yml could not run" in (
        refused.message
    )
    assert not result.canceled  # the hosts count as unreachable, per the failure rules
