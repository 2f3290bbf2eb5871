"""The one module that talks to ansible-runner. Everything else sees typed results.

Follows what was checked on this machine (shared/ANSIBLE-NOTES.md): a fresh private data dir per
run, results kept from ``event_handler`` (never by re-reading ``Runner.events``), the venv's bin
on PATH (runner needs ``ansible-playbook``), ``timeout=`` for a job timeout that applies, and fast
SSH defaults (pipelining, ControlPersist).

Two safety rules hold for every job. Host keys are checked: ansible-runner turns checking off
unless the job's environment says otherwise, and an environment variable outranks ansible.cfg, so
``ANSIBLE_HOST_KEY_CHECKING`` is always set here (an inventory opts a host out in Ansible's own
way: ``ansible_host_key_checking: false`` or ``ansible_ssh_common_args``). And the job sees only
an allow-list of the controller's environment: runner copies the whole process environment into
the job (and into its artifact files), which would hand the ledger URL with its password and the
webhook tokens to every play.
"""

from __future__ import annotations

import contextlib
import fnmatch
import importlib.util
import json
import logging
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any

from ansible_runner.interface import init_runner
from ansible_runner.streaming import Transmitter

from patchkit import content
from patchkit.errors import RunnerError

log = logging.getLogger(__name__)

# runner event name -> our task status (changed is refined from the result)
_STATUSES = {
    "runner_on_ok": "ok",
    "runner_on_failed": "failed",
    "runner_on_skipped": "skipped",
    "runner_on_unreachable": "unreachable",
}


@dataclass(frozen=True)
class TaskResult:
    """One task's outcome on one host, as a module returned it."""

    host: str
    task: str
    action: str
    status: str  # ok / changed / failed / skipped / unreachable
    result: Mapping[str, Any]
    duration: float | None = None
    via: str = ""  # the execution node that ran it; "": the controller itself

    @property
    def message(self) -> str:
        return str(self.result.get("msg", ""))


@dataclass(frozen=True)
class PlaybookResult:
    """What one ansible-runner invocation did, host by host."""

    # successful / failed / timeout / canceled; lost: the stream from an execution node broke
    # mid-job, so the hosts' last tasks may have run unobserved
    status: str
    rc: int
    tasks: tuple[TaskResult, ...]
    hosts: tuple[str, ...] = field(default=())

    def for_host(self, host: str) -> tuple[TaskResult, ...]:
        return tuple(t for t in self.tasks if t.host == host)

    def unreachable(self) -> set[str]:
        return {t.host for t in self.tasks if t.status == "unreachable"}

    def failed(self) -> set[str]:
        return {t.host for t in self.tasks if t.status == "failed"}

    def task(self, host: str, name: str) -> TaskResult | None:
        """The last result of the task called ``name`` on ``host``."""
        found = [t for t in self.tasks if t.host == host and t.task == name]
        return found[-1] if found else None


def _freeze(value: Any) -> Any:
    if isinstance(value, dict):
        return MappingProxyType({k: _freeze(v) for k, v in value.items()})
    if isinstance(value, list):
        return tuple(_freeze(v) for v in value)
    return value


def task_result(event: Mapping[str, Any]) -> TaskResult | None:
    """Turn a runner event into a TaskResult, or None for events that are not task outcomes."""
    status = _STATUSES.get(str(event.get("event", "")))
    if status is None:
        return None
    data = event.get("event_data", {})
    res = data.get("res", {}) or {}
    if status == "ok" and res.get("changed"):
        status = "changed"
    if status == "unreachable":
        res = dict(res) | {"msg": _explain_unreachable(str(res.get("msg", "")))}
    return TaskResult(
        host=str(data.get("host", "")),
        task=str(data.get("task", "")),
        action=str(data.get("task_action", "")),
        status=status,
        result=_freeze(dict(res)),
        duration=data.get("duration"),
    )


