"""The phases of a host's patching and the statuses of phases, hosts, batches and runs.

Defined once, here. The string values are the ones stored in the ledger and printed in
reports, so an enum member compares equal to the text a ledger row holds.
"""

from __future__ import annotations

from enum import StrEnum


class Phase(StrEnum):
    """A step of playbooks/patch.yml (one role each), then the rollback steps."""

    PRECHECK = "precheck"
    BACKUP = "backup"
    SNAPSHOT = "snapshot"
    PATCH = "patch"
    REBOOT = "reboot"
    VERIFY = "verify"
    ROLLBACK = "rollback"

    @property
    def changes_host(self) -> bool:
        """A failure from here on left the host changed: it counts against the error
        threshold and is a rollback candidate. Earlier failures leave the host as it was."""
        return self in CHANGING


# The phases of playbooks/patch.yml, in order; each reports a "patchkit <phase> result" task.
PATCH_PHASES = (
    Phase.PRECHECK,
    Phase.BACKUP,
    Phase.SNAPSHOT,
    Phase.PATCH,
    Phase.REBOOT,
    Phase.VERIFY,
)
CHANGING = frozenset({Phase.PATCH, Phase.REBOOT, Phase.VERIFY})


class PhaseStatus(StrEnum):
    OK = "ok"
    FAILED = "failed"
    SKIPPED = "skipped"  # precheck: the host is left alone; backup: no hook configured
    UNREACHABLE = "unreachable"
    NOT_RUN = "not-run"  # an earlier phase ended the host's play
    PENDING = "pending"  # a rollback the run decided on and has not done yet


class HostStatus(StrEnum):
    PATCHED = "patched"
    REBOOT_PENDING = "reboot-pending"  # patched; its reboot was not done (never, or not approved)
    FAILED = "failed"
    UNREACHABLE = "unreachable"
    NOT_PATCHED = "not-patched"  # left as it was: a precheck, backup or snapshot stopped it
    HELD = "held"  # not started: its cluster's quorum would not allow it


class BatchStatus(StrEnum):
    NOT_STARTED = "not-started"
    RUNNING = "running"
    COMPLETED = "completed"
    FAILED = "failed"  # it ended, with failed hosts
    HALTED = "halted"  # the error threshold stopped it after a wave; later waves not started
    INTERRUPTED = "interrupted"  # stopped by the operator or a lost ledger


class RunStatus(StrEnum):
    RUNNING = "running"
    COMPLETED = "completed"
    INCOMPLETE = "incomplete"  # hosts left unpatched (or with a reboot pending), none failed
    FAILED = "failed"
    HALTED = "halted"
    STOPPED_AT_CUTOFF = "stopped-at-cutoff"
    INTERRUPTED = "interrupted"

    @property
    def ended(self) -> bool:
        return self not in (RunStatus.RUNNING, RunStatus.INTERRUPTED)
