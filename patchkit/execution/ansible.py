"""The batch loop's runner on real hosts: playbooks/patch.yml and rollback.yml through
ansible-runner (``runner.run_playbook``), with the extra vars of docs/playbook-contract.md made
from the typed plan alone.

Hosts the plan placed on an execution node group run there (``runner.run_on_node``): each job is
split by group, the parts run side by side, and their task outcomes reach the loop through the
one ``on_task`` (one at a time) as a local job's do. A group's node is chosen once per run: the
one the run id points at, or the next in the group's list when that one does not answer or runs
other versions than the controller (``nodes.refuse_unless_ready``); a group none of whose nodes
answers has its hosts reported unreachable, with every node's reason.
"""

from __future__ import annotations

import hashlib
import logging
import os
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any

from patchkit import content
from patchkit.execution.ports import Cancel, PatchJob, RollbackJob, RunnerResult, TaskSink
from patchkit.execution.runner import PlaybookResult, TaskResult, run_on_node, run_playbook
from patchkit.model import Host
from patchkit.planning.types import NodeGroup, Phases, Plan, Settings

log = logging.getLogger(__name__)


@dataclass
class AnsibleRunner:
    """Runs the jobs against ``inventory`` (the one the plan was made from); hosts ``placement``
    puts on a node group (host -> group name, from the plan) run on one of its nodes."""

    inventory: Path
    mitogen: bool = False
    placement: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))
    groups: Mapping[str, NodeGroup] = field(default_factory=lambda: MappingProxyType({}))
    run_id: str = ""
    _records: dict[str, Host] | None = None
    _chosen: dict[str, Any] = field(default_factory=dict)  # group -> its node, or the refusal

    @classmethod
    def for_plan(
        cls,
        plan: Plan,
        inventory: Path,
        run_id: str,
        *,
        mitogen: bool = False,
        hosts: Sequence[Host] | None = None,
    ) -> AnsibleRunner:
        """The runner of ``plan``'s run ``run_id``; ``hosts``, the inventory as the command read
        it (its cache and timeout), saves reading it again for the hosts on nodes."""
        placement = {h.host: h.node_group for b in plan.batches for h in b.hosts if h.node_group}
        groups = {g.name: g for g in plan.settings.node_groups}
        records = {h.name: h for h in hosts} if hosts is not None else None
        return cls(inventory, mitogen, placement, groups, run_id, records)

    def patch(self, job: PatchJob, on_task: TaskSink, cancel: Cancel) -> RunnerResult:
        hosts = [h.host for h in job.hosts]
        return self._run("patch.yml", hosts, patch_extravars(job), job.settings, on_task, cancel)

    def roll_back(self, job: RollbackJob, on_task: TaskSink, cancel: Cancel) -> RunnerResult:
        extravars = phase_vars(job.settings.phases) | {
            "patchkit_rollback_by_host": {t.host: t.extravars() for t in job.targets},
            "patchkit_checks_by_host": {h: list(c) for h, c in job.checks.items()},
        }
        hosts = [t.host for t in job.targets]
        return self._run("rollback.yml", hosts, extravars, job.settings, on_task, cancel)

    def _run(
        self,
        playbook: str,
        hosts: Sequence[str],
        extravars: dict[str, Any],
        settings: Settings,
        on_task: TaskSink,
        cancel: Cancel,
    ) -> RunnerResult:
        parts: dict[str, list[str]] = {}
        for host in hosts:
            parts.setdefault(self.placement.get(host, ""), []).append(host)
        one_at_a_time = threading.Lock()

        def told(task: TaskResult) -> None:
            with one_at_a_time:
                on_task(task)

        def local() -> PlaybookResult:
            return run_playbook(
                content.playbook(playbook),
                self.inventory,
                limit=",".join(parts[""]),
                extravars=extravars,
                forks=max(1, len(parts[""])),
                timeout=job_timeout(settings.phases),
                on_task=told,
                cancel=cancel,
                mitogen=self.mitogen,
                host_key_checking=settings.rules.host_key_checking,
                pass_env=settings.rules.environment,
            )

        def remote(group: str) -> Callable[[], PlaybookResult]:
            def go() -> PlaybookResult:
                names = parts[group]
                node = self._node(group)
                if isinstance(node, str):  # no node of the group answers
                    refused = tuple(_unreachable(h, node) for h in names)
                    for task in refused:
                        told(task)
                    return PlaybookResult("failed", 4, refused, tuple(names))
                from patchkit.execution import nodes

                records = self._hosts()
                job = nodes.node_job(
                    node,
                    [records[h] for h in names],
                    host_key_checking=settings.rules.host_key_checking,
                )
                return run_on_node(
                    content.playbook(playbook),
                    job,
                    extravars=extravars,
                    forks=max(1, len(names)),
                    timeout=job_timeout(settings.phases),
                    on_task=told,
                    cancel=cancel,
                    host_key_checking=settings.rules.host_key_checking,
                )

            return go

        work = {g: (local if g == "" else remote(g)) for g in parts}
        results = _side_by_side(work)
        tasks = tuple(t for g in parts for t in results[g].tasks)
        lost = [
            f"execution node {self._chosen[g].name} (group {g}) was lost mid-job"
            for g in parts
            if results[g].status == "lost"
        ]
        return RunnerResult(
            tasks,
            canceled=any(r.status in ("canceled", "lost") for r in results.values()),
            lost="; ".join(lost),
        )

    def _hosts(self) -> dict[str, Host]:
        """The inventory's records (their variables travel to the nodes), read once a run when
        the command did not hand them over."""
        if self._records is None:
            from patchkit import inventory

            self._records = {h.name: h for h in inventory.load(self.inventory)}
        return self._records

    def _node(self, group: str) -> Any:
        """The node that runs ``group``'s hosts this run (chosen once), or why there is none."""
        if group in self._chosen:
            return self._chosen[group]
        from patchkit.execution import nodes

        spec = self.groups.get(group)
        if spec is None:  # the plan placed a host on a group it does not carry: a bug
            raise RuntimeError(f"the plan names node group {group!r} but does not define it")
        candidates = [
            nodes.parse_node(
                text,
                key=Path(spec.key) if spec.key else None,
                known_hosts=Path(spec.known_hosts) if spec.known_hosts else None,
                venv=spec.venv,
            )
            for text in spec.nodes
        ]
        first = int(hashlib.sha256(f"{self.run_id}/{group}".encode()).hexdigest(), 16)
        first %= len(candidates)
        reasons: list[str] = []
        for node in candidates[first:] + candidates[:first]:
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