_CHANGED_FOR = re.compile(r"Host key for (\S+) has changed")
_OFFENDING = re.compile(r"Offending \S+ key in (\S+:\d+)")
_UNKNOWN_FOR = re.compile(r"host key is known for (\S+)")


def _explain_unreachable(message: str) -> str:
    """ssh's host key refusals in one line, with what to do (its own banner is 15 lines)."""
    if "REMOTE HOST IDENTIFICATION HAS CHANGED" in message:
        host = _CHANGED_FOR.search(message)
        entry = _OFFENDING.search(message)
        address = host.group(1) if host else "ADDRESS"
        recorded = f" ({entry.group(1)})" if entry else ""
        return (
            f"refused: the SSH key of {address} is not the one in known_hosts{recorded}: the "
            "host was rebuilt, or someone is in the way; check it out of band, then replace "
            f"its entry (ssh-keygen -R {address}, and add the new key)"
        )
    if "Host key verification failed" in message:
        host = _UNKNOWN_FOR.search(message)
        address = host.group(1) if host else "ADDRESS"
        return (
            f"refused: the SSH key of {address} is not in known_hosts; add it once its "
            f"fingerprint is checked (ssh-keyscan {address}), or opt the host out in the "
            "inventory (ansible_host_key_checking: false)"
        )
    return message


def mitogen_strategy_dir() -> Path | None:
    """Where mitogen's Ansible strategy plugins are, or None when mitogen is not installed."""
    spec = importlib.util.find_spec("ansible_mitogen")
    if spec is None or not spec.submodule_search_locations:
        return None
    found = Path(next(iter(spec.submodule_search_locations))) / "plugins" / "strategy"
    return found if found.is_dir() else None


# What a job keeps of the controller's environment: what ansible-playbook, ssh (agent, Kerberos)
# and the commands delegated to localhost need, the user's own Ansible settings, and runner's own
# additions (AWX_*). Anything else (PATCHKIT_LEDGER, tokens, cloud credentials) stays behind.
_KEEP = frozenset(
    {
        "PATH",
        "HOME",
        "USER",
        "LOGNAME",
        "SHELL",
        "LANG",
        "LANGUAGE",
        "TZ",
        "TERM",
        "TMPDIR",
        "SSH_AUTH_SOCK",
        "KRB5CCNAME",
        "KRB5_CONFIG",
        "ORIGINAL_STDOUT_CALLBACK",
        "AD_HOC_COMMAND_ID",
    }
)
_KEEP_PREFIXES = ("ANSIBLE_", "LC_", "AWX_", "RUNNER_")
# patchkit's own settings (the ledger URL holds a password) never reach a play, whatever the
# policy passes on
_NEVER = "PATCHKIT_"


def job_environment(env: Mapping[str, str], passed: Sequence[str] = ()) -> dict[str, str]:
    """The part of ``env`` a playbook may see: the allow-list above, and the variables whose
    names match a glob in ``passed`` (the policy's ``connection.environment``: what a dynamic
    inventory or a lookup on the controller needs, such as ``AWS_*``)."""
    return {
        k: v
        for k, v in env.items()
        if not k.startswith(_NEVER)
        and (
            k in _KEEP
            or k.startswith(_KEEP_PREFIXES)
            or any(fnmatch.fnmatchcase(k, glob) for glob in passed)
        )
    }


