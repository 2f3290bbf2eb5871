"""Unit: when a lock may be taken over (dead holder, explicit request only), and the leases
rollback, release and assess take (on a SQLite ledger in the test's directory; no hosts)."""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from patchkit.errors import ExitCode, RefusedError
from patchkit.execution import locks
from patchkit.ledger import Ledger

NOW = datetime(2026, 11, 25, 9, 0, tzinfo=UTC)


def lock(holder: str, age: timedelta) -> dict[str, object]:
    return {"host": "h1", "run": "run-1", "holder": holder, "heartbeat": NOW - age}


def test_a_holder_on_this_machine_is_dead_when_its_process_is_gone() -> None:
    fresh = lock("ctl:4242", timedelta(seconds=1))
    assert locks.is_dead(fresh, NOW, here="ctl", pid_alive=lambda pid: False)
    assert not locks.is_dead(fresh, NOW, here="ctl", pid_alive=lambda pid: True)
    # alive here, however old its heartbeat (a long reboot wait): never dead
    old = lock("ctl:4242", timedelta(hours=3))
    assert not locks.is_dead(old, NOW, here="ctl", pid_alive=lambda pid: True)


def test_a_holder_elsewhere_is_dead_when_its_heartbeat_is_stale() -> None:
    assert not locks.is_dead(lock("other:1", locks.STALE_AFTER), NOW, here="ctl")
    stale = locks.STALE_AFTER + timedelta(seconds=1)
    assert locks.is_dead(lock("other:1", stale), NOW, here="ctl")


def test_locks_are_taken_only_on_request_and_only_from_the_dead() -> None:
    dead = lock("elsewhere:1", timedelta(hours=1))
    live = lock("elsewhere:1", timedelta(seconds=5))
    assert locks.taker(True, NOW)(dead)
    assert not locks.taker(False, NOW)(dead)
    assert not locks.taker(True, NOW)(live)


# ---------------------------------------------------------------- leases on a SQLite ledger

PLAN_ID, PLAN_HASH = "plan-1", "a" * 64
PLAN = {
    "id": PLAN_ID,
    "hash": PLAN_HASH,
    "policy": "p",
    "made_at": NOW.isoformat(),
    "window": {"name": "w", "start": NOW.isoformat()},
}
HOSTS = ("web-1", "web-2")


@pytest.fixture
def ledger(tmp_path: Path) -> Iterator[Ledger]:
    opened = Ledger(f"sqlite:///{tmp_path / 'ledger.sqlite'}")
    opened.save_plan(PLAN, saved_at=NOW)
    yield opened
    opened.close()


def alive() -> str:
    """A holder on this machine whose process lives (the test runner's parent), not this one."""
    return f"{socket.gethostname()}:{os.getppid()}"


def hold(ledger: Ledger, run_id: str | None, purpose: str, who: str, at: datetime) -> None:
    if run_id is not None and ledger.run_record(run_id) is None:
        ledger.start_run(run_id, PLAN_ID, PLAN_HASH, at=at, holder=who)
    ledger.lock(run_id, HOSTS, holder=who, at=at, may_take=lambda _lk: False, purpose=purpose)


class Said:
    """A ``Wait`` that records what it says and never really sleeps long."""

    def __init__(self, on_sleep: Callable[[], None] = lambda: None) -> None:
        self.lines: list[str] = []
        self.ticks: list[str] = []
        self.on_sleep = on_sleep

    def sleep(self, seconds: float) -> None:
        self.on_sleep()
        time.sleep(min(seconds, 0.01))

    def wait(self) -> locks.Wait:
        return locks.Wait(say=self.lines.append, tick=self.ticks.append, sleep=self.sleep)


