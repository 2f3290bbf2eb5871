"""Unit (no lab host; the only traffic goes to a closed port on 127.0.0.1): rollback, release
and assess lock the hosts they touch in the ledger, as run and resume do.

Another controller's hold is recorded through the Ledger API with a holder that is alive (this
test runner's parent process), then the command runs in this process as the console script
runs it. Refused, it exits 3 naming the holder before any host is touched; with --wait it goes
on once the holder lets go, which shows in the ledger (its own lock, seen by a watcher thread)
and in what it reports next: the inventory's hosts point at a port nothing listens on, so the
playbook finds them unreachable.
"""

from __future__ import annotations

import os
import socket
import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from patchkit.cli import consoles, main
from patchkit.errors import ExitCode
from patchkit.execution import locks
from patchkit.execution.events import HostOutcome, PackageChange, PhaseOutcome
from patchkit.execution.status import HostStatus, Phase, PhaseStatus
from patchkit.ledger import Ledger
from patchkit.planning.plan import plan_body
from tests.unit.plans import make

POLICY = str(Path(__file__).resolve().parents[2] / "policies" / "lab.yml")  # retention 1d
# a real plan: rollback reads the checks and phase settings of the run's plan
PLAN = plan_body(make(hosts=2))
PLAN_ID, PLAN_HASH = str(PLAN["id"]), str(PLAN["hash"])
TAKEN = datetime.now(UTC) - timedelta(days=2)  # past the lab policy's snapshot retention
HOST = "web-1"  # the host run-1 changed; web-2 is in the inventory too, never changed


@dataclass(frozen=True)
class Done:
    code: int
    out: str
    err: str

    @property
    def said(self) -> str:
        return " ".join(self.err.split())  # one line, however the terminal wraps


Run = Callable[..., Done]


def alive() -> str:
    """Another controller on this machine that is alive: the test runner's parent process."""
    return f"{socket.gethostname()}:{os.getppid()}"


def closed_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port  # closed again: connections to it are refused at once


@pytest.fixture
def ledger_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'ledger.sqlite'}"


@pytest.fixture
def ledger(ledger_url: str) -> Iterator[Ledger]:
    opened = Ledger(ledger_url)
    opened.save_plan(PLAN, saved_at=TAKEN)
    yield opened
    opened.close()


@pytest.fixture
def inventory(tmp_path: Path) -> str:
    path = tmp_path / "hosts.yml"
    path.write_text(
        "all:\n"
        "  vars:\n"
        "    ansible_host: 127.0.0.1\n"
        f"    ansible_port: {closed_port()}\n"
        "    ansible_connection: ssh\n"
        "    ansible_user: patchkit-test\n"
        "  hosts:\n"
        "    web-1: {tier: 3}\n"
        "    web-2: {tier: 3}\n"
    )
    return str(path)


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
        assert "Traceback" not in err and "internal error" not in err, err
        return Done(int(stopped.value.code or 0), out, err)

    return run


def changed_run(ledger: Ledger, *, verified: bool) -> None:
    """run-1, ended: it patched web-1 (package snapshot snap-1), which then verified or not."""
    ledger.start_run("run-1", PLAN_ID, PLAN_HASH, at=TAKEN, holder="ctl:1")
    ok, failed = PhaseStatus.OK, PhaseStatus.FAILED
    phases = (
        PhaseOutcome(Phase.SNAPSHOT, ok, "", 1.0),
        PhaseOutcome(Phase.PATCH, ok, "", 1.0),
        PhaseOutcome(Phase.VERIFY, ok if verified else failed, "", 1.0),
    )
    outcome = HostOutcome(
        HOST,
        HostStatus.PATCHED if verified else HostStatus.FAILED,
        None if verified else Phase.VERIFY,
        "" if verified else "verify failed",
        phases,
        changes=(PackageChange("demo-svc", "1.0", "1.1"),),
        snapshot=("package", "snap-1"),
    )
    ledger.record_outcomes("run-1", 1, [outcome], started=TAKEN, ended=TAKEN)
    ledger.record_batch("run-1", 1, status="completed", hosts=1, started=TAKEN, ended=TAKEN)
    status = "completed" if verified else "failed"
    ledger.finish_run("run-1", status=status, reason="", at=TAKEN)


def hold(ledger: Ledger, run_id: str | None, purpose: str, who: str, at: datetime) -> None:
    """Another controller takes web-1 (for run_id, when it names a run not recorded yet)."""
    if run_id is not None and ledger.run_record(run_id) is None:
        ledger.start_run(run_id, PLAN_ID, PLAN_HASH, at=at, holder=who)
    ledger.lock(run_id, [HOST], holder=who, at=at, may_take=lambda _lk: False, purpose=purpose)