def ansible_env(*, mitogen: bool = False, host_key_checking: bool = True) -> dict[str, str]:
    """Environment for ansible-playbook: our venv first on PATH, tuned SSH, our roles.

    ``host_key_checking`` False (a policy's explicit choice) lets ssh accept any host key.
    ``mitogen`` swaps the linear strategy for mitogen's (same order of tasks, one persistent
    Python per host instead of a module upload per task); RunnerError when it is not installed.
    """
    venv_bin = str(Path(sys.executable).parent)
    strategy: dict[str, str] = {}
    if mitogen:
        plugins = mitogen_strategy_dir()
        if plugins is None:
            raise RunnerError(
                "mitogen was asked for but is not installed",
                hint="pip install 'patchkit[mitogen]' (or run without --mitogen)",
            )
        strategy = {"ANSIBLE_STRATEGY_PLUGINS": str(plugins), "ANSIBLE_STRATEGY": "mitogen_linear"}
    return strategy | {
        "PATH": venv_bin + os.pathsep + os.environ.get("PATH", "/usr/bin:/bin"),
        "ANSIBLE_ROLES_PATH": str(content.roles_dir()),
        "ANSIBLE_HOST_KEY_CHECKING": str(host_key_checking),
        "ANSIBLE_PIPELINING": "True",
        # ServerAlive*: a shared (ControlPersist) connection to a host whose network went away
        # would otherwise hang its next task until the job timeout; this fails it in ~15 s.
        "ANSIBLE_SSH_ARGS": (
            "-o ControlMaster=auto -o ControlPersist=60s"
            " -o ServerAliveInterval=5 -o ServerAliveCountMax=3"
        ),
        "ANSIBLE_TIMEOUT": "10",
        # Our own control sockets: a master opened by someone's plain ansible-playbook (without
        # ServerAlive) would otherwise be reused and could hang a run for many minutes.
        # ...and one directory per host key mode: a connection opened without checking must
        # not be reused by a job that checks
        "ANSIBLE_SSH_CONTROL_PATH_DIR": str(
            Path.home() / ".ansible" / ("patchkit-cp" if host_key_checking else "patchkit-cp-nokc")
        ),
        "ANSIBLE_RETRY_FILES_ENABLED": "False",
        "ANSIBLE_NOCOLOR": "True",
        "ANSIBLE_DEPRECATION_WARNINGS": "False",
    }


def run_playbook(
    playbook: Path,
    inventory: Path,
    *,
    limit: str | None = None,
    extravars: Mapping[str, Any] | None = None,
    check: bool = False,
    forks: int = 10,
    timeout: int | None = None,
    on_task: Callable[[TaskResult], None] | None = None,
    cancel: Callable[[], bool] | None = None,
    mitogen: bool = False,
    host_key_checking: bool = True,
    pass_env: Sequence[str] = (),
) -> PlaybookResult:
    """Run ``playbook`` against ``inventory`` and return every task outcome per host.

    Hosts failing or unreachable are results, not errors; RunnerError is raised only when the
    playbook could not run at all (missing file, ansible-playbook absent, a syntax error).
    ``cancel`` is polled by runner; when it returns True the run stops (status ``canceled``)
    and the results gathered so far are returned.
    """
    if not playbook.is_file():
        raise RunnerError(f"playbook not found: {playbook}")
    # imported here: patchkit.inventory loads ansible-core, which 'patchkit --help' must not
    from patchkit.inventory import is_host_list

    host_list = is_host_list(str(inventory), exists=inventory.exists())
    if not host_list and not inventory.exists():
        raise RunnerError(
            f"inventory not found: {inventory}", hint="for the lab, run 'patchkit lab up' first"
        )
    # runner reads a string that is not a path as inventory text; a list is passed as -i items
    source: str | list[str] = [str(inventory)] if host_list else str(inventory.resolve())
    seen = _Seen(on_task)
    with tempfile.TemporaryDirectory(prefix="patchkit-runner-") as private:
        runner = init_runner(
            private_data_dir=private,
            playbook=str(playbook.resolve()),
            inventory=source,
            limit=limit,
            extravars=dict(extravars or {}),
            cmdline="--check" if check else None,
            forks=forks,
            envvars=ansible_env(mitogen=mitogen, host_key_checking=host_key_checking),
            event_handler=seen.event,
            quiet=True,
            timeout=timeout,
            cancel_callback=cancel,
        )
        # runner seeded the job's environment with the whole of ours: keep the allow-list only
        runner.config.env = job_environment(runner.config.env, pass_env)
        runner.run()
        stdout = runner.stdout.read() if runner.rc != 0 and not seen.tasks else ""
    return seen.result(playbook, str(runner.status), int(runner.rc), timeout, stdout)


