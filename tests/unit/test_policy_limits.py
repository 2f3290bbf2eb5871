"""Unit: the policy loader and model refuse nonsense, each problem as ``file:line: field: what``.

Issue 15, item 2: whatever the text or bytes, ``load``/``loads`` end in a Policy or a
PolicyError (exit 2) whose lines name the place; never another exception, never a hang.
"""

from __future__ import annotations

import json
import textwrap
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from patchkit.cli.policy import closed_windows, policy
from patchkit.errors import ExitCode, PolicyError
from patchkit.execution.rules import threshold_crossed
from patchkit.planning import windows as planning_windows
from patchkit.policy import load, load_located, loads
from patchkit.policy.loader import MAX_ALIASES, MAX_BYTES, MAX_DEPTH
from patchkit.policy.model import Policy, PolicySchema
from patchkit.policy.recurrence import ANCHOR
from patchkit.policy.values import Amount, parse_duration

ROOT = Path(__file__).resolve().parents[2]
HEAD = """\
name: t
roles: {owner: ops, approvers: [a]}
windows:
  - {name: w, rrule: FREQ=DAILY, duration: 4h}
"""  # a valid policy of four lines; cases add line 5 on


def problems(text: str | bytes) -> list[str]:
    with pytest.raises(PolicyError) as err:
        loads(text, "p.yml")
    assert err.value.exit_code == ExitCode.BAD_INPUT
    assert err.value.hint
    return err.value.problems


def refused(text: str | bytes, expected: str) -> None:
    found = problems(text)
    assert any(line.startswith("p.yml:") and expected in line for line in found), found


def window(**fields: object) -> str:
    body = ", ".join(f"{k}: {json.dumps(v)}" for k, v in ({"name": "w"} | fields).items())
    return "name: t\nroles: {owner: ops, approvers: [a]}\nwindows:\n  - {" + body + "}\n"


# ---------------------------------------------------------------- reading YAML


def test_a_control_character_is_refused_with_its_line() -> None:
    refused(HEAD + "description: a\x07b\n", "p.yml:5: the non-printable character U+0007")
    refused(HEAD + "\x00", "p.yml:5:")


def test_a_lone_surrogate_in_text_is_refused_with_its_line() -> None:
    refused(HEAD + "description: \ud800\n", "p.yml:5: the non-printable character U+D800")


def test_bytes_that_are_not_utf8_name_the_line_of_the_first_bad_byte(tmp_path: Path) -> None:
    raw = HEAD.encode() + b"description: caf\xe9\n"
    refused(raw, "p.yml:5: not UTF-8 text (byte 0xe9")
    path = tmp_path / "latin1.yml"
    path.write_bytes(raw)
    with pytest.raises(PolicyError) as err:
        load(path)
    assert err.value.problems == [f"{path}:5: not UTF-8 text (byte 0xe9 on this line)"]


def test_utf8_bytes_with_a_bom_load() -> None:
    assert loads(b"\xef\xbb\xbf" + HEAD.encode()).name == "t"


def test_an_impossible_date_is_a_located_error_not_a_crash() -> None:
    text = HEAD + "exceptions:\n  - {hosts: [x], owner: o, reason: r, expires: 2026-02-30}\n"
    refused(text, "p.yml:6: exceptions[0].expires: '2026-02-30' is not a date")


@pytest.mark.parametrize(
    ("value", "shown"),
    [
        ("!!binary aGVsbG8=", "!!binary"),
        ("!!python/object/apply:os.system [true]", "!!python/object/apply:os.system"),
        ("!!str x", "!!str"),
        ("!custom x", "!custom"),
        ("! x", "!"),
        ("!!map {a: 1}", "!!map"),
    ],
)
def test_tags_are_refused_with_their_line(value: str, shown: str) -> None:
    refused(HEAD + f"description: {value}\n", f"p.yml:5: tags are not allowed ({shown})")


def test_a_recursive_alias_is_refused() -> None:
    refused(HEAD + "x: &a [*a]\n", "p.yml:5: alias *a is inside the value it names")
    refused(HEAD + "x: &m {<<: *m}\n", "p.yml:5: alias *m is inside the value it names")


