"""Unit: runner events become typed task results (captured event shapes, no ansible-runner)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from patchkit.errors import RunnerError
from patchkit.execution import runner
from patchkit.execution.runner import PlaybookResult, task_result
from patchkit.lab.check import parse_report


def _event(name: str, host: str = "host1", **res: Any) -> dict[str, Any]:
    return {
        "event": name,
        "event_data": {
            "host": host,
            "task": "Upgrade",
            "task_action": "ansible.builtin.apt",
            "res": res,
            "duration": 1.5,
        },
    }


@pytest.mark.parametrize(
    "event, status",
    [
        (_event("runner_on_ok", changed=False), "ok"),
        (_event("runner_on_ok", changed=True), "changed"),
        (_event("runner_on_failed", msg="boom"), "failed"),
        (_event("runner_on_skipped"), "skipped"),
        (_event("runner_on_unreachable", msg="timed out"), "unreachable"),
    ],
)
def test_task_events(event: dict[str, Any], status: str) -> None:
    result = task_result(event)
    assert result is not None
    assert result.status == status
    assert result.host == "host1"
    assert result.action == "ansible.builtin.apt"
    assert result.duration == 1.5


def test_other_events_are_not_task_results() -> None:
    assert task_result({"event": "playbook_on_stats", "event_data": {}}) is None
    assert task_result({"event": "verbose", "stdout": "x"}) is None


def test_results_are_read_only() -> None:
    result = task_result(_event("runner_on_ok", nested={"a": [1, 2]}))
    assert result is not None
    with pytest.raises(TypeError):
        result.result["nested"]["a"] = 3
    assert result.result["nested"]["a"] == (1, 2)


def test_playbook_result_queries() -> None:
    tasks = tuple(
        t
        for t in (
            task_result(_event("runner_on_ok", host="host1", changed=True)),
            task_result(_event("runner_on_unreachable", host="host2", msg="no route")),
            task_result(_event("runner_on_failed", host="host3", msg="dpkg error")),
        )
        if t is not None
    )
    result = PlaybookResult("failed", 2, tasks, ("host1", "host2", "host3"))
    assert result.unreachable() == {"host2"}
    assert result.failed() == {"host3"}
    found = result.task("host3", "Upgrade")
    assert found is not None and found.message == "dpkg error"
    assert result.task("host1", "Missing") is None


def test_lab_check_report() -> None:
    msg = {
        "boot_id": "0f1e2d3c-aaaa-bbbb-cccc-000000000000",
        "packages": {
            "demo-lib": [{"name": "demo-lib", "version": "1.1", "arch": "all"}],
            "demo-svc": [{"name": "demo-svc", "version": "1.0", "arch": "all"}],
        },
    }
    row = parse_report("host2", msg)
    assert row.reachable
    assert row.boot_id == msg["boot_id"]
    assert dict(row.packages) == {"demo-lib": "1.1", "demo-svc": "1.0"}


def test_mitogen_swaps_the_strategy_only_when_asked(monkeypatch: pytest.MonkeyPatch) -> None:
    plain = runner.ansible_env()
    assert "ANSIBLE_STRATEGY" not in plain and plain["ANSIBLE_PIPELINING"] == "True"
    env = runner.ansible_env(mitogen=True)  # mitogen is in the dev extras
    assert env["ANSIBLE_STRATEGY"] == "mitogen_linear"
    assert (Path(env["ANSIBLE_STRATEGY_PLUGINS"]) / "mitogen_linear.py").is_file()
    monkeypatch.setattr(runner, "mitogen_strategy_dir", lambda: None)
    with pytest.raises(RunnerError, match="mitogen was asked for but is not installed"):
        runner.ansible_env(mitogen=True)


def test_host_keys_are_checked_unless_the_policy_turns_it_off() -> None:
    # runner sets ANSIBLE_HOST_KEY_CHECKING=False when the job's environment leaves it out
    assert runner.ansible_env()["ANSIBLE_HOST_KEY_CHECKING"] == "True"
    assert runner.ansible_env(host_key_checking=False)["ANSIBLE_HOST_KEY_CHECKING"] == "False"


def test_a_job_keeps_only_the_allowed_part_of_the_environment() -> None:
    controller = {
        "PATH": "/usr/bin",
        "HOME": "/root",
        "LANG": "C.UTF-8",
        "LC_ALL": "C.UTF-8",
        "SSH_AUTH_SOCK": "/run/agent",
        "ANSIBLE_CONFIG": "/etc/ansible/site.cfg",
        "AWX_ISOLATED_DATA_DIR": "/tmp/x/artifacts/1",  # runner's own
        "PATCHKIT_LEDGER": "postgresql://patchkit:secret@db/patchkit",
        "PATCHKIT_ANYTHING": "x",
        "CHAT_TOKEN": "t0ken",
        "AWS_SECRET_ACCESS_KEY": "k",
        "PYTHONPATH": "/somewhere",
    }
    kept = runner.job_environment(controller)
    assert set(kept) == {
        "PATH",
        "HOME",
        "LANG",
        "LC_ALL",
        "SSH_AUTH_SOCK",
        "ANSIBLE_CONFIG",
        "AWX_ISOLATED_DATA_DIR",
    }


# What OpenSSH 9.2 printed through Ansible on the lab (a host given new keys; a host never seen).
CHANGED = """Failed to connect to the host via ssh: @@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@
@    WARNING: REMOTE HOST IDENTIFICATION HAS CHANGED!     @
@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@
IT IS POSSIBLE THAT SOMEONE IS DOING SOMETHING NASTY!
Add correct host key in /var/lib/patchkit/lab/pkdev/known_hosts to get rid of this message.
Offending RSA key in /var/lib/patchkit/lab/pkdev/known_hosts:3
  remove with:
  ssh-keygen -f "/var/lib/patchkit/lab/pkdev/known_hosts" -R "10.77.40.11"
