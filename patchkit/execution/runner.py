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

import fnmatch
import importlib.util
import logging
import os
import re
import sys
import tempfile
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any

from ansible_runner.interface import init_runner

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

    @property
    def message(self) -> str:
        return str(self.result.get("msg", ""))


@dataclass(frozen=True)
class PlaybookResult:
    """What one ansible-runner invocation did, host by host."""

    status: str  # successful / failed / timeout / canceled
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
    tasks: list[TaskResult] = []
    hosts: list[str] = []

    def handler(event: dict[str, Any]) -> bool:
        result = task_result(event)
        if result is not None:
            tasks.append(result)
            if result.host not in hosts:
                hosts.append(result.host)
            if on_task is not None:
                on_task(result)
        return False  # keep results in memory only; nothing to write per event

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
            event_handler=handler,
            quiet=True,
            timeout=timeout,
            cancel_callback=cancel,
        )
        # runner seeded the job's environment with the whole of ours: keep the allow-list only
        runner.config.env = job_environment(runner.config.env, pass_env)
        runner.run()
        stdout = runner.stdout.read() if runner.rc != 0 and not tasks else ""
    log.debug("playbook %s finished: %s rc=%s", playbook.name, runner.status, runner.rc)
    if runner.status == "canceled":
        return PlaybookResult(
            status="canceled", rc=int(runner.rc), tasks=tuple(tasks), hosts=tuple(hosts)
        )
    if runner.status == "timeout" and not tasks:
        raise RunnerError(
            f"ansible-playbook {playbook.name} did not finish within {timeout} s",
            hint="check that the hosts answer on SSH; the job timeout stopped it",
        )
    # rc 4 is also a parse error of the playbook or a role: no task ran at all
    if runner.rc != 0 and not tasks:
        tail = " | ".join(stdout.strip().splitlines()[-4:])
        raise RunnerError(
            f"ansible-playbook {playbook.name} could not run (rc {runner.rc}): {tail}"
        )
    return PlaybookResult(
        status=str(runner.status), rc=int(runner.rc), tasks=tuple(tasks), hosts=tuple(hosts)
    )