def test_a_billion_laughs_is_refused_quickly() -> None:
    laughs = "l0: &l0 [x, x, x, x, x, x, x, x, x]\n" + "".join(
        f"l{i}: &l{i} [{', '.join([f'*l{i - 1}'] * 9)}]\n" for i in range(1, 8)
    )
    began = time.monotonic()
    refused(HEAD + laughs, "more than 100000 values, counting what aliases repeat")
    assert time.monotonic() - began < 5


def test_aliases_are_counted() -> None:
    many = ", ".join(["*a"] * (MAX_ALIASES + 1))
    refused(HEAD + f"a: &a x\nb: [{many}]\n", f"p.yml:6: more than {MAX_ALIASES} aliases")


def test_nesting_is_bounded_in_the_file_and_through_aliases() -> None:
    deep = "[" * (MAX_DEPTH + 5) + "]" * (MAX_DEPTH + 5)
    refused(HEAD + f"d: {deep}\n", f"p.yml:5: nested more than {MAX_DEPTH} levels deep")
    refused(HEAD + "d: " + "[" * 100_000 + "\n", "nested more than")  # no RecursionError
    chain = "".join(f"a{i}: &a{i} [*a{i - 1}, [[[[[[[[x]]]]]]]]]\n" for i in range(1, 60))
    refused(HEAD + "a0: &a0 x\n" + chain, "aliases nest the policy more than")


def test_an_anchor_defined_twice_names_both_lines() -> None:
    refused(HEAD + "a: &x 1\nb: &x 2\n", "p.yml:6: anchor &x is defined twice (first on line 5)")


def test_a_file_too_large_is_refused_before_it_is_parsed(tmp_path: Path) -> None:
    refused(HEAD + "description: " + "x" * MAX_BYTES + "\n", f"longer than {MAX_BYTES} bytes")
    with pytest.raises(PolicyError, match="longer than"):
        load(Path("/dev/zero"))


def test_a_directory_is_not_a_policy(tmp_path: Path) -> None:
    with pytest.raises(PolicyError, match="cannot read the policy"):
        load(tmp_path)


def test_one_policy_per_file() -> None:
    refused(HEAD + "---\nname: x\n", "p.yml:5: not valid YAML: expected a single document")


def test_merge_keys_still_work_and_are_checked() -> None:
    text = (
        "name: t\nroles: {owner: ops, approvers: [a]}\nwindows:\n"
        "  - &base {name: a, rrule: FREQ=DAILY, duration: 4h}\n"
        "  - {<<: *base, name: b}\n"
    )
    assert [w.name for w in loads(text).windows] == ["a", "b"]
    refused(HEAD + "rollout: {<<: 1}\n", "p.yml:5: not valid YAML: expected a mapping")


def test_sexagesimal_is_not_a_number_and_durations_read_h_mm() -> None:
    loaded = loads(window(rrule="FREQ=DAILY", duration="1:30:00", cutoff="0:10").replace('"', ""))
    assert loaded.windows[0].duration == timedelta(hours=1, minutes=30)  # not 5400 minutes
    assert loaded.windows[0].cutoff == timedelta(minutes=10)
    assert loads(HEAD + "description: 1:30\n").description == "1:30"


def test_yes_no_on_off_are_the_text_written_and_booleans_still_read_them() -> None:
    text = """\
        name: no
        roles:
          owner: on
          approvers: [yes, off]
          contacts: {no: yes}
          approval_required: yes
        classification:
          severity_rules: [{severity: low, packages: [tzdata], security: no}]
        windows:
          - {name: w, rrule: FREQ=DAILY, duration: 4h}
    """
    loaded = loads(textwrap.dedent(text))
    assert loaded.name == "no"
    assert loaded.roles.owner == "on"
    assert loaded.roles.approvers == ["yes", "off"]
    assert loaded.roles.contacts == {"no": "yes"}
    assert loaded.roles.approval_required is True
    assert loaded.classification.severity_rules[0].security is False
    assert loads(HEAD.replace("[a]}", "[a], approval_required: false}")).roles.approvers == ["a"]


def test_other_yaml_11_spellings_stay_text() -> None:
    loaded = loads(HEAD + "description: 2026-01-01 10:00:00\n")
    assert loaded.description == "2026-01-01 10:00:00"  # not a datetime
    assert loads(HEAD + "description: =\n").description == "="
    octal = loads(HEAD + "preparation: {prechecks: {min_free_disk: 0100}}\n")
    assert octal.preparation.prechecks.min_free_disk == 100  # not 64