def patch_extravars(job: PatchJob) -> dict[str, Any]:
    """The extra vars of playbooks/patch.yml for one try on some hosts of a batch."""
    checks = job.settings.phases.checks
    return phase_vars(job.settings.phases) | {
        "patchkit_run_id": job.run_id,
        "patchkit_batch": job.batch.number,
        "patchkit_attempt": job.attempt,
        "patchkit_updates_by_host": {
            h.host: [{"package": u.package, "candidate": u.candidate} for u in h.updates]
            for h in job.hosts
        },
        "patchkit_checks_by_host": {h.host: [dict(checks[i]) for i in h.checks] for h in job.hosts},
        "patchkit_reboot_by_host": {
            h.host: {"mode": str(job.reboot[h.host]), "predicted": h.reboot} for h in job.hosts
        },
    }


def phase_vars(phases: Phases) -> dict[str, Any]:
    """The roles' public settings, from the plan."""
    return {
        "patchkit_snapshot_backend": phases.snapshot_backend,
        "patchkit_reboot_policy": phases.reboot,
        "patchkit_reboot_timeout": int(phases.reboot_timeout.total_seconds()),
        "patchkit_precheck_min_free_disk_mb": phases.min_free_disk,
        "patchkit_precheck_healthy_before": phases.healthy_before,
        "patchkit_precheck_pending_reboot": phases.pending_reboot,
        # Ansible templates extra vars: the raw block keeps an operator's {{ }} or {% %} text
        "patchkit_backup_command": (
            f"{{% raw %}}{phases.backup_command}{{% endraw %}}" if phases.backup_command else ""
        ),
        "patchkit_backup_timeout": int(phases.backup_timeout.total_seconds()),
        # where this controller keeps the lab's disks: the controller's, not the plan's
        "patchkit_lab_root": os.environ.get("PATCHKIT_LAB_ROOT", "/var/lib/patchkit/lab"),
    }


def job_timeout(phases: Phases) -> int:
    """Two reboot waits, the backup hook and room for the other phases (playbook contract)."""
    reboot = phases.reboot_timeout.total_seconds()
    backup = phases.backup_timeout.total_seconds() if phases.backup_command else 0
    return int(2 * reboot + backup) + 600
