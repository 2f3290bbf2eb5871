"""Execution nodes on real lab hosts (issue 18): host1 and host4 are bootstrapped as nodes and
run jobs for host2 and host3 through ansible-runner's transmit → worker → process stream over
SSH; for the window tests host2 and host3 sit on the lab's far network (``patchkit lab
isolate``), which this machine has no route to.

The wheels come from ``make test`` (``patchkit node wheels``, before the tests: the tests
themselves never reach an index); PATCHKIT_TEST_NODE_WHEELS names another directory.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import threading
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from patchkit import inventory
from patchkit.execution import nodes
from patchkit.execution.runner import LEASE, NodeJob, TaskResult, run_on_node, run_playbook
from patchkit.lab import hosts as lab_hosts
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
)

pytest_plugins = ["tests.integration.postgres"]

WHEELS = Path(os.environ.get("PATCHKIT_TEST_NODE_WHEELS", ROOT / ".venv" / "node-wheels"))
MARKER = "/tmp/patchkit-after-marker"
SLEEP = 10  # seconds the interrupted play sleeps before it would leave its marker


def _node(config: LabConfig, index: int = 1) -> nodes.ExecutionNode:
    return nodes.ExecutionNode(
        str(config.address(index)), key=config.key_path, known_hosts=config.known_hosts
    )


def _addressing(config: LabConfig) -> list[str]:
    return ["--key", str(config.key_path), "--known-hosts", str(config.known_hosts)]


NODES = (1, 4)  # the lab hosts bootstrapped as execution nodes
FAR = (2, 3)  # the hosts they patch


@pytest.fixture(scope="module")
def node(lab: Path, lab_config: LabConfig) -> nodes.ExecutionNode:
    """host1 (and host4), bootstrapped through the CLI as an operator would."""
    assert nodes.missing_wheels(WHEELS, nodes.pins("3.11")) == [], (
        f"no complete wheel set in {WHEELS}: make test downloads it (patchkit node wheels "
        f"--dest {WHEELS})"
    )
    addresses = [str(lab_config.address(i)) for i in NODES]
    done = patchkit_cli(
        "node", "bootstrap", *addresses, *_addressing(lab_config), "--wheels", str(WHEELS),
        "--json",
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert [n["state"] for n in json.loads(done.stdout)["nodes"]] == ["ready", "ready"]
    return _node(lab_config)


def _lab(config: LabConfig, *args: str) -> subprocess.CompletedProcess[str]:
    lab_args = ("--name", config.name, "--subnet", str(config.subnet), "--root", str(config.root))
    return patchkit_cli("lab", *lab_args, *args)


@pytest.fixture
def far(node: nodes.ExecutionNode, lab_config: LabConfig) -> Iterator[None]:
    """host2 and host3 on the far network, which only the nodes reach."""
    hosts = [f"host{i}" for i in FAR]
    via = [a for i in NODES for a in ("--via", f"host{i}")]
    done = _lab(lab_config, "isolate", *hosts, *via, "--json")
    assert done.returncode == 0, done.stdout + done.stderr
    assert json.loads(done.stdout) == {"hosts": hosts, "via": [f"host{i}" for i in NODES]}
    try:
        yield
    finally:
        undone = _lab(lab_config, "isolate", "--undo")
        assert undone.returncode == 0, undone.stdout + undone.stderr


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

    done = patchkit_cli("node", "check", str(lab_config.address(5)), *_addressing(lab_config))
    assert done.returncode == 3, done.stdout + done.stderr
    assert "not bootstrapped" in done.stdout
    assert f"patchkit node bootstrap root@{lab_config.address(5)}" in done.stdout


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


def test_far_hosts_are_out_of_the_controllers_reach_and_in_the_nodes(
    far: None, lab: Path, lab_config: LabConfig, targets: list[Host]
) -> None:
    """The isolation is real: this machine has no route to the far hosts (ssh and Ansible fail
    at once), while both nodes reach them, and they still reach their own apt mirror."""
    for index in FAR:
        direct = subprocess.run(
            ["ssh", "-o", "BatchMode=yes", "-o", "ConnectTimeout=5", "-i", str(lab_config.key_path),
             "-o", f"UserKnownHostsFile={lab_config.known_hosts}",
             f"root@{lab_config.address(index)}", "true"],
            capture_output=True, text=True, timeout=30, check=False,
        )  # fmt: skip
        assert direct.returncode == 255, direct.stderr
        assert "No route to host" in direct.stderr or "unreachable" in direct.stderr
    route = subprocess.run(
        ["ip", "route", "get", str(lab_config.address(FAR[0]))], capture_output=True, text=True
    )
    assert route.returncode != 0 or "unreachable" in route.stdout, route.stdout
    local = run_playbook(
        ROOT / "playbooks" / "lab-check.yml", lab, limit=",".join(h.name for h in targets),
        timeout=120,
    )  # fmt: skip
    assert local.unreachable() == {h.name for h in targets}
    for index in NODES:
        through = run_on_node(
            ROOT / "playbooks" / "lab-check.yml",
            nodes.node_job(_node(lab_config, index), targets),
            timeout=300,
        )
        assert through.status == "successful", through.tasks
        assert through.unreachable() == set()
    status = json.loads(_lab(lab_config, "status", "--json").stdout)
    networks = {h["name"]: h["network"] for h in status["hosts"]}
    assert [networks[f"host{i}"] for i in FAR] == ["far", "far"]
    assert [networks[f"host{i}"] for i in NODES] == ["up", "up"]
    refreshed = on_host(lab_config, FAR[0], "apt-get update 2>&1 | tail -1")
    assert "Reading package lists" in refreshed, refreshed  # the far network's own mirror


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


def _jobs_on(config: LabConfig, index: int) -> str:
    """How many job directories node ``index`` holds (as text: ``0`` when none)."""
    return on_host(config, index, "ls /tmp | grep -c patchkit-job- || true")


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
    assert _jobs_on(lab_config, 1) == "0"


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


def _node_policy(tmp_path: Path, lab_config: LabConfig, *changes: tuple[str, str]) -> str:
    """The lab policy for host2 and host3 alone, both patched through host1 or host4 (package
    snapshots: the lab backend works from the controller), snapshots released at the run's end
    (through the nodes too)."""
    text = Path(POLICY).read_text()
    for old, new in (
        ("classification:\n", "scope:\n  include: [host2, host3]\n\nclassification:\n"),
        ("backend: lab, retention: 1d", "backend: package, retention: 0s"),
        *changes,
    ):
        assert old in text, old
        text = text.replace(old, new, 1)
    text += (
        "\nexecution:\n"
        "  node_groups:\n"
        "    - name: lab-nodes\n"
        f"      nodes: [{', '.join(f'root@{lab_config.address(i)}' for i in NODES)}]\n"
        f"      key: {lab_config.key_path}\n"
        f"      known_hosts: {lab_config.known_hosts}\n"
        "      hosts: [host2, host3]\n"
    )
    path = tmp_path / "policy.yml"
    path.write_text(text)
    return str(path)


def _started(
    plan_id: str, policy: str, lab: Path, env: dict[str, str], *, session: bool = False
) -> subprocess.Popen[str]:
    """``patchkit run`` of ``plan_id`` as a process of its own (a controller), not waited for;
    ``session``: in a session of its own, as a shell's foreground job is."""
    argv = [str(ROOT / ".venv" / "bin" / "patchkit"), "run", plan_id, "-p", policy]
    return subprocess.Popen(
        [*argv, "-i", str(lab), "--json"], env=os.environ | env, text=True,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=session,
    )  # fmt: skip


