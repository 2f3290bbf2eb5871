"""Where the playbooks and roles patchkit drives are: in the wheel, or in the source tree."""

from __future__ import annotations

from pathlib import Path

_PACKAGE = Path(__file__).resolve().parent


def _find(name: str) -> Path:
    for candidate in (_PACKAGE / "_content" / name, _PACKAGE.parent / name):
        if candidate.is_dir():
            return candidate
    raise FileNotFoundError(f"patchkit's {name}/ directory is missing from this installation")


def playbook(name: str) -> Path:
    """Path of a shipped playbook, e.g. ``playbook("lab-check.yml")``."""
    return _find("playbooks") / name


def roles_dir() -> Path:
    return _find("roles")
