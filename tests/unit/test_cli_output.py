"""Unit: what users and hosts wrote is shown as written, by every output of every command.

Hostile text goes into a policy, an inventory, a findings file, an approval and a recorded run;
the real commands (through ``patchkit.cli.main``) must print it verbatim: not read as rich
markup or emoji codes, and with control characters shown escaped, never sent raw to the
terminal. Documents escape it for their own syntax (Markdown, HTML); data formats (JSON, CSV)
keep it exactly.
"""

from __future__ import annotations

import csv
import io
import json
import re
import sys
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml
from rich.table import Table
from rich.text import Text

from patchkit import findings as findings_file
from patchkit.cli import consoles, main
from patchkit.errors import ExitCode
from patchkit.execution.events import PhaseOutcome
from patchkit.execution.status import Phase, PhaseStatus
from patchkit.lab.lifecycle import HostStatus, LabStatus
from patchkit.ledger import Ledger
from patchkit.model import Finding, PendingUpdate
from patchkit.reports.lab import status_table
from patchkit.reports.run import RunProgress
from patchkit.reports.scope import findings_table
from patchkit.reports.terminal import PlainConsole, visible
from tests.unit.plans import make

# rich markup ([/] crashes, [bold] and [a-z0-9] vanish) and emoji codes (:100:, :end:): what a
# policy may hold (its loader refuses control characters).
MARKUP = "[/] [bold]x :100: [a-z0-9] begin:end:step"
# and terminal controls (colour, clear screen): what hosts, inventories and the command line
# may bring.
HOSTILE = MARKUP + " \x1b[31m\x1b[2J"
SHOWN = MARKUP + " \\x1b[31m\\x1b[2J"  # as the terminal shows it
RAW = "\x1b[2J"  # a control sequence rich never writes itself
# What breaks documents: Markdown tables and code, HTML tags and entities, a line break.
PROSE = "a|b`c`\nd <i>e</i> & [x](y)"
DOC = PROSE + " \x1b[2J"
AT = "2026-11-20T12:00+00:00"
WHEN = datetime(2026, 11, 20, 12, 0, tzinfo=UTC)


@dataclass(frozen=True)
class Done:
    code: int
    out: str
    err: str


Run = Callable[..., Done]  # patchkit ARGV in this process


@dataclass(frozen=True)
class Fleet:
    """A policy, inventory and findings file full of hostile text, and a ledger for them."""

    policy: Path
    inventory: Path
    findings: Path
    ledger: str

    def args(self, *argv: str) -> list[str]:
        return ["--ledger", self.ledger, *argv]

    def plan_args(self, *extra: str) -> list[str]:
        return self.args(
            "plan", "-p", str(self.policy), "-i", str(self.inventory),
            "--findings", str(self.findings), "--at", AT, *extra,
        )  # fmt: skip


