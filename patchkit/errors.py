"""The error hierarchy: every error patchkit raises carries an exit code and a hint."""

from __future__ import annotations

import enum


class ExitCode(enum.IntEnum):
    """Exit statuses scripts can rely on (see DESIGN.md)."""

    OK = 0
    FAILURES = 1  # the window had failures or halted; a lab operation failed
    BAD_INPUT = 2  # bad input or an environment patchkit cannot work in
    REFUSED = 3  # refused: unapproved plan, lock held, plan changed since approval
    # A bug in patchkit (an exception nothing expected): sysexits' EX_SOFTWARE, so that a
    # script can tell a crash from a window that failed.
    BUG = 70


class PatchkitError(Exception):
    """Root of patchkit's errors. ``hint`` says what the user should do next."""

    exit_code: ExitCode = ExitCode.FAILURES

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint


class LabEnvironmentError(PatchkitError, OSError):
    """This machine cannot host the lab (not root, not Linux, no btrfs or loop devices)."""

    exit_code = ExitCode.BAD_INPUT


class LabUsageError(PatchkitError, ValueError):
    """A lab command was given a host name, count or value that is out of range."""

    exit_code = ExitCode.BAD_INPUT


class LabOperationError(PatchkitError, RuntimeError):
    """A lab operation failed on the way (a host did not boot, a system command failed)."""

    exit_code = ExitCode.FAILURES


class RunnerError(PatchkitError, RuntimeError):
    """ansible-runner could not run a playbook at all (as opposed to hosts failing in it)."""

    exit_code = ExitCode.FAILURES


class PolicyError(PatchkitError, ValueError):
    """A policy file is unreadable or invalid; ``problems`` holds one line per problem."""

    exit_code = ExitCode.BAD_INPUT

    def __init__(self, problems: list[str], *, hint: str | None = None) -> None:
        count = len(problems)
        head = problems[0] if count == 1 else f"{count} problems:\n  " + "\n  ".join(problems)
        super().__init__(head, hint=hint)
        self.problems = problems


class InventoryError(PatchkitError, ValueError):
    """An inventory cannot be read, or names no host the command can use."""

    exit_code = ExitCode.BAD_INPUT


class FindingsError(PatchkitError, ValueError):
    """A findings file (exported assessment) is unreadable or not in the documented format."""

    exit_code = ExitCode.BAD_INPUT


class PlanningError(PatchkitError, ValueError):
    """No plan can be made from these inputs (unknown window, no occurrence, nothing in scope)."""

    exit_code = ExitCode.BAD_INPUT


class LedgerError(PatchkitError, OSError):
    """The ledger database cannot be opened, read or written."""

    exit_code = ExitCode.BAD_INPUT


class RefusedError(PatchkitError, PermissionError):
    """patchkit will not do this: an unapproved or changed plan, a lock held by another run."""

    exit_code = ExitCode.REFUSED
