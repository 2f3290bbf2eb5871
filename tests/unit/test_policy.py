"""Unit: the policy model and loader (valid policies, and every kind of bad input)."""

from __future__ import annotations

import textwrap
from datetime import timedelta
from pathlib import Path

import pytest

from patchkit.errors import ExitCode, PolicyError
from patchkit.model import Severity
from patchkit.policy import load, loads
from patchkit.policy.values import Amount, parse_duration

ROOT = Path(__file__).resolve().parents[2]

MINIMAL = """\
name: minimal
roles:
  owner: ops
  approvers: [alice]
windows:
  - name: sat
    rrule: FREQ=WEEKLY;BYDAY=SA;BYHOUR=22
    duration: 4h
"""


@pytest.mark.parametrize("name", ["example.yml", "lab.yml"])
def test_shipped_policies_are_valid(name: str) -> None:
    policy = load(ROOT / "policies" / name)
    assert policy.windows


def test_defaults_fill_what_a_minimal_policy_leaves_out() -> None:
    policy = loads(MINIMAL)
    assert policy.scope.include == ["all"]
    assert policy.classification.updates == "all"
    assert policy.windows[0].cutoff == timedelta(minutes=30)
    assert policy.windows[0].timezone == "UTC"
    assert policy.rollout.batch_size == Amount(value=25, percent=True)
    assert policy.downtime.reboot == "if-needed"
    assert policy.failure_handling.rollback == "host"
    assert policy.reporting.deadlines[Severity.CRITICAL] == 7


def test_example_policy_encodes_the_written_rules() -> None:
    policy = load(ROOT / "policies" / "example.yml")
    tiers = {t.label: t.criticality for t in policy.criticality.tiers}
    assert tiers["employee laptop"] < min(v for k, v in tiers.items() if k != "employee laptop")
    assert policy.exceptions and all(e.owner and e.expires for e in policy.exceptions)
    assert {w.name for w in policy.windows} >= {"prod-weekly", "laptops-lunchtime"}


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("30m", timedelta(minutes=30)),
        ("1h30m", timedelta(minutes=90)),
        ("90s", timedelta(seconds=90)),
        ("2d", timedelta(days=2)),
        (15, timedelta(minutes=15)),
    ],
)
def test_durations(text: str | int, value: timedelta) -> None:
    assert parse_duration(text) == value


def test_amount_resolves_counts_and_percentages() -> None:
    assert Amount(value=20, percent=True).of(11) == 3  # rounds up
    assert Amount(value=20, percent=True).of(0) == 1  # never below one
    assert Amount(value=5).of(100) == 5


def problems(text: str) -> list[str]:
    with pytest.raises(PolicyError) as err:
        loads(textwrap.dedent(text), "p.yml")
    assert err.value.exit_code == ExitCode.BAD_INPUT
    assert err.value.hint
    return err.value.problems


def with_window(lines: str) -> str:
    head = "name: t\nroles: {owner: ops, approvers: [a]}\nwindows:\n  - name: w\n"
    return head + textwrap.indent(textwrap.dedent(lines), "    ")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("name: t\nroles: {owner: ops\n", "p.yml:3: not valid YAML"),
        (MINIMAL + "rollout:\n  batchsize: 3\n", "p.yml:10: rollout.batchsize: unknown key"),
        (MINIMAL + "colour: red\n", "p.yml:9: colour: unknown key 'colour'; allowed here:"),
        ("name: t\nwindows: []\n", "p.yml:1: roles: required, but missing"),
        (MINIMAL + "classification:\n  updates: securty\n", "updates: Input should be"),
        (with_window("rrule: FREQ=DAILY\nduration: 4 hours\n"), "p.yml:6: windows[0].duration"),
        (with_window("rrule: FREQ=DAILY\nduration: 4h\ntimezone: Mars/Base\n"), "time zone"),
        (with_window("rrule: FREQ=SOMETIMES\nduration: 4h\n"), "p.yml:5: windows[0].rrule"),
        (with_window("cron: '61 * * * *'\nduration: 4h\n"), "not a 5-field cron"),
        (with_window("cron: '0 1 * * *'\nrrule: FREQ=DAILY\nduration: 4h\n"), "exactly one"),
        (with_window("cron: '0 1 * * *'\nduration: 1h\ncutoff: 2h\n"), "cutoff must be shorter"),
        (MINIMAL + "rollout: {batch_size: 120%}\n", "p.yml:9: rollout.batch_size"),
        (MINIMAL + "rollout: {batch_size: many}\n", "neither a count"),
        (MINIMAL + "exceptions:\n  - {owner: x, reason: y, expires: 2027-01-01}\n", "names hosts"),
        (MINIMAL + "verification:\n  - {type: smtp}\n", "p.yml:10: verification[0]"),
        (MINIMAL + "verification:\n  - {type: http, url: ftp://x}\n", "verification[0].url"),
        (MINIMAL + "name: again\n", "p.yml:9: name: duplicate key (first on line 1)"),
        (MINIMAL.replace("  approvers: [alice]\n", ""), "no approvers are named"),
        ("", "the policy is empty"),
        ("- a list\n", "p.yml:1: the policy must be a mapping"),
    ],
)
def test_bad_policy_names_line_field_and_fix(text: str, expected: str) -> None:
    found = problems(text)
    assert any(expected in line for line in found), found


def test_every_problem_is_reported_at_once() -> None:
    text = MINIMAL + "rollout: {batch_size: many, order: random}\nfoo: 1\n"
    found = problems(text)
    assert len(found) == 3
    assert all(line.startswith("p.yml:") for line in found)


def test_duplicate_window_names() -> None:
    text = MINIMAL + "  - {name: sat, cron: '0 1 * * *', duration: 1h}\n"
    assert any("window names must be unique: sat" in line for line in problems(text))


def test_missing_file_names_the_path(tmp_path: Path) -> None:
    with pytest.raises(PolicyError) as err:
        load(tmp_path / "nope.yml")
    assert str(tmp_path / "nope.yml") in err.value.message
