"""Execution nodes on real lab hosts (issue 18): host1 is bootstrapped as a node and runs jobs
for the other hosts through ansible-runner's transmit → worker → process stream over SSH.

The wheels come from ``make test`` (``patchkit node wheels``, before the tests: the tests
themselves never reach an index); PATCHKIT_TEST_NODE_WHEELS names another directory.
"""

from __future__ import annotations

import json
import os
import subprocess
import threading
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

from patchkit import inventory
from patchkit.execution import nodes
from patchkit.execution.runner import NodeJob, TaskResult, run_on_node, run_playbook
from patchkit.lab.config import LabConfig
from patchkit.ledger import Ledger
from patchkit.model import Host
from tests.integration.conftest import (
    PLAYBOOKS,
    POLICY,
    ROOT,
    approve,
    on_host,
    patchkit_cli,
    planned_id,
    run,
    states,
)

WHEELS = Path(os.environ.get("PATCHKIT_TEST_NODE_WHEELS", ROOT / ".venv" / "node-wheels"))
MARKER = "/tmp/patchkit-after-marker"
SLEEP = 10  # seconds the interrupted play sleeps before it would leave its marker


def _node(config: LabConfig, index: int = 1) -> nodes.ExecutionNode:
    return nodes.ExecutionNode(
        str(config.address(index)), key=config.key_path, known_hosts=config.known_hosts
    )


def _addressing(config: LabConfig) -> list[str]:
    return ["--key", str(config.key_path), "--known-hosts", str(config.known_hosts)]