@pytest.mark.parametrize(
    ("key", "expected"),
    [
        ("1", "(top level): key 1 is read as a number, not text: quote it ('1')"),
        ("1.5", "(top level): key 1.5 is read as a number"),
        ("true", "(top level): key true is read as true/false"),
        ("null", "(top level): a key is empty (or null)"),
        ("[a]", "(top level): a key is a list"),
        ("{a: 1}", "(top level): a key is a mapping"),
    ],
)
def test_keys_that_are_not_text_are_located_errors(key: str, expected: str) -> None:
    refused(HEAD + f"? {key}\n: x\n", f"p.yml:5: {expected}")


def test_a_number_key_inside_a_section_names_the_section() -> None:
    refused(
        HEAD + "reporting:\n  deadlines: {7: critical}\n", "p.yml:6: reporting.deadlines: key 7"
    )


def test_a_number_where_text_is_meant_says_to_quote_it() -> None:
    refused(HEAD.replace("name: t", "name: 5"), "p.yml:1: name: Input should be a valid string (5")
    refused(HEAD.replace("name: t", "name:"), "p.yml:1: name: Input should be a valid string (the")


# ---------------------------------------------------------------- counts and percentages


@pytest.mark.parametrize("field", ["batch_size", "concurrency"])
@pytest.mark.parametrize("value", ["0", "'0%'", "{value: 0}", "-1", "'-5'"])
def test_rollout_counts_are_at_least_one(field: str, value: str) -> None:
    found = problems(HEAD + f"rollout: {{{field}: {value}}}\n")
    assert len(found) == 1 and found[0].startswith(f"p.yml:5: rollout.{field}"), found


def test_a_canary_of_zero_hosts_is_refused() -> None:
    refused(HEAD + "rollout: {canary: {size: 0}}\n", "p.yml:5: rollout.canary.size: 0 hosts")


def test_an_error_threshold_of_zero_halts_at_the_first_failure() -> None:
    threshold = loads(HEAD + "rollout: {error_threshold: 0}\n").rollout.error_threshold
    assert threshold == Amount(value=0)
    assert threshold_crossed(1, 10, threshold) and not threshold_crossed(0, 10, threshold)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("{value: -5, junk: 1}", "rollout.error_threshold.junk: unknown key 'junk'"),
        ("{value: -5}", "a count cannot be negative"),
        ("{value: 2.5}", "a count of hosts is a whole number"),
        ("{value: 120, percent: true}", "at most 100%"),
        ("{value: .nan}", "finite number"),
        (".nan", "neither a count"),
        (".inf", "neither a count"),
        ("'nan%'", "neither a count"),
        ("'inf%'", "neither a count"),
        ("120%", "a percentage must be above 0% and at most 100%"),
        ("1" * 5000, "more than 1000000 hosts"),
        ("100000000000000000000000000000", "more than 1000000 hosts"),
    ],
)
def test_every_form_of_an_amount_gets_the_same_checks(value: str, expected: str) -> None:
    refused(HEAD + f"rollout: {{error_threshold: {value}}}\n", expected)


def test_an_amount_made_in_code_is_checked_too() -> None:
    with pytest.raises(ValueError, match="negative"):
        Amount(value=-1)
    with pytest.raises(ValueError, match="extra"):
        Amount.model_validate({"value": 1, "junk": 1})


# ---------------------------------------------------------------- durations


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("1:30", timedelta(hours=1, minutes=30)),
        ("1:30:00", timedelta(hours=1, minutes=30)),
        ("0:45", timedelta(minutes=45)),
        ("26:00", timedelta(hours=26)),
        ("90", timedelta(minutes=90)),
        ("1h 30m", timedelta(minutes=90)),
        ("366d", timedelta(days=366)),
    ],
)
def test_durations_a_person_writes(text: str, value: timedelta) -> None:
    assert parse_duration(text) == value


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (float("inf"), "is not a duration"),
        (float("nan"), "is not a duration"),
        ("9999999999d", "is longer than 366d"),
        ("9" * 5000 + "d", "is longer than 366d"),
        (10**400, "is longer than 366d"),
        (-5, "cannot be negative"),
        ("367d", "is longer than 366d"),
        ("1:60", "is not a duration"),
        ("", "is not a duration"),
        (True, "is not a duration"),
    ],
)
def test_durations_out_of_bounds(value: object, expected: str) -> None:
    with pytest.raises(ValueError, match=expected):
        parse_duration(value)


