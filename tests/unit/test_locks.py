"""Unit: when a run's lock may be taken over (dead holder, explicit request only)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from patchkit.execution import locks

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
