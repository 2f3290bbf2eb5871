"""Who may touch which hosts: the controller's identity, its heartbeat, and dead holders.

A run holds its hosts in the ledger (``Ledger.lock``) with the controller's ``host:pid`` and a
heartbeat refreshed while it works. A lock is taken over only on request (``--take-over``) and
only from a holder that is dead: on this machine, its process is gone; elsewhere, its
heartbeat is older than ``STALE_AFTER``.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
from collections.abc import Callable, Mapping
from datetime import UTC, datetime, timedelta
from types import TracebackType
from typing import Any

from patchkit.errors import PatchkitError
from patchkit.ledger import Ledger

log = logging.getLogger(__name__)

STALE_AFTER = timedelta(minutes=2)
HEARTBEAT_EVERY = 20.0  # seconds; well inside STALE_AFTER


def holder() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


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


class Heartbeat:
    """Refresh a run's heartbeat in the ledger every few seconds while the block runs."""

    def __init__(self, ledger: Ledger, run_id: str, every: float = HEARTBEAT_EVERY) -> None:
        self.ledger, self.run_id, self.every = ledger, run_id, every
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._beat, name="patchkit-heartbeat", daemon=True)

    def _beat(self) -> None:
        while not self._stop.wait(self.every):
            try:
                self.ledger.heartbeat(self.run_id, at=datetime.now(UTC))
            except PatchkitError as exc:  # the next beat may get through; the run goes on
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
        self._thread.join(timeout=5)
