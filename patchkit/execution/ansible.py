"""The batch loop's runner on real hosts: playbooks/patch.yml and rollback.yml through
ansible-runner, with the extra vars of docs/playbook-contract.md made from the typed plan alone.

Hosts the plan placed on an execution node group run there (``placed.Placement``: one node per
group for the whole run, chosen by the run id).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from patchkit.execution.placed import Job, Placement
from patchkit.execution.ports import Cancel, PatchJob, RollbackJob, RunnerResult, TaskSink
from patchkit.model import Host
from patchkit.planning.types import Phases, Plan, Settings


@dataclass
class AnsibleRunner:
    """Runs the jobs of a plan's run against ``inventory`` (the one the plan was made from),
    each host where the plan placed it (``placed.Placement``)."""

    placement: Placement
    mitogen: bool = False

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
        where = {h.host: h.node_group for b in plan.batches for h in b.hosts if h.node_group}
        groups = {g.name: g for g in plan.settings.node_groups}
        records = {h.name: h for h in hosts} if hosts is not None else None
        return cls(Placement(inventory, groups, where, run_id, records), mitogen)

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
        job = Job(
            extravars,
            timeout=job_timeout(settings.phases),
            host_key_checking=settings.rules.host_key_checking,
            pass_env=settings.rules.environment,
            mitogen=self.mitogen,
        )
        done = self.placement.run(playbook, hosts, job, on_task, cancel)
        return RunnerResult(done.tasks, canceled=done.canceled, lost=done.lost)


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
