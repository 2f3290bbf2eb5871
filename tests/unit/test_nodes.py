"""Unit: execution nodes without a node. Addresses, the versions a node must have, the wheel set,
what travels with a job (inventory, key, known_hosts, environment), and patchkit-worker's lease
(run for real, with a stand-in for ``ansible_runner`` on its path: labelled a unit test)."""

from __future__ import annotations

import importlib.metadata
import json
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from types import MappingProxyType

import pytest

from patchkit.errors import ExitCode, RunnerError
from patchkit.execution import node_worker, nodes
from patchkit.execution.runner import node_env
from patchkit.model import Host
from tests.unit.cli_process import Run, in_process


@pytest.mark.parametrize(
    "text, user, address, port",
    [
        ("node1", "root", "node1", 22),
        ("ops@node1.dc2.example", "ops", "node1.dc2.example", 22),
        ("ops@10.0.0.5:2222", "ops", "10.0.0.5", 2222),
        ("[fd00::5]:2200", "root", "fd00::5", 2200),
    ],
)
def test_a_node_is_named_user_at_host_port(text: str, user: str, address: str, port: int) -> None:
    node = nodes.parse_node(text)
    assert (node.user, node.address, node.port) == (user, address, port)
    assert node.ssh()[-1] == f"{user}@{address}"
    assert ("-p", str(port)) == tuple(
        node.ssh()[node.ssh().index("-p") : node.ssh().index("-p") + 2]
    )


@pytest.mark.parametrize("text", ["", "a b", "ops@", "node:99999", "node:", "@node"])
def test_a_malformed_node_is_refused_with_the_form_to_use(text: str) -> None:
    with pytest.raises(nodes.NodeError, match="not an execution node") as caught:
        nodes.parse_node(text)
    assert "user@host" in (caught.value.hint or "")


def test_ssh_to_a_node_checks_its_host_key_and_never_asks_or_hangs(tmp_path: Path) -> None:
    argv = " ".join(
        nodes.ExecutionNode("n1", key=tmp_path / "k", known_hosts=tmp_path / "kh").ssh()
    )
    for option in (
        "BatchMode=yes",
        "StrictHostKeyChecking=yes",
        f"UserKnownHostsFile={tmp_path / 'kh'}",
        "ServerAliveInterval=5",
        "ServerAliveCountMax=3",
        "IdentitiesOnly=yes",
    ):
        assert option in argv
    assert f"-i {tmp_path / 'k'}" in argv


def test_pins_are_the_controllers_own_versions_with_their_dependencies() -> None:
    found = nodes.pins("3.11")
    for name in ("ansible-core", "ansible-runner", "jinja2", "pyyaml", "cryptography"):
        assert found[name] == importlib.metadata.version(name)
    assert "importlib-metadata" not in found  # ansible-runner wants it on Python < 3.10 only
    assert list(found) == sorted(found)


def _wheel(folder: Path, name: str, version: str) -> None:
    (folder / f"{name.replace('-', '_')}-{version}-py3-none-any.whl").write_bytes(b"")


def test_missing_wheels_names_each_pin_without_its_exact_wheel(tmp_path: Path) -> None:
    wanted = {"ansible-core": "2.19.14", "python-daemon": "3.1.2"}
    assert nodes.missing_wheels(tmp_path / "absent", wanted) == [
        "ansible-core==2.19.14", "python-daemon==3.1.2", "pip",
    ]  # fmt: skip
    _wheel(tmp_path, "ansible-core", "2.19.13")  # another version does not count
    _wheel(tmp_path, "python-daemon", "3.1.2")
    _wheel(tmp_path, "pip", "26.3")
    assert nodes.missing_wheels(tmp_path, wanted) == ["ansible-core==2.19.14"]
    _wheel(tmp_path, "ansible-core", "2.19.14")
    assert nodes.missing_wheels(tmp_path, wanted) == []


def _facts(**versions: str) -> nodes.NodeFacts:
    return nodes.NodeFacts(
        node="root@n1",
        python="3.11.2",
        machine="x86_64",
        free_mb=MappingProxyType({"/tmp": 100}),
        versions=MappingProxyType(versions),
        worker=bool(versions),
    )