@pytest.mark.parametrize(
    ("section", "expected"),
    [
        ("downtime: {reboot_timeout: 0}", "downtime.reboot_timeout: must be longer than 0"),
        (
            "downtime: {reboot_timeout: 7h}",
            "downtime.reboot_timeout: 7h is too long here: at most 6h",
        ),
        ("downtime: {reboot_timeout: .inf}", "downtime.reboot_timeout: inf is not a duration"),
        ("downtime: {reboot_timeout: 9999999999d}", "is longer than 366d"),
        ("preparation: {backup: {command: x, timeout: 0}}", "preparation.backup.timeout: must be"),
        (
            "notifications: {webhooks: [{url: 'https://h', timeout: 0}]}",
            "webhooks[0].timeout: must",
        ),
        ("notifications: {webhooks: [{url: 'https://h', timeout: 1h}]}", "at most 5m"),
        ("classification: {minimum_age: 400d}", "classification.minimum_age: '400d' is longer"),
        ("rollout: {estimate: {per_package: 2h}}", "rollout.estimate.per_package: 2h is too"),
        ("promotion: {order: [a, b], soak: 400d}", "promotion.soak: '400d' is longer than"),
    ],
)
def test_duration_fields_have_their_own_bounds(section: str, expected: str) -> None:
    refused(HEAD + section + "\n", expected)


def test_a_window_lasts_above_zero_and_at_most_a_week() -> None:
    refused(window(rrule="FREQ=WEEKLY", duration="0"), "p.yml:4: windows[0].duration: must be")
    refused(window(rrule="FREQ=WEEKLY", duration="8d"), "windows[0].duration: 8d is too long")
    assert loads(window(rrule="FREQ=WEEKLY", duration="7d")).windows[0].duration.days == 7


# ---------------------------------------------------------------- recurrences


@pytest.mark.parametrize(
    ("recurrence", "expected"),
    [
        ({"cron": "0 0 30 2 *"}, "windows[0].cron: never opens"),
        ({"cron": "0 0 31 4,6,9,11 *"}, "windows[0].cron: never opens"),
        ({"cron": "R R * * *"}, "R (a random time) is not allowed"),
        ({"cron": "@daily"}, "not a 5-field cron"),
        ({"rrule": "FREQ=WEEKLY;INTERVAL=-1"}, "INTERVAL=-1: give a whole number from 1 to 1000"),
        ({"rrule": "FREQ=WEEKLY;INTERVAL=0"}, "INTERVAL=0"),
        ({"rrule": "FREQ=DAILY;BYHOUR=99"}, "BYHOUR=99: each value is 0 to 23"),
        ({"rrule": "FREQ=HOURLY;BYHOUR=25"}, "BYHOUR=25"),
        ({"rrule": "FREQ=YEARLY;BYEASTER=400"}, "BYEASTER=400"),
        ({"rrule": "FREQ=YEARLY;BYMONTH=13"}, "BYMONTH=13: each value is 1 to 12"),
        ({"rrule": "FREQ=YEARLY;BYMONTH=2;BYMONTHDAY=30"}, "windows[0].rrule: never opens"),
        ({"rrule": "FREQ=HOURLY;BYMONTH=2;BYMONTHDAY=30"}, "no calendar day matches"),
        ({"rrule": "FREQ=DAILY;UNTIL=19991231T000000"}, "never opens (no opening from 2000"),
        ({"rrule": "FREQ=DAILY;UNTIL=20260101T000000Z"}, "drop the trailing Z"),
        ({"rrule": "FREQ=MINUTELY"}, "FREQ must be one of HOURLY"),
        ({"rrule": "FREQ=SECONDLY;BYMONTH=2;BYMONTHDAY=30"}, "FREQ must be one of"),
        ({"rrule": "FREQ=DAILY;BYSETPOS=2"}, "BYSETPOS is supported with FREQ=MONTHLY"),
        ({"rrule": "FREQ=DAILY\nRRULE:FREQ=WEEKLY"}, "write only NAME=VALUE parts"),
        ({"rrule": "FREQ=DAILY;FREQ=WEEKLY"}, "FREQ is given twice"),
        ({"rrule": "FREQ=DAILY;X=1"}, "X is not supported"),
        ({"rrule": "FREQ=DAILY;;"}, "is not a NAME=VALUE part"),
        ({"rrule": "FREQ=DAILY;COUNT=3"}, "use UNTIL"),
    ],
)
def test_a_window_that_never_opens_or_cannot_be_read_is_refused(
    recurrence: dict[str, str], expected: str
) -> None:
    began = time.monotonic()
    found = problems(window(duration="1h", cutoff="5m", **recurrence))
    assert len(found) == 1 and found[0].startswith("p.yml:4: windows[0]"), found
    assert expected in found[0]
    assert time.monotonic() - began < 10  # the searches are bounded


