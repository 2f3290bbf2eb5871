"""Unit: the plan preview renderers (text, JSON, Markdown, HTML) on hand-built plans."""

from __future__ import annotations

import dataclasses
import html
import json
import re
import subprocess
import sys
from datetime import UTC, date, datetime, timedelta
from html.parser import HTMLParser
from importlib.resources import files
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from rich.console import Console

from patchkit.errors import PlanningError
from patchkit.model import Severity
from patchkit.planning import codec
from patchkit.planning.plan import content_hash
from patchkit.planning.types import (
    ApprovalRules,
    Batch,
    ClusterState,
    ExceptionUse,
    FreezeSpan,
    HeldUpdate,
    HostPlan,
    Phases,
    Plan,
    RunRules,
    SelectedUpdate,
    Settings,
    SkipKind,
    SkippedHost,
    WindowSlot,
)
from patchkit.policy.values import Amount
from patchkit.reports.plan import (
    FORMAT,
    facts,
    md,
    plan_html,
    plan_json,
    plan_markdown,
    plan_plain_text,
    plan_text,
)

BERLIN = ZoneInfo("Europe/Berlin")
MADE = datetime(2026, 11, 25, 10, 0, tzinfo=UTC)
OPEN = datetime(2026, 11, 28, 22, 0, tzinfo=BERLIN)
HOSTILE_HOST = "<script>alert(1)</script>"
PIPE_HOST = "pipe|host`x`"
HOSTILE_PACKAGE = "lib|evil`<b>"


def update(
    package: str,
    severity: Severity = Severity.HIGH,
    *,
    security: bool = True,
    reboot: bool = False,
) -> SelectedUpdate:
    return SelectedUpdate(
        package=package,
        installed="1.0",
        candidate="1.1",
        origin="bookworm-security" if security else "bookworm-updates",
        security=security,
        severity=severity,
        reboot=reboot,
        first_seen=MADE - timedelta(days=3),
    )


def host_plan(
    name: str,
    *updates: SelectedUpdate,
    approval: bool = False,
    held: tuple[HeldUpdate, ...] = (),
    assessed: datetime = MADE - timedelta(days=1),
) -> HostPlan:
    severity = max((u.severity for u in updates), key=lambda s: s.rank)
    reboot = any(u.reboot for u in updates)
    return HostPlan(
        host=name,
        env="prod",
        tier="1",
        cluster=None,
        criticality=10,
        criticality_label="tier 1",
        severity=severity,
        priority=severity.rank * 10,
        updates=updates,
        held=held,
        reboot=reboot,
        reboot_needs_approval=approval and reboot,
        reboot_pending=False,
        assessed_at=assessed,
        estimate=timedelta(minutes=10 if reboot else 5),
        contact="ops@example.org",
    )


def batch(number: int, start: datetime, *hosts: HostPlan, canary: bool = False) -> Batch:
    return Batch(
        number=number,
        canary=canary,
        hosts=hosts,
        concurrency=len(hosts),
        start=start,
        duration=max(h.estimate for h in hosts),
        next_window=start >= OPEN + timedelta(hours=3, minutes=30),
    )


