"""Execution nodes: machines near the hosts that run the controller's jobs (issue 18).

A node runs ``ansible-runner worker`` (under patchkit-worker's lease, ``node_worker.py``) in a
virtualenv holding the controller's own ansible-core and ansible-runner, installed by
``bootstrap`` from wheels the controller carries: the node needs SSH, Python 3.11 or newer and
nothing from the internet. ``probe`` reads what a node has in one SSH call; ``mismatches``
compares it with the controller, so that a node with other versions is refused up front (the
streaming protocol would not notice: an older runner or Ansible runs the job silently).

``node_job`` makes what travels with one job to a node: a static inventory of the job's hosts
alone (not the whole fleet's), the key for them and the known_hosts lines of their host keys.
"""

from __future__ import annotations

import importlib.metadata
import io
import json
import logging
import os
import re
import shlex
import subprocess
import sys
import tarfile
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any

from packaging.markers import default_environment
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name, parse_wheel_filename

from patchkit.errors import ExitCode, PatchkitError, RunnerError
from patchkit.execution.events import thaw
from patchkit.execution.runner import WORKER_PREFIX, NodeJob, last_lines
from patchkit.model import Host
from patchkit.policy.values import node_address_parts

log = logging.getLogger(__name__)

DEFAULT_VENV = "/opt/patchkit-node"
ROOTS = ("ansible-core", "ansible-runner")  # what a node runs; their dependencies come along
MIN_PYTHON = (3, 11)  # ansible-core 2.19's Requires-Python
SSH_TIMEOUT = 10  # seconds to connect to a node
_WORKER = Path(__file__).with_name("node_worker.py")


class NodeError(PatchkitError, RuntimeError):
    """An execution node cannot be reached, prepared or used as it is."""


class NodeAddressError(NodeError, ValueError):
    """A node named in a form patchkit does not take."""

    exit_code = ExitCode.BAD_INPUT


class NodeRefusedError(NodeError):
    """A node that would run a job with other versions than the controller's, or none."""

    exit_code = ExitCode.REFUSED


@dataclass(frozen=True)
class ExecutionNode:
    """One node, reached over SSH as ``user@address`` (port, key and known_hosts optional)."""

    address: str
    user: str = "root"
    port: int = 22
    key: Path | None = None
    known_hosts: Path | None = None  # None: ssh's own files (~/.ssh/known_hosts)
    venv: str = DEFAULT_VENV

    @property
    def name(self) -> str:
        port = f":{self.port}" if self.port != 22 else ""
        return f"{self.user}@{self.address}{port}"

    def ssh(self, *, connect_timeout: int = SSH_TIMEOUT) -> tuple[str, ...]:
        """The command that opens a session on the node. Its host key is checked (always: a node
        holds the keys to every host it serves), no password is ever asked, and a silent link is
        given up after 15 s instead of blocking the run."""
        argv = [
            "ssh", "-T",
            "-o", "BatchMode=yes",
            "-o", "StrictHostKeyChecking=yes",
            "-o", f"ConnectTimeout={connect_timeout}",
            "-o", "ServerAliveInterval=5",
            "-o", "ServerAliveCountMax=3",
            "-p", str(self.port),
        ]  # fmt: skip
        if self.known_hosts is not None:
            argv += ["-o", f"UserKnownHostsFile={self.known_hosts}"]
        if self.key is not None:
            argv += ["-i", str(self.key), "-o", "IdentitiesOnly=yes"]
        return (*argv, f"{self.user}@{self.address}")


def parse_node(
    text: str, *, key: Path | None = None, known_hosts: Path | None = None, venv: str = DEFAULT_VENV
) -> ExecutionNode:
    """``[user@]host[:port]`` (an IPv6 address in brackets) as an ExecutionNode."""
    parts = node_address_parts(text)
    if parts is None:
        raise NodeAddressError(
            f"not an execution node: {text!r}",
            hint="name it as user@host, user@host:port or host (user root, port 22)",
        )
    user, address, port = parts
    return ExecutionNode(
        address=address,
        user=user,
        port=port,
        key=key,
        known_hosts=known_hosts,
        venv=venv,
    )


# ---------------------------------------------------------------- what a node must have


