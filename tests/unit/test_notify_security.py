"""Unit: where a webhook's bearer token may go. Redirects are never followed, a token travels in
clear text only to loopback, and a refused hook never opens a socket.

The receivers are real HTTP servers on 127.0.0.1; nothing here sends traffic anywhere else (an
audit hook blocks it while a test watches for sockets).
"""

from __future__ import annotations

import ipaddress
import json
import logging
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

import pytest

from patchkit.notify import Delivery, Notifier, webhook_problems
from patchkit.policy.model import Webhook
from patchkit.policy.urls import is_loopback
from tests.receiver import receiver

T0 = datetime(2026, 11, 28, 22, 0, tzinfo=UTC)
TOKEN = "s3cret-token"  # noqa: S105 (a test value)
NAMED = "HOOK_TOKEN"  # the environment variable's name (what token_env holds)
ENV = {NAMED: TOKEN}
# Addresses that must never be contacted: TEST-NET-1 (RFC 5737) and a name under .invalid
# (RFC 6761), which no resolver answers.
NEVER = ("http://192.0.2.10/hook", "http://webhook.example.invalid:8080/hook")


# ------------------------------------------------------------ watching for sockets

_watching: list[list[str]] = []  # the event lists of the watches in progress
_SOCKET_EVENTS = {"socket.__new__", "socket.connect", "socket.getaddrinfo", "socket.gethostbyname"}


def _is_loopback_address(address: Any) -> bool:
    host = address[0] if isinstance(address, tuple) and address else address
    try:
        return ipaddress.ip_address(str(host)).is_loopback
    except ValueError:
        return False


def _audit(event: str, args: tuple[Any, ...]) -> None:
    if not _watching or event not in _SOCKET_EVENTS:
        return
    for seen in _watching:
        seen.append(event)
    if event == "socket.connect" and not _is_loopback_address(args[1]):
        # a safety net, should the code under test be wrong: never let traffic leave loopback
        raise ConnectionRefusedError(f"test blocked a connection to {args[1]!r}")


sys.addaudithook(_audit)  # audit hooks cannot be removed; this one is idle unless watching


@contextmanager
def sockets_opened() -> Iterator[list[str]]:
    """The socket events (creation, name lookup, connect) of every thread while the block runs."""
    seen: list[str] = []
    _watching.append(seen)
    try:
        yield seen
    finally:
        _watching.remove(seen)


# ------------------------------------------------------------ helpers


def hook(url: str, **settings: object) -> Webhook:
    """A webhook as code could build one: the model's own checks (which refuse unsafe URLs in a
    policy file, tested below) are passed by, to show the Notifier's send-time refusal."""
    defaults = Webhook.model_validate({"url": "https://127.0.0.1/"})
    return Webhook.model_construct(**(dict(defaults) | {"url": url} | settings))


def deliver(named: Webhook, env: dict[str, str] | None = None) -> Delivery:
    sender = Notifier([named], clock=lambda: T0, backoff=0.01, env=env or {})
    sender.send("window-started", {"run": "r1"})
    sender.close(wait=10)
    (delivery,) = sender.deliveries
    return delivery


# ------------------------------------------------------------ redirects


@pytest.mark.parametrize("status", [301, 302, 303, 307, 308])
def test_a_redirect_never_brings_the_token_to_its_target(status: int) -> None:
    with receiver() as first, receiver() as elsewhere:
        first.redirect = (status, elsewhere.url)
        delivery = deliver(hook(first.url, token_env=NAMED, retries=3), ENV)
    assert elsewhere.seen == []
    (asked,) = first.seen  # not retried: the same URL would only redirect again
    assert asked.headers["Authorization"] == f"Bearer {TOKEN}"
    assert not delivery.delivered
    assert delivery.attempts == 1
    assert delivery.error == (
        f"HTTP {status}: redirected to {elsewhere.url}; not followed: "
        "point the webhook at the final URL"
    )


def test_a_redirect_on_the_same_receiver_is_not_followed_either() -> None:
    with receiver() as got:
        got.redirect = (302, "/moved")
        delivery = deliver(hook(got.url, token_env=NAMED), ENV)
    assert [s.path for s in got.seen] == ["/hook"]
    assert "redirected to " + got.url.replace("/hook", "/moved") in delivery.error


def test_without_a_token_a_redirect_is_a_failed_delivery_too() -> None:
    with receiver() as first, receiver() as elsewhere:
        first.redirect = (302, elsewhere.url)
        delivery = deliver(hook(first.url, retries=2))
    assert elsewhere.seen == []
    assert "Authorization" not in first.seen[0].headers
    assert (delivery.delivered, delivery.attempts) == (False, 1)
    assert f"redirected to {elsewhere.url}; not followed" in delivery.error


# ------------------------------------------------------------ clear text only to loopback


def test_a_token_over_http_to_loopback_is_sent() -> None:
    with receiver() as got:
        delivery = deliver(hook(got.url, token_env=NAMED), ENV)
    assert delivery.delivered, delivery.error
    assert got.seen[0].headers["Authorization"] == f"Bearer {TOKEN}"
    assert json.loads(got.seen[0].body)["event"] == "window-started"