def sample_plan(web: str = "web1", package: str = "openssl") -> Plan:
    """A small realistic plan: canary, a reboot needing approval, a deferred batch, every skip."""
    kernel = update("linux-image-amd64", Severity.CRITICAL, reboot=True)
    tz = HeldUpdate("tzdata", "2026a", "held: first seen 2 days ago, policy waits 7 days")
    canary = batch(1, OPEN, host_plan(web, update(package, Severity.CRITICAL)), canary=True)
    second = batch(
        2,
        OPEN + timedelta(minutes=5),
        host_plan("db1", kernel, update("libc6"), approval=True),
        host_plan("web2", update("nginx", Severity.MEDIUM, security=False), held=(tz,)),
    )
    late = dataclasses.replace(
        batch(3, OPEN + timedelta(hours=3, minutes=40), host_plan("app1", update("curl"))),
        next_window=True,
    )
    skipped = (
        SkippedHost("far1", SkipKind.OUT_OF_SCOPE, "not matched by prod"),
        SkippedHost("legacy1", SkipKind.EXCLUDED, "excluded by legacy"),
        SkippedHost("lap1", SkipKind.OTHER_WINDOW, "served by laptops-weekly"),
        SkippedHost("vendor1", SkipKind.EXCEPTION, "exception until 2027-01-31: vendor build"),
        SkippedHost("new1", SkipKind.NOT_ASSESSED, "never assessed: run patchkit assess"),
        SkippedHost("down1", SkipKind.UNREACHABLE, "unreachable: ssh timed out"),
        SkippedHost("clean1", SkipKind.NOTHING_TO_DO, "all 1 pending updates held", (tz,)),
        SkippedHost("pg2", SkipKind.QUORUM, "cluster pg: 1 of 2 members down (down1)"),
    )
    plan = Plan(
        id="",
        hash="",
        policy="prod-monthly",
        made_at=MADE,
        inputs={"findings": "f" * 64, "hosts": "b" * 64, "policy": "a" * 64},
        window=WindowSlot(
            name="sat-night",
            timezone="Europe/Berlin",
            start=OPEN,
            end=OPEN + timedelta(hours=4),
            cutoff=OPEN + timedelta(hours=3, minutes=30),
            frozen=("2026-11-21 22:00: year-end freeze",),
            freezes=(FreezeSpan(date(2026, 11, 21), date(2026, 11, 22), "year-end freeze"),),
        ),
        settings=Settings(
            approval=ApprovalRules(required=True, approvers=("alice", "bob"), needed=2),
            phases=Phases(
                snapshot_backend="package",
                reboot="if-needed",
                checks=(
                    {"type": "systemd", "unit": "nginx"},
                    {"type": "http", "url": "http://127.0.0.1:8081/health", "status": 200},
                ),
            ),
            rules=RunRules(
                error_threshold=Amount(value=10, percent=True),
                retries=1,
                max_unavailable=Amount(value=1),
            ),
            verification=("unit nginx active", "GET http://127.0.0.1:8081/health → 200"),
        ),
        batches=(canary, second, late),
        skipped=skipped,
        exceptions=(
            ExceptionUse(
                "dba", "vendor build", date(2027, 1, 31), ("vendor*",), (), False, ("vendor1",)
            ),
            ExceptionUse("web", "load test", date(2026, 11, 1), (), ("nginx",), True, ()),
        ),
        warnings=(
            "the window cannot hold every batch: 1 host(s) are left for the next window",
            "reboot needs explicit approval on: db1",
        ),
        clusters=(ClusterState("pg", 2, 1, ("down1",), ("down1", "pg2")),),
    )
    digest = content_hash(plan)
    return dataclasses.replace(plan, id=f"plan-{digest[:12]}", hash=digest)


def text_of(plan: Plan, *, detail: bool = True) -> str:
    console = Console(record=True, width=160)
    console.print(plan_text(plan, detail=detail))
    return console.export_text()


# ---------------------------------------------------------------- text


@pytest.mark.parametrize("detail", [True, False])
def test_text_names_every_host_and_every_reason(detail: bool) -> None:
    plan = sample_plan()
    out = text_of(plan, detail=detail)
    for name in ("web1", "db1", "web2", "app1"):
        assert name in out
    for skipped in plan.skipped:
        assert skipped.host in out and skipped.reason in out
    for warning in plan.warnings:
        assert warning in out
    assert "next window" in out and "canary" in out
    assert "needs approval: db1" in out
    assert "1 deferred to the next window" in out and "1 not-assessed" in out
    assert "EXPIRED" in out and "held: first seen 2 days ago" in out
    assert "high: rebooting db1 needs explicit approval" in out


def test_text_keeps_unknown_hosts_in_their_own_sections() -> None:
    out = text_of(sample_plan())
    assert "1 host(s) never assessed" in out
    assert "1 host(s) unreachable when last assessed" in out


def test_text_detail_lists_each_update_and_summary_lists_packages() -> None:
    detailed = text_of(sample_plan(), detail=True)
    assert "updates per host" in detailed and "1.0 → 1.1" in detailed
    short = text_of(sample_plan(), detail=False)
    assert "updates per host" not in short
    assert "linux-image-amd64" in short


def test_text_shows_hostile_names_literally() -> None:
    out = text_of(sample_plan(web="[bold]web[/]", package=HOSTILE_PACKAGE))
    assert "[bold]web[/]" in out and HOSTILE_PACKAGE in out


def test_plain_text_has_no_colour_codes() -> None:
    out = plan_plain_text(sample_plan(), detail=False)
    assert "\x1b[" not in out and "sat-night" in out


# ---------------------------------------------------------------- JSON


DOC = Path(__file__).parents[2] / "docs" / "plan-format.md"


