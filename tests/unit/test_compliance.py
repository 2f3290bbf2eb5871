"""Unit: the compliance report on a hand-built fleet, findings and history (no I/O).

The fleet covers each verdict: overdue, due soon, compliant, held by a live exception, an
expired exception that no longer protects, a whole-host exception, unreachable, never assessed,
excluded, and an update a run installed after the last assessment.
"""

from __future__ import annotations

import csv
import io
import json
from datetime import UTC, datetime, timedelta
from typing import Any

from patchkit.model import Finding, Host, PendingUpdate, freeze
from patchkit.policy import loads
from patchkit.reports import compliance

AT = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)
SEC = "bookworm-security"
REG = "bookworm-updates"

POLICY = loads("""\
name: prod
roles: {owner: ops, approvers: [alice]}
scope: {include: [all], exclude: [legacy]}
classification:
  security_origins: ["*-security"]
  severity_rules:
    - {severity: critical, packages: [openssl], security: true}
    - {severity: low, packages: [tzdata]}
  security_severity: high
  default_severity: medium
criticality:
  variable: tier
  tiers:
    - {label: tier 1, criticality: 10, values: [1]}
windows:
  - {name: w, rrule: "FREQ=DAILY;BYHOUR=22", timezone: UTC, duration: 4h, cutoff: 30m}
exceptions:
  - {packages: [tzdata], hosts: [web2], owner: web-team, reason: "app pins tz", expires: 2027-01-31}
  - {packages: [curl], owner: sec-team, reason: "waiting for vendor", expires: 2026-11-01}
  - {hosts: [db9], owner: dba, reason: "migration", expires: 2027-03-01}
reporting:
  deadlines: {critical: 3, high: 7, medium: 14, low: 30}
  due_soon: 2
""")


def host(name: str, *groups: str, **variables: object) -> Host:
    return Host(name=name, groups=("all", *groups), vars=freeze(variables))


def upd(package: str, origin: str, days_ago: float, candidate: str = "2.0") -> PendingUpdate:
    return PendingUpdate(package, "1.0", candidate, origin, AT - timedelta(days=days_ago))


def finding(name: str, *updates: PendingUpdate, reachable: bool = True) -> Finding:
    return Finding(
        name,
        AT - timedelta(hours=1),
        reachable,
        tuple(updates),
        message="" if reachable else "no route",
    )


HOSTS = [
    host("web1", "web", tier=1, env="prod"),
    host("web2", "web", tier=1, env="prod"),
    host("web3", "web", tier=1, env="prod"),
    host("db9", "db", env="prod"),
    host("db8", "db", env="prod"),
    host("app1", "app", env="staging"),
    host("old1", "legacy", env="prod"),
]
FINDINGS = {
    # openssl critical (3 d), known 4 d: overdue; libc high (7 d), 6 d: due soon (1 d left)
    "web1": finding("web1", upd("openssl", SEC, 4), upd("libc6", SEC, 6)),
    # tzdata low, held by the live exception; curl medium 20 d: its exception expired: overdue
    "web2": finding("web2", upd("tzdata", REG, 40), upd("curl", REG, 20)),
    # nginx medium (14 d), known 1 d: compliant; and bash, which a run installed since
    "web3": finding("web3", upd("nginx", REG, 1), upd("bash", SEC, 10)),
    "db9": finding("db9", upd("openssl", SEC, 30)),  # whole host excepted
    "db8": finding("db8", reachable=False),
    "old1": finding("old1", upd("openssl", SEC, 90)),  # excluded: not governed
    # app1 never assessed
}
INSTALLED: list[dict[str, Any]] = [
    {"run": "run-2", "host": "web3", "package": "bash", "version": "2.0",
     "installed_at": AT - timedelta(minutes=30), "first_seen": AT - timedelta(days=10),
     "origin": SEC},
    {"run": "run-1", "host": "web1", "package": "openssl", "version": "1.5",
     "installed_at": AT - timedelta(days=20), "first_seen": AT - timedelta(days=22),
     "origin": SEC},
    {"run": "run-1", "host": "web2", "package": "libc6", "version": "1.5",
     "installed_at": AT - timedelta(days=20), "first_seen": AT - timedelta(days=30),
     "origin": SEC},
]  # fmt: skip
RUNS = [
    {"id": "run-1", "status": "completed", "started": datetime(2026, 11, 5, 22, tzinfo=UTC)},
    {"id": "run-0", "status": "halted", "started": datetime(2026, 10, 8, 22, tzinfo=UTC)},
    {"id": "run-x", "status": "completed", "started": datetime(2026, 10, 22, 22, tzinfo=UTC)},
    {"id": "run-2", "status": "completed", "started": AT - timedelta(hours=1)},
]


def made() -> compliance.ComplianceReport:
    return compliance.build(POLICY, HOSTS, FINDINGS, INSTALLED, RUNS, AT)


def by_host() -> dict[str, compliance.HostCompliance]:
    return {h.host: h for h in made().hosts}


def statuses(name: str) -> dict[str, str]:
    return {u.package: u.status for u in by_host()[name].updates}