class _Seen:
    """The task outcomes of one job as its events arrive, local or streamed from a node alike."""

    def __init__(self, on_task: Callable[[TaskResult], None] | None) -> None:
        self.on_task = on_task
        self.tasks: list[TaskResult] = []
        self.hosts: list[str] = []
        self.events = 0  # any event at all: ansible-playbook started

    def event(self, event: dict[str, Any]) -> bool:
        self.events += 1
        result = task_result(event)
        if result is not None:
            self.tasks.append(result)
            if result.host not in self.hosts:
                self.hosts.append(result.host)
            if self.on_task is not None:
                self.on_task(result)
        return False  # keep results in memory only; nothing to write per event

    def result(
        self,
        playbook: Path,
        status: str,
        rc: int,
        timeout: int | None,
        stdout: str,
        where: str = "",
    ) -> PlaybookResult:
        log.debug("playbook %s finished%s: %s rc=%s", playbook.name, where, status, rc)
        tasks, hosts = tuple(self.tasks), tuple(self.hosts)
        if status == "canceled":
            return PlaybookResult(status="canceled", rc=rc, tasks=tasks, hosts=hosts)
        if status == "timeout" and not tasks:
            raise RunnerError(
                f"ansible-playbook {playbook.name}{where} did not finish within {timeout} s",
                hint="check that the hosts answer on SSH; the job timeout stopped it",
            )
        # rc 4 is also a parse error of the playbook or a role: no task ran at all
        if rc != 0 and not tasks:
            tail = " | ".join(stdout.strip().splitlines()[-4:])
            raise RunnerError(
                f"ansible-playbook {playbook.name}{where} could not run (rc {rc}): {tail}"
            )
        return PlaybookResult(status=status, rc=rc, tasks=tasks, hosts=hosts)


# ---------------------------------------------------------------- through an execution node

WORKER_ROOT = "/tmp"  # where a node's worker unpacks each job, in a directory of its own
WORKER_PREFIX = "patchkit-job-"
HEARTBEAT = 5.0  # seconds between the controller's heartbeats to a node's patchkit-worker
LEASE = 20  # seconds without a heartbeat after which the node cancels the job
NODE_PATH = "/usr/local/bin:/usr/bin:/bin"


@dataclass(frozen=True)
class NodeJob:
    """How one job reaches an execution node, and what travels with it besides the playbooks.

    ``ssh`` is the whole command that opens a session on the node (``ssh … user@node``);
    ``inventory`` a static inventory of the job's hosts only (JSON); ``ssh_key`` the private key
    for the hosts, or None (the node's own keys apply); ``known_hosts`` the lines naming their
    host keys, as the controller knows them.
    """

    name: str  # the node, as logs and errors name it
    ssh: tuple[str, ...]
    venv: str
    inventory: Mapping[str, Any]
    ssh_key: str | None = None
    known_hosts: str = ""
    lease: int = LEASE


def node_env(
    worker_dir: str, venv: str, *, mitogen: bool = False, host_key_checking: bool = True
) -> dict[str, str]:
    """The job's environment on a node: the node's paths, never the controller's.

    Only these variables travel (runner writes them to ``env/envvars``); the controller's own
    environment stays on the controller. Host keys are checked against the known_hosts file that
    travels with the job (first on ssh's command line, so it wins over an inventory's
    ``UserKnownHostsFile``); connections are shared within the job only (its own control path
    directory), so that a job cannot ride on another job's connection to a host it was not told
    the key of.
    """
    if mitogen:
        raise RunnerError(
            "mitogen is not available through an execution node",
            hint="run without --mitogen, or run these hosts from the controller",
        )
    local = ansible_env(host_key_checking=host_key_checking)
    known = f"-o UserKnownHostsFile={worker_dir}/known_hosts " if host_key_checking else ""
    return local | {
        "PATH": f"{venv}/bin:{NODE_PATH}",
        "ANSIBLE_ROLES_PATH": f"{worker_dir}/project/roles",
        "ANSIBLE_SSH_ARGS": known + local["ANSIBLE_SSH_ARGS"],
        "ANSIBLE_SSH_CONTROL_PATH_DIR": f"{worker_dir}/cp",
    }