def test_a_lease_refuses_hosts_a_live_holder_has_and_names_it(ledger: Ledger) -> None:
    hold(ledger, "run-1", "run", alive(), NOW)
    with (
        pytest.raises(RefusedError) as refused,
        locks.Lease(ledger, HOSTS, locks.Purpose.ASSESS) as lease,
    ):
        lease.take(take_over=False)
    assert refused.value.exit_code == ExitCode.REFUSED
    assert refused.value.message == (
        f"web-1, web-2 held by run run-1 (controller {alive()}, last heartbeat "
        "2026-11-25 09:00:00 UTC)"
    )
    assert {lk["run"] for lk in ledger.locks(HOSTS)} == {"run-1"}  # left as they were


@pytest.mark.parametrize(
    ("run_id", "purpose", "named"),
    [
        ("run-1", "rollback", "the rollback of run run-1"),
        (None, "release", "patchkit release"),
        (None, "assess", "patchkit assess"),
    ],
)
def test_a_refusal_names_what_holds_the_hosts(
    ledger: Ledger, run_id: str | None, purpose: str, named: str
) -> None:
    hold(ledger, run_id, purpose, alive(), NOW)
    with pytest.raises(RefusedError) as refused:
        ledger.start_run("run-9", PLAN_ID, PLAN_HASH, at=NOW, holder="ctl:9", hosts=HOSTS)
    assert f"web-1, web-2 held by {named} (controller {alive()}, last heartbeat" in str(
        refused.value
    )
    assert ledger.run_record("run-9") is None


def test_a_lease_locks_for_its_purpose_and_lets_go_at_the_end_of_the_block(
    ledger: Ledger,
) -> None:
    hold(ledger, "run-1", "run", alive(), NOW)
    ledger.unlock("run-1")  # the run ended: its hosts are free, its row stays
    with locks.Lease(ledger, HOSTS, locks.Purpose.ROLLBACK, run_id="run-1") as lease:
        lease.take(take_over=False)
        held = ledger.locks(HOSTS)
        assert {(lk["run"], lk["purpose"], lk["holder"]) for lk in held} == {
            ("run-1", "rollback", locks.holder())
        }
    assert ledger.locks(HOSTS) == []
    record = ledger.run_record("run-1")
    assert record is not None and record["holder"] == alive()  # the run's own row: untouched


def test_a_lease_lets_go_when_its_block_fails(ledger: Ledger) -> None:
    with (
        pytest.raises(RuntimeError),
        locks.Lease(ledger, HOSTS, locks.Purpose.RELEASE) as lease,
    ):
        lease.take(take_over=False)
        assert len(ledger.locks(HOSTS)) == 2
        raise RuntimeError("the playbook broke")
    assert ledger.locks(HOSTS) == []


def test_a_refused_lease_lets_go_of_nothing_it_did_not_take(ledger: Ledger) -> None:
    hold(ledger, None, "assess", alive(), NOW)
    with (
        pytest.raises(RefusedError),
        locks.Lease(ledger, HOSTS, locks.Purpose.ASSESS) as lease,
    ):
        lease.take(take_over=False)
    assert {lk["holder"] for lk in ledger.locks(HOSTS)} == {alive()}


def test_waiting_shows_who_holds_the_hosts_then_takes_them_once_free(ledger: Ledger) -> None:
    hold(ledger, "run-1", "run", alive(), NOW)
    looks = 0

    def let_go_on_the_third_look() -> None:
        nonlocal looks
        looks += 1
        if looks == 3:
            ledger.unlock("run-1")

    said = Said(let_go_on_the_third_look)
    with locks.Lease(ledger, HOSTS, locks.Purpose.ASSESS) as lease:
        lease.take(take_over=False, wait=said.wait())
        assert {lk["purpose"] for lk in ledger.locks(HOSTS)} == {"assess"}
    # who holds what, said once (the holder did not change); the countdown as it goes
    assert said.lines == [
        f"waiting: web-1, web-2 held by run run-1 (controller {alive()}, last heartbeat "
        "2026-11-25 09:00:00 UTC)"
    ]
    assert said.ticks[0].startswith("waiting 0:00:00 for 2 host(s); next look in 3 s")
    assert "next look in 1 s (Ctrl-C gives up)" in said.ticks[2]
    assert ledger.locks(HOSTS) == []


