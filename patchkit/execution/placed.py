"""Playbooks run where their hosts are placed: the controller's hosts through
``runner.run_playbook``, each execution node group's on one of its nodes (``runner.run_on_node``).

Every playbook patchkit runs on hosts goes through here (patch and rollback in a run, assess,
release), so that a host the controller cannot reach is asked, patched and released through its
node alike. A job's hosts are split by group; the parts run side by side and their task outcomes
reach ``on_task`` one at a time, as a local job's do. A group's node is chosen once per
Placement: the one its seed (a run id, or the time of an assessment) points at, or the next in
the group's list when that one does not answer or runs other versions than the controller
(``nodes.refuse_unless_ready``); a group none of whose nodes answers has its hosts reported
unreachable, with every node's reason. A node lost mid-job is not chosen again by this
Placement: the group's next job goes to the next node that answers.
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any

from patchkit import content
from patchkit.errors import RunnerError
from patchkit.execution.runner import PlaybookResult, TaskResult, run_on_node, run_playbook
from patchkit.model import Host
from patchkit.planning import plan as planning
from patchkit.planning.types import NodeGroup
from patchkit.policy.model import Policy

log = logging.getLogger(__name__)

CONTROLLER = ""  # the placement of a host patched from the controller


@dataclass(frozen=True)
class Job:
    """What one job runs with, wherever its parts run."""

    extravars: Mapping[str, Any]
    timeout: int
    host_key_checking: bool = True
    pass_env: Sequence[str] = ()
    check: bool = False
    forks: int | None = None  # None: one per host of the part
    mitogen: bool = False


@dataclass(frozen=True)
class Placed:
    """The outcome of one job: every part's result, by group (CONTROLLER for the local part),
    and the nodes that ran them."""

    parts: Mapping[str, PlaybookResult]
    nodes: Mapping[str, str]  # group -> the node that ran its part (absent: none could)

    @property
    def tasks(self) -> tuple[TaskResult, ...]:
        return tuple(t for r in self.parts.values() for t in r.tasks)

    @property
    def lost(self) -> str:
        """Why the job is incomplete because a node went away mid-job ("" when none did)."""
        return "; ".join(
            f"execution node {self.nodes[g]} (group {g}) was lost mid-job"
            for g, r in self.parts.items()
            if r.status == "lost"
        )

    @property
    def canceled(self) -> bool:
        return any(r.status in ("canceled", "lost") for r in self.parts.values())


@dataclass
class Placement:
    """Where each host's jobs run: ``where`` maps a host to its node group (absent: the
    controller); ``records`` are the inventory's hosts (their variables travel to the nodes),
    read from ``inventory`` when not given."""

    inventory: Path
    groups: Mapping[str, NodeGroup] = field(default_factory=lambda: MappingProxyType({}))
    where: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))
    seed: str = ""
    records: dict[str, Host] | None = None
    _chosen: dict[str, Any] = field(default_factory=dict)  # group -> its node, or the refusal
    _lost: set[str] = field(default_factory=set)  # nodes lost mid-job: not chosen again

    @classmethod
    def of_policy(
        cls, policy: Policy, hosts: Sequence[Host], inventory: Path, seed: str
    ) -> Placement:
        """The placement the live policy gives ``hosts`` (jobs without a plan: assess,
        release); ``seed`` picks each group's node."""
        groups = {g.name: g for g in planning.node_groups_of(policy)}
        where = planning.placements(hosts, policy)
        return cls(inventory, groups, where, seed, {h.name: h for h in hosts})

    def group(self, host: str) -> str:
        return self.where.get(host, CONTROLLER)

    def node_of(self, host: str) -> str:
        """The node that ran ``host``'s jobs so far ("" for the controller or none yet)."""
        chosen = self._chosen.get(self.group(host))
        return "" if chosen is None or isinstance(chosen, str) else str(chosen.name)

    def run(
        self,
        playbook: str,
        hosts: Sequence[str],
        job: Job,
        on_task: Callable[[TaskResult], None] | None = None,
        cancel: Callable[[], bool] | None = None,
    ) -> Placed:
        """Run ``playbook`` (a name in playbooks/) on ``hosts``, each part where it belongs."""
        parts: dict[str, list[str]] = {}
        for host in hosts:
            parts.setdefault(self.group(host), []).append(host)
        one_at_a_time = threading.Lock()

        def told(task: TaskResult) -> None:
            if on_task is not None:
                with one_at_a_time:
                    on_task(task)

        def local() -> PlaybookResult:
            names = parts[CONTROLLER]
            return run_playbook(
                content.playbook(playbook),
                self.inventory,
                limit=",".join(names),
                extravars=job.extravars,
                check=job.check,
                forks=job.forks or max(1, len(names)),
                timeout=job.timeout,
                on_task=told,
                cancel=cancel,
                mitogen=job.mitogen,
                host_key_checking=job.host_key_checking,
                pass_env=job.pass_env,
            )

        def refuse(names: list[str], why: str) -> PlaybookResult:
            refused = tuple(_unreachable(h, why) for h in names)
            for task in refused:
                told(task)
            return PlaybookResult("failed", 4, refused, tuple(names))

        def remote(group: str) -> Callable[[], PlaybookResult]:
            def go() -> PlaybookResult:
                names = parts[group]
                node = self._node(group)
                if isinstance(node, str):  # no node of the group answers
                    return refuse(names, node)
                from patchkit.execution import nodes

                records = self._hosts()
                staged = nodes.node_job(
                    node, [records[h] for h in names], host_key_checking=job.host_key_checking
                )

                def from_node(task: TaskResult) -> TaskResult:
                    return dataclasses.replace(task, via=node.name)

                try:
                    done = run_on_node(
                        content.playbook(playbook),
                        staged,
                        extravars=job.extravars,
                        check=job.check,
                        forks=job.forks or max(1, len(names)),
                        timeout=job.timeout,
                        on_task=lambda task: told(from_node(task)),
                        cancel=cancel,
                        host_key_checking=job.host_key_checking,
                    )
                except RunnerError as exc:  # the node took the job but could not start it
                    log.warning("execution node %s (group %s): %s", node.name, group, exc)
                    why = f"execution node {node.name} (group {group}) did not run the job: "
                    return refuse(names, why + exc.message)
                return dataclasses.replace(done, tasks=tuple(from_node(t) for t in done.tasks))

            return go

        work = {g: (local if g == CONTROLLER else remote(g)) for g in parts}
        results = _side_by_side(work)
        ran = {
            g: str(self._chosen[g].name)
            for g in parts
            if g != CONTROLLER and not isinstance(self._chosen.get(g), str)
        }
        for group, result in results.items():
            if result.status == "lost" and group in ran:  # the group's next job goes elsewhere
                self._lost.add(ran[group])
                del self._chosen[group]
        return Placed({g: results[g] for g in parts}, ran)

    def _hosts(self) -> dict[str, Host]:
        """The inventory's records, read once when the caller did not hand them over."""
        if self.records is None:
            from patchkit import inventory

            self.records = {h.name: h for h in inventory.load(self.inventory)}
        return self.records

    def _node(self, group: str) -> Any:
        """The node that runs ``group``'s hosts (chosen once), or why there is none."""
        if group in self._chosen:
            return self._chosen[group]
        from patchkit.execution import nodes

        spec = self.groups.get(group)
        if spec is None:  # a host placed on a group nobody defined: a bug
            raise RuntimeError(f"hosts are placed on node group {group!r}, which is not defined")
        candidates = [
            nodes.parse_node(
                text,
                key=Path(spec.key) if spec.key else None,
                known_hosts=Path(spec.known_hosts) if spec.known_hosts else None,
                venv=spec.venv,
            )
            for text in spec.nodes
        ]
        first = int(hashlib.sha256(f"{self.seed}/{group}".encode()).hexdigest(), 16)
        first %= len(candidates)
        reasons: list[str] = []
        for node in candidates[first:] + candidates[:first]:
            if node.name in self._lost:
                reasons.append(f"execution node {node.name} was lost mid-job earlier")
                continue
            try:
                facts = nodes.probe(node)
                nodes.refuse_unless_ready(facts, nodes.pins(_major_minor(facts.python)))
            except nodes.NodeError as exc:
                log.warning("execution node %s (group %s) not used: %s", node.name, group, exc)
                reasons.append(exc.message)
                continue
            self._chosen[group] = node
            return node
        self._chosen[group] = f"no execution node of group {group} can run it: " + "; ".join(
            reasons
        )
        return self._chosen[group]


def _major_minor(version: str) -> str:
    return ".".join(version.split(".")[:2])


def _unreachable(host: str, why: str) -> TaskResult:
    return TaskResult(
        host=host,
        task="Reach the execution node",
        action="patchkit.node",
        status="unreachable",
        result=MappingProxyType({"msg": why, "unreachable": True}),
    )


def _side_by_side(work: Mapping[str, Callable[[], PlaybookResult]]) -> dict[str, PlaybookResult]:
    """Run each part in a thread of its own (the controller's part too); an error in any part is
    raised once every part has ended, so that no part is left running unobserved."""
    if len(work) == 1:
        ((name, call),) = work.items()
        return {name: call()}
    results: dict[str, PlaybookResult] = {}
    errors: list[BaseException] = []

    def run(name: str, call: Callable[[], PlaybookResult]) -> None:
        try:
            results[name] = call()
        except BaseException as exc:  # handed to the caller below, once every part ended
            errors.append(exc)

    threads = [threading.Thread(target=run, args=item, daemon=True) for item in work.items()]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if errors:
        raise errors[0]
    return results