def pins(python: str | None = None) -> dict[str, str]:
    """The exact versions of ansible-core, ansible-runner and everything they need, as this
    controller has them installed: what a node must have too. ``python`` ("3.11") evaluates
    the requirements' markers for a node's interpreter (default: this one)."""
    environment: dict[str, str] = {k: str(v) for k, v in default_environment().items()}
    if python is not None:
        environment |= {"python_version": python, "python_full_version": python}
    found: dict[str, str] = {}
    todo = list(ROOTS)
    while todo:
        name = str(canonicalize_name(todo.pop()))
        if name in found:
            continue
        try:
            dist = importlib.metadata.distribution(name)
        except importlib.metadata.PackageNotFoundError as exc:
            raise NodeError(
                f"{name} is not installed on this controller", hint="reinstall patchkit"
            ) from exc
        found[name] = dist.version
        for line in dist.requires or ():
            wanted = Requirement(line)
            if wanted.marker is None or wanted.marker.evaluate({**environment, "extra": ""}):
                todo.append(wanted.name)
    return dict(sorted(found.items()))


@dataclass(frozen=True)
class NodeFacts:
    """What a node has, read by ``probe``."""

    node: str
    python: str  # "3.11.2"; "" when python3 is missing
    machine: str  # "x86_64"
    free_mb: Mapping[str, int]  # directory -> free MiB (the worker's and the venv's)
    versions: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))
    worker: bool = False  # patchkit-worker is installed

    @property
    def bootstrapped(self) -> bool:
        return bool(self.versions) and self.worker

    @property
    def python_ok(self) -> bool:
        parts = tuple(int(p) for p in re.findall(r"[0-9]+", self.python)[:2])
        return len(parts) == 2 and parts >= MIN_PYTHON


# Run by the node's python3; stdlib only. Prints one JSON line.
_PROBE = r"""
import json, os, platform, shutil, subprocess, sys
venv, roots = sys.argv[1], sys.argv[2:]
free = {}
for path in ("/tmp", os.path.dirname(venv.rstrip("/")) or "/"):
    try:
        free[path] = shutil.disk_usage(path).free // (1024 * 1024)
    except OSError:
        pass
versions = {}
python = os.path.join(venv, "bin", "python")
if os.access(python, os.X_OK):
    code = ("import importlib.metadata as m, json, sys\n"
            "print(json.dumps({d.metadata['Name']: d.version for d in m.distributions()}))")
    done = subprocess.run([python, "-c", code], capture_output=True, text=True)
    if done.returncode == 0:
        versions = json.loads(done.stdout)
print(json.dumps({
    "python": platform.python_version(), "machine": platform.machine(), "free_mb": free,
    "versions": versions,
    "worker": os.path.isfile(os.path.join(venv, "bin", "patchkit-worker")),
}))
"""


def probe(node: ExecutionNode, *, timeout: float = 60) -> NodeFacts:
    """What ``node`` has (Python, machine, free space, the venv's packages), in one SSH call.
    NodeError naming the node when it cannot be reached or has no python3."""
    command = ["python3", "-", node.venv, *ROOTS]
    done = _ssh(node, command, stdin=_PROBE.encode(), timeout=timeout)
    if done.returncode == 127:
        raise NodeError(
            f"execution node {node.name} has no python3",
            hint="install Python 3.11 or newer on it (Debian: apt install python3)",
        )
    if done.returncode != 0:
        raise NodeError(
            f"cannot reach execution node {node.name} (ssh exit {done.returncode}): "
            f"{_tail(done.stderr)}",
            hint="check that it answers on SSH with this key and that its host key is in "
            "known_hosts (ssh-keyscan, after checking its fingerprint)",
        )
    try:
        answer = json.loads(done.stdout.decode().strip().splitlines()[-1])
        versions = {str(canonicalize_name(k)): str(v) for k, v in answer["versions"].items()}
        return NodeFacts(
            node=node.name,
            python=str(answer["python"]),
            machine=str(answer["machine"]),
            free_mb=MappingProxyType({str(k): int(v) for k, v in answer["free_mb"].items()}),
            versions=MappingProxyType(dict(sorted(versions.items()))),
            worker=bool(answer["worker"]),
        )
    except (ValueError, KeyError, IndexError, TypeError, AttributeError) as exc:
        raise NodeError(
            f"execution node {node.name} gave an answer patchkit cannot read: {_tail(done.stdout)}",
            hint="check what the node's login prints (a shell profile writing to stdout?)",
        ) from exc