@pytest.fixture
def run_cli(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> Run:
    """Run ``patchkit ARGV`` in this process, on consoles wide enough not to fold a line."""
    for console in (consoles.console, consoles.err_console):
        monkeypatch.setattr(console, "width", 400)

    def run(*argv: str) -> Done:
        monkeypatch.setattr(sys, "argv", ["patchkit", *argv])
        with pytest.raises(SystemExit) as stopped:
            main()
        out, err = capsys.readouterr()
        return Done(int(stopped.value.code or 0), out, err)

    return run


@pytest.fixture
def fleet(tmp_path: Path) -> Fleet:
    policy = {
        "name": MARKUP,
        "roles": {"owner": MARKUP, "approvers": [MARKUP, "alice"]},
        "classification": {"updates": "all"},
        "windows": [
            {
                "name": "all-day",
                "rrule": "FREQ=DAILY;BYHOUR=0;BYMINUTE=0;BYSECOND=0",
                "timezone": "UTC",
                "duration": "24h",
                "cutoff": "5m",
            }
        ],
        "rollout": {"batch_size": 2, "concurrency": 2, "error_threshold": 1},
        "verification": [{"type": "command", "command": f"check {MARKUP}"}],
        "exceptions": [
            {"hosts": ["web3"], "owner": MARKUP, "reason": PROSE, "expires": "2027-01-01"}
        ],
    }
    inventory = {
        "all": {
            "hosts": {
                "web1": {"env": HOSTILE, "cluster": HOSTILE, "tier": 1},
                "web2": {"env": "dev"},
                "web3": {"env": "dev"},
                "db1": {"env": "dev"},
            }
        }
    }
    found = [
        Finding(
            host="web1",
            assessed_at=WHEN - timedelta(hours=6),
            reachable=True,
            updates=(
                PendingUpdate(
                    HOSTILE, "1.0", f"2:{HOSTILE}", HOSTILE, first_seen=WHEN - timedelta(days=20)
                ),
                PendingUpdate(DOC, None, "1.1", "stable", first_seen=WHEN - timedelta(days=20)),
            ),
        ),
        Finding(host="web2", assessed_at=WHEN - timedelta(hours=6), reachable=False, message=DOC),
    ]
    (tmp_path / "policy.yml").write_text(yaml.safe_dump(policy), encoding="utf-8")
    (tmp_path / "hosts.yml").write_text(yaml.safe_dump(inventory), encoding="utf-8")
    (tmp_path / "findings.json").write_text(findings_file.dumps(found), encoding="utf-8")
    return Fleet(
        tmp_path / "policy.yml",
        tmp_path / "hosts.yml",
        tmp_path / "findings.json",
        f"sqlite:///{tmp_path / 'ledger.sqlite'}",
    )


def _plan(run_cli: Run, fleet: Fleet) -> dict[str, Any]:
    done = run_cli(*fleet.plan_args("--format", "json"))
    assert done.code == 0, done.err
    body: dict[str, Any] = json.loads(done.out)
    return body


def _record_run(fleet: Fleet, body: dict[str, Any]) -> str:
    """A failed run of ``body`` in the ledger, as ``run`` would have recorded it."""
    ledger = Ledger(fleet.ledger)
    try:
        ledger.approve(body["id"], body["hash"], by=MARKUP, at=WHEN, comment=HOSTILE)
        ledger.start_run("run-1", body["id"], body["hash"], at=WHEN, holder="test:1")
        ledger.record_phase(
            "run-1", 1, "web1", PhaseOutcome(Phase.PATCH, PhaseStatus.FAILED, HOSTILE, 2.0), at=WHEN
        )
        ledger.record_batch(
            "run-1", 1, status="failed", hosts=1, failed=1, started=WHEN, ended=WHEN,
            reason=HOSTILE,
        )  # fmt: skip
        ledger.finish_run("run-1", status="failed", reason=HOSTILE, at=WHEN)
    finally:
        ledger.close()
    return "run-1"


def _verbatim(text: str) -> None:
    assert RAW not in text and "\x1b" not in text  # no control sequence reaches the terminal
    assert "\U0001f4af" not in text and "\U0001f51a" not in text  # :100: and :end: as emoji


# ---------------------------------------------------------------- the consoles themselves


def test_a_plain_console_shows_strings_cells_and_titles_as_written() -> None:
    out = io.StringIO()
    console = PlainConsole(file=out, width=200, color_system="truecolor")
    table = Table(title=HOSTILE)
    table.add_column(HOSTILE)
    table.add_row(HOSTILE)  # a str cell: rendered through render_str, which reads no markup
    console.print(HOSTILE)
    console.print(table)
    console.print(Text(HOSTILE, style="red"))  # a Text built without escaping: the last defence
    shown = out.getvalue()
    assert shown.count(SHOWN) == 5  # the string, the title, the header, the cell, the Text
    assert RAW not in shown
    assert shown.count("\x1b[31m") == 1  # deliberate styling still styles: the red Text


def test_visible_escapes_controls_and_keeps_line_breaks() -> None:
    assert visible("a\tb\nc") == "a\tb\nc"
    assert visible("ok\rFAILED\x00\x7f\x9b") == "ok\\x0dFAILED\\x00\\x7f\\x9b"
    assert visible("evil\u202etxt.exe") == "evil\\u202etxt.exe"
    assert visible(HOSTILE) == SHOWN


# ---------------------------------------------------------------- plan, scope, approve


def test_plan_text_shows_policy_inventory_and_host_text_verbatim(
    run_cli: Run, fleet: Fleet
) -> None:
    done = run_cli(*fleet.plan_args())
    assert done.code == 0, done.err
    _verbatim(done.out)
    assert re.search(rf"^policy +{re.escape(MARKUP)} *$", done.out, re.MULTILINE)
    for expected in (
        f"required: {MARKUP}, alice",  # approvers
        f"`check {MARKUP}` exits 0",  # a verification check
        f"(owner {MARKUP})",  # an exception's owner
        f"1.0 → 2:{SHOWN}",  # installed → candidate, from the host
    ):
        assert expected in done.out
    assert done.out.count(SHOWN) == 3  # the package, its candidate and its origin


def test_plan_text_file_is_verbatim_too(run_cli: Run, fleet: Fleet, tmp_path: Path) -> None:
    target = tmp_path / "out" / "plan.txt"
    done = run_cli(*fleet.plan_args("--format", "text", "-o", str(target)))
    assert done.code == 0, done.err
    text = target.read_text(encoding="utf-8")
    _verbatim(text)
    # a file is 120 columns wide: tables fold long cells, the summary lines do not
    assert re.search(rf"^policy +{re.escape(MARKUP)}$", text, re.MULTILINE)
    assert f"required: {MARKUP}, alice" in text


def test_scope_shows_host_variables_and_policy_name_verbatim(run_cli: Run, fleet: Fleet) -> None:
    done = run_cli("scope", "-i", str(fleet.inventory), "-p", str(fleet.policy), "--at", AT)
    assert done.code == 0, done.err
    _verbatim(done.out)
    assert f"in scope of policy {MARKUP}\n" in done.out
    assert done.out.count(SHOWN) == 2  # web1's env and cluster
    assert f"(owner {MARKUP})" in done.out  # why web3 is left out


def test_approve_names_the_approver_verbatim_and_refuses_strangers(
    run_cli: Run, fleet: Fleet
) -> None:
    body = _plan(run_cli, fleet)
    done = run_cli(*fleet.args("approve", body["id"], "--by", MARKUP, "--comment", HOSTILE))
    assert done.code == 0, done.err
    assert f"approved by {MARKUP} (hash" in done.err
    refused = run_cli(*fleet.args("approve", body["id"], "--by", HOSTILE))
    assert refused.code == ExitCode.REFUSED
    _verbatim(refused.err)
    assert f"{SHOWN} may not approve plans of policy {MARKUP}" in refused.err
    assert f"approvers: {MARKUP}, alice" in refused.err


def test_an_error_message_shows_the_id_it_was_given_verbatim(run_cli: Run, fleet: Fleet) -> None:
    done = run_cli(*fleet.args("status", HOSTILE))
    assert done.code == ExitCode.BAD_INPUT
    _verbatim(done.err)
    assert f"no run {SHOWN} in" in done.err


# ---------------------------------------------------------------- runs, status, reports


def test_status_runs_and_the_run_report_show_what_hosts_said_verbatim(
    run_cli: Run, fleet: Fleet, tmp_path: Path
) -> None:
    run_id = _record_run(fleet, _plan(run_cli, fleet))
    status = run_cli(*fleet.args("status", run_id))
    assert status.code == 0, status.err
    _verbatim(status.out)
    assert f"policy {MARKUP}): failed: {SHOWN}" in status.out  # the head: policy and reason
    assert f"approved by {MARKUP} at 2026-11-20 12:00:00 UTC ({SHOWN})" in status.out
    assert f"patch failed: {SHOWN}" in status.out  # the host's message
    listed = run_cli(*fleet.args("runs"))
    assert listed.code == 0, listed.err
    _verbatim(listed.out)
    assert f" {MARKUP} " in listed.out and listed.out.count(SHOWN) == 1  # policy, reason
    target = tmp_path / "run.txt"
    assert run_cli(*fleet.args("report", "run", "-o", str(target))).code == 0
    text = target.read_text(encoding="utf-8")
    _verbatim(text)
    assert f"patch failed: {SHOWN}" in text


def test_compliance_text_shows_policy_inventory_and_packages_verbatim(
    run_cli: Run, fleet: Fleet
) -> None:
    ledger = Ledger(fleet.ledger)
    try:
        ledger.record_assessment(
            findings_file.load(fleet.findings), source="test", started=WHEN - timedelta(hours=6)
        )
    finally:
        ledger.close()
    args = ["-p", str(fleet.policy), "-i", str(fleet.inventory), "--at", AT]
    done = run_cli(*fleet.args("report", "compliance", *args))
    assert done.code == 0, done.err
    _verbatim(done.out)
    assert f"compliance of policy {MARKUP} at" in done.out
    assert f"{SHOWN} 2:{SHOWN} medium: compliant, due 2026-11-30" in done.out
    assert done.out.count(SHOWN) == 4  # the package, its candidate, web1's env (twice)
    assert "d <i>e</i> & [x](y) \\x1b[2J 1.1 medium" in done.out  # a package named with DOC


# ---------------------------------------------------------------- renderers without a command


def _rendered(renderable: Any) -> str:
    out = io.StringIO()
    PlainConsole(file=out, width=400).print(renderable)
    return out.getvalue()


def test_the_assessment_table_shows_packages_and_messages_verbatim() -> None:
    found = [
        Finding("web1", WHEN, True, (PendingUpdate(HOSTILE, "1", f"2:{HOSTILE}", "o"),)),
        Finding("web2", WHEN, False, message=HOSTILE),
    ]
    shown = _rendered(findings_table(found, WHEN))
    _verbatim(shown)
    assert f"{SHOWN} 2:{SHOWN}" in shown and shown.count(SHOWN) == 3


def test_the_lab_status_table_shows_host_roles_verbatim() -> None:
    host = HostStatus("host1", "10.0.0.11", "running", "down", HOSTILE, 1, HOSTILE)
    status = LabStatus("pklab", "10.0.0.0/24", True, "http://10.0.0.1:8080", True, (), (host,), ())
    shown = _rendered(status_table(status))
    _verbatim(shown)
    assert shown.count(SHOWN) == 2 and "running" in shown and "down" in shown


def test_the_live_view_shows_host_names_verbatim() -> None:
    progress = RunProgress(make(names=[HOSTILE]), lambda: WHEN)
    progress.batch_changed(1, "running")
    progress.task(HOSTILE, "patchkit patch result", "failed")
    shown = _rendered(progress.render())
    _verbatim(shown)
    assert SHOWN in shown and "patch failed" in shown


# ---------------------------------------------------------------- documents and data


def _table_rows_keep_their_columns(markdown: str) -> int:
    """Every Markdown table has as many cells in each row as in its header; returns rows."""
    rows = 0
    width = None
    for line in markdown.splitlines():
        if not line.startswith("|"):
            width = None
            continue
        cells = len(re.findall(r"(?<!\\)\|", line))
        width = width or cells
        assert cells == width, line
        rows += 1
    return rows


def _document(run_cli: Run, fleet: Fleet, path: Path, *argv: str) -> str:
    """A document written with -o: a file gets the bytes as rendered (click.echo would strip
    ANSI sequences on the way to a pipe, which would hide what the renderer did)."""
    done = run_cli(*argv, "-o", str(path))
    assert done.code == 0, done.err
    return path.read_text(encoding="utf-8")


def test_markdown_documents_escape_user_text(run_cli: Run, fleet: Fleet, tmp_path: Path) -> None:
    plan = _document(run_cli, fleet, tmp_path / "plan.md", *fleet.plan_args("--format", "markdown"))
    run_id = _record_run(fleet, _plan(run_cli, fleet))
    report = _document(
        run_cli,
        fleet,
        tmp_path / "run.md",
        *fleet.args("report", "run", run_id, "--format", "markdown"),
    )
    for text in (plan, report):
        assert "\x1b" not in text and "<i>" not in text
        assert _table_rows_keep_their_columns(text) > 3
    # every piece of syntax escaped, the line break made a space
    assert "a\\|b\\`c\\` d \\<i\\>e\\</i\\> \\& \\[x\\](y) \\\\x1b\\[2J" in plan
    assert "\\[/\\] \\[bold\\]x :100: \\[a-z0-9\\] begin:end:step \\\\x1b\\[31m" in report


def test_html_documents_escape_user_text(run_cli: Run, fleet: Fleet, tmp_path: Path) -> None:
    plan = _document(run_cli, fleet, tmp_path / "plan.html", *fleet.plan_args("--format", "html"))
    run_id = _record_run(fleet, _plan(run_cli, fleet))
    report = _document(
        run_cli,
        fleet,
        tmp_path / "run.html",
        *fleet.args("report", "run", run_id, "--format", "html"),
    )
    for text in (plan, report):
        assert "\x1b" not in text and "<i>" not in text
        assert SHOWN in text
    assert "a|b`c`\nd &lt;i&gt;e&lt;/i&gt; &amp; [x](y) \\x1b[2J" in plan


def test_json_keeps_user_text_exactly_and_csv_only_escapes_controls(
    run_cli: Run, fleet: Fleet, tmp_path: Path
) -> None:
    body = _plan(run_cli, fleet)
    assert body["policy"] == MARKUP
    packages = {u["package"] for b in body["batches"] for h in b["hosts"] for u in h["updates"]}
    assert HOSTILE in packages  # JSON escapes control characters itself
    run_id = _record_run(fleet, body)
    text = _document(
        run_cli,
        fleet,
        tmp_path / "run.csv",
        *fleet.args("report", "run", run_id, "--format", "csv"),
    )
    assert "\x1b" not in text
    rows = list(csv.DictReader(io.StringIO(text)))
    assert rows[0]["host"] == "web1" and rows[0]["message"] == f"patch failed: {SHOWN}"
