"""Lab: the edges a patch tool running as root must hold: host keys are checked, and a play
never sees the controller's secrets (the ledger URL with its password, webhook tokens)."""

from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path

import pytest
import yaml

from patchkit.lab.config import LabConfig

from .conftest import POLICY, on_host, patchkit_cli, play

LEDGER_MARK = "ledger-s3cret-9f2c"
CHAT_MARK = "chat-s3cret-77ab"


def test_a_play_sees_none_of_the_controllers_secrets(
    lab: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PATCHKIT_LEDGER", f"postgresql://patchkit:{LEDGER_MARK}@db/patchkit")
    monkeypatch.setenv("PATCHKIT_WEBHOOK_TOKEN", CHAT_MARK)
    monkeypatch.setenv("CHAT_TOKEN", CHAT_MARK)  # a token_env may have any name
    result = play("environment.yml", lab, limit="host1")
    assert result.status == "successful", result.tasks
    controller = result.task("host1", "Controller environment")
    lookup = result.task("host1", "Controller variable seen by a lookup")
    remote = result.task("host1", "Host environment")
    assert controller is not None and lookup is not None and remote is not None
    seen = str(controller.result["stdout"])
    names = {line.split("=", 1)[0] for line in seen.splitlines() if "=" in line}
    assert "PATH" in names and "HOME" in names  # what ansible-playbook needs is there
    assert "ANSIBLE_HOST_KEY_CHECKING=True" in seen.splitlines()
    assert not {n for n in names if n.startswith("PATCHKIT_")}, names
    assert "CHAT_TOKEN" not in names
    for text in (seen, str(lookup.result["msg"]), str(remote.result["stdout"])):
        assert LEDGER_MARK not in text
        assert CHAT_MARK not in text
    assert lookup.result["msg"] == "(unset)"


def _new_host_keys(config: LabConfig, index: int) -> None:
    """Give the host new SSH keys, as a reinstalled host (or a host in the middle) would have."""
    on_host(config, index, "rm /etc/ssh/ssh_host_* && ssh-keygen -q -A && systemctl restart ssh")


def test_a_host_whose_key_changed_is_refused_and_an_inventory_can_opt_out(
    lab: Path,
    lab_config: LabConfig,
    env: dict[str, str],
    pristine: None,
    tmp_path: Path,
    request: pytest.FixtureRequest,
) -> None:
    _new_host_keys(lab_config, 1)
    # A home of its own: no SSH connection opened before the change is reused (ControlPersist).
    # Short, in /tmp: the control sockets below it must fit a Unix socket path (108 bytes).
    home = Path(tempfile.mkdtemp(prefix="pk-home-"))
    request.addfinalizer(lambda: shutil.rmtree(home, ignore_errors=True))
    fresh = env | {"HOME": str(home)}
    done = patchkit_cli(
        "assess", "-p", POLICY, "-i", str(lab), "--limit", "host1,host2", "--json", env=fresh
    )
    assert done.returncode == 1, done.stderr  # a host could not be assessed
    assert "Traceback" not in done.stderr
    found = {h["host"]: h for h in json.loads(done.stdout)["hosts"]}
    address = lab_config.address(1)
    assert not found["host1"]["reachable"]
    assert (
        f"refused: the SSH key of {address} is not the one in known_hosts"
        in (found["host1"]["message"])
    )
    assert found["host2"]["reachable"] and found["host2"]["updates"], found["host2"]

    # the lab's own ssh refuses the host too
    direct = patchkit_cli(
        "lab",
        "--name",
        lab_config.name,
        "--subnet",
        str(lab_config.subnet),
        "ssh",
        "host1",
        "--",
        "true",
        env=fresh,
    )
    assert direct.returncode == 255
    assert "REMOTE HOST IDENTIFICATION HAS CHANGED" in direct.stderr

    # the policy turns checking off for every host it governs: host1 is reached, and the plan
    # made under that policy says what was given up
    trusting = tmp_path / "trusting.yml"
    trusting.write_text(Path(POLICY).read_text() + "\nconnection:\n  host_key_checking: false\n")
    done = patchkit_cli(
        "assess", "-p", str(trusting), "-i", str(lab), "--limit", "host1", env=fresh
    )
    assert done.returncode == 0, done.stderr
    done = patchkit_cli("plan", "-p", str(trusting), "-i", str(lab), "--format", "json", env=fresh)
    assert done.returncode == 0, done.stderr
    assert any("SSH host keys are not checked" in w for w in json.loads(done.stdout)["warnings"])

    # the inventory opts host1 out, in Ansible's own way
    inventory = yaml.safe_load(lab.read_text())
    lab_hosts = inventory["all"]["children"]["lab"]["children"]["dev"]["hosts"]
    lab_hosts["host1"]["ansible_host_key_checking"] = False
    lab_hosts["host1"]["ansible_ssh_common_args"] = "-o UserKnownHostsFile=/dev/null"
    opted_out = tmp_path / "hosts.yml"
    opted_out.write_text(yaml.safe_dump(inventory))
    done = patchkit_cli("assess", "-p", POLICY, "-i", str(opted_out), "--limit", "host1", env=fresh)
    assert done.returncode == 0, done.stderr


def test_an_ansible_host_list_is_an_inventory(
    lab: Path, lab_config: LabConfig, env: dict[str, str]
) -> None:
    # a,b, as Ansible takes it: no variables, so the key and known_hosts come from the
    # environment, as for ansible-playbook -i a,b,
    first, second = lab_config.address(1), lab_config.address(2)
    listed = env | {
        "ANSIBLE_PRIVATE_KEY_FILE": str(lab_config.key_path),
        "ANSIBLE_SSH_COMMON_ARGS": f"-o UserKnownHostsFile={lab_config.known_hosts}",
    }
    done = patchkit_cli("assess", "-p", POLICY, "-i", f"{first},{second},", "--json", env=listed)
    assert done.returncode == 0, done.stderr
    found = {h["host"]: h for h in json.loads(done.stdout)["hosts"]}
    assert set(found) == {str(first), str(second)}
    assert all(h["reachable"] and h["updates"] for h in found.values())