def mismatches(facts: NodeFacts, wanted: Mapping[str, str]) -> dict[str, tuple[str, str]]:
    """name -> (the controller's version, the node's: "" when missing), for every difference."""
    return {
        name: (version, facts.versions.get(name, ""))
        for name, version in wanted.items()
        if facts.versions.get(name) != version
    }


def refuse_unless_ready(facts: NodeFacts, wanted: Mapping[str, str]) -> None:
    """NodeError (exit 3: refused) unless the node can run the controller's jobs exactly."""
    if not facts.bootstrapped:
        raise NodeRefusedError(
            f"execution node {facts.node} is not bootstrapped (no patchkit-worker)",
            hint=f"patchkit node bootstrap {facts.node}",
        )
    differ = mismatches(facts, wanted)
    if differ:
        shown = ", ".join(
            f"{name} {have or 'missing'} (controller {want})"
            for name, (want, have) in differ.items()
        )
        raise NodeRefusedError(
            f"execution node {facts.node} runs other versions than this controller: {shown}",
            hint=f"patchkit node bootstrap {facts.node} (installs the controller's versions)",
        )


# ---------------------------------------------------------------- bootstrap


def wheel_tag(facts: NodeFacts) -> str:
    """Which wheel set a node needs: ``cp311-x86_64``."""
    major, minor = re.findall(r"[0-9]+", facts.python)[:2]
    return f"cp{major}{minor}-{facts.machine}"


def default_wheels(tag: str) -> Path:
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / "patchkit" / "node-wheels" / tag


def missing_wheels(directory: Path, wanted: Mapping[str, str]) -> list[str]:
    """``name==version`` of the pins (and pip) with no wheel in ``directory``."""
    have: dict[str, set[str]] = {}
    for path in directory.glob("*.whl") if directory.is_dir() else ():
        try:
            name, version, _build, _tags = parse_wheel_filename(path.name)
        except ValueError:
            continue
        have.setdefault(str(name), set()).add(str(version))
    missing = [f"{n}=={v}" for n, v in wanted.items() if v not in have.get(n, set())]
    return missing + ([] if "pip" in have else ["pip"])


def download_wheels(
    directory: Path, wanted: Mapping[str, str], *, python: str, machine: str
) -> None:
    """``pip download`` the pins (and pip itself) as wheels for a node's Python and machine,
    into ``directory``: the one step that needs an index (PyPI or a mirror pip is set up for)."""
    directory.mkdir(parents=True, exist_ok=True)
    major, minor = re.findall(r"[0-9]+", python)[:2]
    platforms = [f"manylinux2014_{machine}", f"manylinux_2_28_{machine}", f"linux_{machine}"]
    command = [
        sys.executable, "-m", "pip", "download", "--quiet", "--disable-pip-version-check",
        "--only-binary=:all:", "--no-deps", "--implementation", "cp",
        "--python-version", f"{major}.{minor}", "--dest", str(directory),
        *(arg for platform in platforms for arg in ("--platform", platform)),
        *(f"{name}=={version}" for name, version in wanted.items()), "pip",
    ]  # fmt: skip
    done = subprocess.run(command, capture_output=True, text=True, timeout=900)
    if done.returncode != 0:
        raise NodeError(
            f"pip could not download the node's wheels into {directory}: {_tail(done.stderr)}",
            hint="on a controller without an index, download them elsewhere with "
            "'patchkit node wheels' and copy the directory here (--wheels DIR)",
        )


_INSTALL = """set -eu
V={venv}; W={wheels}
python3 -c 'import sys; sys.exit(0 if sys.version_info >= {minimum} else 3)'
rm -rf "$V"
mkdir -p "$(dirname "$V")"
python3 -m venv --without-pip "$V"
"$V/bin/python" "$(ls "$W"/pip-*.whl | head -n 1)/pip" install --quiet --no-index \\
  --disable-pip-version-check --find-links "$W" pip
"$V/bin/python" -m pip install --quiet --no-index --disable-pip-version-check \\
  --find-links "$W" -r "$W/requirements.txt"
install -m 0755 "$W/patchkit-worker" "$V/bin/patchkit-worker"
rm -rf "$W"
"""


