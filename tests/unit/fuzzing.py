"""Hostile input for the policy loader and the command line, and the rule every case must keep.

The rule (issue 15): whatever a user or a file supplies, patchkit ends with one of its documented
exit codes (0 ok, 1 failures, 2 bad input, 3 refused), never a traceback, never an internal error
(exit 70), and never a hang. Cases run the real ``patchkit`` entry point in this process, on
files written to a scratch folder: mutations of the shipped policies, a small inventory and
findings file, and command lines of the commands that reach no host (``assess``, ``run`` and the
like would try to SSH to the inventory's addresses, which tests must never do).

Used by ``tests/unit/test_fuzz_edges.py`` (a bounded run in every ``make test``) and by
``benchmarks/fuzz_edges.py`` (a long run on demand that prints its counts).
"""

from __future__ import annotations

import contextlib
import io
import json
import signal
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from types import FrameType

from hypothesis import strategies as st

from patchkit.cli import main

ROOT = Path(__file__).resolve().parents[2]
POLICIES = {name: (ROOT / "policies" / name).read_text() for name in ("lab.yml", "example.yml")}
DOCUMENTED = frozenset({0, 1, 2, 3})
CASE_SECONDS = 30  # far above any case's normal time: only a hang gets here

INVENTORY = """\
all:
  children:
    prod:
      hosts:
        web1: {ansible_host: 192.0.2.11, tier: 1, cluster: web, env: prod}
        web2: {ansible_host: 192.0.2.12, tier: 1, cluster: web, env: prod}
        db1: {ansible_host: 192.0.2.21, tier: 2, cluster: db, env: prod}
    dev:
      hosts:
        dev1: {ansible_host: 192.0.2.31, tier: 3, cluster: app-dev, env: dev}
"""


def _findings() -> str:
    def host(name: str) -> dict[str, object]:
        return {
            "assessed_at": "2026-11-20T08:15:00+00:00",
            "host": name,
            "message": "",
            "reachable": True,
            "reboot_pending": False,
            "updates": [
                {
                    "candidate": "1.1",
                    "first_seen": "2026-11-10T08:00:00+00:00",
                    "installed": "1.0",
                    "origin": "lab-security",
                    "package": "demo-lib",
                },
                {
                    "candidate": "1.1",
                    "first_seen": "2026-11-20T08:15:00+00:00",
                    "installed": "1.0",
                    "origin": "lab-updates",
                    "package": "demo-kernel",
                },
            ],
        }

    body = {
        "format": "patchkit-findings",
        "version": 1,
        "hosts": [host(h) for h in ("web1", "web2", "db1", "dev1")],
    }
    return json.dumps(body, indent=2)


FINDINGS = _findings()

# Values a careless or hostile file or person supplies, in YAML spelling.
HOSTILE_YAML = [
    "0",
    "-1",
    "-5",
    "1e309",
    ".inf",
    "-.inf",
    ".nan",
    "100000000000000000000000000000",
    "9999999999d",
    "1:30:00",
    "yes",
    "no",
    "on",
    "null",
    "~",
    "''",
    '"[/]"',
    '"[bold]x"',
    '":100:"',
    '"[a-z0-9]"',
    '"begin:end:step"',
    '"\\x1b[31mred"',
    '"\\x00"',
    '"\\x07"',
    "2026-02-30",
    "9999-12-31",
    "0001-01-01",
    "!!binary aGVsbG8=",
    "!!python/object/apply:os.system [true]",
    "!custom x",
    "&a [*a]",
    "*undefined",
    "{value: -5, junk: 1}",
    "{value: .nan}",
    "{value: 500, percent: true}",
    "'500%'",
    "'-5%'",
    "'0%'",
    "[]",
    "{}",
    "[[[[[[[[[[]]]]]]]]]]",
    "x" * 300,
    "300",
    "256",
    "65536",
    "'0 0 30 2 *'",
    "FREQ=WEEKLY;INTERVAL=-1",
    "FREQ=DAILY;BYHOUR=99",
    "FREQ=YEARLY;UNTIL=20000101T000000Z",
    "'http://'",
    "'https:///path'",
    "'mysql://x@y/z'",
    "Europe/" + "Nowhere" * 40,
    "../../../../etc/passwd",
    "|\n  block\n  text",
]

