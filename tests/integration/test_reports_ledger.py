"""Integration: the run and compliance reports from a ledger written through the Ledger API, on
SQLite and on PostgreSQL (no lab hosts): overdue, due-soon and excepted updates, an expired
exception, time to patch measured from the first sighting, a rolled-back update left out."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import ClassVar

from patchkit.cli.report import compliance_of, report_of
from patchkit.execution.events import HostOutcome, PackageChange, PhaseOutcome
from patchkit.execution.status import HostStatus, Phase, PhaseStatus
from patchkit.ledger import Ledger
from patchkit.model import Finding, Host, PendingUpdate, freeze
from patchkit.planning.history import Install
from patchkit.policy import loads

pytest_plugins = ["tests.integration.postgres"]

T0 = datetime(2026, 10, 1, 9, 0, tzinfo=UTC)
NOW = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)
SEC = "bookworm-security"

POLICY = loads("""\
name: prod
roles: {owner: ops, approvers: [alice]}
classification:
  security_origins: ["*-security"]
  severity_rules: [{severity: critical, packages: [openssl], security: true}]
  security_severity: high
windows:
  - {name: w, rrule: "FREQ=DAILY;BYHOUR=22", timezone: UTC, duration: 4h}
exceptions:
  - {packages: [tzdata], owner: web-team, reason: "app pins tz", expires: 2026-11-01}
reporting: {deadlines: {critical: 3, high: 7, medium: 14, low: 30}, due_soon: 2}
""")
HOSTS = [Host(n, ("all", "web"), freeze({"env": "prod"})) for n in ("web1", "web2", "web3")]


def pending(package: str, candidate: str, first: datetime, origin: str = SEC) -> PendingUpdate:
    return PendingUpdate(package, "1.0", candidate, origin, first)


def phases(verify: PhaseStatus = PhaseStatus.OK) -> tuple[PhaseOutcome, ...]:
    return tuple(
        PhaseOutcome(p, verify if p == Phase.VERIFY else PhaseStatus.OK, "", 1.0)
        for p in (Phase.PRECHECK, Phase.SNAPSHOT, Phase.PATCH, Phase.REBOOT, Phase.VERIFY)
    )


def ledger_with_history(url: str) -> Ledger:
    """Two assessments around one run: web1's openssl patched, web2's rolled back."""
    ledger = Ledger(url)
    first = [
        Finding("web1", T0, True, (pending("openssl", "3.1", T0),)),
        Finding("web2", T0, True, (pending("openssl", "3.1", T0),)),
    ]
    ledger.record_assessment(first, source="inv", started=T0)
    body = {
        "id": "plan-1", "hash": "h" * 64, "policy": "prod", "made_at": T0.isoformat(),
        "window": {"name": "w", "start": T0.isoformat()},
        "batches": [{"number": 1, "hosts": [
            {"host": h, "updates": [{"package": "openssl", "candidate": "3.1"}], "held": []}
            for h in ("web1", "web2")]}],
        "skipped": [],
    }  # fmt: skip
    ledger.save_plan(body, saved_at=T0)
    start, end = T0 + timedelta(days=2), T0 + timedelta(days=2, hours=1)
    ledger.start_run("run-1", "plan-1", "h" * 64, at=start, holder="ctl:1")
    ledger.record_batch("run-1", 1, status="running", hosts=2, started=start)
    change = (PackageChange("openssl", "1.0", "3.1"),)
    ledger.record_outcomes(
        "run-1", 1,
        [HostOutcome("web1", HostStatus.PATCHED, None, "", phases(), change, ("lab", "run-1")),
         HostOutcome("web2", HostStatus.FAILED, Phase.VERIFY, "503",
                     phases(PhaseStatus.FAILED), change, ("lab", "run-1"))],
        started=start, ended=end,
    )  # fmt: skip
    ledger.record_batch("run-1", 1, status="failed", hosts=2, failed=1, started=start, ended=end)
    ledger.finish_run("run-1", status="failed", reason="1 host(s) failed", at=end)
    # the newest assessment, after the run: web2 still needs openssl (it was rolled back)
    later = NOW - timedelta(hours=2)
    second = [
        Finding("web1", later, True, (pending("libc6", "2.36", NOW - timedelta(days=6)),)),
        Finding("web2", later, True, (pending("openssl", "3.1", later),
                                      pending("tzdata", "2026a", NOW - timedelta(days=40),
                                              "bookworm-updates"))),
    ]  # fmt: skip
    ledger.record_assessment(second, source="inv", started=later)
    return ledger


class Rolled:
    """What execution.rollback.Result looks like to the ledger (host, batch, status, phases)."""

    host, batch, status, message = "web2", 1, "rolled-back", "restored"
    phases = (PhaseOutcome(Phase.ROLLBACK, PhaseStatus.OK, "restored", 2.0),)
    data: ClassVar[dict[str, object]] = {}


def test_compliance_from_a_recorded_history(ledger_url: str) -> None:
    ledger = ledger_with_history(ledger_url)
    end = T0 + timedelta(days=2, hours=1)
    ledger.record_rollback("run-1", Rolled(), started=end, ended=end, who="test")
    report = compliance_of(ledger, POLICY, HOSTS, NOW)
    hosts = {h.host: h for h in report.hosts}
    assert {u.package: u.status for u in hosts["web1"].updates} == {"libc6": "due soon"}
    web2 = {u.package: u for u in hosts["web2"].updates}
    # first seen at the first assessment, 55 days ago, although the newest saw it again
    assert web2["openssl"].first_seen == T0 and web2["openssl"].status == "overdue"
    assert web2["tzdata"].status == "overdue"  # its exception expired on 2026-11-01
    assert hosts["web3"].status == "unknown" and hosts["web3"].note == "never assessed"
    assert [(e.owner, e.expired) for e in report.exceptions] == [("web-team", True)]
    # web1's openssl took two days; web2's was rolled back, so it does not count
    assert [(t.severity, t.updates, t.mean_days) for t in report.time_to_patch] == [
        ("critical", 1, 2.04)
    ]  # fmt: skip
    assert [(w.period, w.runs, w.completed) for w in report.windows] == [("2026-10", 1, 0)]


def test_run_report_from_the_same_ledger(ledger_url: str) -> None:
    ledger = ledger_with_history(ledger_url)
    report = report_of(ledger, None)  # the newest run
    assert report.run == "run-1" and report.status == "failed"
    assert {h.host: h.outcome for h in report.hosts} == {"web1": "patched", "web2": "failed"}
    assert report.batches[0].seconds == 3600.0
    # the run left web2's rollback pending (recorded with the failure)
    assert [(x.host, x.why) for x in report.left] == [
        ("web2", "failed: verify failed; rollback pending")
    ]


def test_the_planner_history_from_the_same_ledger(ledger_url: str) -> None:
    ledger = ledger_with_history(ledger_url)
    history = ledger.history()
    end = T0 + timedelta(days=2, hours=1)
    assert history.installs == {
        ("openssl", "3.1"): (Install("web1", end, True), Install("web2", end, False))
    }
    assert history.durations["web1"]["patch"] == (1.0,)
    assert set(history.durations["web2"]) == {"precheck", "snapshot", "patch", "reboot"}
    assert ledger.history({"web2"}).durations.keys() == {"web2"}
