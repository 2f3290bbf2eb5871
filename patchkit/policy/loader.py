"""Read a policy file: YAML → typed Policy, or a PolicyError naming file, line, field and fix.

PyYAML's node tree gives every key and list item a line; pydantic's errors give a path
(``("windows", 0, "duration")``). The loader keeps a map from one to the other, so each problem
reads ``policies/x.yml:14: windows[0].duration: '4 hours' is not a duration: …``.
"""

from __future__ import annotations

import typing
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError

from patchkit.errors import PolicyError
from patchkit.policy.model import Policy

Loc = tuple[str | int, ...]

HINT = "fix the lines named above; 'patchkit policy schema' prints every allowed key"


def load(path: Path) -> Policy:
    """Load and validate the policy at ``path``."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise PolicyError([f"{path}: cannot read the policy: {exc.strerror}"]) from None
    except UnicodeDecodeError:
        raise PolicyError([f"{path}: not a UTF-8 text file"]) from None
    return loads(text, str(path))


def loads(text: str, source: str = "<policy>") -> Policy:
    """Validate policy YAML ``text``; ``source`` names it in errors."""
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = f"{source}:{mark.line + 1}" if mark else source
        raise PolicyError(
            [f"{where}: not valid YAML: {exc.problem or exc.context}"],
            hint="check indentation and quoting around that line",
        ) from None
    if node is None:
        raise PolicyError([f"{source}: the policy is empty"], hint=HINT)
    lines: dict[Loc, int] = {}
    problems = [f"{source}:{line}: {msg}" for line, msg in _index(node, (), lines)]
    if problems:
        raise PolicyError(problems, hint="each key may appear once per mapping")
    data = yaml.safe_load(text)
    if not isinstance(data, dict):
        raise PolicyError(
            [f"{source}:1: the policy must be a mapping of sections (name, roles, windows, …)"],
            hint=HINT,
        )
    try:
        return Policy.model_validate(data)
    except ValidationError as exc:
        raise PolicyError(
            [_describe(error, source, lines) for error in exc.errors()], hint=HINT
        ) from None


def _index(node: yaml.Node, loc: Loc, lines: dict[Loc, int]) -> Iterator[tuple[int, str]]:
    """Record the line of every path under ``node``; yield duplicate keys as problems."""
    lines[loc] = node.start_mark.line + 1
    if isinstance(node, yaml.MappingNode):
        seen: dict[str, int] = {}
        for key_node, value_node in node.value:
            key = str(key_node.value)
            line = key_node.start_mark.line + 1
            if key in seen:
                yield line, f"{_dotted((*loc, key))}: duplicate key (first on line {seen[key]})"
            seen[key] = line
            yield from _index(value_node, (*loc, key), lines)
            lines[(*loc, key)] = line
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            yield from _index(item, (*loc, i), lines)


def _dotted(loc: Loc) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "(top level)"


def _describe(error: Any, source: str, lines: dict[Loc, int]) -> str:
    """One problem: where, which field, what is wrong and what is allowed."""
    loc = tuple(error["loc"])
    data_loc = _data_loc(loc)
    line = _nearest_line(data_loc, lines)
    field = _dotted(data_loc)
    kind = error["type"]
    if kind == "extra_forbidden":
        allowed = _allowed_keys(data_loc[:-1])
        msg = f"unknown key {data_loc[-1]!r}"
        if allowed:
            msg += f"; allowed here: {', '.join(allowed)}"
    elif kind == "missing":
        msg = "required, but missing"
    else:
        msg = str(error["msg"]).removeprefix("Value error, ")
    return f"{source}:{line}: {field}: {msg}"


def _data_loc(loc: Loc) -> Loc:
    """Drop the parts pydantic adds for tagged unions (the tag and the model name)."""
    out: list[str | int] = []
    for part in loc:
        if isinstance(part, str) and (part in _UNION_TAGS or part.startswith("function-")):
            continue
        out.append(part)
    return tuple(out)


_UNION_TAGS = {"systemd", "tcp", "http", "command"}


def _nearest_line(loc: Loc, lines: dict[Loc, int]) -> int:
    for end in range(len(loc), -1, -1):
        if loc[:end] in lines:
            return lines[loc[:end]]
    return 1


def _allowed_keys(loc: Loc) -> list[str]:
    """The field names of the model found at ``loc`` in the Policy, if one is found."""
    model: Any = Policy
    for part in loc:
        if isinstance(part, int):
            continue
        field = model.model_fields.get(part) if _is_model(model) else None
        if field is None:
            return []
        model = _model_in(field.annotation)
        if model is None:
            return []
    return sorted(model.model_fields) if _is_model(model) else []


def _is_model(value: Any) -> bool:
    return isinstance(value, type) and issubclass(value, BaseModel)


def _model_in(annotation: Any) -> Any:
    """The one model class inside ``annotation`` (through Optional, list and Annotated)."""
    if _is_model(annotation):
        return annotation
    found = [m for arg in typing.get_args(annotation) if (m := _model_in(arg)) is not None]
    return found[0] if len(found) == 1 else None
