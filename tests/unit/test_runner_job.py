"""Unit (no lab host): a real ansible-runner job on this machine (connection local) sees only the
allowed part of the controller's environment, and checks host keys."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from patchkit.execution.runner import run_playbook

PLAY = Path(__file__).resolve().parents[1] / "integration" / "playbooks" / "environment.yml"


def _controller_env(result_task: object) -> dict[str, str]:
    stdout = str(getattr(result_task, "result")["stdout"])  # noqa: B009 - TaskResult.result
    return dict(line.split("=", 1) for line in stdout.splitlines() if "=" in line)


@pytest.mark.parametrize("passed", [(), ("AWS_*",)])
def test_a_job_sees_the_allow_list_and_what_the_policy_passes(
    monkeypatch: pytest.MonkeyPatch, passed: tuple[str, ...]
) -> None:
    monkeypatch.setenv("PATCHKIT_LEDGER", "postgresql://patchkit:ledger-pw@db/patchkit")
    monkeypatch.setenv("CHAT_TOKEN", "chat-t0ken")
    monkeypatch.setenv("AWS_PROFILE", "fleet-readonly")
    result = run_playbook(
        PLAY,
        Path("localhost,"),  # an Ansible host list
        extravars={"ansible_connection": "local", "ansible_python_interpreter": sys.executable},
        timeout=120,
        pass_env=passed,
    )
    assert result.status == "successful", result.tasks
    task = result.task("localhost", "Controller environment")
    assert task is not None
    seen = _controller_env(task)
    assert seen["ANSIBLE_HOST_KEY_CHECKING"] == "True"
    assert "PATH" in seen and "HOME" in seen
    assert not [name for name in seen if name.startswith("PATCHKIT_")]
    assert "CHAT_TOKEN" not in seen
    assert ("AWS_PROFILE" in seen) == bool(passed)
    lookup = result.task("localhost", "Controller variable seen by a lookup")
    assert lookup is not None and lookup.result["msg"] == "(unset)"