def test_each_update_is_judged_against_its_severity_deadline() -> None:
    assert statuses("web1") == {"openssl": "overdue", "libc6": "due soon"}
    web1 = {u.package: u for u in by_host()["web1"].updates}
    assert web1["openssl"].severity == "critical" and web1["openssl"].age_days == 4.0
    assert web1["openssl"].deadline == AT - timedelta(days=1)
    assert web1["libc6"].severity == "high" and web1["libc6"].deadline == AT + timedelta(days=1)
    assert by_host()["web1"].status == "overdue"


def test_exceptions_hold_updates_until_they_expire() -> None:
    assert statuses("web2") == {"curl": "overdue", "tzdata": "excepted"}
    tz = {u.package: u for u in by_host()["web2"].updates}["tzdata"]
    assert tz.exception == "web-team, until 2027-01-31: app pins tz"
    db9 = by_host()["db9"]
    assert db9.status == "compliant" and statuses("db9") == {"openssl": "excepted"}
    assert db9.note == "host exception: dba, until 2027-03-01: migration"
    expired = {e.owner: e.expired for e in made().exceptions}
    assert expired == {"web-team": False, "sec-team": True, "dba": False}


def test_an_update_a_run_installed_after_the_assessment_is_not_outstanding() -> None:
    assert statuses("web3") == {"nginx": "compliant"}
    assert by_host()["web3"].status == "compliant"


def test_unknown_and_out_of_scope_hosts() -> None:
    hosts = by_host()
    assert hosts["db8"].status == "unknown" and hosts["db8"].note == "unreachable: no route"
    assert hosts["app1"].status == "unknown" and hosts["app1"].note == "never assessed"
    assert "old1" not in hosts  # excluded by the policy's scope


def test_worst_hosts_first_and_counts() -> None:
    report = made()
    assert [h.host for h in report.hosts] == ["web1", "web2", "app1", "db8", "db9", "web3"]
    assert report.counts == {"overdue": 2, "unknown": 2, "compliant": 2}
    assert report.by_severity["critical"] == {"overdue": 1, "excepted": 1}
    assert report.by_severity["medium"] == {"overdue": 1, "compliant": 1}


def test_totals_per_environment_tier_and_group() -> None:
    totals = {(t.by, t.name): (t.hosts, dict(t.statuses)) for t in made().totals}
    assert totals[("env", "prod")] == (5, {"overdue": 2, "unknown": 1, "compliant": 2})
    assert totals[("env", "staging")] == (1, {"unknown": 1})
    assert totals[("tier", "tier 1")] == (3, {"overdue": 2, "compliant": 1})
    assert totals[("group", "db")] == (2, {"unknown": 1, "compliant": 1})
    assert ("group", "all") not in totals


def test_time_to_patch_per_severity_and_per_run() -> None:
    ttp = {t.severity: t for t in made().time_to_patch}
    assert ttp["critical"].updates == 1 and ttp["critical"].mean_days == 2.0
    assert ttp["critical"].within_deadline == 1
    # libc6 took 10 days against 7, bash 9.98 days
    assert ttp["high"].updates == 2 and ttp["high"].within_deadline == 0
    latency = made().latency
    assert [label.split()[0] for label, _ in latency] == ["2026-11-05", "2026-11-25"]
    assert latency[0][1] == 6.0  # (2 + 10) / 2


def test_success_of_windows_per_month() -> None:
    windows = [(w.period, w.runs, w.completed, w.success_rate) for w in made().windows]
    assert windows == [("2026-10", 2, 1, 0.5), ("2026-11", 2, 2, 1.0)]


def test_formats_carry_the_same_facts_and_escape_inventory_text() -> None:
    evil = [*HOSTS, host("<script>alert(1)</script>", env="<b>prod</b>")]
    findings = {**FINDINGS, evil[-1].name: finding(evil[-1].name, upd("openssl", SEC, 9))}
    report = compliance.build(POLICY, evil, findings, INSTALLED, RUNS, AT)
    page = compliance.to_html(report)
    assert "<script>" not in page and "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "<b>" not in page and "&lt;b&gt;prod&lt;/b&gt;" in page  # a host variable, as text
    assert "<svg" in page and page.count("<figure") == 3  # severity, latency, windows
    assert "http://" not in page.replace('xmlns="http://www.w3.org/2000/svg"', "")
    markdown = compliance.to_markdown(report)
    assert "\\<script\\>" in markdown and "<b>" not in markdown
    body = json.loads(compliance.to_json(report))
    assert body["format"] == "patchkit-compliance-report/1"
    assert body["counts"]["overdue"] == 3
    rows = list(csv.DictReader(io.StringIO(compliance.to_csv(report))))
    assert {(r["host"], r["package"], r["status"]) for r in rows if r["host"] == "web1"} == {
        ("web1", "openssl", "overdue"), ("web1", "libc6", "due soon")
    }  # fmt: skip
    assert [r["note"] for r in rows if r["host"] == "app1"] == ["never assessed"]