def _stage(private: Path, playbook: Path, job: NodeJob) -> str:
    """Lay out what travels: playbooks and roles (side by side, as the playbooks expect them),
    the inventory and the hosts' keys. The playbook's path within ``project/``."""
    project = private / "project"
    shutil.copytree(playbook.parent, project / "playbooks", ignore=_NOT_CONTENT)
    shutil.copytree(content.roles_dir(), project / "roles", ignore=_NOT_CONTENT)
    (private / "inventory").mkdir()
    (private / "inventory" / "hosts.json").write_text(json.dumps(dict(job.inventory)))
    (private / "known_hosts").write_text(job.known_hosts)
    return f"playbooks/{playbook.name}"


_NOT_CONTENT = shutil.ignore_patterns("__pycache__", "*.pyc", ".*")


def run_on_node(
    playbook: Path,
    job: NodeJob,
    *,
    limit: str | None = None,
    extravars: Mapping[str, Any] | None = None,
    check: bool = False,
    forks: int = 10,
    timeout: int | None = None,
    on_task: Callable[[TaskResult], None] | None = None,
    cancel: Callable[[], bool] | None = None,
    host_key_checking: bool = True,
) -> PlaybookResult:
    """``run_playbook`` on an execution node: ``transmit`` here, ``worker`` there (under
    patchkit-worker's lease, over ``job.ssh``), ``process`` here, events as they happen.

    The outcome is read as a local job's is. A stream that breaks mid-job (the node died, the
    network went) once ansible-playbook started gives status ``lost`` with the tasks seen so far
    (the hosts' last tasks may have run unobserved); one that breaks before, or a node that
    cannot start the worker, raises RunnerError naming the node.
    """
    if not playbook.is_file():
        raise RunnerError(f"playbook not found: {playbook}")
    ident = uuid.uuid4().hex[:12]
    worker_dir = f"{WORKER_ROOT}/{WORKER_PREFIX}{ident}"
    where = f" on execution node {job.name}"
    seen = _Seen(on_task)
    explained: list[str] = []

    def status(data: Mapping[str, Any], **_config: Any) -> None:
        if data.get("status") == "error":
            explained.append(str(data.get("job_explanation", "")))

    with (
        tempfile.TemporaryDirectory(prefix="patchkit-transmit-") as sending,
        tempfile.TemporaryDirectory(prefix="patchkit-process-") as receiving,
        tempfile.TemporaryFile() as errors,
    ):
        staged = _stage(Path(sending), playbook, job)
        command = [
            *job.ssh,
            f"{job.venv}/bin/python",
            f"{job.venv}/bin/patchkit-worker",
            str(job.lease),
            "--private-data-dir",
            worker_dir,
        ]
        # a process group of its own: the terminal's Ctrl-C reaches patchkit, which cancels the
        # job through the stream (a clean stop on the node), not ssh, whose death would read as
        # a lost node; if patchkit itself dies, the closed stream cancels the job (the lease)
        ssh = subprocess.Popen(
            command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=errors,
            process_group=0,
        )  # fmt: skip
        if ssh.stdin is None or ssh.stdout is None:  # pragma: no cover - both are PIPE
            raise RunnerError("cannot talk to the ssh command", hint="a bug in patchkit")
        done = threading.Event()
        feeding: threading.Thread | None = None
        try:
            transmitter = init_runner(
                streamer="transmit",
                _output=ssh.stdin,
                private_data_dir=sending,
                ident=ident,
                playbook=staged,
                inventory=str(Path(sending) / "inventory" / "hosts.json"),
                limit=limit,
                extravars=dict(extravars or {}),
                cmdline="--check" if check else None,
                forks=forks,
                envvars=node_env(worker_dir, job.venv, host_key_checking=host_key_checking),
                ssh_key=job.ssh_key,
                quiet=True,
                timeout=timeout,
                # without a callback, init_runner installs its own SIGINT and SIGTERM handlers
                # in the main thread, in place of patchkit's: Ctrl-C would no longer stop the
                # run (the job's cancel is _feed's, below)
                cancel_callback=lambda: False,
            )
            feeding = threading.Thread(
                target=_feed, args=(transmitter, ssh.stdin, done, cancel), daemon=True
            )
            feeding.start()
            processor = init_runner(
                streamer="process",
                _input=ssh.stdout,
                private_data_dir=receiving,
                ident=ident,
                event_handler=seen.event,
                status_handler=status,
                quiet=True,
                cancel_callback=lambda: False,  # unused by the processor; keeps SIGINT ours too
            )
            final, _ = processor.run()
        finally:
            done.set()  # also on Ctrl-C: closing stdin makes the node cancel the job
            if feeding is not None:
                feeding.join(10)
            _close(ssh.stdin)
            try:
                ssh.wait(30)
            except subprocess.TimeoutExpired:
                ssh.kill()
                ssh.wait()
        errors.seek(0)
        said = errors.read().decode(errors="replace").strip()
        artifacts = Path(receiving) / "artifacts" / ident
        rc = _read_rc(artifacts)
        stdout = _read_text(artifacts / "stdout")
    if final == "error":
        reason = last_lines(said) or "; ".join(e for e in explained if e) or "no answer"
        if not seen.events:
            raise RunnerError(
                f"ansible-playbook {playbook.name} could not run{where} "
                f"(ssh exit {ssh.returncode}): {reason}",
                hint=f"check the node: patchkit node check {job.name}",
            )
        log.warning("the stream from execution node %s broke mid-job: %s", job.name, reason)
        return PlaybookResult(
            status="lost", rc=rc if rc is not None else -1, tasks=tuple(seen.tasks),
            hosts=tuple(seen.hosts),
        )  # fmt: skip
    return seen.result(playbook, str(final), rc if rc is not None else -1, timeout, stdout, where)