def test_a_node_with_other_versions_or_none_is_refused_with_exit_3() -> None:
    wanted = {"ansible-core": "2.19.14", "ansible-runner": "2.4.3"}
    nodes.refuse_unless_ready(
        _facts(**{"ansible-core": "2.19.14", "ansible-runner": "2.4.3"}), wanted
    )
    with pytest.raises(nodes.NodeRefusedError) as caught:
        nodes.refuse_unless_ready(
            _facts(**{"ansible-core": "2.19.14", "ansible-runner": "2.3.1"}), wanted
        )
    assert caught.value.exit_code == ExitCode.REFUSED
    assert "ansible-runner 2.3.1 (controller 2.4.3)" in caught.value.message
    assert (
        caught.value.hint == "patchkit node bootstrap root@n1 (installs the controller's versions)"
    )
    with pytest.raises(nodes.NodeRefusedError, match="not bootstrapped"):
        nodes.refuse_unless_ready(_facts(), wanted)
    assert nodes.mismatches(_facts(**{"ansible-core": "2.19.14"}), wanted) == {
        "ansible-runner": ("2.4.3", "")
    }


def test_python_older_than_3_11_is_not_enough() -> None:
    assert _facts().python_ok
    old = nodes.NodeFacts("n", "3.9.2", "x86_64", MappingProxyType({}))
    assert not old.python_ok
    assert nodes.wheel_tag(_facts()) == "cp311-x86_64"


def _host(name: str, **variables: object) -> Host:
    return Host(name, ("all", "web", "prod"), MappingProxyType(variables))


def test_a_job_carries_its_hosts_alone_with_their_key_and_host_keys(tmp_path: Path) -> None:
    key = tmp_path / "id"
    key.write_text("PRIVATE KEY\n")
    known = tmp_path / "known_hosts"
    known.write_text(
        "10.0.0.2 ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHostTwo\n"
        "10.0.0.3 ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHostThree\n"
        "10.0.0.9 ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOther\n"
    )
    common = f"-o StrictHostKeyChecking=yes -o UserKnownHostsFile={known}"
    hosts = [
        _host(
            n,
            ansible_host=a,
            ansible_ssh_private_key_file=str(key),
            ansible_ssh_common_args=common,
            tier=1,
        )
        for n, a in (("web1", "10.0.0.2"), ("web2", "10.0.0.3"))
    ]
    job = nodes.node_job(nodes.ExecutionNode("n1"), hosts)
    assert job.ssh_key == "PRIVATE KEY\n"
    assert set(job.inventory["all"]["hosts"]) == {"web1", "web2"}
    web1 = job.inventory["all"]["hosts"]["web1"]
    assert web1 == {"ansible_host": "10.0.0.2", "ansible_ssh_common_args": common, "tier": 1}
    assert job.inventory["all"]["children"]["web"]["hosts"] == {"web1": None, "web2": None}
    json.dumps(job.inventory)  # what travels is plain JSON
    assert "HostTwo" in job.known_hosts and "HostThree" in job.known_hosts
    assert "Other" not in job.known_hosts  # not a key of this job's hosts
    unchecked = nodes.node_job(nodes.ExecutionNode("n1"), hosts, host_key_checking=False)
    assert unchecked.known_hosts == ""


def test_a_vaulted_variable_or_two_keys_cannot_go_through_a_node(tmp_path: Path) -> None:
    node = nodes.ExecutionNode("n1")
    vaulted = _host("db1", secret={"__ansible_vault": "$ANSIBLE_VAULT;1.1;AES256\n6162"})
    with pytest.raises(RunnerError, match="host db1 has a vault-encrypted variable"):
        nodes.node_job(node, [vaulted])
    one, two = tmp_path / "one", tmp_path / "two"
    with pytest.raises(RunnerError, match="different SSH keys"):
        nodes.node_job(
            node,
            [
                _host("a", ansible_ssh_private_key_file=str(one)),
                _host("b", ansible_ssh_private_key_file=str(two)),
            ],
        )
    with pytest.raises(RunnerError, match=f"cannot read the SSH key {one}"):
        nodes.node_job(node, [_host("a", ansible_ssh_private_key_file=str(one))])


