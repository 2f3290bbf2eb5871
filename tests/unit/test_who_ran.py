"""Unit: the ledger records which controller and which execution node ran each host's phases
(schema 8), and the run report shows it (ansible-runner faked: unit tests)."""

from __future__ import annotations

import csv
import io
import sqlite3
from datetime import UTC, datetime
from pathlib import Path
from types import MappingProxyType
from typing import Any

import pytest

from patchkit.execution import events, placed
from patchkit.execution.events import HostOutcome, PhaseOutcome
from patchkit.execution.runner import PlaybookResult, TaskResult
from patchkit.execution.status import HostStatus, Phase, PhaseStatus
from patchkit.ledger import Ledger
from patchkit.ledger import schema as t
from patchkit.ledger.base import this_controller
from patchkit.planning.plan import plan_body
from patchkit.planning.types import NodeGroup
from patchkit.reports import run_report
from tests.unit.plans import make

AT = datetime(2026, 12, 3, 12, 0, tzinfo=UTC)
NODE = "root@10.2.0.5"


def _result(host: str, phase: str, via: str = "") -> TaskResult:
    msg = {"phase": phase, "status": "ok", "message": ""}
    shown = MappingProxyType({"msg": msg})
    return TaskResult(host, f"patchkit {phase} result", "debug", "ok", shown, via=via)


def test_a_jobs_tasks_say_which_node_ran_them(monkeypatch: pytest.MonkeyPatch) -> None:
    """The node's part comes back with its node named on every task, live and in the result;
    the controller's part names none."""
    from patchkit.execution import nodes

    facts: MappingProxyType[str, int] = MappingProxyType({})
    monkeypatch.setattr(
        nodes, "probe", lambda n: nodes.NodeFacts(n.name, "3.11.2", "x86_64", facts)
    )
    monkeypatch.setattr(nodes, "refuse_unless_ready", lambda facts, wanted: None)
    monkeypatch.setattr(nodes, "node_job", lambda node, hosts, **_: hosts)

    def remote(playbook: Path, job: Any, *, on_task: Any, **_: Any) -> PlaybookResult:
        task = _result("db1", "patch")
        on_task(task)
        return PlaybookResult("successful", 0, (task,), ("db1",))

    def local(playbook: Path, inventory: Path, *, on_task: Any, **_: Any) -> PlaybookResult:
        task = _result("app1", "patch")
        on_task(task)
        return PlaybookResult("successful", 0, (task,), ("app1",))

    monkeypatch.setattr(placed, "run_on_node", remote)
    monkeypatch.setattr(placed, "run_playbook", local)
    from tests.unit.test_planner import host

    placement = placed.Placement(
        Path("inv.yml"), {"dc2": NodeGroup("dc2", (NODE,))}, {"db1": "dc2"}, "run-1",
        {n: host(n) for n in ("app1", "db1")},
    )  # fmt: skip
    live: list[TaskResult] = []
    done = placement.run("patch.yml", ["app1", "db1"], placed.Job({}, 60), live.append)
    assert {t.host: t.via for t in live} == {"app1": "", "db1": NODE}
    assert {t.host: t.via for t in done.tasks} == {"app1": "", "db1": NODE}
    assert done.nodes == {"dc2": NODE}
    assert placement.node_of("db1") == NODE and placement.node_of("app1") == ""


def test_a_hosts_phases_carry_the_node_of_its_tasks() -> None:
    tasks = [_result("db1", "precheck", NODE), _result("db1", "snapshot", NODE)]
    folded = events.fold_phases("db1", tasks, (Phase.PRECHECK, Phase.SNAPSHOT, Phase.PATCH))
    assert [p.via for p in folded] == [NODE, NODE, NODE]  # the lost patch phase too
    local = events.fold_phases("app1", [_result("app1", "precheck")], (Phase.PRECHECK,))
    assert [p.via for p in local] == [""]