def _sessions(config: LabConfig, index: int, since: int) -> list[str]:
    """Where host ``index``'s sshd accepted sessions from since ``since`` (epoch seconds)."""
    log = on_host(config, index, f"journalctl -q -u ssh --since @{since} --no-pager")
    return [
        line.split(" from ")[1].split()[0]
        for line in log.splitlines()
        if "Accepted publickey" in line
    ]


def _packages(config: LabConfig, index: int) -> dict[str, str]:
    shown = on_host(config, index, "dpkg-query -W -f '${Package} ${Version}\\n' 'demo-*'")
    return dict(line.split() for line in shown.splitlines())


def _scoped(path: str, tmp_path: Path, name: str, *hosts: str) -> str:
    """``path``'s policy for ``hosts`` alone, written as ``name``."""
    text = (
        Path(path)
        .read_text()
        .replace(
            "scope:\n  include: [host2, host3]\n", f"scope:\n  include: [{', '.join(hosts)}]\n", 1
        )
    )
    out = tmp_path / name
    out.write_text(text)
    return str(out)


def _plan(lab: Path, env: dict[str, str], policy: str) -> str:
    """The id of a plan made from what the ledger holds (no new assessment)."""
    done = patchkit_cli("plan", "-p", policy, "-i", str(lab), "--format", "json", env=env)
    assert done.returncode == 0, done.stderr
    return str(json.loads(done.stdout)["id"])