def test_a_jobs_environment_on_a_node_names_the_nodes_paths_only() -> None:
    env = node_env("/tmp/patchkit-job-abc", "/opt/patchkit-node")
    assert env["PATH"] == "/opt/patchkit-node/bin:/usr/local/bin:/usr/bin:/bin"
    assert env["ANSIBLE_ROLES_PATH"] == "/tmp/patchkit-job-abc/project/roles"
    assert env["ANSIBLE_SSH_CONTROL_PATH_DIR"] == "/tmp/patchkit-job-abc/cp"
    assert env["ANSIBLE_SSH_ARGS"].startswith(
        "-o UserKnownHostsFile=/tmp/patchkit-job-abc/known_hosts "
    )
    assert env["ANSIBLE_HOST_KEY_CHECKING"] == "True"
    assert sys.prefix not in json.dumps(env)  # nothing of the controller's own venv
    unchecked = node_env("/tmp/d", "/opt/v", host_key_checking=False)
    assert "UserKnownHostsFile" not in unchecked["ANSIBLE_SSH_ARGS"]
    assert unchecked["ANSIBLE_HOST_KEY_CHECKING"] == "False"
    with pytest.raises(RunnerError, match="mitogen is not available through an execution node"):
        node_env("/tmp/d", "/opt/v", mitogen=True)


# ---------------------------------------------------------------- patchkit-worker's lease

# A stand-in for 'python -m ansible_runner worker': it records the stream it was given, says
# so, then works for 30 s; on SIGTERM (runner's cancel) it records that and stops.
_FAKE_RUNNER = textwrap.dedent(
    """
    import os, signal, sys, time
    out = os.environ["FAKE_RUNNER_LOG"]
    def canceled(*_):
        open(out + ".term", "w").write("canceled")
        sys.exit(254)
    signal.signal(signal.SIGTERM, canceled)
    data = sys.stdin.buffer.read()
    open(out, "wb").write(data)
    print("started", flush=True)
    time.sleep(float(os.environ.get("FAKE_RUNNER_WORK", "30")))
    sys.exit(0)
    """
)
STREAM = (
    b'{"kwargs": {"playbook": "playbooks/patch.yml", "ident": "a1"}}\n'
    b'{"zipfile": 8}\nUEsFBgAAAAA={"eof": true}\n'
)


@pytest.fixture
def worker_env(tmp_path: Path) -> dict[str, str]:
    package = tmp_path / "fake" / "ansible_runner"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "__main__.py").write_text(_FAKE_RUNNER)
    return {
        **os.environ,
        "PYTHONPATH": str(tmp_path / "fake"),
        "FAKE_RUNNER_LOG": str(tmp_path / "runner.log"),
    }


def _start(env: dict[str, str], lease: float) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, node_worker.__file__, str(lease), "--private-data-dir", "/tmp/x"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        env=env,
    )


def _wait_started(worker: subprocess.Popen[bytes]) -> None:
    assert worker.stdout is not None
    assert worker.stdout.readline() == b"started\n"  # the runner's output is passed through


def test_the_worker_gets_the_stream_up_to_its_eof_and_no_heartbeat(
    worker_env: dict[str, str], tmp_path: Path
) -> None:
    worker = _start(worker_env | {"FAKE_RUNNER_WORK": "0"}, lease=30)
    assert worker.stdin is not None
    worker.stdin.write(STREAM + b"\n\n")  # two heartbeats right after the stream
    worker.stdin.flush()
    _wait_started(worker)
    assert worker.wait(30) == 0
    assert (tmp_path / "runner.log").read_bytes() == STREAM


def test_closing_the_stream_cancels_the_worker(worker_env: dict[str, str], tmp_path: Path) -> None:
    worker = _start(worker_env, lease=30)
    assert worker.stdin is not None
    worker.stdin.write(STREAM)
    worker.stdin.flush()
    _wait_started(worker)
    worker.stdin.close()  # the controller canceled, or its ssh died
    assert worker.wait(30) == 254
    assert (tmp_path / "runner.log.term").read_text() == "canceled"