def _recorded(tmp_path: Path) -> tuple[Ledger, dict[str, Any]]:
    ledger = Ledger(f"sqlite:///{tmp_path / 'ledger.sqlite'}")
    body = plan_body(make(hosts=2))
    ledger.save_plan(body, saved_at=AT)
    ledger.start_run("run-1", str(body["id"]), str(body["hash"]), at=AT, holder="ctl:1")
    names = [h["host"] for b in body["batches"] for h in b["hosts"]]
    ok = PhaseStatus.OK
    ledger.record_phase("run-1", 1, names[0], PhaseOutcome(Phase.PATCH, ok, "", 1.0, via=NODE),
                        at=AT)  # fmt: skip
    outcome = HostOutcome(
        names[1], HostStatus.PATCHED, None, "", (PhaseOutcome(Phase.PATCH, ok, "", 1.0),)
    )
    ledger.record_outcomes("run-1", 1, [outcome], started=AT, ended=AT)
    ledger.finish_run("run-1", status="completed", reason="", at=AT)
    return ledger, body


def test_the_ledger_records_the_controller_and_node_of_each_phase(tmp_path: Path) -> None:
    ledger, body = _recorded(tmp_path)
    names = [h["host"] for b in body["batches"] for h in b["hosts"]]
    record = ledger.run_record("run-1")
    assert record is not None
    ran = {p["host"]: (p["controller"], p["via"]) for p in record["phases"]}
    assert ran == {names[0]: (this_controller(), NODE), names[1]: (this_controller(), "")}
    report = run_report.build(record, body)
    shown = {h.host: h.ran for h in report.hosts}
    assert shown[names[0]] == f"{this_controller()} via {NODE}"
    assert shown[names[1]] == this_controller()
    rows = list(csv.DictReader(io.StringIO(run_report.to_csv(report))))
    assert {r["host"]: r["via"] for r in rows} == {names[0]: NODE, names[1]: ""}
    assert {r["controller"] for r in rows} == {this_controller()}
    assert f"{this_controller()} via {NODE}" in run_report.to_markdown(report)
    assert f"via {NODE}" in run_report.to_html(report)


def test_a_version_7_ledger_gains_the_columns_and_keeps_its_phases(tmp_path: Path) -> None:
    ledger, _ = _recorded(tmp_path)
    ledger.close()
    path = tmp_path / "ledger.sqlite"
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("ALTER TABLE host_phases DROP COLUMN controller")
    conn.execute("ALTER TABLE host_phases DROP COLUMN via")
    conn.execute("UPDATE meta SET value = '7' WHERE key = 'schema'")
    conn.close()
    reopened = Ledger(f"sqlite:///{path}")  # opening migrates
    record = reopened.run_record("run-1")
    assert record is not None and len(record["phases"]) == 2
    assert {(p["controller"], p["via"]) for p in record["phases"]} == {("", "")}  # unknown
    conn = sqlite3.connect(path)
    (version,) = conn.execute("SELECT value FROM meta WHERE key = 'schema'").fetchone()
    conn.close()
    assert version == str(t.SCHEMA_VERSION) == "8"


def test_runs_lists_the_controllers_and_nodes_that_ran_each_run(tmp_path: Path) -> None:
    from patchkit.cli.report import _ran_from

    ledger, _ = _recorded(tmp_path)
    (run,) = ledger.runs()
    assert run["holder"] == "ctl:1"
    assert run["controllers"] == [this_controller()] and run["nodes"] == [NODE]
    assert _ran_from(run) == f"{this_controller()} via {NODE}"
    assert _ran_from(run | {"controllers": [], "nodes": []}) == "ctl:1"  # before schema 8


def test_a_job_through_a_node_leaves_the_controllers_signal_handlers_alone(tmp_path: Path) -> None:
    """ansible-runner's init_runner installs SIGINT and SIGTERM handlers of its own unless given
    a cancel callback; through a node it must not, or Ctrl-C would no longer stop a run (a
    stand-in for ssh that ends at once: the job fails to start, which is all this needs)."""
    import signal

    from patchkit import content
    from patchkit.errors import RunnerError
    from patchkit.execution.runner import NodeJob, run_on_node

    def ours(_signum: int, _frame: object) -> None:
        return None

    before = {s: signal.signal(s, ours) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        job = NodeJob("stand-in", ("true",), str(tmp_path / "venv"), {"all": {"hosts": {}}})
        with pytest.raises(RunnerError, match="could not run on execution node stand-in"):
            run_on_node(content.playbook("lab-check.yml"), job, timeout=30)
        assert signal.getsignal(signal.SIGINT) is ours
        assert signal.getsignal(signal.SIGTERM) is ours
    finally:
        for number, handler in before.items():
            signal.signal(number, handler)
