"""Who may touch which hosts: the controller's identity, its heartbeat, and dead holders.

Every command that touches hosts holds them in the ledger (``Ledger.lock``) with the
controller's ``host:pid``, what it holds them for (``Purpose``) and a heartbeat refreshed while
it works: a run for its whole length, rollback, release and assess through a ``Lease``. A lock
is taken over only on request (``--take-over``) and only from a holder that is dead: on this
machine, its process is gone; elsewhere, its heartbeat is older than ``STALE_AFTER``.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from types import TracebackType
from typing import Any

from patchkit.errors import LedgerError, PatchkitError, RefusedError
from patchkit.ledger import Ledger
from patchkit.ledger.base import this_controller
from patchkit.ledger.runs import describe_locks

log = logging.getLogger(__name__)

STALE_AFTER = timedelta(minutes=2)
HEARTBEAT_EVERY = 20.0  # seconds; well inside STALE_AFTER
WAIT_EVERY = 3.0  # seconds between two looks at held hosts (--wait)


def holder() -> str:
    return this_controller()


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # exists, owned by someone else
    return True


def is_dead(
    lock: Mapping[str, Any],
    now: datetime,
    *,
    here: str | None = None,
    pid_alive: Callable[[int], bool] = _pid_alive,
) -> bool:
    """Whether the controller holding ``lock`` is gone (never true for a live process here)."""
    machine, _, pid = str(lock["holder"]).rpartition(":")
    if machine == (here or socket.gethostname()) and pid.isdigit():
        return not pid_alive(int(pid))
    return bool(now - lock["heartbeat"] > STALE_AFTER)


def taker(take_over: bool, now: datetime) -> Callable[[Mapping[str, Any]], bool]:
    """The ``may_take`` rule for ``Ledger.lock``: only on request, only from the dead."""
    return lambda lock: take_over and is_dead(lock, now)


class Purpose(StrEnum):
    """What holds a host's lock (the values are the ledger's ``locks.purpose``)."""

    RUN = "run"  # run and resume
    ROLLBACK = "rollback"
    RELEASE = "release"
    ASSESS = "assess"


class Heartbeat:
    """Refresh a holder's locks in the ledger every few seconds while the block runs.

    The locks are those taken for ``run_id`` (None for assess and release) and ``purpose``,
    by ``holder`` (any holder when None: a run's own locks); a run's locks refresh the run's
    heartbeat too.
    """

    def __init__(
        self,
        ledger: Ledger,
        run_id: str | None,
        every: float = HEARTBEAT_EVERY,
        *,
        holder: str | None = None,
        purpose: str = Purpose.RUN,
    ) -> None:
        self.ledger, self.run_id, self.every = ledger, run_id, every
        self.holder, self.purpose = holder, purpose
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._beat, name="patchkit-heartbeat", daemon=True)

    def _beat(self) -> None:
        while not self._stop.wait(self.every):
            try:
                self.ledger.heartbeat(
                    self.run_id, at=datetime.now(UTC), holder=self.holder, purpose=self.purpose
                )
            except PatchkitError as exc:  # the next beat may get through; the work goes on
                log.warning("heartbeat not recorded: %s", exc)

    def __enter__(self) -> Heartbeat:
        self._thread.start()
        return self

    def __exit__(
        self,
        _type: type[BaseException] | None,
        _value: BaseException | None,
        _tb: TracebackType | None,
    ) -> None:
        self._stop.set()
        if self._thread.ident is not None:  # started (a Lease starts it once it holds)
            self._thread.join(timeout=5)


# ---------------------------------------------------------------- locks outside a run


@dataclass(frozen=True)
class Wait:
    """How to wait for held hosts: poll every ``every`` seconds, telling the user as it goes.

    ``say`` gets a line whenever the hosts' holders change (who holds what); ``tick`` gets,
    about every second, how long it has waited and when it looks again.
    """

    say: Callable[[str], None]
    tick: Callable[[str], None] = lambda _text: None
    every: float = WAIT_EVERY
    sleep: Callable[[float], None] = time.sleep


class Lease:
    """The ledger locks of the hosts one command touches, from ``take`` to the block's end.

    Rollback, release and assess lock their hosts as a run does, so that no two controllers
    touch a host at once. On leaving the block (also on an error or Ctrl-C) the heartbeat
    stops and the locks go; a lease whose ``take`` was refused has nothing to let go.

        with Lease(ledger, hosts, Purpose.ASSESS) as lease:
            lease.take(take_over=False)
            ...  # touch the hosts
    """

    def __init__(
        self,
        ledger: Ledger,
        hosts: Collection[str],
        purpose: Purpose,
        *,
        run_id: str | None = None,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        every: float = HEARTBEAT_EVERY,
    ) -> None:
        self.ledger, self.purpose, self.run_id, self.clock = ledger, purpose, run_id, clock
        self.hosts = sorted(set(hosts))
        self.holder = holder()
        self._heartbeat = Heartbeat(ledger, run_id, every, holder=self.holder, purpose=purpose)
        self._tried = False

    def __enter__(self) -> Lease:
        return self

    def take(self, *, take_over: bool, wait: Wait | None = None) -> None:
        """Lock the hosts (all or none), then keep their heartbeat going.

        Held by a live holder: RefusedError naming it, or with ``wait``, look again every
        ``wait.every`` seconds until they are free. A dead holder's lock is taken only with
        ``take_over``; waiting for one cannot help, so that is refused even with ``wait``.
        KeyboardInterrupt while waiting gives up with nothing taken.
        """
        began = self.clock()
        seen: tuple[tuple[Any, ...], ...] | None = None
        while True:
            now = self.clock()
            self._tried = True
            try:
                self.ledger.lock(
                    self.run_id, self.hosts, holder=self.holder, at=now,
                    may_take=taker(take_over, now), purpose=self.purpose,
                )  # fmt: skip
                break
            except RefusedError as refused:
                if wait is None:
                    raise
                held = [lk for lk in self.ledger.locks(self.hosts) if not self._ours(lk)]
                if held and all(is_dead(lk, now) for lk in held):
                    raise RefusedError(
                        f"{refused.message}: its controller is gone, so waiting cannot help",
                        hint="take the lock over with --take-over",
                    ) from None
                holders = tuple((lk["host"], lk["run"], lk["purpose"], lk["holder"]) for lk in held)
                if held and holders != seen:
                    wait.say(f"waiting: {describe_locks(held)}")
                    seen = holders
                self._pause(wait, now - began)
        self._heartbeat.__enter__()

    def _pause(self, wait: Wait, waited: timedelta) -> None:
        left = max(wait.every, 0.0)
        try:
            while left > 0:
                step = min(1.0, left)
                wait.tick(
                    f"waiting {_duration(waited)} for {len(self.hosts)} host(s); next look in "
                    f"{left:.0f} s (Ctrl-C gives up)"
                )
                wait.sleep(step)
                left -= step
                waited += timedelta(seconds=step)
        except KeyboardInterrupt:
            wait.say("gave up waiting: nothing was locked or touched")
            raise

    def _ours(self, lock: Mapping[str, Any]) -> bool:
        return (lock["holder"], lock["run"], lock["purpose"]) == (
            self.holder, self.run_id, self.purpose,
        )  # fmt: skip

    def __exit__(
        self,
        _type: type[BaseException] | None,
        _value: BaseException | None,
        _tb: TracebackType | None,
    ) -> None:
        self._heartbeat.__exit__(_type, _value, _tb)
        if not self._tried:
            return
        try:
            self.ledger.unlock(self.run_id, holder=self.holder, purpose=self.purpose)
        except LedgerError as exc:  # the error that ended the block says more
            log.warning("the hosts stay locked by %s: %s", self.holder, exc.message)


def _duration(value: timedelta) -> str:
    seconds = int(value.total_seconds())
    return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"