def test_a_rule_that_ended_after_2000_still_loads() -> None:
    # the model cannot read the clock; `policy check` refuses it (below)
    assert loads(window(rrule="FREQ=DAILY;UNTIL=20200101T000000", duration="1h", cutoff="5m"))


def test_openings_must_not_overlap() -> None:
    refused(
        window(rrule="FREQ=HOURLY", duration="4h"),
        "p.yml:4: windows[0]: two openings are 1h apart but it lasts 4h: they would overlap",
    )
    refused(
        window(cron="0 0,12 * * *", duration="13h"), "two openings are 12h apart but it lasts 13h"
    )
    assert loads(window(rrule="FREQ=HOURLY", duration="1h", cutoff="5m"))  # back to back


def test_the_model_reads_rules_from_the_planners_anchor() -> None:
    assert ANCHOR == planning_windows.ANCHOR


@pytest.mark.parametrize(
    "zone", ["A" * 300, "America", "Mars/Base", "../etc/passwd", "/UTC", "zone1970.tab", "", "\0"]
)
def test_a_timezone_that_is_not_a_zone_is_a_located_error(zone: str) -> None:
    refused(window(rrule="FREQ=DAILY", duration="1h", timezone=zone), "windows[0].timezone")


# ---------------------------------------------------------------- the clock: policy check

NOW = datetime(2026, 12, 2, 12, 0, tzinfo=UTC)


def _policy(**fields: object) -> Policy:
    return loads(window(duration="1h", cutoff="5m", **fields))


def test_a_window_whose_rule_ended_does_not_open_within_a_year() -> None:
    ended = _policy(rrule="FREQ=DAILY;UNTIL=20200101T000000")
    assert closed_windows(ended, NOW) == [
        (
            ("windows", 0, "rrule"),
            "does not open in the year from 2026-12-02 (has its UNTIL passed?)",
        )
    ]
    assert closed_windows(ended, datetime(2019, 6, 1, tzinfo=UTC)) == []


def test_a_window_frozen_for_a_year_does_not_open() -> None:
    frozen = _policy(cron="0 1 * * *", freeze=[{"start": "2026-01-01", "end": "2028-01-01"}])
    assert closed_windows(frozen, NOW) == [
        (("windows", 0, "freeze"), "every opening in the year from 2026-12-02 falls in a freeze")
    ]


def test_a_yearly_window_opens_within_a_year_whenever_asked() -> None:
    yearly = _policy(rrule="FREQ=YEARLY;BYMONTH=12;BYMONTHDAY=1;BYHOUR=10")
    assert closed_windows(yearly, datetime(2026, 12, 1, 10, 56, tzinfo=UTC)) == []  # past cutoff
    leap_day = _policy(rrule="FREQ=YEARLY;BYMONTH=2;BYMONTHDAY=29")
    assert closed_windows(leap_day, NOW)  # next on 2028-02-29: more than a year away


def test_policy_check_refuses_a_window_that_does_not_open_within_a_year(tmp_path: Path) -> None:
    path = tmp_path / "p.yml"
    path.write_text(window(rrule="FREQ=DAILY;UNTIL=20200101T000000", duration="1h", cutoff="5m"))
    done = CliRunner().invoke(policy, ["check", "--json", str(path)])
    assert done.exit_code == ExitCode.BAD_INPUT
    body = json.loads(done.stdout)
    assert body["valid"] is False
    (problem,) = body["problems"]
    assert problem.startswith(f"{path}:4: windows[0].rrule: does not open in the year from ")
    done = CliRunner().invoke(policy, ["check", str(path)])
    assert isinstance(done.exception, PolicyError)  # cli.main renders it, exit 2