def test_localhost_counts_as_loopback() -> None:
    with receiver() as got:
        url = got.url.replace("127.0.0.1", "localhost")
        delivery = deliver(hook(url, token_env=NAMED), ENV)
    assert delivery.delivered, delivery.error
    assert got.seen[0].headers["Authorization"] == f"Bearer {TOKEN}"


@pytest.mark.parametrize("url", NEVER)
def test_a_token_over_http_elsewhere_is_refused_before_any_socket_is_opened(
    url: str, caplog: pytest.LogCaptureFixture
) -> None:
    sender = Notifier([hook(url, token_env=NAMED)], clock=lambda: T0, env=ENV)
    with caplog.at_level(logging.ERROR, logger="patchkit.notify"), sockets_opened() as opened:
        sender.send("window-started", {"run": "r1"})
        missed = sender.close(wait=5)
    assert opened == []
    assert [(d.delivered, d.attempts) for d in missed] == [(False, 0)]
    assert missed[0].error.startswith(f"refused: {url}: token_env HOOK_TOKEN would send")
    assert any("refused" in r.getMessage() and r.levelno == logging.ERROR for r in caplog.records)
    assert TOKEN not in caplog.text


def test_the_watch_sees_a_real_delivery() -> None:
    # the check above is only worth something if the watch notices a connection at all
    with receiver() as got, sockets_opened() as opened:
        delivery = deliver(hook(got.url))
    assert delivery.delivered
    assert "socket.connect" in opened


def test_a_proxy_from_the_environment_is_not_used_for_loopback(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    with receiver() as got, receiver() as proxy:
        for name in ("no_proxy", "NO_PROXY"):
            monkeypatch.delenv(name, raising=False)
        monkeypatch.setenv("http_proxy", proxy.url.removesuffix("/hook"))
        delivery = deliver(hook(got.url, token_env=NAMED), ENV)
    assert delivery.delivered, delivery.error
    assert proxy.seen == []
    assert len(got.seen) == 1


# ------------------------------------------------------------ the pure check


@pytest.mark.parametrize(
    "url",
    [
        "https://hooks.example.com/x",
        "http://127.0.0.1:8080/x",
        "http://127.8.9.10/x",
        "http://[::1]:9000/x",
        "http://[::ffff:127.0.0.1]/x",
        "http://localhost/x",
        "http://LocalHost:81/x",
    ],
)
def test_a_token_is_allowed_over_https_or_to_loopback(url: str) -> None:
    assert webhook_problems(hook(url, token_env=NAMED)) == []


@pytest.mark.parametrize(
    "url",
    [
        "http://hooks.example.com/x",
        "http://10.0.0.1/x",
        "http://[fe80::1]/x",
        "http://128.0.0.1/x",
        "http://127.1/x",  # loopback to some resolvers, not spelt as an address
        "http://2130706433/x",
        "http://localhost.example.com/x",
        "http://127.0.0.1.nip.io/x",
        "http://localhost./x",
    ],
)
def test_a_token_in_clear_text_elsewhere_is_a_problem(url: str) -> None:
    (problem,) = webhook_problems(hook(url, token_env=NAMED))
    assert problem.startswith(f"{url}: token_env HOOK_TOKEN would send a bearer token in clear")
    assert webhook_problems(hook(url)) == []  # without a token, http:// is the receiver's call


def test_credentials_in_the_url_are_a_problem_and_never_shown() -> None:
    (problem,) = webhook_problems(hook("https://bot:hunter2@hooks.example.com/x"))
    assert "hunter2" not in problem
    assert problem.startswith("https://bot:***@hooks.example.com/x: a webhook URL must not carry")


def test_a_bad_port_or_no_host_is_a_problem() -> None:
    # the policy model may refuse these URLs itself; the check does not count on it
    bad_port = Webhook.model_construct(url="https://hooks.example.com:99999/x", token_env=None)
    assert "port" in webhook_problems(bad_port)[0]
    no_host = Webhook.model_construct(url="https:///x", token_env=None)
    assert "no host" in webhook_problems(no_host)[0]


def test_is_loopback() -> None:
    assert is_loopback("127.0.0.1") and is_loopback("127.255.255.254") and is_loopback("::1")
    anywhere = "0.0.0.0"  # noqa: S104 (a string to check, not an address to bind)
    assert not is_loopback(anywhere) and not is_loopback("::") and not is_loopback("example")


@pytest.mark.parametrize(
    "url, token, said",
    [
        ("http://192.0.2.10/hook", "HOOK_TOKEN", "would send a bearer token in clear text"),
        ("https://bot:hunter2@hooks.example.com/x", None, "must not carry a user name"),
    ],
)
def test_a_policy_with_an_unsafe_webhook_is_refused_at_its_line(
    url: str, token: str | None, said: str
) -> None:
    from patchkit.errors import PolicyError
    from patchkit.policy import loads

    text = (
        "name: p\nroles: {owner: ops, approvers: [a]}\nwindows:\n"
        "  - {name: w, rrule: FREQ=WEEKLY;BYDAY=SA;BYHOUR=22, duration: 4h}\n"
        "notifications:\n  webhooks:\n"
        f"    - url: {url}\n" + (f"      token_env: {token}\n" if token else "")
    )
    with pytest.raises(PolicyError) as refused:
        loads(text, "p.yml")
    assert refused.value.message.startswith("p.yml:7: notifications.webhooks[0]")
    assert said in refused.value.message
    assert "hunter2" not in refused.value.message