def test_two_controllers_patch_and_roll_back_far_hosts_through_the_nodes(
    far: None,
    lab: Path,
    lab_config: LabConfig,
    postgres_server: Any,
    postgres_database: str,
    tmp_path: Path,
    pristine: None,
) -> None:
    """The whole path to hosts this machine cannot reach, by two controller processes on one
    PostgreSQL ledger at the same time, one far host each: assess (through a node), snapshot,
    patch, reboot, verify; demo-svc 1.1 breaks its health check, so each host is rolled back
    to its package snapshot, which is then released: all of it through a node. A third plan
    wanting both hosts is refused (exit 3) naming a running controller; runs and the run
    reports say which controller and which node ran each host."""
    env = {
        "PATCHKIT_LEDGER": postgres_server.url(postgres_database),
        "PATCHKIT_LAB_ROOT": str(lab_config.root),
    }
    both = _node_policy(tmp_path, lab_config)
    policies = {
        "host2": _scoped(both, tmp_path, "host2.yml", "host2"),
        "host3": _scoped(both, tmp_path, "host3.yml", "host3"),
    }
    since = int(on_host(lab_config, 2, "date +%s")) + 1
    time.sleep(1.1)  # that session's own log line is before ``since``
    overlap = planned_id(lab, env, both)  # assess.yml went through a node: no route here
    shown = patchkit_cli("plan", "-p", both, "-i", str(lab), "--format", "json", env=env)
    body = json.loads(shown.stdout)
    placed = {h["host"]: h["node_group"] for b in body["batches"] for h in b["hosts"]}
    assert placed == {"host2": "lab-nodes", "host3": "lab-nodes"}
    assert len(body["settings"]["node_groups"][0]["nodes"]) == 2
    plans = {name: _plan(lab, env, policy) for name, policy in policies.items()}
    for plan_id in (*plans.values(), overlap):
        approve(plan_id, env)
    controllers = {n: _started(plans[n], policies[n], lab, env) for n in policies}
    ledger = Ledger(env["PATCHKIT_LEDGER"])
    deadline = time.monotonic() + 120
    while len(ledger.locks(["host2", "host3"])) < 2:  # both controllers hold their host
        assert time.monotonic() < deadline, "the two runs did not both start"
        for proc in controllers.values():
            assert proc.poll() is None, proc.communicate()
        time.sleep(0.3)
    refused = patchkit_cli("run", overlap, "-p", both, "-i", str(lab), env=env)
    assert refused.returncode == 3, refused.stdout + refused.stderr
    pids = [p.pid for p in controllers.values()]
    assert any(f":{pid}" in refused.stderr for pid in pids), (refused.stderr, pids)
    for proc in controllers.values():
        out, err = proc.communicate(timeout=300)
        assert proc.returncode == 1, out + err  # the host failed verification
    # the hosts' own sshd saw everything come from a node; the lab's log reading comes from
    # the host itself (its console), never from this machine
    node_addresses = {str(lab_config.address(i)) for i in NODES}
    for index in FAR:
        sources = set(_sessions(lab_config, index, since))
        assert sources & node_addresses, sources
        assert sources <= node_addresses | {str(lab_config.address(index))}, sources
        assert _packages(lab_config, index) == {  # back where it was: the snapshot's versions
            "demo-app": "1.0", "demo-kernel": "1.0", "demo-lib": "1.0", "demo-svc": "1.0"
        }  # fmt: skip
    runs = {r["plan"]: r for r in ledger.runs()}
    first, second = (runs[plans[n]] for n in ("host2", "host3"))
    assert first["started"] < second["ended"] and second["started"] < first["ended"]
    node_names = {f"root@{a}" for a in node_addresses}
    for name, proc in controllers.items():
        run = runs[plans[name]]
        assert run["status"] == "halted", run
        assert [c.rsplit(":", 1)[1] for c in run["controllers"]] == [str(proc.pid)]
        assert len(run["nodes"]) == 1 and run["nodes"][0] in node_names  # one node per run
        record = ledger.run_record(run["id"])
        assert record is not None
        phases = {p["phase"]: p["status"] for p in record["phases"]}
        for phase in ("precheck", "snapshot", "patch", "reboot", "rollback"):
            assert phases[phase] == "ok", (name, phase, phases)
        assert phases["verify"] == "failed", phases
        shown = patchkit_cli("report", "run", run["id"], "--format", "json", env=env)
        (host,) = json.loads(shown.stdout)["hosts"]
        assert host["host"] == name and host["outcome"] == "rolled back"
        assert host["controller"].endswith(f":{proc.pid}") and host["via"] == run["nodes"][0]
    assert ledger.unreleased_snapshots() == []  # release.yml reached them through a node too


