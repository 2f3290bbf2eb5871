"""Unit: the CVE audit on a hand-built fleet and feeds (no I/O): every governed host's state for
a CVE, the window that installs a pending fix, the unknowns, KEV entries touching the fleet,
and the formats."""

from __future__ import annotations

import csv
import dataclasses
import io
import json
from datetime import timedelta

from patchkit.advisories.knowledge import Knowledge
from patchkit.advisories.matching import updates_reaching
from patchkit.advisories.types import FixStatus, PackageFix
from patchkit.model import Finding, InstalledPackage, PackageSet
from patchkit.reports import audit
from patchkit.reports.audit import AuditState
from patchkit.reports.terminal import plain_text
from tests.unit.test_planner import AT, host, policy
from tests.unit.test_vulnerability_severity import (
    BOOKWORM,
    KEV_CVE,
    OPEN_CVE,
    RULES,
    TOOL_CVE,
    finding,
    knowledge,
)

FLEET = [
    host("web1", "web", tier=1),  # libdemo 1.0, no update: the fix is not offered here
    host("web2", "web", tier=1),  # libdemo 1.1 pending: fix pending
    host("web3", "web", tier=1),  # already at libdemo 1.1: not affected
    host("web4", "web", tier=1),  # never assessed
    host("web5", "web", tier=1),  # assessed ten days ago
    host("web6", "web", tier=1),  # unreachable
    host("web7", "web", tier=1),  # assessed by an older patchkit: no software inventory
    host("legacy1", "legacy"),  # excluded by the policy's scope: not governed, not listed
]


def _patched(name: str) -> Finding:
    base = finding(name)
    assert base.software is not None
    packages = [
        InstalledPackage(p.name, "1.1", p.arch, p.source, "1.1") if p.source == "libdemo" else p
        for p in base.software.packages
    ]
    return dataclasses.replace(base, software=PackageSet(packages))


FINDINGS = {
    "web1": finding("web1"),
    "web2": finding("web2", ("libdemo1", "1.0", "1.1")),
    "web3": _patched("web3"),
    "web5": dataclasses.replace(finding("web5"), assessed_at=AT - timedelta(days=10)),
    "web6": dataclasses.replace(finding("web6"), reachable=False, message="timed out"),
    "web7": dataclasses.replace(finding("web7"), software=None),
    "legacy1": finding("legacy1"),
}


def made(*cves: str, data: Knowledge | None = None) -> audit.AuditReport:
    return audit.build(policy(RULES), FLEET, FINDINGS, data or knowledge(), cves, AT)


def states(report: audit.AuditReport, cve: str) -> dict[str, AuditState]:
    (found,) = [c for c in report.cves if c.cve == cve]
    return {h.host: h.state for h in found.hosts}


def test_every_governed_host_gets_its_state_for_the_cve() -> None:
    report = made(KEV_CVE.lower())  # ids are taken in any case
    assert states(report, KEV_CVE) == {
        "web2": AuditState.FIX_PENDING,
        "web1": AuditState.NO_FIX_HERE,
        "web4": AuditState.UNKNOWN,
        "web5": AuditState.UNKNOWN,
        "web6": AuditState.UNKNOWN,
        "web7": AuditState.UNKNOWN,
        "web3": AuditState.NOT_AFFECTED,
    }
    (cve,) = report.cves
    assert list(cve.totals.items()) == [
        ("affected: fix pending", 1), ("affected: no fix here", 1), ("affected: no fix yet", 0),
        ("unknown", 4), ("not affected", 1),
    ]  # fmt: skip
    assert (cve.cvss, cve.kev, cve.kev_due, cve.epss) == (9.8, True, "2026-11-22", 0.94)
    details = {h.host: h.detail for h in cve.hosts}
    # the window that installs the pending fix, with its next opening (the policy's daily 22:00)
    assert details["web2"] == (
        "libdemo 1.0, fixed in 1.1 by libdemo1; window daily, opens 2026-11-25 22:00 UTC"
    )
    assert details["web4"] == "never assessed: run patchkit assess"
    assert "more than 7 days ago" in details["web5"]
    assert details["web6"].startswith("unreachable when last assessed")
    assert "without its software inventory" in details["web7"]
    assert (report.affected, report.unknown) == (2, 4)


def test_no_fix_yet_and_a_cve_no_feed_names() -> None:
    report = made(OPEN_CVE, "CVE-2031-0001")
    assert states(report, OPEN_CVE)["web1"] is AuditState.NO_FIX_YET
    assert states(report, OPEN_CVE)["web3"] is AuditState.NO_FIX_YET  # 1.1 does not fix it
    unknown = next(c for c in report.cves if c.cve == "CVE-2031-0001")
    assert not unknown.known
    assert {h.state for h in unknown.hosts} == {AuditState.UNKNOWN}  # never "not affected"
    assert "named by no imported tracker or OSV feed" in plain_text(audit.to_text(report))


def test_kev_entries_touching_the_fleet() -> None:
    found = list(FINDINGS.values())
    assert audit.kev_touching(found, knowledge()) == (KEV_CVE,)
    assert audit.kev_touching([FINDINGS["web3"]], knowledge()) == ()  # patched: untouched
    assert audit.kev_touching(found, Knowledge(knowledge().feeds)) == ()  # no catalog


