"""Notifications: the policy's webhooks hear when a window starts, a batch halts it, it finishes,
a rollback is done, and when an assessment finds new updates (``new-updates``, patchkit.alerts).

``payload`` is pure: the JSON body, with a Slack-compatible ``text``. ``Notifier`` delivers in a
background thread, retrying with backoff; it never blocks the window and never fails it: a
receiver that is down or slow costs at most the bounded wait of ``close``, and a warning.

Where the bearer token may go (``token_env``):

- **Redirects are never followed**, with or without a token. A 3xx answer is a failed delivery
  ("redirected to X; not followed"), not retried: the webhook should name the final URL. Following
  would send ``Authorization`` to wherever the receiver points, and urllib turns a redirected POST
  into a GET without the body, so the notification would be lost while looking delivered.
- **A token travels over https://, or over http:// only to this machine**: the URL's host is
  ``localhost`` or a loopback address (127.0.0.0/8, ::1). Anything else is refused before any
  connection is made, when the event is sent: the delivery is recorded as failed and an error is
  logged. ``webhook_problems`` is the same check as a pure function, for the policy loader.
- Loopback receivers are reached directly, never through a proxy from the environment
  (``http_proxy``): a proxy could not reach this machine's loopback, and would see the token.
- A URL carrying a user name or password is refused: credentials belong in ``token_env``.
"""

from __future__ import annotations

import json
import logging
import os
import queue
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from patchkit import __version__
from patchkit.alerts import kev_phrase
from patchkit.policy import urls
from patchkit.policy.model import Webhook
from patchkit.policy.urls import is_loopback, without_password

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
    if event == "new-updates":
        return _new_updates_text(data)
    return f"patchkit: {event} in run {run}"


TEXT_UPDATES = 5  # updates a new-updates chat line names; the JSON has them all


def _new_updates_text(data: Mapping[str, Any]) -> str:
    """``3 new update(s) on 12 host(s) (policy prod), 1 fixes a known exploited CVE: …``, the
    updates in the event's order (known exploited first), each with its foremost CVE."""
    line = (
        f"patchkit: {data.get('new_updates')} new update(s) on {data.get('hosts')} host(s) "
        f"(policy {data.get('policy')})"
    )
    kev = int(data.get("kev_hits") or 0)
    if kev:
        line += f", {kev_phrase(kev)}"
    updates: Sequence[Mapping[str, Any]] = data.get("updates") or ()
    named = [_update_text(u) for u in updates[:TEXT_UPDATES]]
    if len(updates) > TEXT_UPDATES:
        named.append(f"and {len(updates) - TEXT_UPDATES} more")
    if named:
        line += ": " + "; ".join(named)
    baseline = int(data.get("baseline_hosts") or 0)
    if baseline:
        line += f" ({baseline} host(s) assessed for the first time: their updates are not new)"
    return line


def _update_text(update: Mapping[str, Any]) -> str:
    hosts = update.get("host_count")
    text = f"{update.get('package')} {update.get('candidate')} on {hosts} host(s)"
    cves: Sequence[Mapping[str, Any]] = update.get("cves") or ()
    if not cves:
        return text
    top = cves[0]
    facts = [str(top.get("cve"))]
    if top.get("kev"):
        facts.append("known exploited")
    if top.get("cvss") is not None:
        facts.append(f"CVSS {top['cvss']}")
    more = f", +{len(cves) - 1} more CVE(s)" if len(cves) > 1 else ""
    return f"{text} ({', '.join(facts)}{more})"


def webhook_problems(hook: Webhook) -> list[str]:
    """What makes ``hook`` unsafe or unusable (patchkit.policy.urls); empty when it may be used."""
    return urls.webhook_problems(hook.url, hook.token_env)


class _NoRedirects(urllib.request.HTTPRedirectHandler):
    """Turns every redirect into an HTTPError with the 3xx status (see the module docstring)."""

    def redirect_request(self, *_args: Any, **_kwargs: Any) -> None:
        return None


def _opener(url: str) -> urllib.request.OpenerDirector:
    host = urllib.parse.urlsplit(url).hostname or ""
    # ProxyHandler({}) means "no proxy"; the default one reads http_proxy and friends
    proxies = (
        urllib.request.ProxyHandler({}) if is_loopback(host) else urllib.request.ProxyHandler()
    )
    return urllib.request.build_opener(_NoRedirects(), proxies)


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
            delivery = Delivery(without_password(hook.url), event)
            self.deliveries.append(delivery)
            problems = webhook_problems(hook)
            if problems:
                # refused here, in the caller's thread: nothing is queued, nothing connects
                delivery.error = "refused: " + "; ".join(problems)
                log.error("notification %s not sent: %s", event, delivery.error)
                continue
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
        opener = _opener(hook.url)
        for attempt in range(hook.retries + 1):
            delivery.attempts = attempt + 1
            # the policy admits only http:// and https:// URLs (its URL type checks)
            request = urllib.request.Request(hook.url, data=data, headers=headers, method="POST")  # noqa: S310
            try:
                with opener.open(request, timeout=hook.timeout.total_seconds()) as got:
                    got.read()
                delivery.delivered = True
                return
            except urllib.error.HTTPError as exc:
                exc.close()
                if 300 <= exc.code < 400:
                    delivery.error = _redirected(hook.url, exc)
                    return  # the same URL will redirect again: retrying will not help
                delivery.error = f"HTTP {exc.code}"
                if 400 <= exc.code < 500 and exc.code not in (408, 429):
                    return  # the receiver refuses this payload: retrying will not help
            except (OSError, ValueError) as exc:  # refused, timed out, DNS, a bad URL
                delivery.error = str(getattr(exc, "reason", exc))
            if attempt < hook.retries:
                time.sleep(min(self.backoff * 2**attempt, 8.0))


def _redirected(url: str, exc: urllib.error.HTTPError) -> str:
    location = exc.headers.get("Location") if exc.headers is not None else None
    if not location:
        return f"HTTP {exc.code} (a redirect without a Location); not followed"
    target = without_password(urllib.parse.urljoin(url, location))
    return (
        f"HTTP {exc.code}: redirected to {target}; not followed: point the webhook at the final URL"
    )