def test_a_node_cut_mid_batch_leaves_its_host_to_resume_while_the_window_goes_on(
    far: None,
    lab: Path,
    lab_config: LabConfig,
    env: dict[str, str],
    tmp_path: Path,
    pristine: None,
) -> None:
    """``execution.on_node_lost: continue``, one far host per batch. The node running batch 1
    loses its link to the controller while its host reboots: that host gets no verdict (no
    failure, no rollback on a guess) and the window goes on: batch 2's host is patched through
    the group's other node. The run ends interrupted naming the node and the host left without
    a verdict; the cut node's worker cancels itself when its lease runs out, and ``resume``
    finishes that host through the other node. (The default, ``halt``, stops the run at the
    loss: tests/unit/test_batch_loop.py.)"""
    policy = _node_policy(tmp_path, lab_config, ("  batch_size: 2\n", "  batch_size: 1\n"))
    text = Path(policy).read_text()
    Path(policy).write_text(
        text.replace("\nexecution:\n", "\nexecution:\n  on_node_lost: continue\n")
    )
    assert _lab(lab_config, "updates", "--withdraw", "demo-svc").returncode == 0
    try:
        plan_id = planned_id(lab, env, policy)
        approve(plan_id, env)
        for index in FAR:  # the reboot wait is where the cut comes
            assert _lab(lab_config, "fault", f"host{index}", "boot-delay", "15").returncode == 0
        running = _started(plan_id, policy, lab, env)
        ledger = Ledger(env["PATCHKIT_LEDGER"])
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline:
            record = ledger.run_record()
            done = [
                p["host"] for p in (record or {}).get("phases", ())
                if p["phase"] == "patch" and p["status"] == "ok"
            ]  # fmt: skip
            if done:
                break
            assert running.poll() is None, running.communicate()
            time.sleep(0.5)
        else:
            raise AssertionError("the first batch's host was not patched in time")
        (left,) = done  # batch 1's host, now rebooting
        (later,) = [f"host{i}" for i in FAR if f"host{i}" != left]
        busy = [
            i for i in NODES if _jobs_on(lab_config, i)
            != "0"
        ]  # fmt: skip
        assert len(busy) == 1, busy
        (cut,) = busy
        (other,) = [i for i in NODES if i != cut]
        assert _lab(lab_config, "fault", f"host{cut}", "net-down").returncode == 0
        cut_at = time.monotonic()
        out, err = running.communicate(timeout=300)
        assert running.returncode == 1, out + err
        record = ledger.run_record()
        assert record is not None and record["status"] == "interrupted", record
        reason = str(record.get("reason"))
        said = f"execution node root@{lab_config.address(cut)} (group lab-nodes) was lost"
        assert said in reason and f"{left} have no verdict" in reason, reason
        assert "the rest of the window went on" in reason, reason
        statuses = {(p["host"], p["phase"]): p["status"] for p in record["phases"]}
        assert "rollback" not in {phase for _, phase in statuses}
        assert "failed" not in statuses.values()
        assert (left, "verify") not in statuses  # lost in its reboot: no verdict
        # the window went on: batch 2's host was patched and verified through the other node
        assert statuses[(later, "verify")] == "ok", statuses
        vias = {p["via"] for p in record["phases"] if p["host"] == later}
        assert vias == {f"root@{lab_config.address(other)}"}, vias
        assert _packages(lab_config, int(later.removeprefix("host")))["demo-lib"] == "1.1"
        for index in FAR:
            hosts_cleared = _lab(lab_config, "fault", f"host{index}", "clear")
            assert hosts_cleared.returncode == 0
        # the cut node's worker outlives its lease by nothing: let it run out before resuming
        time.sleep(max(0.0, cut_at + LEASE + 5 - time.monotonic()))
        lab_hosts.wait_ssh(lab_config, FAR)  # their boot delay of the cut try is running out
        index_left = int(left.removeprefix("host"))
        since = int(on_host(lab_config, index_left, "date +%s")) + 1
        time.sleep(1.1)
        resumed = patchkit_cli(
            "resume", record["id"], "-p", policy, "-i", str(lab), "--json", env=env
        )
        assert resumed.returncode == 0, resumed.stdout + resumed.stderr
        final = ledger.run_record()
        assert final is not None and final["status"] == "completed", final
        last = {p["host"]: p["via"] for p in final["phases"]}  # the resumed phases come last
        assert last == {f"host{i}": f"root@{lab_config.address(other)}" for i in FAR}, last
        assert _packages(lab_config, index_left)["demo-lib"] == "1.1"
        sources = set(_sessions(lab_config, index_left, since))
        assert str(lab_config.address(other)) in sources, sources
        assert str(lab_config.address(cut)) not in sources, sources
    finally:
        _lab(lab_config, "updates", "--publish", "demo-svc")
        for index in NODES:
            _lab(lab_config, "fault", f"host{index}", "net-up")
    # back on the network, the cut node holds nothing of the job (the lease deleted it)
    assert _jobs_on(lab_config, cut) == "0"