@pytest.fixture(scope="module")
def node(lab: Path, lab_config: LabConfig) -> nodes.ExecutionNode:
    """host1, bootstrapped through the CLI as an operator would."""
    assert nodes.missing_wheels(WHEELS, nodes.pins("3.11")) == [], (
        f"no complete wheel set in {WHEELS}: make test downloads it (patchkit node wheels "
        f"--dest {WHEELS})"
    )
    address = str(lab_config.address(1))
    done = patchkit_cli(
        "node", "bootstrap", address, *_addressing(lab_config), "--wheels", str(WHEELS), "--json"
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["nodes"][0]["state"] == "ready"
    return _node(lab_config)


@pytest.fixture
def targets(lab: Path, lab_config: LabConfig) -> list[Host]:
    """host2 and host3, as the inventory has them."""
    wanted = {str(lab_config.address(i)) for i in (2, 3)}
    return [h for h in inventory.load(lab) if str(h.var("ansible_host")) in wanted]


@pytest.fixture
def no_marker(lab_config: LabConfig) -> Iterator[None]:
    for index in (2, 3):
        on_host(lab_config, index, f"rm -f {MARKER}")
    yield
    for index in (2, 3):
        on_host(lab_config, index, f"rm -f {MARKER}")


def _outcomes(tasks: tuple[TaskResult, ...]) -> Counter[tuple[str, str, str, str]]:
    return Counter((t.host, t.task, t.action, t.status) for t in tasks)


def test_check_shows_a_ready_node_and_refuses_one_never_bootstrapped(
    node: nodes.ExecutionNode, lab_config: LabConfig
) -> None:
    done = patchkit_cli(
        "node", "check", str(lab_config.address(1)), *_addressing(lab_config), "--json"
    )
    assert done.returncode == 0, done.stdout + done.stderr
    (ready,) = json.loads(done.stdout)["nodes"]
    assert ready["state"] == "ready"
    assert ready["ansible_core"] == nodes.pins("3.11")["ansible-core"]
    assert ready["differences"] == {} and ready["worker"] is True
    assert ready["free_mb"]["/tmp"] > 0

    done = patchkit_cli("node", "check", str(lab_config.address(4)), *_addressing(lab_config))
    assert done.returncode == 3, done.stdout + done.stderr
    assert "not bootstrapped" in done.stdout
    assert f"patchkit node bootstrap root@{lab_config.address(4)}" in done.stdout


def test_check_refuses_a_node_with_another_ansible_runner(
    node: nodes.ExecutionNode, lab_config: LabConfig
) -> None:
    """The stream itself would not notice (an older runner runs the job silently): check does."""
    site = "/opt/patchkit-node/lib/python3.11/site-packages"
    metadata = f"{site}/ansible_runner-2.4.3.dist-info/METADATA"
    on_host(lab_config, 1, f"sed -i 's/^Version: 2.4.3$/Version: 2.4.2/' {metadata}")
    try:
        done = patchkit_cli("node", "check", str(lab_config.address(1)), *_addressing(lab_config))
        assert done.returncode == 3, done.stdout + done.stderr
        assert "ansible-runner 2.4.2 (controller 2.4.3)" in done.stdout
    finally:
        on_host(lab_config, 1, f"sed -i 's/^Version: 2.4.2$/Version: 2.4.3/' {metadata}")


def test_check_names_a_node_it_cannot_reach(lab_config: LabConfig, tmp_path: Path) -> None:
    empty = tmp_path / "known_hosts"
    empty.write_text("")
    done = patchkit_cli(
        "node", "check", str(lab_config.address(1)), "--key", str(lab_config.key_path),
        "--known-hosts", str(empty),
    )  # fmt: skip
    assert done.returncode == 1, done.stdout + done.stderr
    assert f"root@{lab_config.address(1)}: unreachable" in done.stdout
    assert "Host key verification failed" in done.stdout


def test_a_job_through_the_node_reports_what_a_local_job_does_live(
    node: nodes.ExecutionNode, lab: Path, targets: list[Host]
) -> None:
    seen: list[TaskResult] = []
    job = nodes.node_job(node, targets)
    remote = run_on_node(
        ROOT / "playbooks" / "lab-check.yml",
        job,
        timeout=300,
        on_task=seen.append,
    )
    local = run_playbook(
        ROOT / "playbooks" / "lab-check.yml",
        lab,
        limit=",".join(h.name for h in targets),
        timeout=300,
    )
    assert remote.status == local.status == "successful"
    assert remote.rc == 0
    assert _outcomes(remote.tasks) == _outcomes(local.tasks)
    assert seen == list(remote.tasks)  # every outcome reached the caller as it happened
    # the same boot ids: the node reached the very hosts the controller does
    for host in targets:
        ours = remote.task(host.name, "Report the lab check")
        theirs = local.task(host.name, "Report the lab check")
        assert ours is not None and theirs is not None
        assert ours.result["msg"]["boot_id"] == theirs.result["msg"]["boot_id"]


def test_a_host_whose_key_the_controller_does_not_know_is_refused_through_the_node(
    node: nodes.ExecutionNode,
    targets: list[Host],
    lab_config: LabConfig,
    no_marker: None,
) -> None:
    """The node checks the hosts' keys against what the controller sent, not its own files.
    (Also the control for the tests below: uninterrupted, the play leaves its marker.)"""
    job = nodes.node_job(node, targets)
    kept = targets[0]
    address = str(kept.var("ansible_host"))
    lines = [line for line in job.known_hosts.splitlines() if not line.startswith(address + " ")]
    trimmed = NodeJob(
        name=job.name, ssh=job.ssh, venv=job.venv, inventory=job.inventory,
        ssh_key=job.ssh_key, known_hosts="".join(f"{line}\n" for line in lines),
    )  # fmt: skip
    result = run_on_node(
        PLAYBOOKS / "sleep-then-mark.yml", trimmed, extravars={"sleep_seconds": 0}, timeout=120
    )
    assert result.unreachable() == {kept.name}
    (refused,) = [t for t in result.tasks if t.host == kept.name]
    assert f"the SSH key of {address} is not in known_hosts" in refused.message
    other = targets[1]
    assert {t.host for t in result.tasks if t.status in ("ok", "changed")} == {other.name}
    assert _marked(lab_config) == [_index(lab_config, other)]


def _index(config: LabConfig, host: Host) -> int:
    return next(i for i in (2, 3) if str(config.address(i)) == str(host.var("ansible_host")))


def _marked(config: LabConfig) -> list[int]:
    return [i for i in (2, 3) if on_host(config, i, f"test -e {MARKER} && echo y || true") == "y"]


def test_cancel_stops_the_job_on_the_node(
    node: nodes.ExecutionNode,
    targets: list[Host],
    lab_config: LabConfig,
    no_marker: None,
) -> None:
    started = time.monotonic()
    result = run_on_node(
        PLAYBOOKS / "sleep-then-mark.yml",
        nodes.node_job(node, targets),
        extravars={"sleep_seconds": SLEEP},
        timeout=300,
        cancel=lambda: time.monotonic() - started > 3,
    )
    assert result.status == "canceled"
    # past the sleep: a job still running would have left the marker by now
    time.sleep(max(0.0, started + SLEEP + 6 - time.monotonic()))
    assert _marked(lab_config) == []
    assert on_host(lab_config, 1, "ls /tmp | grep -c patchkit-job- || true") == "0"


def test_a_cut_connection_stops_the_job_on_the_node(
    node: nodes.ExecutionNode,
    targets: list[Host],
    lab_config: LabConfig,
    no_marker: None,
) -> None:
    """Killing the controller's ssh (the controller died, Ctrl-C) leaves the worker without its
    lease: it is canceled on the node, and the run here says the hosts were lost."""
    found: dict[str, object] = {}

    def run() -> None:
        found["result"] = run_on_node(
            PLAYBOOKS / "sleep-then-mark.yml",
            nodes.node_job(node, targets),
            extravars={"sleep_seconds": SLEEP},
            timeout=300,
        )

    started = time.monotonic()
    thread = threading.Thread(target=run)
    thread.start()
    time.sleep(4)
    killed = subprocess.run(["pkill", "-KILL", "-f", "^ssh .*bin/patchkit-worker"], check=False)
    assert killed.returncode == 0, "no ssh client to kill"
    thread.join(120)
    result = found["result"]
    assert getattr(result, "status", None) == "lost"
    time.sleep(max(0.0, started + SLEEP + 6 - time.monotonic()))
    assert _marked(lab_config) == []


# ---------------------------------------------------------------- a patch window through the node


def _node_policy(tmp_path: Path, lab_config: LabConfig, known_hosts: Path) -> str:
    """The lab policy for host2 and host3 alone, both patched through host1 (package snapshots:
    the lab backend works from the controller)."""
    text = Path(POLICY).read_text()
    for old, new in (
        ("classification:\n", "scope:\n  include: [host2, host3]\n\nclassification:\n"),
        ("backend: lab,", "backend: package,"),
    ):
        assert old in text, old
        text = text.replace(old, new, 1)
    text += (
        "\nexecution:\n"
        "  node_groups:\n"
        "    - name: lab-nodes\n"
        f"      nodes: [root@{lab_config.address(1)}]\n"
        f"      key: {lab_config.key_path}\n"
        f"      known_hosts: {known_hosts}\n"
        "      hosts: [host2, host3]\n"
    )
    path = tmp_path / "policy.yml"
    path.write_text(text)
    return str(path)


def test_a_window_patches_and_rolls_back_its_hosts_through_the_node(
    node: nodes.ExecutionNode,
    lab: Path,
    lab_config: LabConfig,
    env: dict[str, str],
    tmp_path: Path,
    pristine: None,
) -> None:
    """The whole path through the node: snapshot, patch, reboot, verify; demo-svc 1.1 breaks
    its health check, so both hosts are rolled back to their package snapshots, also there."""
    policy = _node_policy(tmp_path, lab_config, lab_config.known_hosts)
    plan_id = planned_id(lab, env, policy)
    shown = patchkit_cli("plan", "-p", policy, "-i", str(lab), "--format", "json", env=env)
    body = json.loads(shown.stdout)
    placed = {h["host"]: h["node_group"] for b in body["batches"] for h in b["hosts"]}
    assert placed == {"host2": "lab-nodes", "host3": "lab-nodes"}
    assert body["settings"]["node_groups"][0]["nodes"] == [f"root@{lab_config.address(1)}"]
    approve(plan_id, env)
    since = int(on_host(lab_config, 2, "date +%s")) + 1
    time.sleep(1.1)  # that session's own log line is before ``since``
    assert run(lab, env, plan_id, policy) == 1  # the hosts failed verification
    # the hosts' own sshd saw the run come from the node, not from the controller: from the
    # controller, only the session reading the log itself
    log = on_host(lab_config, 2, f"journalctl -q -u ssh --since @{since} --no-pager")
    accepted = [line for line in log.splitlines() if "Accepted publickey" in line]
    assert any(f"from {lab_config.address(1)} " in line for line in accepted), log
    assert len([line for line in accepted if f"from {lab_config.gateway} " in line]) == 1, log
    after = states(lab, "host2,host3")
    for row in after.values():  # back where they were: the snapshot's versions
        assert row.packages == {
            "demo-app": "1.0", "demo-kernel": "1.0", "demo-lib": "1.0", "demo-svc": "1.0"
        }  # fmt: skip
    record = Ledger(env["PATCHKIT_LEDGER"]).run_record()
    assert record is not None and record["status"] == "halted"
    phases = {
        (p["host"], p["phase"]): p["status"] for p in record["phases"] if p["phase"] != "rollback"
    }
    for name in ("host2", "host3"):
        for phase in ("precheck", "snapshot", "patch", "reboot"):
            assert phases[(name, phase)] == "ok", (name, phase)
        assert phases[(name, "verify")] == "failed"
    rollbacks = {p["host"]: p["status"] for p in record["phases"] if p["phase"] == "rollback"}
    assert rollbacks == {"host2": "ok", "host3": "ok"}


def test_cleanup_removes_what_a_killed_worker_left(
    node: nodes.ExecutionNode, lab_config: LabConfig
) -> None:
    """What a SIGKILLed worker leaves: its job directory, with the hosts' key in it."""
    left = "/tmp/patchkit-job-killed0000/env"
    on_host(lab_config, 1, f"mkdir -p {left} && echo KEY > {left}/ssh_key && chmod 600 {left}/*")
    done = patchkit_cli("node", "cleanup", str(lab_config.address(1)), *_addressing(lab_config))
    assert done.returncode == 0, done.stdout + done.stderr
    assert "Removed 1 private data dir(s)" in done.stdout
    assert on_host(lab_config, 1, "ls /tmp | grep -c patchkit-job- || true") == "0"
