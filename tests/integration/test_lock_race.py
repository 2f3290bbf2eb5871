"""Integration: two controllers that lock the same hosts at the same instant, on SQLite and
PostgreSQL (no lab hosts needed).

Each controller is an OS process of its own (multiprocessing, spawn), with its own connection
to the ledger. Per round a barrier releases both at once into ``start_run`` (or ``lock``); the
test checks that exactly one got the hosts and the other a RefusedError naming the winner,
never a database error, and that the loser left nothing behind: no run row, no lock.
"""

from __future__ import annotations

import multiprocessing
import queue
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import pytest

from patchkit.errors import RefusedError
from patchkit.execution import locks
from patchkit.ledger import Ledger

pytest_plugins = ["tests.integration.postgres"]

ROUNDS = 20
PLAN, HASH = "plan-race", "f" * 64
T0 = datetime(2026, 11, 1, 9, 0, tzinfo=UTC)
SPAWN = multiprocessing.get_context("spawn")  # a fresh interpreter: nothing shared but the URL
SAME = ("web-1", "web-2", "db-1")


@dataclass(frozen=True)
class Outcome:
    """What one controller got in one round."""

    round: int
    side: str
    holder: str
    got: str  # ok, refused, error
    detail: str  # the run id taken, or the error's message
    began: float  # time.monotonic() around the call: one clock for every process here
    ended: float

    @property
    def run_id(self) -> str:
        return run_id(self.round, self.side)


def run_id(number: int, side: str) -> str:
    return f"race-{number:02d}-{side}"


def controller(
    url: str, side: str, how: str, hosts: Sequence[str], barrier: Any, results: Any
) -> None:
    """One controller process: each round, wait for the start, try to take ``hosts``, report."""
    ledger = Ledger(url)  # connected (and its schema checked) before the race starts
    me = locks.holder()
    for number in range(ROUNDS):
        try:
            barrier.wait()
        except threading.BrokenBarrierError:  # the test ended early (it failed): stop
            break
        at, began = datetime.now(UTC), time.monotonic()
        try:
            if how == "start_run":
                ledger.start_run(run_id(number, side), PLAN, HASH, at=at, holder=me, hosts=hosts)
            else:
                ledger.lock(
                    None, hosts, holder=me, at=at, may_take=lambda _lk: False, purpose="assess"
                )
        except RefusedError as exc:
            got, detail = "refused", exc.message
        except Exception as exc:  # reported, not raised: the test names it
            got, detail = "error", f"{type(exc).__name__}: {exc}"
        else:
            got, detail = "ok", run_id(number, side)
        results.put(Outcome(number, side, me, got, detail, began, time.monotonic()))
    ledger.close()


@contextmanager
def controllers(
    url: str, how: str, hosts: Mapping[str, Sequence[str]]
) -> Iterator[tuple[Any, Any]]:
    """Start one process per side; yield the start barrier (the test is its last party) and
    the queue the outcomes arrive on."""
    barrier = SPAWN.Barrier(len(hosts) + 1)
    results = SPAWN.Queue()
    procs = [
        SPAWN.Process(target=controller, args=(url, side, how, names, barrier, results))
        for side, names in hosts.items()
    ]
    for proc in procs:
        proc.start()
    try:
        yield barrier, results
    finally:
        barrier.abort()  # a controller still waiting for a round that will not come stops
        for proc in procs:
            proc.join(timeout=30)
            if proc.is_alive():
                proc.kill()
                proc.join()


def new_ledger(url: str) -> Ledger:
    ledger = Ledger(url)
    body = {
        "id": PLAN,
        "hash": HASH,
        "policy": "p",
        "made_at": T0.isoformat(),
        "window": {"name": "w", "start": T0.isoformat()},
    }
    ledger.save_plan(body, saved_at=T0)
    return ledger


def one_round(barrier: Any, results: Any, sides: int) -> list[Outcome]:
    barrier.wait(timeout=120)  # the test arriving releases the controllers
    got = []
    for _ in range(sides):
        try:
            got.append(results.get(timeout=120))
        except queue.Empty:
            pytest.fail("a controller did not report within 2 minutes")
    return sorted(got, key=lambda o: o.got)


def overlapped(outcomes: Sequence[Outcome]) -> bool:
    """Whether the calls of a round ran at the same time (the round was a race)."""
    return max(o.began for o in outcomes) < min(o.ended for o in outcomes)


def let_go(ledger: Ledger, how: str, winner: Outcome) -> None:
    if how == "start_run":
        ledger.unlock(winner.run_id)
    else:
        ledger.unlock(None, holder=winner.holder, purpose="assess")


@pytest.mark.parametrize("how", ["start_run", "lock"])
def test_one_of_two_racing_controllers_gets_the_hosts_the_other_a_refusal(
    ledger_url: str, how: str
) -> None:
    ledger = new_ledger(ledger_url)
    clean = raced = 0
    with controllers(ledger_url, how, {"a": SAME, "b": tuple(reversed(SAME))}) as (start, out):
        for number in range(ROUNDS):
            winner, loser = one_round(start, out, 2)
            raced += overlapped([winner, loser])
            assert (winner.got, loser.got) == ("ok", "refused"), (number, winner, loser)
            # the refusal names the winner: its run (if any), its purpose, its controller
            held_by = (
                f"held by run {winner.run_id}" if how == "start_run" else "held by patchkit assess"
            )
            assert held_by in loser.detail, loser.detail
            assert f"controller {winner.holder}" in loser.detail, loser.detail
            # all hosts or none: every lock is the winner's; the loser has no run row
            taken = ledger.locks(SAME)
            assert [lk["host"] for lk in taken] == sorted(SAME)
            assert {(lk["holder"], lk["purpose"]) for lk in taken} == {
                (winner.holder, "run" if how == "start_run" else "assess")
            }
            if how == "start_run":
                assert {lk["run"] for lk in taken} == {winner.run_id}
                assert ledger.run_record(loser.run_id) is None
            let_go(ledger, how, winner)
            assert ledger.locks(SAME) == []
            clean += 1
    assert clean == ROUNDS
    print(f"{how} on {ledger_url.partition(':')[0]}: {raced} of {ROUNDS} rounds overlapped")
    assert raced, "no round had both calls running at once: the test raced nothing"


@pytest.mark.parametrize("how", ["start_run", "lock"])
def test_racing_controllers_with_disjoint_hosts_both_get_theirs(ledger_url: str, how: str) -> None:
    ledger = new_ledger(ledger_url)
    hosts = {"a": ("web-1", "db-1"), "b": ("web-2", "db-2")}
    with controllers(ledger_url, how, hosts) as (start, out):
        for number in range(ROUNDS):
            got = one_round(start, out, 2)
            assert [o.got for o in got] == ["ok", "ok"], (number, got)
            taken = {
                lk["host"]: lk["holder"] for lk in ledger.locks(["web-1", "web-2", "db-1", "db-2"])
            }
            assert taken == {h: o.holder for o in got for h in hosts[o.side]}
            for outcome in got:
                let_go(ledger, how, outcome)