def test_ctrl_c_while_waiting_gives_up_with_nothing_taken(ledger: Ledger) -> None:
    hold(ledger, None, "release", alive(), NOW)

    def interrupt() -> None:
        raise KeyboardInterrupt

    said = Said(interrupt)
    with (
        pytest.raises(KeyboardInterrupt),
        locks.Lease(ledger, HOSTS, locks.Purpose.ASSESS) as lease,
    ):
        lease.take(take_over=False, wait=said.wait())
    assert said.lines[-1] == "gave up waiting: nothing was locked or touched"
    assert {lk["purpose"] for lk in ledger.locks(HOSTS)} == {"release"}


def test_a_dead_holder_is_taken_over_only_on_request_and_not_waited_for(ledger: Ledger) -> None:
    gone = datetime.now(UTC) - timedelta(hours=1)  # a controller elsewhere, silent for an hour
    hold(ledger, "run-1", "run", "elsewhere:1", gone)
    said = Said()
    with locks.Lease(ledger, HOSTS, locks.Purpose.ROLLBACK, run_id="run-1") as lease:
        with pytest.raises(RefusedError) as refused:
            lease.take(take_over=False, wait=said.wait())
        assert "its controller is gone, so waiting cannot help" in refused.value.message
        assert refused.value.hint == "take the lock over with --take-over"
        assert said.ticks == []  # refused at once
        lease.take(take_over=True)
        assert {lk["holder"] for lk in ledger.locks(HOSTS)} == {locks.holder()}
    assert ledger.locks(HOSTS) == []


def test_a_lease_keeps_the_heartbeat_of_its_own_locks_only(ledger: Ledger) -> None:
    ledger.lock(
        None, ["db-1"], holder=alive(), at=NOW, may_take=lambda _lk: False, purpose="assess"
    )
    with locks.Lease(ledger, HOSTS, locks.Purpose.ASSESS, clock=lambda: NOW, every=0.05) as lease:
        lease.take(take_over=False)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if all(lk["heartbeat"] > NOW for lk in ledger.locks(HOSTS)):
                break
            time.sleep(0.05)
        beats = {lk["host"]: lk["heartbeat"] for lk in ledger.locks([*HOSTS, "db-1"])}
    assert beats["web-1"] > NOW and beats["web-2"] > NOW
    assert beats["db-1"] == NOW  # another holder's assess lock: not ours to refresh


def test_unlock_lets_go_of_one_holders_locks_for_one_purpose(ledger: Ledger) -> None:
    for host, who, purpose in (("a", "ctl:1", "assess"), ("b", "ctl:2", "assess"),
                               ("c", "ctl:1", "release")):  # fmt: skip
        ledger.lock(None, [host], holder=who, at=NOW, may_take=lambda _lk: False, purpose=purpose)
    ledger.unlock(None, holder="ctl:1", purpose="assess")
    assert [(lk["host"], lk["holder"]) for lk in ledger.locks("abc")] == [
        ("b", "ctl:2"),
        ("c", "ctl:1"),
    ]


def test_the_same_holder_takes_its_own_hosts_again(ledger: Ledger) -> None:
    ledger.lock(None, HOSTS, holder="ctl:1", at=NOW, may_take=lambda _lk: False, purpose="assess")
    later = NOW + timedelta(minutes=1)
    ledger.lock(None, HOSTS, holder="ctl:1", at=later, may_take=lambda _lk: False, purpose="assess")
    assert {lk["acquired"] for lk in ledger.locks(HOSTS)} == {later}
    with pytest.raises(RefusedError):  # the same controller for another purpose: held
        ledger.lock(
            None, HOSTS, holder="ctl:1", at=later, may_take=lambda _lk: False, purpose="release"
        )