def bootstrap(
    node: ExecutionNode,
    wheels: Path | None = None,
    *,
    say: Callable[[str], None] = lambda _text: None,
) -> NodeFacts:
    """Install the controller's ansible-core and ansible-runner (and patchkit-worker) on ``node``
    in a fresh virtualenv at ``node.venv``, from wheels: those in ``wheels`` (they must all be
    there), or downloaded once into the controller's cache for the node's Python and machine.
    Returns what the node has afterwards; NodeError when any step fails."""
    facts = probe(node)
    if not facts.python_ok:
        raise NodeError(
            f"execution node {node.name} has Python {facts.python or 'none'}; ansible-core "
            f"{importlib.metadata.version('ansible-core')} needs {'.'.join(map(str, MIN_PYTHON))}"
            " or newer",
            hint="install a newer python3 on the node (Debian 12 has 3.11)",
        )
    wanted = pins(".".join(re.findall(r"[0-9]+", facts.python)[:2]))
    folder = wheels if wheels is not None else default_wheels(wheel_tag(facts))
    missing = missing_wheels(folder, wanted)
    if missing and wheels is None:
        say(f"downloading {len(missing)} wheels for {wheel_tag(facts)} into {folder}")
        download_wheels(folder, wanted, python=facts.python, machine=facts.machine)
        missing = missing_wheels(folder, wanted)
    if missing:
        raise NodeError(
            f"the wheels for {node.name} are incomplete in {folder}: {', '.join(missing)} missing",
            hint=f"patchkit node wheels --python {facts.python} --machine {facts.machine} "
            f"--dest {folder}",
        )
    staging = f"/tmp/patchkit-wheels-{os.urandom(6).hex()}"
    say(f"copying {len(list(folder.glob('*.whl')))} wheels to {node.name}")
    _send(node, _bundle(folder, wanted), staging)
    say(f"installing into {node.venv} on {node.name}")
    script = _INSTALL.format(
        venv=shlex.quote(node.venv), wheels=shlex.quote(staging), minimum=MIN_PYTHON
    )
    done = _ssh(node, ["sh", "-c", shlex.quote(script)], timeout=900)
    if done.returncode != 0:
        raise NodeError(
            f"installing on {node.name} failed (exit {done.returncode}): {_tail(done.stderr)}",
            hint=f"see what is left in {staging} on the node",
        )
    after = probe(node)
    differ = mismatches(after, wanted)
    if differ or not after.worker:
        raise NodeError(
            f"{node.name} still differs after bootstrap: {differ or 'no patchkit-worker'}",
            hint="a bug in patchkit, or the node's python3 picks packages up from elsewhere",
        )
    return after


def _bundle(folder: Path, wanted: Mapping[str, str]) -> bytes:
    """A tar of the wheels, their requirements file and patchkit-worker."""
    buffer = io.BytesIO()
    requirements = "".join(f"{name}=={version}\n" for name, version in wanted.items())
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        for path in sorted(folder.glob("*.whl")):
            tar.add(path, arcname=path.name)
        for name, data in (
            ("requirements.txt", requirements.encode()),
            ("patchkit-worker", _WORKER.read_bytes()),
        ):
            info = tarfile.TarInfo(name)
            info.size, info.mode = len(data), 0o644
            tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def _send(node: ExecutionNode, bundle: bytes, directory: str) -> None:
    quoted = shlex.quote(directory)
    done = _ssh(
        node,
        ["sh", "-c", shlex.quote(f"mkdir -m 0700 {quoted} && tar -xf - -C {quoted}")],
        stdin=bundle,
        timeout=600,
    )
    if done.returncode != 0:
        raise NodeError(
            f"cannot copy the wheels to {node.name} (exit {done.returncode}): {_tail(done.stderr)}",
            hint="check free space in /tmp on the node (patchkit node check)",
        )


def cleanup(node: ExecutionNode) -> str:
    """Remove job directories that killed workers left on the node (they may hold a key)."""
    command = [
        f"{node.venv}/bin/python", "-m", "ansible_runner", "worker", "cleanup",
        "--file-pattern", f"/tmp/{WORKER_PREFIX}*", "--grace-period", "0",
    ]  # fmt: skip
    done = _ssh(node, command, timeout=120)
    if done.returncode != 0:
        raise NodeError(
            f"cleanup on {node.name} failed (exit {done.returncode}): {_tail(done.stderr)}"
        )
    return done.stdout.decode(errors="replace").strip()


# ---------------------------------------------------------------- what travels with a job


