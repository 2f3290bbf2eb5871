"""Unit (no hosts; the only traffic goes to receivers on 127.0.0.1): new-patch alerts (issue 17,
item 6).

The diff of one assessment against each host's last reachable one (a new update, one already
pending, a first assessment as the baseline, a candidate that moved, unreachable hosts), the
CVEs of the new updates (known exploited first), matching once per package set, the event's
JSON and chat text with its host cap, and ``patchkit assess`` sending it: on a second
assessment with a new update, not on the first, not with --no-alerts. The assessment itself is
a fake that returns findings (``patchkit.cli.planning._assess``, the one seam to the hosts).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from patchkit import alerts
from patchkit.advisories.knowledge import Knowledge
from patchkit.advisories.types import AdvisoryFeed, EpssScores, KevCatalog, PackageFix, Release
from patchkit.alerts import FixedCve, compare, event_data, new_updates
from patchkit.cli import planning as planning_cli
from patchkit.errors import ExitCode
from patchkit.ledger import Ledger
from patchkit.model import Finding, PackageSet, PendingUpdate
from patchkit.notify import payload
from tests.receiver import closed_port_url, receiver
from tests.unit.cli_process import Done, Run, in_process
from tests.unit.test_planner import AT, SEC
from tests.unit.test_vulnerability_severity import (
    KEV_CVE,
    MILD_CVE,
    SOFTWARE,
    TOOL_CVE,
    knowledge,
    tracker,
)

Pending = tuple[str, str, str]  # package, installed, candidate
LIBDEMO: Pending = ("libdemo1", "1.0", "1.1")  # fixes KEV_CVE (9.8, known exploited), MILD_CVE
TOOL: Pending = ("demo-tool", "1.0", "2.0")  # fixes TOOL_CVE (7.5)
VIM: Pending = ("vim", "2:9.0-1", "2:9.0-2")  # fixes nothing the feeds know


def seen(
    name: str, *updates: Pending, at: datetime = AT, software: PackageSet | None = SOFTWARE
) -> Finding:
    """A reachable bookworm host with ``updates`` pending, as an assessment at ``at`` found it."""
    return Finding(
        host=name,
        assessed_at=at,
        reachable=True,
        updates=tuple(PendingUpdate(p, i, c, SEC) for p, i, c in updates),
        release="bookworm",
        software=software,
        distribution="Debian",
        release_version="12.8",
    )


def down(name: str, at: datetime = AT) -> Finding:
    return Finding(name, at, reachable=False, message="ssh: connection refused")


def keys(found: alerts.NewUpdates) -> list[tuple[str, str, tuple[str, ...]]]:
    return [(u.package, u.candidate, u.hosts) for u in found.updates]


BEFORE = AT - timedelta(days=1)


# ---------------------------------------------------------------- the diff


def test_only_what_a_host_did_not_have_pending_before_is_new() -> None:
    previous = {"web1": seen("web1", LIBDEMO, at=BEFORE), "web2": seen("web2", at=BEFORE)}
    current = [seen("web1", LIBDEMO, TOOL), seen("web2", LIBDEMO)]
    found = new_updates(compare(previous, current), Knowledge())
    # libdemo1 1.1 was already pending on web1: it is new on web2 only
    assert keys(found) == [("demo-tool", "2.0", ("web1",)), ("libdemo1", "1.1", ("web2",))]
    assert (found.hosts, found.baseline_hosts, found.unreachable_hosts) == (2, 0, 0)
    assert all(u.cves == () for u in found.updates)  # no advisories loaded: nothing to say


def test_a_host_assessed_for_the_first_time_is_the_baseline_and_pages_no_one() -> None:
    fleet = [seen(f"web{i}", LIBDEMO, TOOL) for i in range(5000)]
    first = compare({}, fleet)
    assert not first.anything_new
    assert len(first.baseline) == 5000
    # a new host joining a fleet where something appeared: counted, not listed
    previous = {"web1": seen("web1", at=BEFORE)}
    found = new_updates(compare(previous, [seen("web1", LIBDEMO), seen("new1", TOOL)]), knowledge())
    assert keys(found) == [("libdemo1", "1.1", ("web1",))]
    assert (found.hosts, found.baseline_hosts) == (1, 1)


def test_a_candidate_that_moved_on_is_a_new_update() -> None:
    previous = {"web1": seen("web1", LIBDEMO, at=BEFORE)}
    moved = seen("web1", ("libdemo1", "1.0", "1.2"))
    assert keys(new_updates(compare(previous, [moved]), Knowledge())) == [
        ("libdemo1", "1.2", ("web1",))
    ]
    # the same candidate again is not; one installed since is not new either (it is gone)
    assert not compare(previous, [seen("web1", LIBDEMO)]).anything_new
    assert not compare(previous, [seen("web1")]).anything_new


def test_a_host_unreachable_now_says_nothing_and_is_counted() -> None:
    previous = {"web1": seen("web1", at=BEFORE), "web2": seen("web2", at=BEFORE)}
    compared = compare(previous, [down("web1"), seen("web2", TOOL)])
    assert compared.unreachable == ("web1",)
    found = new_updates(compared, Knowledge())
    assert keys(found) == [("demo-tool", "2.0", ("web2",))]
    assert found.unreachable_hosts == 1


def test_after_an_outage_a_host_is_compared_with_its_last_reachable_assessment(
    tmp_path: Path,
) -> None:
    ledger = Ledger(f"sqlite:///{tmp_path / 'ledger.sqlite'}")
    days = [AT - timedelta(days=n) for n in (3, 2, 1)]
    # day 1: web1 reached, libdemo1 pending; web2 never reached. Day 2: nothing reached.
    first = [seen("web1", LIBDEMO, at=days[0]), down("web2", days[0])]
    ledger.record_assessment(first, source="inv", started=days[0])
    ledger.record_assessment(
        [down("web1", days[1]), down("web2", days[1])], source="inv", started=days[1]
    )
    assert not ledger.latest_findings()["web1"].reachable
    previous = ledger.latest_reachable_findings(["web1", "web2"])
    assert sorted(previous) == ["web1"]  # web2 was never reached: it has no entry
    assert previous["web1"].assessed_at == days[0]
    assert [(u.package, u.candidate) for u in previous["web1"].updates] == [("libdemo1", "1.1")]
    assert previous["web1"].software == SOFTWARE
    assert ledger.latest_reachable_findings(["web9"]) == {}
    # day 3, both back: what appeared during the outage is new on web1; web2 is the baseline
    compared = compare(previous, [seen("web1", LIBDEMO, TOOL), seen("web2", LIBDEMO)])
    found = new_updates(compared, knowledge())
    assert keys(found) == [("demo-tool", "2.0", ("web1",))]
    assert compared.baseline == ("web2",)
    ledger.close()


# ---------------------------------------------------------------- CVEs


def test_updates_fixing_a_known_exploited_cve_come_first_then_by_cvss_then_package() -> None:
    previous = {"web1": seen("web1", at=BEFORE), "web2": seen("web2", at=BEFORE)}
    current = [seen("web1", VIM, TOOL, ("a-tool", "1", "2")), seen("web2", LIBDEMO)]
    found = new_updates(compare(previous, current), knowledge())
    assert [u.package for u in found.updates] == ["libdemo1", "demo-tool", "a-tool", "vim"]
    exploited = found.updates[0]
    # the CVEs it fixes where it appeared, known exploited first, with what the feeds say
    assert exploited.cves == (
        FixedCve(KEV_CVE, cvss=9.8, kev=True, epss=0.94),
        FixedCve(MILD_CVE, cvss=4.3),
    )
    assert (exploited.kev, exploited.cvss) == (True, 9.8)
    assert found.updates[1].cves == (FixedCve(TOOL_CVE, cvss=7.5),)
    assert found.kev_hits == 1
    # a host whose software was not collected: the update is new, its CVEs are unknown
    blind = compare({"web3": seen("web3", at=BEFORE)}, [seen("web3", LIBDEMO, software=None)])
    assert [u.cves for u in new_updates(blind, knowledge()).updates] == [()]


def test_hosts_sharing_a_package_set_are_matched_once() -> None:
    calls: list[str] = []

    class Counting(AdvisoryFeed):
        def fixes_for(self, release: Release, package: str) -> tuple[PackageFix, ...]:
            calls.append(package)
            return super().fixes_for(release, package)

    base = tracker()
    data = replace(knowledge(), feeds=(Counting(base.feed, base.advisories, base.fixes),))
    names = [f"web{i}" for i in range(200)]
    previous = {n: seen(n, at=BEFORE) for n in names}
    # another object with the same packages: sets are compared by digest, not by identity
    twin = PackageSet(SOFTWARE.packages)
    current = [seen(n, LIBDEMO, software=twin if i % 2 else SOFTWARE) for i, n in enumerate(names)]
    found = new_updates(compare(previous, current), data)
    assert found.updates[0].hosts == tuple(sorted(names)) and found.updates[0].kev
    # three source packages, two release names (bookworm, 12): once for all 200 hosts
    assert len(calls) == 3 * 2
    # other pending updates are another match (they change what reaches a fix)
    calls.clear()
    new_updates(compare(previous, [seen("web1", LIBDEMO, TOOL)]), data)
    assert len(calls) == 3 * 2


# ---------------------------------------------------------------- the event


def many(hosts: int, *updates: Pending) -> alerts.NewUpdates:
    names = [f"host{i:05d}" for i in range(hosts)]
    previous = {n: seen(n, at=BEFORE) for n in names}
    return new_updates(compare(previous, [seen(n, *updates) for n in names]), knowledge())


def test_the_event_lists_at_most_50_hosts_per_update_and_counts_them_all() -> None:
    found = many(50_000, LIBDEMO, TOOL)
    data = event_data(found, "prod")
    body = payload(alerts.EVENT, data, AT)
    assert len(json.dumps(body)) < 10_000  # 50,000 hosts, a few kilobytes
    assert {k: v for k, v in body.items() if k != "updates"} == {
        "event": "new-updates",
        "at": AT.isoformat(),
        "policy": "prod",
        "new_updates": 2,
        "hosts": 50_000,
        "kev_hits": 1,
        "baseline_hosts": 0,
        "unreachable_hosts": 0,
        "host_cap": 50,
        "text": "patchkit: 2 new update(s) on 50000 host(s) (policy prod), 1 fixes a known "
        f"exploited CVE: libdemo1 1.1 on 50000 host(s) ({KEV_CVE}, known exploited, CVSS 9.8, "
        f"+1 more CVE(s)); demo-tool 2.0 on 50000 host(s) ({TOOL_CVE}, CVSS 7.5)",
    }
    first = body["updates"][0]
    assert first["hosts"] == [f"host{i:05d}" for i in range(50)]
    assert first["host_count"] == 50_000
    assert (first["package"], first["candidate"]) == ("libdemo1", "1.1")
    assert first["cves"] == [
        {"cve": KEV_CVE, "cvss": 9.8, "kev": True, "epss": 0.94},
        {"cve": MILD_CVE, "cvss": 4.3, "kev": False, "epss": None},
    ]
    assert len(event_data(many(3, VIM), "prod", host_cap=2)["updates"][0]["hosts"]) == 2


def test_the_chat_text_names_five_updates_and_the_baseline() -> None:
    updates = [(f"pkg{i}", "1", "2") for i in range(7)]
    previous = {"web1": seen("web1", at=BEFORE)}
    compared = compare(previous, [seen("web1", *updates), seen("new1"), seen("new2")])
    text = payload(alerts.EVENT, event_data(new_updates(compared, Knowledge()), "lab"), AT)["text"]
    assert text == (
        "patchkit: 7 new update(s) on 1 host(s) (policy lab): "
        + "; ".join(f"pkg{i} 2 on 1 host(s)" for i in range(5))
        + "; and 2 more (2 host(s) assessed for the first time: their updates are not new)"
    )
    assert alerts.summary(many(2, LIBDEMO, TOOL)) == (
        "2 new update(s) on 2 host(s), 1 fixes a known exploited CVE"
    )


# ---------------------------------------------------------------- patchkit assess

POLICY = Path(__file__).resolve().parents[2] / "policies" / "lab.yml"


@dataclass
class FakeHosts:
    """What the fake assessment finds: set ``pending`` per host before each ``assess``."""

    pending: dict[str, tuple[Pending, ...]]
    reachable: bool = True

    def assess(self, _inventory: Path, **kwargs: Any) -> list[Finding]:
        at: datetime = kwargs["at"]
        on_host: Callable[[Finding], None] = kwargs["on_host"]
        out = []
        for name in kwargs["limit"].split(","):
            found = seen(name, *self.pending[name], at=at) if self.reachable else down(name, at)
            on_host(found)
            out.append(found)
        return out


@pytest.fixture
def ledger_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'ledger.sqlite'}"


@pytest.fixture
def hosts(monkeypatch: pytest.MonkeyPatch) -> FakeHosts:
    fake = FakeHosts({"web-1": (), "web-2": ()})
    monkeypatch.setattr(planning_cli, "_assess", fake.assess)
    return fake


@pytest.fixture
def inventory(tmp_path: Path) -> str:
    path = tmp_path / "hosts.yml"
    path.write_text("all:\n  hosts:\n    web-1: {tier: 3}\n    web-2: {tier: 3}\n")
    return str(path)


def policy_with(tmp_path: Path, *urls: str) -> str:
    hooks = "".join(f"  - {{url: '{u}', retries: 0}}\n" for u in urls)
    path = tmp_path / "policy.yml"
    path.write_text(POLICY.read_text() + f"notifications:\n  webhooks:\n{hooks}")
    return str(path)


@pytest.fixture
def run_cli(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], ledger_url: str
) -> Run:
    """Run ``patchkit --ledger TMP ARGV`` in this process."""
    return in_process(monkeypatch, capsys, "--ledger", ledger_url, width=200)


@pytest.fixture
def advisories(ledger_url: str) -> Iterator[None]:
    """The tracker, KEV and EPSS data of test_vulnerability_severity, imported in the ledger."""
    ledger = Ledger(ledger_url)
    data = knowledge()
    assert data.kev is not None and data.epss is not None
    values: list[AdvisoryFeed | KevCatalog | EpssScores] = [*data.feeds, data.kev, data.epss]
    for value in values:
        ledger.import_feed(value, AT, "test")
    yield
    ledger.close()


def assess(run_cli: Run, policy: str, inventory: str, *extra: str) -> Done:
    return run_cli("assess", "-p", policy, "-i", inventory, *extra)


def test_assess_sends_new_updates_on_a_second_assessment_not_on_the_first(
    run_cli: Run, hosts: FakeHosts, inventory: str, tmp_path: Path, advisories: None
) -> None:
    with receiver() as heard:
        policy = policy_with(tmp_path, heard.url)
        hosts.pending = {"web-1": (TOOL,), "web-2": (TOOL,)}
        first = assess(run_cli, policy, inventory)
        assert first.code == 0, first.err
        assert "2 host(s) assessed for the first time" in first.message
        assert "no new-updates event" in first.message
        assert heard.seen == []
        hosts.pending = {"web-1": (TOOL, LIBDEMO), "web-2": (TOOL,)}
        second = assess(run_cli, policy, inventory, "--json")
        assert second.code == 0, second.err
        # --json: the findings alone on stdout, the status line on stderr
        assert [f["host"] for f in json.loads(second.out)["hosts"]] == ["web-1", "web-2"]
        assert (
            "new-updates sent to 1 of 1 webhook(s): 1 new update(s) on 1 host(s), "
            "1 fixes a known exploited CVE"
        ) in second.message
        hosts.pending = {"web-1": (TOOL, LIBDEMO, VIM), "web-2": (TOOL,)}
        quiet = assess(run_cli, policy, inventory, "--no-alerts")
        assert quiet.code == 0, quiet.err
        assert "new-updates" not in quiet.message
    (body,) = heard.got  # the second assessment's event, and only that
    assert body["event"] == "new-updates"
    assert (body["new_updates"], body["hosts"], body["kev_hits"]) == (1, 1, 1)
    (update,) = body["updates"]
    assert update["hosts"] == ["web-1"] and update["host_count"] == 1
    assert [c["cve"] for c in update["cves"]] == [KEV_CVE, MILD_CVE]
    assert update["cves"][0]["kev"] is True and update["cves"][0]["epss"] == 0.94
    assert body["text"].startswith("patchkit: 1 new update(s) on 1 host(s) (policy lab)")


def test_a_receiver_that_is_down_costs_a_warning_not_the_exit_status(
    run_cli: Run,
    hosts: FakeHosts,
    inventory: str,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    with receiver() as heard:
        policy = policy_with(tmp_path, heard.url, closed_port_url())
        assert assess(run_cli, policy, inventory).code == 0
        hosts.pending = {"web-1": (VIM,), "web-2": ()}
        done = assess(run_cli, policy, inventory)
    assert done.code == 0, done.err
    assert "new-updates sent to 1 of 2 webhook(s): 1 new update(s) on 1 host(s)" in done.message
    (warned,) = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert "notification new-updates to http://127.0.0.1:" in warned.getMessage()
    assert "not delivered: " in warned.getMessage() and "refused" in warned.getMessage()
    assert heard.events() == ["new-updates"]


def test_unreachable_hosts_keep_their_exit_status_and_send_nothing_new(
    run_cli: Run, hosts: FakeHosts, inventory: str, tmp_path: Path
) -> None:
    with receiver() as heard:
        policy = policy_with(tmp_path, heard.url)
        hosts.pending = {"web-1": (VIM,), "web-2": ()}
        assert assess(run_cli, policy, inventory).code == 0
        hosts.reachable = False
        assert assess(run_cli, policy, inventory).code == ExitCode.FAILURES
        # back, with what was pending before the outage and one update more
        hosts.reachable = True
        hosts.pending = {"web-1": (VIM,), "web-2": (TOOL,)}
        done = assess(run_cli, policy, inventory)
    assert done.code == 0, done.err
    (body,) = heard.got
    assert [(u["package"], u["hosts"]) for u in body["updates"]] == [("demo-tool", ["web-2"])]


def test_a_policy_without_a_webhook_for_it_says_what_is_new_and_sends_nothing(
    run_cli: Run, hosts: FakeHosts, inventory: str, tmp_path: Path
) -> None:
    policy = tmp_path / "policy.yml"
    hook = "{url: 'https://127.0.0.1/hook', events: [window-started]}"
    policy.write_text(POLICY.read_text() + f"notifications:\n  webhooks:\n  - {hook}\n")
    assert assess(run_cli, str(policy), inventory).code == 0
    hosts.pending = {"web-1": (VIM,), "web-2": ()}
    done = assess(run_cli, str(policy), inventory)
    assert done.code == 0, done.err
    assert (
        "1 new update(s) on 1 host(s); no webhook of the policy takes new-updates" in done.message
    )
