"""Notifications: the policy's webhooks hear when a window starts, a batch halts it, it finishes,
and a rollback is done.

``payload`` is pure: the JSON body, with a Slack-compatible ``text``. ``Notifier`` delivers in a
background thread, retrying with backoff; it never blocks the window and never fails it: a
receiver that is down or slow costs at most the bounded wait of ``close``, and a warning.
"""

from __future__ import annotations

import json
import logging
import os
import queue
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from patchkit import __version__
from patchkit.policy.model import Webhook

log = logging.getLogger(__name__)

Notify = Callable[[str, Mapping[str, Any]], None]


def _text(event: str, data: Mapping[str, Any]) -> str:
    run = data.get("run", "?")
    if event == "window-started":
        return (
            f"patchkit: window {data.get('window')} of policy {data.get('policy')} started: "
            f"run {run}, plan {data.get('plan')}, {data.get('hosts')} host(s) in "
            f"{data.get('batches')} batch(es)"
        )
    if event == "batch-halted":
        return f"patchkit: run {run} halted after batch {data.get('batch')}: {data.get('reason')}"
    if event == "window-finished":
        reason = f": {data['reason']}" if data.get("reason") else ""
        return (
            f"patchkit: run {run} finished {data.get('status')}{reason} "
            f"({data.get('patched')} patched, {data.get('failed')} failed)"
        )
    if event == "rollback-done":
        hosts = ", ".join(f"{h['host']} {h['status']}" for h in data.get("hosts", []))
        return f"patchkit: rollback in run {run} done: {hosts}"
    return f"patchkit: {event} in run {run}"


def payload(event: str, data: Mapping[str, Any], at: datetime) -> dict[str, Any]:
    """The JSON body of ``event``: its facts, when, and ``text`` for chat receivers."""
    return {"event": event, "at": at.isoformat(), **data, "text": _text(event, data)}


@dataclass
class Delivery:
    url: str
    event: str
    attempts: int = 0
    delivered: bool = False
    error: str = ""


@dataclass
class Notifier:
    """Sends to every webhook that wants the event, from one background thread."""

    hooks: Sequence[Webhook]
    clock: Callable[[], datetime]
    backoff: float = 0.5  # seconds before the first retry; doubled each time, at most 8
    env: Mapping[str, str] = field(default_factory=lambda: os.environ)
    deliveries: list[Delivery] = field(default_factory=list)
    _queue: queue.Queue[tuple[Webhook, dict[str, Any], Delivery] | None] = field(
        default_factory=queue.Queue
    )
    _thread: threading.Thread | None = None

    def send(self, event: str, data: Mapping[str, Any]) -> None:
        """Queue ``event`` for its receivers and return at once."""
        body = payload(event, data, self.clock())
        for hook in self.hooks:
            if event not in hook.events:
                continue
            delivery = Delivery(hook.url, event)
            self.deliveries.append(delivery)
            self._queue.put((hook, body, delivery))
            if self._thread is None:
                self._thread = threading.Thread(target=self._work, name="notify", daemon=True)
                self._thread.start()

    def close(self, wait: float = 15.0) -> list[Delivery]:
        """Give the queue up to ``wait`` seconds to drain; return what was not delivered."""
        if self._thread is not None:
            self._queue.put(None)
            self._thread.join(wait)
        missed = [d for d in self.deliveries if not d.delivered]
        for d in missed:
            why = d.error or "still queued when the run ended"
            log.warning("notification %s to %s not delivered: %s", d.event, d.url, why)
        return missed

    def _work(self) -> None:
        while (item := self._queue.get()) is not None:
            hook, body, delivery = item
            self._deliver(hook, body, delivery)

    def _deliver(self, hook: Webhook, body: dict[str, Any], delivery: Delivery) -> None:
        data = json.dumps(body, default=str).encode()
        headers = {"Content-Type": "application/json", "User-Agent": f"patchkit/{__version__}"}
        if hook.token_env:
            token = self.env.get(hook.token_env)
            if not token:
                delivery.error = f"environment variable {hook.token_env} is not set"
                return
            headers["Authorization"] = f"Bearer {token}"
        for attempt in range(hook.retries + 1):
            delivery.attempts = attempt + 1
            # the policy admits only http:// and https:// URLs (Webhook._http)
            request = urllib.request.Request(hook.url, data=data, headers=headers, method="POST")  # noqa: S310
            try:
                with urllib.request.urlopen(request, timeout=hook.timeout.total_seconds()) as got:  # noqa: S310
                    got.read()
                delivery.delivered = True
                return
            except urllib.error.HTTPError as exc:
                delivery.error = f"HTTP {exc.code}"
                if 400 <= exc.code < 500 and exc.code not in (408, 429):
                    return  # the receiver refuses this payload: retrying will not help
            except (OSError, ValueError) as exc:  # refused, timed out, DNS, a bad URL
                delivery.error = str(getattr(exc, "reason", exc))
            if attempt < hook.retries:
                time.sleep(min(self.backoff * 2**attempt, 8.0))