def node_job(
    node: ExecutionNode, hosts: Sequence[Host], *, host_key_checking: bool = True
) -> NodeJob:
    """What one job on ``node`` for ``hosts`` carries: their inventory (their groups and
    variables; nobody else's), the private key they share (read here, on the controller), and
    the known_hosts lines of their host keys. RunnerError naming the host when a host cannot go
    through a node (a vaulted variable: the node has no vault password; two different keys)."""
    keys = {
        str(h.var("ansible_ssh_private_key_file") or h.var("ansible_private_key_file") or "")
        for h in hosts
    }
    if len(keys) > 1:
        raise RunnerError(
            f"the hosts of one job through {node.name} use different SSH keys: "
            f"{', '.join(sorted(k or '(none)' for k in keys))}",
            hint="give the hosts of one node group one key (ansible_ssh_private_key_file)",
        )
    key_file = next(iter(keys), "")
    ssh_key = None
    if key_file:
        try:
            ssh_key = Path(key_file).expanduser().read_text()
        except OSError as exc:
            raise RunnerError(
                f"cannot read the SSH key {key_file} of the hosts served by {node.name}: "
                f"{exc.strerror}"
            ) from exc
    members: dict[str, dict[str, None]] = {}  # group -> its hosts
    listed: dict[str, Any] = {}
    for host in hosts:
        if _vaulted(host.vars):
            raise RunnerError(
                f"host {host.name} has a vault-encrypted variable, which an execution node "
                "cannot decrypt",
                hint="run this host from the controller, or give it the value unencrypted",
            )
        variables = {
            k: v
            for k, v in host.vars.items()
            if k not in ("ansible_ssh_private_key_file", "ansible_private_key_file")
        }
        listed[host.name] = thaw(variables)
        for group in host.groups:
            if group not in ("all", "ungrouped"):
                members.setdefault(group, {})[host.name] = None
    children = {group: {"hosts": names} for group, names in members.items()}
    inventory = {"all": {"hosts": listed, "children": children}}
    known = known_hosts_lines(hosts) if host_key_checking else ""
    return NodeJob(
        name=node.name,
        ssh=node.ssh(),
        venv=node.venv,
        inventory=inventory,
        ssh_key=ssh_key,
        known_hosts=known,
    )


def _vaulted(value: Any) -> bool:
    if isinstance(value, Mapping):
        return "__ansible_vault" in value or any(_vaulted(v) for v in value.values())
    if isinstance(value, list | tuple):
        return any(_vaulted(v) for v in value)
    return False


_KNOWN_FILE = re.compile(r"UserKnownHostsFile[= ]\s*(\S+)")


def known_hosts_lines(hosts: Iterable[Host]) -> str:
    """The controller's known_hosts lines for each host's address (and port), from the files
    its SSH arguments name and the user's own: what lets the node check the keys."""
    lines: list[str] = []
    for host in hosts:
        address = str(host.var("ansible_host") or host.name)
        port = int(host.var("ansible_port") or 22)
        wanted = address if port == 22 else f"[{address}]:{port}"
        args = " ".join(
            str(host.var(v) or "") for v in ("ansible_ssh_common_args", "ansible_ssh_extra_args")
        )
        files = [Path(f).expanduser() for f in _KNOWN_FILE.findall(args)]
        files += [Path.home() / ".ssh" / "known_hosts", Path("/etc/ssh/ssh_known_hosts")]
        for path in dict.fromkeys(files):
            if path.is_file():
                lines += _lookup(path, wanted)
    return "".join(f"{line}\n" for line in dict.fromkeys(lines))


def _lookup(path: Path, wanted: str) -> list[str]:
    done = subprocess.run(
        ["ssh-keygen", "-F", wanted, "-f", str(path)], capture_output=True, text=True, timeout=30
    )
    return [line for line in done.stdout.splitlines() if line and not line.startswith("#")]


# ---------------------------------------------------------------- plumbing


def _ssh(
    node: ExecutionNode, command: Sequence[str], *, stdin: bytes | None = None, timeout: float
) -> subprocess.CompletedProcess[bytes]:
    """Run ``command`` on the node (its words joined by the remote shell, so quote them)."""
    try:
        return subprocess.run(
            [*node.ssh(), *command],
            input=stdin if stdin is not None else b"",
            capture_output=True,
            timeout=timeout,
        )
    except subprocess.TimeoutExpired as exc:
        raise NodeError(
            f"execution node {node.name} did not answer within {timeout:.0f} s",
            hint="check the node and the network to it",
        ) from exc


def _tail(text: bytes | str) -> str:
    shown = text.decode(errors="replace") if isinstance(text, bytes) else text
    return last_lines(shown) or "(nothing said)"
