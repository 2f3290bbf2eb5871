"""Unit: terminal tables never cut a run or plan id, a host, a package or a version.

Every text renderer is drawn at 60, 80 and 120 columns from the example fleet (policies/example,
inventories/example, examples/findings.json), and every value people copy or compare must be
in the output as written: not cut with an ellipsis, not folded over two lines.
"""

from __future__ import annotations

import io
import sys
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from rich.cells import cell_len
from rich.console import RenderableType

from patchkit import findings, inventory, policy
from patchkit.ledger import Ledger
from patchkit.model import Finding, Host
from patchkit.planning.plan import make_plan, plan_body
from patchkit.planning.types import Plan
from patchkit.reports import compliance, run_report
from patchkit.reports.plan import plan_text
from patchkit.reports.scope import findings_table, scope_tables
from patchkit.reports.terminal import Fit, FittedTable, PlainConsole

ROOT = Path(__file__).resolve().parents[2]
AT = datetime(2026, 11, 20, 12, 0, tzinfo=UTC)
WIDTHS = (60, 80, 120)
RUN = "run-20261120-120000-a1b2c3"  # the shape patchkit.execution gives run ids
BOXES = "│┃┆┇┊┋╎╏║━─┏┓┗┛┡┩└┘┳┻╇╈┼╋┬┴├┤"


def rendered(renderable: RenderableType, width: int) -> str:
    """What ``patchkit`` prints on a terminal ``width`` columns wide (cli.consoles.console)."""
    out = io.StringIO()
    PlainConsole(file=out, width=width, soft_wrap=True).print(renderable)
    return out.getvalue()


def squeezed(text: str) -> str:
    """``text`` without spaces, line breaks and box lines: a folded value reads whole here."""
    return "".join(c for c in text if not c.isspace() and c not in BOXES)


def assert_whole(text: str, values: Iterable[str]) -> None:
    missing = sorted({v for v in values if v and v not in text})
    assert not missing, f"cut or folded: {missing[:10]}"
    assert "…" not in text


@pytest.fixture(scope="module")
def fleet() -> tuple[Host, ...]:
    return inventory.load(ROOT / "inventories" / "example" / "hosts.yml")


@pytest.fixture(scope="module")
def found() -> dict[str, Finding]:
    return {f.host: f for f in findings.load(ROOT / "examples" / "findings.json")}


@pytest.fixture(scope="module")
def plan(fleet: tuple[Host, ...], found: dict[str, Finding]) -> Plan:
    return make_plan(policy.load(ROOT / "policies" / "example.yml"), fleet, found, AT)


def plan_values(plan: Plan) -> Iterator[str]:
    yield plan.id
    for h in plan.hosts():
        yield h.host
        for u in h.updates:
            yield from (u.package, u.installed or "", u.candidate)
        for held in h.held:
            yield from (held.package, held.candidate)
    for s in plan.skipped:
        yield s.host


@pytest.mark.parametrize("width", WIDTHS)
@pytest.mark.parametrize("detail", [True, False])
def test_the_plan_preview_keeps_ids_hosts_packages_and_versions(
    plan: Plan, width: int, detail: bool
) -> None:
    text = rendered(plan_text(plan, detail=detail), width)
    assert_whole(text, plan_values(plan))
    assert plan.hash in squeezed(text)  # 64 hex digits: folded at 60 columns, never cut


def _record(body: dict[str, Any]) -> dict[str, Any]:
    """A ledger record of a run of ``body``: batch 1 patched but for one failed verification,
    the rest never started."""
    start = AT
    batches, phases, changes = [], [], []
    for batch in body["batches"]:
        ran = batch["number"] == 1
        for i, h in enumerate(batch["hosts"] if ran else []):
            failed = i == 0
            for name in ("precheck", "snapshot", "patch", "reboot", "verify"):
                bad = failed and name == "verify"
                phases.append(
                    {
                        "batch": 1, "host": h["host"], "phase": name,
                        "status": "failed" if bad else "ok", "seconds": 2.0, "data": {},
                        "message": "1 of 1 checks failed: http /health (HTTP 503)" if bad else "",
                    }
                )  # fmt: skip
            changes += [
                {"host": h["host"], "package": u["package"], "before": u["installed"],
                 "after": u["candidate"]}
                for u in h["updates"]
            ]  # fmt: skip
        batches.append(
            {
                "number": batch["number"], "status": "failed" if ran else "not-started",
                "hosts": len(batch["hosts"]), "failed": 1 if ran else 0,
                "reason": "1 host failed" if ran else "", "started": start if ran else None,
                "ended": start + timedelta(minutes=14) if ran else None,
            }
        )  # fmt: skip
    return {
        "id": RUN, "plan": body["id"], "status": "halted",
        "reason": "halted after batch 1: 1 host failed, the error threshold is 1",
        "started": start, "ended": start + timedelta(minutes=15),
        "batches": batches, "phases": phases, "changes": changes,
    }  # fmt: skip