Host key for 10.77.40.11 has changed and you have requested strict checking.
Host key verification failed."""
UNKNOWN = (
    "Failed to connect to the host via ssh: No ED25519 host key is known for 10.77.40.12 and "
    "you have requested strict checking.\r\nHost key verification failed."
)


def test_host_key_refusals_read_as_one_line_with_what_to_do() -> None:
    changed = task_result(_event("runner_on_unreachable", msg=CHANGED))
    unknown = task_result(_event("runner_on_unreachable", msg=UNKNOWN))
    assert changed is not None and unknown is not None
    assert changed.message == (
        "refused: the SSH key of 10.77.40.11 is not the one in known_hosts "
        "(/var/lib/patchkit/lab/pkdev/known_hosts:3): the host was rebuilt, or someone is in "
        "the way; check it out of band, then replace its entry (ssh-keygen -R 10.77.40.11, "
        "and add the new key)"
    )
    assert unknown.message.startswith("refused: the SSH key of 10.77.40.12 is not in known_hosts")
    assert "ssh-keyscan 10.77.40.12" in unknown.message
    other = task_result(_event("runner_on_unreachable", msg="Connection timed out"))
    assert other is not None and other.message == "Connection timed out"


def test_the_policy_passes_more_variables_but_never_patchkits_own() -> None:
    controller = {
        "PATH": "/usr/bin",
        "AWS_PROFILE": "fleet",
        "AWS_REGION": "eu-west-1",
        "VAULT_ADDR": "https://vault",
        "RUNNER_OMIT_EVENTS": "False",  # runner's own
        "PATCHKIT_LEDGER": "postgresql://patchkit:secret@db/patchkit",
        "OTHER": "x",
    }
    kept = runner.job_environment(controller, ["AWS_*", "VAULT_ADDR", "PATCHKIT_*", "*LEDGER"])
    assert set(kept) == {"PATH", "AWS_PROFILE", "AWS_REGION", "VAULT_ADDR", "RUNNER_OMIT_EVENTS"}
