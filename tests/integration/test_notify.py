"""Integration: webhooks delivered to a real HTTP receiver on loopback; a receiver that is down,
slow or refusing never blocks the sender and never raises."""

from __future__ import annotations

from datetime import UTC, datetime

from patchkit.notify import Notifier
from patchkit.policy.model import Webhook
from tests.receiver import closed_port_url, receiver

T0 = datetime(2026, 11, 28, 22, 0, tzinfo=UTC)


def hook(url: str, **settings: object) -> Webhook:
    return Webhook.model_validate({"url": url, **settings})


def notifier(*hooks: Webhook, env: dict[str, str] | None = None) -> Notifier:
    return Notifier(list(hooks), clock=lambda: T0, backoff=0.05, env=env or {})


def test_events_reach_the_receiver_as_json_with_a_chat_text() -> None:
    with receiver() as got:
        named = hook(got.url, token_env="HOOK_TOKEN")  # noqa: S106 (a variable's name)
        sender = notifier(named, env={"HOOK_TOKEN": "s3cret"})
        sender.send("window-started", {"run": "run-1", "plan": "plan-1", "policy": "prod",
                                       "window": "sat", "batches": 3, "hosts": 6})  # fmt: skip
        sender.send("window-finished", {"run": "run-1", "status": "completed", "reason": "",
                                        "patched": 6, "failed": 0})  # fmt: skip
        assert sender.close() == []
    assert got.events() == ["window-started", "window-finished"]
    first = got.got[0]
    assert first["at"] == T0.isoformat() and first["hosts"] == 6
    assert first["text"] == (
        "patchkit: window sat of policy prod started: run run-1, plan plan-1, 6 host(s) in "
        "3 batch(es)"
    )
    assert got.got[1]["text"] == "patchkit: run run-1 finished completed (6 patched, 0 failed)"
    assert got.headers[0]["Authorization"] == "Bearer s3cret"
    assert got.headers[0]["Content-Type"] == "application/json"


def test_a_hook_hears_only_the_events_it_asked_for() -> None:
    with receiver() as got:
        sender = notifier(hook(got.url, events=["batch-halted"]))
        sender.send("window-started", {"run": "r"})
        sender.send("batch-halted", {"run": "r", "batch": 1, "reason": "2 failed"})
        assert sender.close() == []
    assert got.events() == ["batch-halted"]
    assert got.got[0]["text"] == "patchkit: run r halted after batch 1: 2 failed"


def test_a_receiver_that_is_down_costs_retries_and_a_warning_not_an_error() -> None:
    sender = notifier(hook(closed_port_url(), retries=2))
    sender.send("window-finished", {"run": "r", "status": "failed"})
    missed = sender.close()
    assert [(d.event, d.attempts, d.delivered) for d in missed] == [("window-finished", 3, False)]
    assert "refused" in missed[0].error.lower()


def test_a_server_error_is_retried_until_it_answers() -> None:
    with receiver() as got:
        got.statuses = [500, 503]
        sender = notifier(hook(got.url, retries=3))
        sender.send("rollback-done", {"run": "r", "hosts": [{"host": "web1", "status": "ok"}]})
        assert sender.close() == []
        assert sender.deliveries[0].attempts == 3
    assert got.got[0]["text"] == "patchkit: rollback in run r done: web1 ok"


def test_a_refused_payload_is_not_retried() -> None:
    with receiver() as got:
        got.statuses = [400]
        sender = notifier(hook(got.url, retries=3))
        sender.send("window-started", {"run": "r"})
        missed = sender.close()
    assert [(d.attempts, d.error) for d in missed] == [(1, "HTTP 400")]


def test_a_slow_receiver_never_holds_the_sender() -> None:
    with receiver() as got:
        got.delay = 3.0
        sender = notifier(hook(got.url, timeout="1s", retries=0))
        sender.send("window-started", {"run": "r"})
        # send() has returned while the receiver is still sitting on the request
        assert not got.answered.is_set()
        missed = sender.close(wait=10)
        assert [d.error for d in missed] == ["timed out"]


def test_close_gives_up_after_its_wait_and_says_what_was_left() -> None:
    with receiver() as got:
        got.delay = 2.0
        sender = notifier(hook(got.url, timeout="5s", retries=0))
        for n in range(3):
            sender.send("window-started", {"run": f"r{n}"})
        missed = sender.close(wait=0.5)
        # each would be delivered in 2 s (timeout 5 s): all three missed means close did not
        # wait for them
        assert len(missed) == 3 and all(not d.delivered for d in missed)