def test_the_formats_carry_every_host_and_the_totals() -> None:
    report = made(KEV_CVE, TOOL_CVE)
    body = json.loads(audit.to_json(report))
    # web3 has the libdemo fix but demo-tool 1.0, which TOOL_CVE affects
    assert body["format"] == audit.FORMAT and body["affected"] == 3
    assert [c["cve"] for c in body["cves"]] == [KEV_CVE, TOOL_CVE]
    assert body["cves"][0]["hosts"][0]["state"] == "affected: fix pending"
    rows = list(csv.DictReader(io.StringIO(audit.to_csv(report))))
    assert len(rows) == 2 * 7  # two CVEs, seven governed hosts
    web2 = next(r for r in rows if r["cve"] == KEV_CVE and r["host"] == "web2")
    assert (web2["state"], web2["updates"], web2["window"]) == (
        "affected: fix pending",
        "libdemo1",
        "daily",
    )
    html = audit.to_html(report)
    assert "known exploited" in html and "affected: no fix here" in html
    text = plain_text(audit.to_text(report), width=200)
    assert "1 affected: fix pending, 1 affected: no fix here, 4 unknown, 1 not affected" in text
    assert "legacy1" not in text


def test_a_fix_a_run_installed_after_the_assessment_counts_as_installed() -> None:
    assessed = FINDINGS["web2"].assessed_at
    rows = [{"host": "web2", "package": "libdemo1", "version": "1.1", "installed_at": when}
            for when in (assessed + timedelta(minutes=30),)]  # fmt: skip
    report = audit.build(policy(RULES), FLEET, FINDINGS, knowledge(), [KEV_CVE], AT, rows)
    (web2,) = [h for h in report.cves[0].hosts if h.host == "web2"]
    assert web2.state is AuditState.NOT_AFFECTED
    assert "libdemo1 1.1 installed by a run at" in web2.detail
    assert "assess again to confirm" in web2.detail
    # an install older than the assessment says nothing about it (it was pending after it)
    old = [{**rows[0], "installed_at": assessed - timedelta(days=1)}]
    again = audit.build(policy(RULES), FLEET, FINDINGS, knowledge(), [KEV_CVE], AT, old)
    assert states(again, KEV_CVE)["web2"] is AuditState.FIX_PENDING


def test_a_fix_the_policy_holds_back_is_named_held_with_no_window() -> None:
    denied = RULES + "  deny: ['libdemo*']\n"
    report = audit.build(policy(denied), FLEET, FINDINGS, knowledge(), [KEV_CVE], AT)
    (web2,) = [h for h in report.cves[0].hosts if h.host == "web2"]
    assert web2.state is AuditState.FIX_PENDING
    assert (web2.window, web2.window_start) == (None, None)
    assert "held by the policy: denied by the policy (libdemo*)" in web2.detail


def test_a_host_whose_release_no_feed_covers_is_unknown_not_clean() -> None:
    ubuntu = dataclasses.replace(
        finding("web2"), distribution="Ubuntu", release="jammy", release_version="22.04"
    )
    report = audit.build(policy(RULES), FLEET, {**FINDINGS, "web2": ubuntu}, knowledge(),
                         [KEV_CVE], AT)  # fmt: skip
    (web2,) = [h for h in report.cves[0].hosts if h.host == "web2"]
    assert web2.state is AuditState.UNKNOWN
    assert web2.detail == "no imported feed covers its release (Ubuntu jammy 22.04)"


def test_a_cve_in_two_sources_stays_open_while_one_of_them_is() -> None:
    base = knowledge()
    (feed,) = base.feeds
    extra = PackageFix(KEV_CVE, "demo-tool", BOOKWORM, FixStatus.OPEN)
    both = Knowledge((dataclasses.replace(feed, fixes=(*feed.fixes, extra)),), base.kev, base.epss)
    assessed = FINDINGS["web2"].assessed_at
    rows = [{"host": "web2", "package": "libdemo1", "version": "1.1",
             "installed_at": assessed + timedelta(minutes=5)}]  # fmt: skip
    for installed in ([], rows):
        report = audit.build(policy(RULES), FLEET, FINDINGS, both, [KEV_CVE], AT, installed)
        (web2,) = [h for h in report.cves[0].hosts if h.host == "web2"]
        # the worst state wins (no fix yet in demo-tool), before the run and after it
        assert (web2.state, web2.source) == (AuditState.NO_FIX_YET, "demo-tool"), installed


def test_text_lists_the_hosts_to_act_on_and_counts_the_rest() -> None:
    text = plain_text(audit.to_text(made(KEV_CVE)), width=200)
    assert "hosts affected or unknown; 1 not affected, counted above" in text
    assert "web3" not in text  # the one not affected


def test_reading_only_the_updates_of_the_cves_packages_changes_no_answer() -> None:
    # what the audit command does at fleet scale (only the pending updates that can reach the
    # CVEs' source packages are read, see updates_reaching): every state and detail the same
    full = {
        **FINDINGS,
        "web2": finding("web2", ("libdemo1", "1.0", "1.1"), ("vim", "2:9.0-1", "2:9.0-2")),
        "web1": finding("web1", ("demo-tool", "1.0", "2.0"), ("unrelated", "1", "2")),
    }
    data = knowledge()
    for cves in ([KEV_CVE], [OPEN_CVE], [TOOL_CVE], [KEV_CVE, TOOL_CVE]):
        touched = {f.package for feed in data.feeds for f in feed.fixes if f.vulnerability in cves}
        sets = [f.software.packages for f in full.values() if f.software is not None]
        names = updates_reaching(touched, sets)
        narrowed = {
            name: dataclasses.replace(f, updates=tuple(u for u in f.updates if u.package in names))
            for name, f in full.items()
        }
        assert narrowed != full  # something was left out
        whole = audit.build(policy(RULES), FLEET, full, data, cves, AT)
        assert audit.build(policy(RULES), FLEET, narrowed, data, cves, AT) == whole