def doc_block(language: str) -> str:
    """The first fenced block of ``language`` in docs/plan-format.md."""
    block = re.search(rf"```{language}\n(.*?)\n```", DOC.read_text(), re.DOTALL)
    assert block is not None, language
    return block.group(1)


def reader_checks(doc: dict[str, Any]) -> subprocess.CompletedProcess[str]:
    """Run the documentation's hash check, as a reader would, on ``doc`` given on stdin."""
    return subprocess.run(
        [sys.executable, "-c", doc_block("python")],
        input=json.dumps(doc, indent=2, sort_keys=True),
        capture_output=True,
        text=True,
        check=False,
    )


def test_json_has_format_and_round_trips_ids_and_counts() -> None:
    plan = sample_plan()
    doc = json.loads(plan_json(plan))
    assert doc["format"] == FORMAT == "patchkit-plan/2"
    assert (doc["id"], doc["hash"], doc["policy"]) == (plan.id, plan.hash, plan.policy)
    assert doc["id"] == f"plan-{doc['hash'][:12]}"
    assert codec.decode(doc) == plan
    assert [b["number"] for b in doc["batches"]] == [1, 2, 3]
    assert [b["next_window"] for b in doc["batches"]] == [False, False, True]
    assert sum(len(b["hosts"]) for b in doc["batches"]) == len(plan.hosts()) == 4
    assert {s["kind"] for s in doc["skipped"]} == {k.value for k in SkipKind}
    assert doc["batches"][1]["hosts"][0]["reboot_needs_approval"] is True
    assert doc["window"]["start"] == "2026-11-28T22:00:00+01:00"
    assert doc["window"]["freezes"] == [
        {"start": "2026-11-21", "end": "2026-11-22", "reason": "year-end freeze"}
    ]
    assert set(doc["settings"]) == {"approval", "phases", "rules", "verification", "node_groups"}
    assert doc["settings"]["node_groups"] == []  # every host from the controller
    assert {h["node_group"] for b in doc["batches"] for h in b["hosts"]} == {""}
    assert doc["settings"]["approval"]["expires_after"] is None
    assert doc["settings"]["rules"]["error_threshold"] == "10%"
    assert doc["settings"]["phases"]["reboot_timeout"] == 600
    assert doc["clusters"] == [
        {"name": "pg", "size": 2, "limit": 1, "down": ["down1"], "members": ["down1", "pg2"]}
    ]
    with pytest.raises(PlanningError, match="older patchkit"):
        codec.decode({**doc, "format": "patchkit-plan/1"})


def test_json_hash_can_be_checked_by_a_reader() -> None:
    """The script in docs/plan-format.md, run on a plan, gets its hash; what the document says
    is outside the hash may change, anything else may not."""
    doc = json.loads(plan_json(sample_plan()))
    checked = reader_checks(doc)
    assert checked.returncode == 0, checked.stderr
    assert f"{doc['id']}: hash {doc['hash']} checked" in checked.stdout

    later = json.loads(json.dumps(doc))
    for key in codec.UNHASHED:
        if key != "format":  # the reader checks the format itself
            later[key] = "2026-11-25T10:01:00+00:00" if key == "made_at" else ["another"]
    for batch_doc in later["batches"]:
        for key in codec.UNHASHED_BATCH:
            batch_doc[key] = "2026-11-28T22:01:00+01:00"
    assert codec.body_hash(later) == doc["hash"]
    checked = reader_checks(later)
    assert checked.returncode == 0, checked.stderr

    outside = {"id", "hash", "format", *codec.UNHASHED}
    for key in sorted(set(doc) - outside):
        if key != "batches":
            assert reader_checks({**doc, key: [doc[key]]}).returncode != 0, key
    for key in sorted(set(doc["batches"][0]) - set(codec.UNHASHED_BATCH)):
        first = {**doc["batches"][0], key: [doc["batches"][0][key]]}
        edited = {**doc, "batches": [first, *doc["batches"][1:]]}
        assert reader_checks(edited).returncode != 0, key
    assert reader_checks({**doc, "format": "patchkit-plan/1"}).returncode != 0