HOSTILE_ARGS = [
    "",
    "0",
    "-1",
    "1" + "0" * 30,
    "9999-12-31T23:00+00:00",
    "9999-12-31",
    "0001-01-01T00:00+00:00",
    "2026-02-30T00:00+00:00",
    "not-a-time",
    "[/]",
    "[bold]x",
    ":100:",
    "begin:end:step",
    "\x1b[31m",
    "x" * 2000,
    "plan-" + "0" * 64,
    "plan-../../x",
    "run-1",
    "*",
    "all",
    "web1",
    "nosuchhost",
    "text",
    "json",
    "csv",
    "html",
    "markdown",
    "bogus",
]

BILLION_LAUGHS = "".join(
    f"l{i}: &l{i} [{', '.join([f'*l{i - 1}'] * 9)}]\n" for i in range(1, 8)
).replace("*l0", "lol")


@dataclass(frozen=True)
class Case:
    """One attempt: files to write into the scratch folder, then a ``patchkit`` command line.

    ``{dir}`` in the arguments stands for the scratch folder.
    """

    kind: str
    files: tuple[tuple[str, str | bytes], ...]
    argv: tuple[str, ...]


@dataclass(frozen=True)
class Outcome:
    code: int | None  # None: it hung
    stderr: str

    @property
    def broken(self) -> str | None:
        """Why this outcome breaks the rule, or None when it keeps it."""
        if self.code is None:
            return "hung"
        if "Traceback" in self.stderr:
            return "traceback"
        if self.code not in DOCUMENTED:
            return f"exit code {self.code}"
        return None


# ---------------------------------------------------------------- mutations


@st.composite
def mutated_text(draw: st.DrawFn, text: str, hostile: list[str]) -> str:
    """``text`` with one to three line-level mutations: a value replaced by a hostile one, a line
    dropped, doubled, re-indented or cut, a control character or an alias bomb put in."""
    lines = text.splitlines()
    for _ in range(draw(st.integers(1, 3))):
        if not lines:
            break
        at = draw(st.integers(0, len(lines) - 1))
        line = lines[at]
        how = draw(
            st.sampled_from(
                ["value", "value", "value", "drop", "double", "indent", "cut", "control", "bomb"]
            )
        )
        if how == "value" and ":" in line:
            key = line.split(":", 1)[0]
            lines[at] = f"{key}: {draw(st.sampled_from(hostile))}"
        elif how == "drop":
            del lines[at]
        elif how == "double":
            lines.insert(at, line)
        elif how == "indent":
            lines[at] = " " * draw(st.integers(0, 9)) + line.lstrip()
        elif how == "cut":
            lines[at] = line[: draw(st.integers(0, len(line)))]
        elif how == "control":
            char = draw(st.sampled_from(["\x00", "\x07", "\x1b", "\x85", "\ufeff", "\ud800"]))
            lines[at] = line + char
        else:
            lines.insert(0, BILLION_LAUGHS)
    return "\n".join(lines) + "\n"


def _encode(text: str) -> bytes:
    return text.encode("utf-8", errors="surrogatepass")


@st.composite
def policy_check_cases(draw: st.DrawFn) -> Case:
    policy = draw(mutated_text(POLICIES[draw(st.sampled_from(sorted(POLICIES)))], HOSTILE_YAML))
    raw = draw(st.booleans()) and draw(st.booleans())
    data: str | bytes = b"\xff\xfe" + _encode(policy) if raw else _encode(policy)
    return Case("policy check", (("policy.yml", data),), ("policy", "check", "{dir}/policy.yml"))