@contextmanager
def let_go_once_it_waits(
    monkeypatch: pytest.MonkeyPatch, ledger_url: str, run_id: str | None, purpose: str
) -> Iterator[None]:
    """The other controller lets go of its locks once the command has found them held and
    starts its first pause: at that point, not after a fixed time, so that a slow start of the
    command (a loaded machine) cannot let it find the hosts already free."""
    other = Ledger(ledger_url)
    pause = locks.Lease._pause
    released: list[bool] = []

    def let_go_then_pause(lease: locks.Lease, wait: locks.Wait, waited: timedelta) -> None:
        if not released:
            other.unlock(run_id, holder=alive(), purpose=purpose)
            released.append(True)
        pause(lease, wait, waited)

    monkeypatch.setattr(locks.Lease, "_pause", let_go_then_pause)
    try:
        yield
    finally:
        other.close()
    assert released, "the command never waited"


@contextmanager
def watching(ledger_url: str) -> Iterator[set[tuple[str, str, str]]]:
    """Every (host, purpose, holder) locked while the block runs, as another reader sees it."""
    seen: set[tuple[str, str, str]] = set()
    stop = threading.Event()
    reader = Ledger(ledger_url)

    def watch() -> None:
        while not stop.wait(0.05):
            seen.update(
                (lk["host"], lk["purpose"], lk["holder"]) for lk in reader.locks(["web-1", "web-2"])
            )

    thread = threading.Thread(target=watch, daemon=True)
    thread.start()
    try:
        yield seen
    finally:
        stop.set()
        thread.join()
        reader.close()


def refused(done: Done, holder_named: str) -> None:
    assert done.code == ExitCode.REFUSED, done.err
    assert f"patchkit: error: {holder_named}" in done.said, done.err
    assert f"(controller {alive()}, last heartbeat " in done.said, done.err
    assert "--wait" in done.said and "--take-over" in done.said  # what to do about it


def rollback_phases(ledger: Ledger) -> list[str]:
    record = ledger.run_record("run-1")
    assert record is not None
    return [p["status"] for p in record["phases"] if p["phase"] == "rollback"]


# ---------------------------------------------------------------- rollback


def test_rollback_refuses_hosts_another_run_holds(
    run_cli: Run, ledger: Ledger, inventory: str
) -> None:
    changed_run(ledger, verified=False)
    hold(ledger, "run-2", "run", alive(), datetime.now(UTC))
    done = run_cli("rollback", "run-1", "-p", POLICY, "-i", inventory)
    refused(done, "web-1 held by run run-2")
    assert rollback_phases(ledger) == ["pending"]  # not touched: still to roll back
    assert [(lk["host"], lk["run"]) for lk in ledger.locks(["web-1", "web-2"])] == [
        ("web-1", "run-2")
    ]
    # a dry run touches nothing, so it takes no lock either
    assert run_cli("rollback", "run-1", "--dry-run").code == 0