def shapes(doc: dict[str, Any]) -> dict[str, set[str]]:
    """The keys of each kind of object in a plan document."""
    batches = doc["batches"]
    hosts = [h for b in batches for h in b["hosts"]]
    settings = doc["settings"]
    return {
        "plan": set(doc),
        "window": set(doc["window"]),
        "freeze": {k for f in doc["window"]["freezes"] for k in f},
        "settings": set(settings),
        "approval": set(settings["approval"]),
        "phases": set(settings["phases"]),
        "rules": set(settings["rules"]),
        "batch": {k for b in batches for k in b},
        "host": {k for h in hosts for k in h},
        "update": {k for h in hosts for u in h["updates"] for k in u},
        "held": {k for h in hosts for u in h["held"] for k in u},
        "skipped": {k for s in doc["skipped"] for k in s},
        "cluster": {k for c in doc["clusters"] for k in c},
        "exception": {k for e in doc["exceptions"] for k in e},
    }


def test_documented_example_is_a_real_plan() -> None:
    """The example has every key a real plan has, is a body ``run`` would accept as it is, and
    the reader's hash check passes on it; every key is documented."""
    example = json.loads(doc_block("json"))
    real = shapes(json.loads(plan_json(sample_plan())))
    assert shapes(example) == real
    assert example["format"] == FORMAT
    codec.verify(example, example["hash"])
    assert json.loads(plan_json(codec.decode(example))) == example
    checked = reader_checks(example)
    assert checked.returncode == 0, checked.stderr
    kinds = {s["kind"] for s in example["skipped"]}
    assert {"unreachable", "quorum"} <= kinds
    text = DOC.read_text()
    for key in set().union(*real.values()) | {k.value for k in SkipKind}:
        assert f"`{key}`" in text, key


# ---------------------------------------------------------------- Markdown


def cells(line: str) -> list[str]:
    """Split a table row the way GitHub does: a backslash escapes the character after it."""
    out, cell, chars = [], "", iter(line.strip()[1:])
    for char in chars:
        if char == "\\":
            cell += char + next(chars, "")
        elif char == "|":
            out.append(cell)
            cell = ""
        else:
            cell += char
    return out


def tables(text: str) -> list[list[str]]:
    found: list[list[str]] = []
    previous = False
    for line in text.splitlines():
        row = line.startswith("|")
        if row and not previous:
            found.append([])
        if row:
            found[-1].append(line)
        previous = row
    return found


def test_markdown_tables_keep_their_shape_with_hostile_names() -> None:
    plan = sample_plan(web=PIPE_HOST, package=HOSTILE_PACKAGE)
    out = plan_markdown(plan)
    found = tables(out)
    assert len(found) >= 10
    for table in found:
        widths = {len(cells(line)) for line in table}
        assert len(widths) == 1, table
    assert "pipe\\|host\\`x\\`" in out
    assert HOSTILE_PACKAGE not in out and "lib\\|evil\\`\\<b\\>" in out
    scripted = plan_markdown(sample_plan(web=HOSTILE_HOST))
    assert HOSTILE_HOST not in scripted and "\\<script\\>alert(1)\\</script\\>" in scripted


def test_markdown_is_a_change_request() -> None:
    plan = sample_plan()
    out = plan_markdown(plan)
    for heading in (
        "Summary",
        "Window and timing",
        "Left for the next window",
        "Batches",
        "Hosts",
        "Reboots",
        "Not in this plan",
        "Risks",
        "Exceptions",
        "Rollback and failure handling",
        "Verification",
        "Approval",
    ):
        assert re.search(rf"^#+ .*{heading}", out, re.MULTILINE), heading
    assert f"patchkit approve {plan.id} --by NAME" in out and plan.hash in out
    assert "**HIGH**" in out and "**needs explicit approval**" in out
    assert "**EXPIRED**" in out and "2026-11-28 22:00 CET" in out
    assert "never assessed" in out and "unreachable: ssh timed out" in out


def test_md_escapes_syntax_and_line_breaks() -> None:
    assert md("a|b`c\nd") == "a\\|b\\`c d"
    assert md("<x>&*_") == "\\<x\\>\\&\\*\\_"


# ---------------------------------------------------------------- HTML


class Tags(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.tags: list[str] = []
        self.urls: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append(tag)
        self.urls += [v or "" for k, v in attrs if k in {"src", "href", "action", "srcset"}]


def test_html_escapes_hostile_strings() -> None:
    out = plan_html(sample_plan(web=HOSTILE_HOST, package=HOSTILE_PACKAGE))
    assert HOSTILE_HOST not in out
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in out
    assert "lib|evil`&lt;b&gt;" in out
    parser = Tags()
    parser.feed(out)
    assert "script" not in parser.tags and "b" not in parser.tags


def test_html_is_self_contained() -> None:
    plan = sample_plan()
    out = plan_html(plan)
    parser = Tags()
    parser.feed(out)
    assert not {"link", "img", "iframe", "object", "embed"} & set(parser.tags)
    assert all(url.startswith("#") for url in parser.urls), parser.urls
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:)?//""", out)
    assert "@import" not in out and "url(" not in out
    assert plan.id in out and plan.hash in out
    assert f"patchkit approve {plan.id} --by NAME" in out
    assert "@media print" in out