@st.composite
def plan_cases(draw: st.DrawFn) -> Case:
    """A plan from the lab policy, the small inventory and its findings, one of them mutated,
    with hostile options."""
    policy, inventory, findings = POLICIES["lab.yml"], INVENTORY, FINDINGS
    which = draw(st.sampled_from(["policy", "inventory", "findings", "none"]))
    if which == "policy":
        policy = draw(mutated_text(policy, HOSTILE_YAML))
    elif which == "inventory":
        inventory = draw(mutated_text(inventory, HOSTILE_YAML))
    elif which == "findings":
        findings = draw(mutated_text(findings, [*HOSTILE_YAML, "true", '"1"', "1e999", "-0"]))
    argv = ["plan", "-p", "{dir}/policy.yml", "-i", "{dir}/hosts.yml"]
    argv += ["--findings", "{dir}/findings.json"]
    if draw(st.booleans()):
        argv += ["--at", draw(st.sampled_from([*HOSTILE_ARGS, "2026-11-20T12:00+00:00"]))]
    if draw(st.booleans()):
        argv += ["--window", draw(st.sampled_from([*HOSTILE_ARGS, "all-day"]))]
    if draw(st.booleans()):
        argv += ["--format", draw(st.sampled_from(["text", "json", "markdown", "html", "bogus"]))]
    if draw(st.booleans()):
        # only places in the scratch folder, or ones that refuse every write
        target = draw(
            st.sampled_from(["{dir}/out.html", "{dir}", "{dir}/no/such/dir/x", "/dev/full"])
        )
        argv += ["-o", target]
    files = (
        ("policy.yml", _encode(policy)),
        ("hosts.yml", _encode(inventory)),
        ("findings.json", _encode(findings)),
    )
    return Case(f"plan ({which} mutated)", files, tuple(argv))


@st.composite
def command_line_cases(draw: st.DrawFn) -> Case:
    """Commands that read only the ledger and files, given hostile arguments."""
    arg = st.sampled_from(HOSTILE_ARGS)
    shapes = [
        ["runs", "--limit", draw(arg)],
        ["runs", "--since", draw(arg)],
        ["runs", "--status", draw(arg)],
        ["status", draw(arg)],
        ["status", draw(arg), "--json"],
        ["report", "run", draw(arg), "--format", draw(arg)],
        [
            "report",
            "compliance",
            "-p",
            "{dir}/policy.yml",
            "-i",
            "{dir}/hosts.yml",
            "--at",
            draw(arg),
        ],
        ["approve", draw(arg), "--by", draw(arg), "--comment", draw(arg)],
        ["rollback", draw(arg), "--dry-run"],
        ["rollback", "run-1", "--batch", draw(arg), "--dry-run"],
        ["release", "-p", "{dir}/policy.yml", "-i", "{dir}/hosts.yml", "--dry-run"],
        ["scope", "-p", "{dir}/policy.yml", "-i", draw(arg)],
        ["scope", "-p", draw(arg), "-i", "{dir}/hosts.yml"],
        ["policy", "check", draw(arg)],
        ["plan", "-p", "{dir}/policy.yml", "-i", "{dir}/hosts.yml", "--findings", draw(arg)],
    ]
    argv = draw(st.sampled_from(shapes))
    files = (
        ("policy.yml", _encode(POLICIES["lab.yml"])),
        ("hosts.yml", _encode(INVENTORY)),
        ("findings.json", _encode(FINDINGS)),
    )
    return Case(f"{argv[0]} arguments", files, tuple(argv))


def cases() -> st.SearchStrategy[Case]:
    return st.one_of(policy_check_cases(), plan_cases(), command_line_cases())


# ---------------------------------------------------------------- running one case


class _Hung(BaseException):
    """Raised by the alarm; a BaseException so that no ``except Exception`` swallows it."""


@contextlib.contextmanager
def _alarm(seconds: int) -> Iterator[None]:
    def ring(_signum: int, _frame: FrameType | None) -> None:
        raise _Hung

    previous = signal.signal(signal.SIGALRM, ring)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


def attempt(case: Case, scratch: Path) -> Outcome:
    """Write the case's files into ``scratch`` and run its command line through ``main``."""
    for name, data in case.files:
        (scratch / name).write_bytes(data if isinstance(data, bytes) else data.encode())
    argv = [a.replace("{dir}", str(scratch)) for a in case.argv]
    ledger = f"sqlite:///{scratch / 'ledger.sqlite'}"
    err = io.StringIO()
    saved = sys.argv
    sys.argv = ["patchkit", "--ledger", ledger, *argv]
    code: int | None
    try:
        with (
            _alarm(CASE_SECONDS),
            contextlib.redirect_stdout(io.StringIO()),
            contextlib.redirect_stderr(err),
        ):
            try:
                main()
                code = 0
            except SystemExit as stop:
                code = stop.code if isinstance(stop.code, int) else 1
    except _Hung:
        code = None
    finally:
        sys.argv = saved
    return Outcome(code, err.getvalue())