def test_located_policy_names_lines_for_later_checks(tmp_path: Path) -> None:
    path = tmp_path / "p.yml"
    path.write_text(HEAD)
    located = load_located(path)
    assert located.problem(("windows", 0, "rrule"), "x") == f"{path}:4: windows[0].rrule: x"
    assert located.problem(("nowhere", 3), "y") == f"{path}:1: nowhere[3]: y"


# ---------------------------------------------------------------- text, dates, checks, URLs


@pytest.mark.parametrize(
    ("section", "expected"),
    [
        ("name: '  '", "name: is blank: give a value"),
        ("scope: {include: []}", "scope.include: names no hosts"),
        ("scope: {exclude: ['']}", "scope.exclude[0]: String should have at least 1 character"),
        ("scope: {exclude: [' prod']}", "scope.exclude[0]: ' prod' has spaces around it"),
        ('roles: {owner: "a\\x1bb", approvers: [a]}', "roles.owner: contains the control"),
        ('roles: {owner: o, approvers: ["al\\u200bice"]}', "invisible character U+200B"),
        ("description: " + "x" * 5000, "description: String should have at most 4000"),
        (
            "roles: {owner: " + "o" * 300 + ", approvers: [a]}",
            "roles.owner: String should have at most 256",
        ),
        (
            "exceptions: [{hosts: [x], owner: o, reason: '', expires: 2027-01-31}]",
            "exceptions[0].reason",
        ),
        (
            "exceptions: [{hosts: [x], owner: o, reason: r, expires: 9999-12-31}]",
            "not between 2000-01-01 and 2200-12-31",
        ),
        ("exceptions: [{hosts: [x], owner: o, reason: r, expires: 20270131}]", "write YYYY-MM-DD"),
        (
            "verification: [{type: command, command: x, exit_code: 256}]",
            "verification[0].exit_code",
        ),
        ("verification: [{type: command, command: x, exit_code: -1}]", "verification[0].exit_code"),
        (
            "verification: [{type: http, url: 'http:///x'}]",
            "verification[0].url: 'http:///x' names no host",
        ),
        ("verification: [{type: http, url: 'http://[::1/x'}]", "is not a URL"),
        ("verification: [{type: http, url: 'http://h:99999/'}]", "is not a URL"),
        ("verification: [{type: tcp, port: 22, host: ''}]", "verification[0].host"),
        (
            "notifications: {webhooks: [{url: 'https://'}]}",
            "webhooks[0].url: 'https://' names no host",
        ),
        ("notifications: {webhooks: [{url: 'https://h', token_env: 'A B'}]}", "token_env"),
        (
            "reporting: {deadlines: {critical: 0}}",
            "reporting.deadlines.critical: Input should be greater",
        ),
        ("reporting: {deadlines: {low: 99999}}", "reporting.deadlines.low: Input should be less"),
        (
            "reporting: {deadlines: {urgent: 3}}",
            "reporting.deadlines.urgent: Input should be 'critical'",
        ),
        (
            "reporting: {deadlines: {critical: 90, low: 7}}",
            "critical (90 days) is longer than high",
        ),
        ("reporting: {deadlines: {critical: 2}, due_soon: 2}", "due_soon (2 days) must be shorter"),
        (
            "preparation: {prechecks: {min_free_disk: 1073741824}}",
            "min_free_disk: Input should be less",
        ),
        (
            "promotion: {order: [a, b], max_failure_rate: .nan}",
            "max_failure_rate: Input should be a finite",
        ),
        (
            "criticality: {tiers: [{criticality: 3, values: ['']}]}",
            "criticality.tiers[0].values[0]",
        ),
    ],
)
def test_values_an_operator_would_call_a_mistake(section: str, expected: str) -> None:
    text = HEAD.replace("name: t\n", "") if section.startswith("name:") else HEAD
    text = (
        text.replace("roles: {owner: ops, approvers: [a]}\n", "") if "roles:" in section else text
    )
    refused(text + section + "\n", expected)