# ---------------------------------------------------------------- all of them


RENDERERS = [plan_json, plan_markdown, plan_html, plan_plain_text]


@pytest.mark.parametrize("render", RENDERERS)
def test_same_plan_gives_same_bytes(render: object) -> None:
    assert callable(render)
    assert render(sample_plan()).encode() == render(sample_plan()).encode()


@pytest.mark.parametrize("render", RENDERERS)
def test_a_plan_with_nothing_to_do_renders(render: object) -> None:
    """No batches, no exceptions, no warnings, no checks: every document still says so."""
    empty = dataclasses.replace(
        sample_plan(),
        batches=(),
        exceptions=(),
        warnings=(),
        settings=dataclasses.replace(
            sample_plan().settings,
            verification=(),
            approval=dataclasses.replace(sample_plan().settings.approval, approvers=()),
        ),
    )
    assert callable(render)
    out = render(empty)
    assert "new1" in out and "down1" in out


def test_risk_level_follows_the_listed_risks() -> None:
    plan = sample_plan()
    assert facts(plan).risk == "high"
    calm = dataclasses.replace(plan, batches=plan.batches[:1], skipped=())
    assert facts(calm).risk == "low", facts(calm).risks


def test_templates_ship_inside_the_package() -> None:
    templates = files("patchkit.reports") / "templates"
    assert (templates / "plan.md.j2").is_file() and (templates / "plan.html.j2").is_file()


@pytest.mark.parametrize("render", RENDERERS)
def test_every_preview_says_when_host_keys_are_not_checked(render: object) -> None:
    plan = sample_plan()
    unchecked = dataclasses.replace(
        plan,
        settings=dataclasses.replace(
            plan.settings, rules=dataclasses.replace(plan.settings.rules, host_key_checking=False)
        ),
        warnings=(*plan.warnings, "SSH host keys are not checked (connection.host_key_checking"),
    )
    assert callable(render)
    out = " ".join(render(unchecked).split())
    default = " ".join(render(plan).split())
    if render is plan_json:
        assert json.loads(out)["settings"]["rules"]["host_key_checking"] is False
        assert json.loads(default)["settings"]["rules"]["host_key_checking"] is True
    else:
        assert "NOT checked" in out and "NOT checked" not in default
    assert "SSH host keys are not checked" in out
    assert "SSH host keys are not checked" not in default


def test_unchecked_host_keys_are_a_high_risk() -> None:
    plan = sample_plan()
    unchecked = dataclasses.replace(
        plan,
        settings=dataclasses.replace(
            plan.settings, rules=dataclasses.replace(plan.settings.rules, host_key_checking=False)
        ),
    )
    risks = {r.text: r.level for r in facts(unchecked).risks}
    assert any(
        t.startswith("SSH host keys are not checked") and lvl == "high" for t, lvl in risks.items()
    )


@pytest.mark.parametrize("render", [plan_markdown, plan_html, plan_plain_text])
def test_every_preview_says_what_the_run_enforces(render: object) -> None:
    plan = sample_plan()
    settings = plan.settings
    strict = dataclasses.replace(
        plan,
        settings=dataclasses.replace(
            settings,
            approval=dataclasses.replace(
                settings.approval, separation_of_duties=True, signatures_required=True,
                emergency_approvers=("carol",), expires_after=timedelta(hours=8),
            ),
            phases=dataclasses.replace(
                settings.phases, backup_command="dump-db", backup_timeout=timedelta(minutes=5)
            ),
            rules=dataclasses.replace(settings.rules, retries=2, canary_soak=timedelta(minutes=30)),
        ),
    )  # fmt: skip
    assert callable(render)
    out = " ".join(html.unescape(render(strict)).replace("\\", "").split())
    for said in (
        "2 approval(s) by different approvers (alice, bob)",
        "whoever made the plan may not approve it",
        "signed with an SSH key",
        "valid for 8 h 00 min after approval, for one run only",
        "emergency approval by carol",
        "tried 2 more time(s)",
        "dump-db",
        "a failed backup leaves the host unpatched",
        "the next batch waits 30 min",
    ):
        assert said in out, said
