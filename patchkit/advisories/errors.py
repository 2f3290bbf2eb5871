"""The error of a feed that cannot be read: it names the file, the record and the field."""

from __future__ import annotations

from patchkit.errors import ExitCode, PatchkitError

HINT = (
    "fetch the file again (a cut download reads as bad JSON); patchkit reads the Debian security"
    " tracker's data/json, OSV records (.json, a directory or a .zip of them), CISA's KEV JSON"
    " and FIRST's EPSS CSV (.gz too)"
)


class AdvisoryError(PatchkitError, ValueError):
    """An advisory file is unreadable or not in the format it claims; nothing of it was read.

    ``problems`` holds one line per problem, each ``source: record: field: what``.
    """

    exit_code = ExitCode.BAD_INPUT

    def __init__(
        self, source: str, problems: list[str], *, more: int = 0, hint: str | None = HINT
    ) -> None:
        lines = [f"{source}: {p}" for p in problems]
        if more:
            lines.append(f"{source}: … and {more} more")
        count = len(problems) + more
        head = lines[0] if count == 1 else f"{source}: {count} problems:\n  " + "\n  ".join(lines)
        super().__init__(head, hint=hint)
        self.source = source
        self.problems = lines
