"""The lab's locks: commands on different hosts run side by side, the same host one at a time,
and bringing the whole lab up or down waits for every host command (real flock on temp files)."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import AbstractContextManager
from pathlib import Path

import pytest

from patchkit.lab.config import LabConfig
from patchkit.lab.lifecycle import locked


@pytest.fixture
def config(tmp_path: Path) -> LabConfig:
    return LabConfig.create(name="locks", root=tmp_path)


class Taker:
    """Takes a lock in a thread, so that the test can see whether it is still waiting."""

    def __init__(self, lock: AbstractContextManager[None]) -> None:
        self.got = threading.Event()
        self.release = threading.Event()
        self.thread = threading.Thread(target=self._hold, args=(lock,), daemon=True)
        self.thread.start()

    def _hold(self, lock: AbstractContextManager[None]) -> None:
        with lock:
            self.got.set()
            self.release.wait(10)

    def done(self) -> None:
        self.release.set()
        self.thread.join(10)


@pytest.fixture
def holding_host1(config: LabConfig) -> Iterator[Taker]:
    first = Taker(locked(config, 1))
    assert first.got.wait(5)
    yield first
    first.done()


def test_commands_on_two_hosts_hold_their_locks_together(
    config: LabConfig, holding_host1: Taker
) -> None:
    second = Taker(locked(config, 2))
    assert second.got.wait(5)
    second.done()


def test_a_second_command_on_the_same_host_waits(config: LabConfig, holding_host1: Taker) -> None:
    second = Taker(locked(config, 1))
    assert not second.got.wait(0.5)
    holding_host1.done()
    assert second.got.wait(5)
    second.done()


def test_the_whole_lab_lock_waits_for_host_commands(
    config: LabConfig, holding_host1: Taker
) -> None:
    whole = Taker(locked(config))
    assert not whole.got.wait(0.5)
    holding_host1.done()
    assert whole.got.wait(5)
    host = Taker(locked(config, 2))  # and host commands wait for the whole-lab one
    assert not host.got.wait(0.5)
    whole.done()
    assert host.got.wait(5)
    host.done()