def test_silence_past_the_lease_cancels_the_worker(
    worker_env: dict[str, str], tmp_path: Path
) -> None:
    worker = _start(worker_env, lease=2)
    assert worker.stdin is not None
    worker.stdin.write(STREAM)
    worker.stdin.flush()
    _wait_started(worker)
    started = time.monotonic()
    assert worker.wait(30) == 254  # no heartbeat, stdin still open: a black-holed link
    assert time.monotonic() - started < 25
    assert (tmp_path / "runner.log.term").read_text() == "canceled"
    worker.stdin.close()


def test_heartbeats_keep_the_worker_going(worker_env: dict[str, str]) -> None:
    worker = _start(worker_env | {"FAKE_RUNNER_WORK": "4"}, lease=2)
    assert worker.stdin is not None
    worker.stdin.write(STREAM)
    worker.stdin.flush()
    _wait_started(worker)
    for _ in range(6):
        time.sleep(1)
        if worker.poll() is not None:
            break
        worker.stdin.write(b"\n")
        worker.stdin.flush()
    assert worker.wait(30) == 0  # the runner's own end, not a cancel


def test_a_stream_cut_before_its_eof_starts_nothing(
    worker_env: dict[str, str], tmp_path: Path
) -> None:
    worker = _start(worker_env, lease=30)
    assert worker.stdin is not None
    worker.stdin.write(STREAM[:40])
    worker.stdin.close()
    # canceled (254), or ended by the SIGTERM before it could set its handler (128 + 15)
    assert worker.wait(30) in (254, 143)
    assert not (tmp_path / "runner.log").exists()  # it never got a whole stream


def test_the_eof_line_is_found_after_the_base64_on_the_same_line() -> None:
    assert node_worker._is_eof(b'UEsFBgAAAAA={"eof": true}\n')
    assert node_worker._is_eof(b'{"eof": true}\n')
    assert not node_worker._is_eof(b'{"kwargs": {"x": "y"}}\n')


# ---------------------------------------------------------------- the command line


@pytest.fixture
def cli(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> Run:
    return in_process(monkeypatch, capsys, "node")


def test_every_node_command_has_help(cli: Run) -> None:
    for command in ("check", "bootstrap", "wheels", "cleanup"):
        done = cli(command, "--help")
        assert done.code == 0 and "Usage: patchkit node " + command in done.out


def test_a_malformed_node_on_the_command_line_is_bad_input(cli: Run) -> None:
    done = cli("check", "ops@")
    assert done.code == ExitCode.BAD_INPUT
    assert "not an execution node: 'ops@'" in done.message
    assert "name it as user@host" in done.message


def test_check_says_which_node_it_cannot_reach_and_exits_1(cli: Run, tmp_path: Path) -> None:
    """Loopback, on a port nothing listens on: ssh is refused at once (no lab needed)."""
    known = tmp_path / "known_hosts"
    known.write_text("")
    done = cli("check", "root@127.0.0.1:9", "--known-hosts", str(known), "--json")
    assert done.code == ExitCode.FAILURES
    (row,) = json.loads(done.out)["nodes"]
    assert row["node"] == "root@127.0.0.1:9" and row["state"] == "unreachable"
    assert "cannot reach execution node root@127.0.0.1:9" in row["problem"]


def test_bootstrap_refuses_an_incomplete_wheel_directory_before_touching_a_node(
    monkeypatch: pytest.MonkeyPatch, cli: Run, tmp_path: Path
) -> None:
    monkeypatch.setattr(nodes, "probe", lambda node: _facts())
    done = cli("bootstrap", "n1", "--wheels", str(tmp_path))
    assert done.code == ExitCode.FAILURES
    assert "the wheels for root@n1 are incomplete" in done.message
    assert "ansible-core==" in done.message and "patchkit node wheels" in done.message


def test_wheels_names_the_directory_it_filled_and_downloads_nothing_it_has(
    monkeypatch: pytest.MonkeyPatch, cli: Run, tmp_path: Path
) -> None:
    for name, version in nodes.pins("3.11").items():
        _wheel(tmp_path, name, version)
    _wheel(tmp_path, "pip", "26.3")

    def refuse(*_args: object, **_kwargs: object) -> None:
        raise AssertionError("downloaded although every wheel is there")

    monkeypatch.setattr(nodes, "download_wheels", refuse)
    done = cli("wheels", "--dest", str(tmp_path))
    assert done.code == 0 and done.out.strip() == str(tmp_path)