def test_rollback_waits_for_the_holder_then_locks_only_its_targets(
    run_cli: Run,
    ledger: Ledger,
    ledger_url: str,
    inventory: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    changed_run(ledger, verified=False)
    hold(ledger, "run-2", "run", alive(), datetime.now(UTC))
    me = locks.holder()
    with (
        let_go_once_it_waits(monkeypatch, ledger_url, "run-2", "run"),
        watching(ledger_url) as seen,
    ):
        done = run_cli("rollback", "run-1", "--wait", "-p", POLICY, "-i", inventory)
    assert f"waiting: web-1 held by run run-2 (controller {alive()}" in done.said, done.err
    assert ("web-1", "rollback", me) in seen
    assert not any(host == "web-2" for host, _, who in seen if who == me)  # not a target
    # past the lock, the rollback reached for the host: unreachable, recorded, exit 1
    assert done.code == ExitCode.FAILURES, done.err
    assert rollback_phases(ledger) == ["unreachable"]
    assert ledger.locks(["web-1", "web-2"]) == []


# ---------------------------------------------------------------- release


def test_release_refuses_hosts_an_assessment_holds(
    run_cli: Run, ledger: Ledger, inventory: str
) -> None:
    changed_run(ledger, verified=True)
    hold(ledger, None, "assess", alive(), datetime.now(UTC))
    done = run_cli("release", "-p", POLICY, "-i", inventory)
    refused(done, "web-1 held by patchkit assess")
    assert [s["id"] for s in ledger.unreleased_snapshots()] == ["snap-1"]
    dry = run_cli("release", "--dry-run", "-p", POLICY, "-i", inventory)
    assert dry.code == 0, dry.err
    assert "would release package snapshot snap-1 of web-1" in dry.out


def test_release_waits_for_the_holder_then_goes_on(
    run_cli: Run,
    ledger: Ledger,
    ledger_url: str,
    inventory: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    changed_run(ledger, verified=True)
    hold(ledger, None, "assess", alive(), datetime.now(UTC))
    with (
        let_go_once_it_waits(monkeypatch, ledger_url, None, "assess"),
        watching(ledger_url) as seen,
    ):
        done = run_cli("release", "--wait", "-p", POLICY, "-i", inventory)
    assert "waiting: web-1 held by patchkit assess" in done.said, done.err
    assert ("web-1", "release", locks.holder()) in seen
    assert done.code == 0, done.err
    # the host was unreachable, so its snapshot stays for the next release
    assert [s["id"] for s in ledger.unreleased_snapshots()] == ["snap-1"]
    assert ledger.locks(["web-1", "web-2"]) == []


# ---------------------------------------------------------------- assess


def test_assess_refuses_hosts_a_rollback_holds(
    run_cli: Run, ledger: Ledger, inventory: str
) -> None:
    changed_run(ledger, verified=False)
    hold(ledger, "run-1", "rollback", alive(), datetime.now(UTC))
    done = run_cli("assess", "-p", POLICY, "-i", inventory)
    refused(done, "web-1 held by the rollback of run run-1")
    assert ledger.latest_findings() == {}  # nobody was asked
    assert [lk["purpose"] for lk in ledger.locks(["web-1", "web-2"])] == ["rollback"]


def test_assess_waits_for_the_holder_then_asks_the_hosts(
    run_cli: Run,
    ledger: Ledger,
    ledger_url: str,
    inventory: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    hold(ledger, None, "release", alive(), datetime.now(UTC))
    me = locks.holder()
    with (
        let_go_once_it_waits(monkeypatch, ledger_url, None, "release"),
        watching(ledger_url) as seen,
    ):
        done = run_cli("assess", "--wait", "-p", POLICY, "-i", inventory)
    assert "waiting: web-1 held by patchkit release" in done.said, done.err
    assert {("web-1", "assess", me), ("web-2", "assess", me)} <= seen
    assert done.code == ExitCode.FAILURES, done.err  # unreachable hosts
    found = ledger.latest_findings()
    assert sorted(found) == ["web-1", "web-2"]
    assert not any(f.reachable for f in found.values())
    assert ledger.locks(["web-1", "web-2"]) == []


def test_assess_takes_a_dead_holders_lock_only_with_take_over(
    run_cli: Run, ledger: Ledger, inventory: str
) -> None:
    gone = datetime.now(UTC) - timedelta(hours=1)  # a controller elsewhere, silent for an hour
    hold(ledger, None, "assess", "elsewhere:1", gone)
    done = run_cli("assess", "-p", POLICY, "-i", inventory)
    assert done.code == ExitCode.REFUSED, done.err
    assert "web-1 held by patchkit assess (controller elsewhere:1" in done.said
    waited = run_cli("assess", "--wait", "-p", POLICY, "-i", inventory)
    assert waited.code == ExitCode.REFUSED, waited.err
    assert "its controller is gone, so waiting cannot help" in waited.said
    assert ledger.latest_findings() == {}
    taken = run_cli("assess", "--take-over", "-p", POLICY, "-i", inventory)
    assert taken.code == ExitCode.FAILURES, taken.err  # past the lock: the hosts unreachable
    assert sorted(ledger.latest_findings()) == ["web-1", "web-2"]
    assert ledger.locks(["web-1", "web-2"]) == []


def test_a_release_leaves_alone_hosts_another_controller_holds(
    ledger: Ledger, inventory: str
) -> None:
    """At the end of one controller's run, the snapshots of a host another controller is
    patching stay: no playbook on a host someone else holds (unit: nothing reaches a host)."""
    from patchkit import policy as policy_lib
    from patchkit.execution.window import release_snapshots
    from patchkit.model import Host

    changed_run(ledger, verified=True)
    hold(ledger, "run-other", "run", "other-controller:1", datetime.now(UTC))
    loaded = policy_lib.load(Path(POLICY))
    due = release_snapshots(
        ledger, loaded, [Host(HOST)], Path(inventory), clock=lambda: datetime.now(UTC),
        dry_run=True,
    )  # fmt: skip
    assert [s["id"] for s in due] == ["snap-1"]  # due by the retention rule...
    done = release_snapshots(
        ledger, loaded, [Host(HOST)], Path(inventory), clock=lambda: datetime.now(UTC)
    )
    assert done == []  # ...but held by another controller: left for later
    assert [s["id"] for s in ledger.unreleased_snapshots()] == ["snap-1"]