def _feed(
    transmitter: Transmitter,
    stream: Any,
    done: threading.Event,
    cancel: Callable[[], bool] | None,
) -> None:
    """Send the job, then a heartbeat every HEARTBEAT seconds until the job is over; close the
    stream (the node cancels the job) as soon as ``cancel`` says so."""
    try:
        transmitter.run()
        beat = 0.0
        while not done.wait(0.5):
            if cancel is not None and cancel():
                break
            beat += 0.5
            if beat >= HEARTBEAT:
                beat = 0.0
                stream.write(b"\n")
                stream.flush()
    except (BrokenPipeError, OSError, ValueError):
        pass  # the node or the connection is gone: the processor reports it
    finally:
        _close(stream)


def _close(stream: Any) -> None:
    with contextlib.suppress(BrokenPipeError, OSError, ValueError):
        stream.close()


def _read_rc(artifacts: Path) -> int | None:
    try:
        return int((artifacts / "rc").read_text().strip())
    except (OSError, ValueError):
        return None


def _read_text(path: Path) -> str:
    try:
        return path.read_text(errors="replace")
    except OSError:
        return ""


def last_lines(text: str) -> str:
    """The last three lines of ``text`` that say something, on one line (ssh's and pip's
    errors end with what matters)."""
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return " | ".join(lines[-3:])