def test_ctrl_c_of_a_run_cancels_the_jobs_on_the_nodes_cleanly(
    far: None,
    lab: Path,
    lab_config: LabConfig,
    env: dict[str, str],
    tmp_path: Path,
    pristine: None,
) -> None:
    """Ctrl-C as a terminal sends it, to the run's whole process group: patchkit stops the
    run (interrupted by the operator, not a lost node), the node's job is canceled through the
    stream and leaves nothing on the node, and the hosts are free again."""
    policy = _node_policy(tmp_path, lab_config)
    plan_id = planned_id(lab, env, policy)
    approve(plan_id, env)
    proc = _started(plan_id, policy, lab, env, session=True)
    assert proc.stdout is not None
    for line in proc.stdout:  # wait until the batch is patching on a node
        if json.loads(line).get("task") == "patchkit snapshot result":
            os.killpg(proc.pid, signal.SIGINT)  # the foreground group: patchkit and its ssh
            break
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 1, err
    assert "Traceback" not in err
    ledger = Ledger(env["PATCHKIT_LEDGER"])
    record = ledger.run_record()
    assert record is not None and record["status"] == "interrupted", record
    assert "stopped by the operator" in record["reason"], record["reason"]
    assert "was lost" not in record["reason"]
    assert not [p for p in record["phases"] if p["phase"] == "rollback"]
    assert ledger.locks(["host2", "host3"]) == []
    deadline = time.monotonic() + 30
    left: list[int] = [0]
    while left and time.monotonic() < deadline:
        left = [i for i in NODES if _jobs_on(lab_config, i) != "0"]
        time.sleep(0.5)
    assert left == [], "a job directory is left on a node"


def test_cleanup_removes_what_a_killed_worker_left(
    node: nodes.ExecutionNode, lab_config: LabConfig
) -> None:
    """What a SIGKILLed worker leaves: its job directory, with the hosts' key in it."""
    left = "/tmp/patchkit-job-killed0000/env"
    on_host(lab_config, 1, f"mkdir -p {left} && echo KEY > {left}/ssh_key && chmod 600 {left}/*")
    done = patchkit_cli("node", "cleanup", str(lab_config.address(1)), *_addressing(lab_config))
    assert done.returncode == 0, done.stdout + done.stderr
    assert "Removed 1 private data dir(s)" in done.stdout
    assert _jobs_on(lab_config, 1) == "0"