def test_the_schema_carries_the_bounds() -> None:
    body = Policy.model_json_schema(mode="validation", schema_generator=PolicySchema)
    defs = body["$defs"]
    timeout = defs["Downtime"]["properties"]["reboot_timeout"]
    number = next(b for b in timeout["anyOf"] if b["type"] == "number")
    assert number["exclusiveMinimum"] == 0 and number["maximum"] == 360
    assert timeout["default"] == "10m"  # as a policy writes it, not "PT10M"
    batch = defs["Rollout"]["properties"]["batch_size"]
    assert next(b for b in batch["anyOf"] if b["type"] == "integer")["minimum"] == 1
    threshold = defs["Rollout"]["properties"]["error_threshold"]
    assert next(b for b in threshold["anyOf"] if b["type"] == "integer")["minimum"] == 0
    assert defs["PolicyException"]["properties"]["expires"]["format"] == "date"
    assert defs["CommandCheck"]["properties"]["exit_code"]["maximum"] == 255
    assert defs["Window"]["properties"]["hosts"]["minItems"] == 1


# ---------------------------------------------------------------- nothing but PolicyError

SHIPPED = [(ROOT / "policies" / name).read_text() for name in ("example.yml", "lab.yml")]
NASTY = [
    "0", "-1", ".inf", ".nan", "1:30:00", "yes", "no", "null", "~", "''", "2026-02-30",
    "9999-12-31", "!!binary aGVsbG8=", "!x y", "&a [*a]", "*nope", "{value: -5, junk: 1}",
    "[a]", "{1: x}", "9999999999d", "'\\x07'", "'A%'", "FREQ=YEARLY;BYMONTH=2;BYMONTHDAY=30",
    "'0 0 30 2 *'", "<<", "{<<: 1}", "'" + "x" * 300 + "'", "[]", "{}", "|\n  a\n  b",
]  # fmt: skip


@st.composite
def mutated(draw: st.DrawFn) -> str:
    """A shipped policy with one value (the part after a ': ') replaced by something nasty."""
    lines = draw(st.sampled_from(SHIPPED)).splitlines()
    at = draw(st.integers(0, len(lines) - 1))
    head, sep, _ = lines[at].partition(": ")
    value = draw(st.one_of(st.sampled_from(NASTY), st.text(max_size=20)))
    lines[at] = f"{head}{sep or ': '}{value}"
    return "\n".join(lines) + "\n"


def _only_policy_errors(text: str | bytes) -> None:
    try:
        loads(text, "fuzz.yml")
    except PolicyError as exc:
        assert all(line.startswith("fuzz.yml") for line in exc.problems), exc.problems


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.one_of(mutated(), st.text(max_size=200), st.binary(max_size=200)))
def test_no_input_raises_anything_but_policy_error(text: str | bytes) -> None:
    _only_policy_errors(text)


# ---------------------------------------------------------------- found by the reference review


def test_a_deadline_left_out_keeps_its_default_and_the_order_is_checked_on_all() -> None:
    tightened = loads(HEAD + "reporting: {deadlines: {critical: 3}}\n")
    assert {s.value: d for s, d in tightened.reporting.deadlines.items()} == {
        "critical": 3,
        "high": 14,
        "medium": 30,
        "low": 90,
    }
    # {critical: 60} used to leave high at an unchecked 30 days, shorter than critical's
    refused(HEAD + "reporting: {deadlines: {critical: 60}}\n", "critical (60 days) is longer")


def test_a_snapshot_backend_that_is_not_shipped_is_refused() -> None:
    refused(HEAD + "preparation: {snapshot: {backend: lvm}}\n", "preparation.snapshot.backend")
    assert loads(HEAD + "preparation: {snapshot: {backend: none}}\n")


@pytest.mark.parametrize(
    "section",
    [
        "verification: [{type: tcp, port: 22, hosts: []}]\n",
        "rollout: {canary: {size: 1, hosts: []}}\n",
    ],
)
def test_host_patterns_that_name_no_host_are_refused(section: str) -> None:
    refused(HEAD + section, "names no hosts")


def test_connection_environment_takes_variable_globs_but_never_patchkits_own() -> None:
    assert loads(HEAD + "connection: {environment: [AWS_*, VAULT_ADDR]}\n").connection.environment
    refused(HEAD + "connection: {environment: [PATCHKIT_LEDGER]}\n", "never go to a play")
    refused(HEAD + "connection: {environment: ['AWS PROFILE']}\n", "a variable name, or a glob")
