"""Unit: values at the edge of what each command takes are bad input (exit 2) or a documented
refusal (exit 3), with a message naming the option or value; never a traceback.

Output files that cannot be written, numbers past a database integer, times at the ends of
the calendar, run and plan ids that do not exist, batches and hosts a run does not have. The
commands run in this process through ``patchkit.cli.main``, as the console script runs them.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from patchkit.cli import consoles, main
from patchkit.errors import ExitCode, PlanningError
from patchkit.execution.events import PhaseOutcome
from patchkit.execution.status import Phase, PhaseStatus
from patchkit.ledger import Ledger
from patchkit.planning.windows import LATEST, next_occurrence, upcoming
from patchkit.policy.model import Window

EXAMPLE = ["-p", "policies/example.yml", "-i", "inventories/example/hosts.yml"]
FINDINGS = ["--findings", "examples/findings.json"]
AT = ["--at", "2026-11-20T12:00+00:00"]
HUGE = str(10**30)
OUTPUT = "Invalid value for '-o' / '--output':"  # how click names the option, once


@dataclass(frozen=True)
class Done:
    code: int
    out: str
    err: str

    @property
    def message(self) -> str:
        return " ".join(self.err.split())  # one line, however the terminal is wide

    def bad_input(self, *named: str) -> None:
        """Exit 2, one error naming each of ``named``, and no traceback."""
        assert self.code == ExitCode.BAD_INPUT, self.err
        assert self.message.startswith("patchkit: error: "), self.err
        assert "Traceback" not in self.err and "internal error" not in self.err
        for name in named:
            assert name in self.message, (name, self.err)


Run = Callable[..., Done]  # patchkit ARGV in this process


@pytest.fixture
def ledger_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'ledger.sqlite'}"


@pytest.fixture
def run_cli(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], ledger_url: str
) -> Run:
    """Run ``patchkit --ledger TMP ARGV`` in this process."""
    for console in (consoles.console, consoles.err_console):
        monkeypatch.setattr(console, "width", 200)

    def run(*argv: str) -> Done:
        monkeypatch.setattr(sys, "argv", ["patchkit", "--ledger", ledger_url, *argv])
        with pytest.raises(SystemExit) as stopped:
            main()
        out, err = capsys.readouterr()
        return Done(int(stopped.value.code or 0), out, err)

    return run


def _plan(run_cli: Run, *extra: str) -> Done:
    return run_cli("plan", *EXAMPLE, *FINDINGS, *AT, *extra)


# ---------------------------------------------------------------- output files


def test_plan_output_into_a_directory_is_bad_input(run_cli: Run, tmp_path: Path) -> None:
    _plan(run_cli, "-o", str(tmp_path)).bad_input(OUTPUT, str(tmp_path))


def test_plan_output_under_a_file_is_bad_input(run_cli: Run, tmp_path: Path) -> None:
    # fails for root too: the directory to create is a regular file
    (tmp_path / "file").write_text("")
    target = tmp_path / "file" / "plan.html"
    done = _plan(run_cli, "--format", "html", "-o", str(target))
    done.bad_input(OUTPUT, str(target), "not a directory")


@pytest.mark.skipif(not Path("/dev/full").exists(), reason="no /dev/full here")
@pytest.mark.parametrize("fmt", ["text", "json", "markdown", "html"])
def test_plan_output_to_a_full_device_is_bad_input(run_cli: Run, fmt: str) -> None:
    done = _plan(run_cli, "--format", fmt, "-o", "/dev/full")
    done.bad_input(OUTPUT, "/dev/full", "no space left")


@pytest.mark.skipif(not Path("/proc/version").exists(), reason="no procfs here")
def test_plan_output_where_even_root_cannot_write_is_bad_input(run_cli: Run) -> None:
    _plan(run_cli, "-o", "/proc/version").bad_input(OUTPUT, "/proc/version")
    _plan(run_cli, "-o", "/proc/patchkit/plan.txt").bad_input("/proc/patchkit/plan.txt")


@pytest.mark.skipif(not Path("/dev/full").exists(), reason="no /dev/full here")
@pytest.mark.parametrize("fmt", ["text", "csv", "html"])
def test_report_output_that_cannot_be_written_is_bad_input(
    run_cli: Run, tmp_path: Path, fmt: str
) -> None:
    compliance = ["report", "compliance", *EXAMPLE, *AT, "--format", fmt]
    run_cli(*compliance, "-o", "/dev/full").bad_input(OUTPUT, "/dev/full")
    run_cli(*compliance, "-o", str(tmp_path)).bad_input(OUTPUT, str(tmp_path))
    run_cli("report", "run", "--format", fmt, "-o", str(tmp_path)).bad_input(OUTPUT)


def test_output_into_a_new_directory_is_written(run_cli: Run, tmp_path: Path) -> None:
    target = tmp_path / "new" / "deeper" / "plan.md"
    done = _plan(run_cli, "--format", "markdown", "-o", str(target))
    assert done.code == 0, done.err
    assert target.read_text(encoding="utf-8").startswith("# Change request")


# ---------------------------------------------------------------- numbers and times


@pytest.mark.parametrize("limit", [HUGE, "0", "-1", "many"])
def test_runs_limit_out_of_range_is_bad_input(run_cli: Run, limit: str) -> None:
    run_cli("runs", "--limit", limit).bad_input("'--limit'")


def test_runs_status_that_no_run_has_is_bad_input(run_cli: Run) -> None:
    run_cli("runs", "--status", "bogus").bad_input("'--status'", "bogus")


@pytest.mark.parametrize(
    "since", ["9999-12-31T23:59-05:00", "0001-01-01T00:00+05:00", "0001-01-01T00:00", "yesterday"]
)
def test_runs_since_at_the_calendar_edges_is_bad_input(run_cli: Run, since: str) -> None:
    run_cli("runs", "--since", since).bad_input("'--since'", since)


@pytest.mark.parametrize(
    "at", ["9999-12-31T23:00+00:00", "9000-01-01T00:00+00:00", "0001-01-01T00:00", "1969-12-31"]
)
def test_plan_scope_and_compliance_at_the_calendar_edges_are_bad_input(
    run_cli: Run, at: str
) -> None:
    run_cli("plan", *EXAMPLE, *FINDINGS, "--at", at).bad_input("'--at'", at)
    run_cli("scope", *EXAMPLE, "--at", at).bad_input("'--at'", at)
    run_cli("report", "compliance", *EXAMPLE, "--at", at).bad_input("'--at'", at)


def test_the_last_plannable_days_plan_or_say_why_not(run_cli: Run) -> None:
    days_before = (LATEST - timedelta(days=3)).isoformat()
    done = run_cli("plan", *EXAMPLE, *FINDINGS, "--at", days_before, "--no-save")
    assert done.code == 0, done.err  # weekly windows still open before LATEST
    minute_before = (LATEST - timedelta(minutes=1)).isoformat()
    done = run_cli("plan", *EXAMPLE, *FINDINGS, "--at", minute_before, "--no-save")
    done.bad_input("no window")  # no opening is looked for past LATEST: said, not a crash


@pytest.mark.parametrize("pattern", ["&", "!", "~(unclosed"])
def test_assess_limit_that_is_no_host_pattern_is_bad_input(run_cli: Run, pattern: str) -> None:
    # refused before any host is asked anything
    run_cli("assess", *EXAMPLE, "--limit", pattern).bad_input("'--limit'")


def test_plan_for_a_window_the_policy_does_not_have_is_bad_input(run_cli: Run) -> None:
    _plan(run_cli, "--window", "[/]nope").bad_input("no window '[/]nope'", "prod-weekly")


def test_lab_numbers_out_of_range_are_bad_input(run_cli: Run) -> None:
    # refused while parsing, before anything on this machine is looked at
    run_cli("lab", "--repo-port", HUGE, "status").bad_input("'--repo-port'")
    run_cli("lab", "up", "--hosts", "0").bad_input("'--hosts'")


# ---------------------------------------------------------------- the window arithmetic


def _window(**fields: Any) -> Window:
    base: dict[str, Any] = {"name": "w", "timezone": "Europe/Berlin", "duration": "4h"}
    return Window.model_validate(base | fields)


@pytest.mark.parametrize(
    "at",
    [
        datetime(9999, 12, 31, 23, 0, tzinfo=UTC),
        datetime.max.replace(tzinfo=UTC),
        datetime(1, 1, 1, tzinfo=UTC),
        datetime.min.replace(tzinfo=UTC) + timedelta(days=1),
    ],
)
@pytest.mark.parametrize(
    "rule",
    [{"rrule": "FREQ=WEEKLY;BYDAY=SA;BYHOUR=22"}, {"cron": "0 22 * * 6"}],
)
def test_windows_at_the_ends_of_the_calendar_are_planning_errors(
    at: datetime, rule: dict[str, str]
) -> None:
    with pytest.raises(PlanningError, match="cannot plan at"):
        next_occurrence(_window(**rule), at)


def test_no_opening_after_the_last_plannable_time_is_used() -> None:
    yearly = _window(rrule="FREQ=YEARLY;BYMONTH=12;BYMONTHDAY=1;BYHOUR=10")
    occurrence = next_occurrence(yearly, datetime(8999, 6, 1, tzinfo=UTC))
    assert occurrence is not None and occurrence.start.year == 8999
    assert next_occurrence(yearly, datetime(8999, 12, 2, tzinfo=UTC)) is None  # 9000-12-01
    assert upcoming(yearly, datetime(8999, 6, 1, tzinfo=UTC), 5) == (occurrence,)


def test_a_window_whose_times_cannot_be_computed_is_a_planning_error() -> None:
    # a duration the policy loader refuses, given by a library caller: reaches before year 1
    window = _window(rrule="FREQ=DAILY;BYHOUR=22").model_copy(
        update={"duration": timedelta(days=3_000_000)}
    )
    with pytest.raises(PlanningError, match="cannot be computed"):
        next_occurrence(window, datetime(2026, 11, 20, tzinfo=UTC))
    # 30 February: the loader refuses it; a library caller may still build one
    never = _window(cron="0 0 * * 6").model_copy(update={"cron": "0 0 30 2 *"})
    with pytest.raises(PlanningError, match="window w"):
        next_occurrence(never, datetime(2026, 11, 20, tzinfo=UTC))


def test_a_plan_time_without_a_zone_is_a_planning_error() -> None:
    with pytest.raises(PlanningError, match="timezone"):
        next_occurrence(_window(cron="0 22 * * 6"), datetime(2026, 11, 20))


# ---------------------------------------------------------------- ids, batches, hosts


ODD_IDS = ["nope", "run-'; DROP TABLE runs; --", "%", "[/]", "-" * 500 + "x", "plan-\u202e"]


@pytest.mark.parametrize("odd", ODD_IDS)
def test_run_and_plan_ids_that_do_not_exist_are_bad_input(run_cli: Run, odd: str) -> None:
    shown = odd.replace("\u202e", "\\u202e")
    for argv in (
        ["status", odd],
        ["status", odd, "--json"],
        ["report", "run", odd],
        ["rollback", odd, "--dry-run"],
        ["resume", odd, *EXAMPLE],
        ["approve", odd, "--by", "alice.martin"],
        ["run", odd, *EXAMPLE],
    ):
        done = run_cli(*argv)
        done.bad_input(shown)


def _recorded_run(run_cli: Run, ledger_url: str) -> tuple[str, str]:
    done = _plan(run_cli, "--format", "json")
    assert done.code == 0, done.err
    body = json.loads(done.out)
    host = body["batches"][0]["hosts"][0]["host"]
    when = datetime(2026, 11, 21, tzinfo=UTC)
    ledger = Ledger(ledger_url)
    try:
        ledger.start_run("run-1", body["id"], body["hash"], at=when, holder="test:1")
        ledger.record_phase(
            "run-1", 1, host, PhaseOutcome(Phase.PATCH, PhaseStatus.FAILED, "boom", 1), at=when
        )
        ledger.record_batch("run-1", 1, status="failed", hosts=1, failed=1, started=when)
        ledger.finish_run("run-1", status="failed", reason="boom", at=when)
    finally:
        ledger.close()
    return body["id"], host


def test_rollback_batches_and_hosts_a_run_does_not_have_are_bad_input(
    run_cli: Run, ledger_url: str
) -> None:
    _recorded_run(run_cli, ledger_url)
    run_cli("rollback", "run-1", "--batch", "0", "--dry-run").bad_input("'--batch'")
    run_cli("rollback", "run-1", "--batch", HUGE, "--dry-run").bad_input("no batch", HUGE)
    run_cli("rollback", "run-1", "--batch", "7", "--dry-run").bad_input("no batch 7")
    done = run_cli("rollback", "run-1", "--host", "[/]nobody", "--dry-run")
    done.bad_input("not in run run-1: [/]nobody")
    assert run_cli("rollback", "run-1", "--dry-run").code == 0


def test_approve_needs_a_name_and_refuses_one_the_policy_does_not_name(
    run_cli: Run, ledger_url: str
) -> None:
    plan_id, _ = _recorded_run(run_cli, ledger_url)
    run_cli("approve", plan_id, "--by", "  ").bad_input("'--by'")
    refused = run_cli("approve", plan_id, "--by", "mallory")
    assert refused.code == ExitCode.REFUSED, refused.err
    assert "mallory may not approve plans of policy example-fleet" in refused.message
    assert run_cli("approve", plan_id, "--by", "alice.martin").code == 0


def test_resume_of_a_run_that_ended_is_refused(run_cli: Run, ledger_url: str) -> None:
    _recorded_run(run_cli, ledger_url)
    done = run_cli("resume", "run-1", *EXAMPLE)
    assert done.code == ExitCode.REFUSED, done.err
    assert "run run-1 ended failed" in done.message