@pytest.mark.parametrize("width", WIDTHS)
def test_the_run_report_keeps_ids_hosts_packages_and_versions(plan: Plan, width: int) -> None:
    body = plan_body(plan)
    made = run_report.build(_record(body), body)
    text = rendered(run_report.to_text(made), width)
    values = [made.run, made.plan, *(h.host for h in made.hosts), *(x.host for x in made.left)]
    for h in made.hosts:
        for c in h.changes:
            values += [c.package, c.before or "", c.after or ""]
    assert values[len(made.hosts) :], "the run changed nothing: nothing checked"
    assert_whole(text, values)


@pytest.mark.parametrize("width", WIDTHS)
def test_the_compliance_report_keeps_hosts_packages_and_versions(
    fleet: tuple[Host, ...], found: dict[str, Finding], width: int
) -> None:
    loaded = policy.load(ROOT / "policies" / "example.yml")
    made = compliance.build(loaded, fleet, found, [], [], AT)
    text = rendered(compliance.to_text(made), width)
    values = [h.host for h in made.hosts]
    for h in made.hosts:
        values += [v for u in h.updates for v in (u.package, u.candidate)]
    assert_whole(text, values)


@pytest.mark.parametrize("width", WIDTHS)
def test_scope_and_assessment_tables_keep_hosts_packages_and_versions(
    fleet: tuple[Host, ...], found: dict[str, Finding], width: int
) -> None:
    rows = [
        {
            "host": h.name, "in_scope": i % 3 != 0, "env": h.var("env"), "tier": h.var("tier"),
            "cluster": h.var("cluster"), "criticality": 3, "criticality_label": "high",
            "kind": "excluded", "reason": "matches scope.exclude 'laptops' (a group)",
        }
        for i, h in enumerate(fleet)
    ]  # fmt: skip
    text = rendered(scope_tables(rows, "example-fleet"), width)
    assert_whole(text, [h.name for h in fleet])
    assessed = sorted(found.values(), key=lambda f: f.host)
    text = rendered(findings_table(assessed, AT), width)
    values = [f.host for f in assessed]
    values += [v for f in assessed for u in f.updates for v in (u.package, u.candidate)]
    assert_whole(text, values)


@pytest.mark.parametrize("width", WIDTHS)
def test_patchkit_runs_keeps_run_plan_policy_and_window(
    plan: Plan, width: int, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: Any
) -> None:
    from patchkit.cli import consoles, main  # the CLI only here: the renderers need none of it

    url = f"sqlite:///{tmp_path / 'ledger.sqlite'}"
    body = plan_body(plan)
    ledger = Ledger(url)
    try:
        ledger.save_plan(body, saved_at=AT)
        ledger.start_run(RUN, plan.id, plan.hash, at=AT, holder="test:1")
        ledger.record_batch(RUN, 1, status="failed", hosts=8, failed=1, started=AT, ended=AT)
        ledger.finish_run(RUN, status="halted", reason=_record(body)["reason"], at=AT)
    finally:
        ledger.close()
    monkeypatch.setattr(consoles.console, "width", width)
    monkeypatch.setattr(sys, "argv", ["patchkit", "--ledger", url, "runs"])
    with pytest.raises(SystemExit) as stopped:
        main()
    out = capsys.readouterr().out
    assert stopped.value.code in (0, None), out
    assert_whole(out, [RUN, plan.policy, plan.window.name, "halted"])


def test_a_table_too_narrow_for_its_ids_becomes_one_block_per_row() -> None:
    table = FittedTable("runs")
    table.add_column("run", Fit.WHOLE)
    table.add_column("hosts", Fit.WORDS)
    table.add_column("why", Fit.FREE)
    why = "halted after batch 2: " + "a reason long enough to need folding " * 3
    table.add_row(RUN, "web-prod-01, web-prod-02, db-prod-03", why)
    table.add_row(f"{RUN}x", "", "")  # an empty cell has no line in a block
    wide, narrow = rendered(table, 80), rendered(table, 40)
    assert "┃ run" in wide and "run:" not in wide
    assert "run:   " + RUN in narrow and "┃" not in narrow
    assert narrow.count("hosts:") == 1 and narrow.count("why:") == 1
    for text, width in ((wide, 80), (narrow, 40)):
        assert_whole(text, [RUN, "web-prod-01", "web-prod-02", "db-prod-03", *why.split()])
        assert max(cell_len(line) for line in text.splitlines()) <= width
    assert why.replace(" ", "") in squeezed(narrow)  # a block holds the whole reason, in order


def test_a_table_drops_its_edge_before_it_gives_up_on_columns() -> None:
    table = FittedTable()
    for header in ("a", "b"):
        table.add_column(header, Fit.WHOLE)
    table.add_row("x" * 30, "y" * 30)
    assert table.layout(67) == ([30, 30], True)  # 30 + 30 and 7 cells of borders and padding
    assert table.layout(63) == ([30, 30], False)
    assert table.layout(62) is None
