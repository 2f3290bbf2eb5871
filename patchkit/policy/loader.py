"""Read a policy file: YAML → typed Policy, or a PolicyError naming file, line, field and fix.

PyYAML's node tree gives every key and list item a line; pydantic's errors give a path
(``("windows", 0, "duration")``). The loader keeps a map from one to the other, so each problem
reads ``policies/x.yml:14: windows[0].duration: '4 hours' is not a duration: …``.

The text is parsed once: composed into a node tree (tags refused, aliases counted, nesting
bounded), the tree checked (keys are text and appear once, aliases do not expand it past a
bound), then the data constructed from that same tree. Whatever the input text or bytes, the
only exception out of :func:`load` and :func:`loads` is :class:`PolicyError`.
"""

from __future__ import annotations

import re
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError

from patchkit.errors import PolicyError
from patchkit.policy.model import Policy

Loc = tuple[str | int, ...]

HINT = "fix the lines named above; 'patchkit policy schema' prints every allowed key"
PLAIN_YAML = "a policy is plain YAML: no tags, a few aliases at most, and keys that are text"

MAX_BYTES = 1_000_000  # a policy is a few kB; a megabyte is the wrong file
MAX_ALIASES = 100  # uses of *name in one file
MAX_DEPTH = 50  # nested mappings and lists (a policy needs about 6)
MAX_VALUES = 100_000  # values in the tree with aliases expanded (a billion laughs has 10^9)

_CORE = "tag:yaml.org,2002:"
_STR, _MERGE = _CORE + "str", _CORE + "merge"
_BREAKS = re.compile("\r\n|[\n\r\x85\u2028\u2029]")  # what YAML counts as a line break


# ---------------------------------------------------------------- YAML as a person means it


class _RefusedError(Exception):
    """A YAML feature a policy may not use, or a bound passed, at ``line``."""

    def __init__(self, line: int, message: str) -> None:
        super().__init__(message)
        self.line = line
        self.message = message


class _Loader(yaml.SafeLoader):
    """PyYAML's safe loader, bounded, with YAML 1.1's surprises left out of implicit typing.

    Resolved: null, true/false, decimal integers, decimals and .inf/.nan (the model refuses
    those two with a message). Left as the text written, for the model to read by the type of
    the field: yes/no/on/off (``name: no`` is the name "no"; a boolean field still takes
    them, as pydantic reads "yes" and "off"), base-60 numbers (``1:30:00`` is not 5400),
    timestamps (``2026-02-30`` becomes a located date error, not a crash), octal, hex and
    binary integers, and ``=``.
    """

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self.aliases = 0
        self.depth = 0
        self.open_anchors: list[str] = []  # anchors of the nodes being composed

    def compose_node(self, parent: yaml.Node | None, index: int) -> yaml.Node | None:
        event: Any = self.peek_event()  # type: ignore[no-untyped-call]  # untyped in the stubs
        line = event.start_mark.line + 1
        if isinstance(event, yaml.AliasEvent):
            self.aliases += 1
            if self.aliases > MAX_ALIASES:
                raise _RefusedError(line, f"more than {MAX_ALIASES} aliases (*name) in one policy")
            if event.anchor in self.open_anchors:
                raise _RefusedError(line, f"alias *{event.anchor} is inside the value it names")
            return super().compose_node(parent, index)
        tag = getattr(event, "tag", None)
        if tag is not None:
            written = "!!" + tag.removeprefix(_CORE) if tag.startswith(_CORE) else tag
            raise _RefusedError(line, f"tags are not allowed ({written}): remove it")
        self.depth += 1
        if self.depth > MAX_DEPTH:
            raise _RefusedError(line, f"nested more than {MAX_DEPTH} levels deep")
        anchor = event.anchor
        if anchor in self.anchors:
            first = self.anchors[anchor].start_mark.line + 1
            raise _RefusedError(line, f"anchor &{anchor} is defined twice (first on line {first})")
        if anchor is not None:
            self.open_anchors.append(anchor)
        try:
            return super().compose_node(parent, index)
        finally:
            self.depth -= 1
            if anchor is not None:
                self.open_anchors.pop()


_Loader.yaml_implicit_resolvers = {}  # only the resolvers below, none of SafeLoader's
for _tag, _pattern, _first in (
    ("null", r"~|null|Null|NULL|", ["~", "n", "N", ""]),
    ("bool", r"true|True|TRUE|false|False|FALSE", list("tTfF")),
    # At most 18 digits: int() of a much longer number raises ValueError (the 4300-digit
    # limit); a longer one stays text, and an integer field reads it from there.
    ("int", r"[-+]?(?:0|[1-9][0-9_]{0,17})", list("-+0123456789")),
    (
        "float",
        r"[-+]?[0-9][0-9_]*\.[0-9_]*(?:[eE][-+][0-9]+)?|[-+]?\.[0-9][0-9_]*(?:[eE][-+][0-9]+)?"
        r"|[-+]?\.(?:inf|Inf|INF)|\.(?:nan|NaN|NAN)",
        list("-+0123456789."),
    ),
    ("merge", r"<<", ["<"]),
):
    _Loader.add_implicit_resolver(_CORE + _tag, re.compile(f"^(?:{_pattern})$"), _first)


def _line_at(text: str, index: int) -> int:
    """The 1-based line of ``text[index]``, counting line breaks as YAML does."""
    return len(_BREAKS.findall(text, 0, index)) + 1


def _key_problem(node: yaml.Node) -> str | None:
    if isinstance(node, yaml.SequenceNode | yaml.MappingNode):
        return f"a key is a {'list' if isinstance(node, yaml.SequenceNode) else 'mapping'}"
    if node.tag == _STR:
        return None
    if node.tag == _CORE + "null":
        return "a key is empty (or null)"
    kind = "true/false" if node.tag == _CORE + "bool" else "a number"
    return f"key {node.value} is read as {kind}, not text: quote it ('{node.value}')"


@dataclass
class _Index:
    """The line of every path in the tree, aliases expanded; problems with keys."""

    lines: dict[Loc, int] = field(default_factory=dict)
    problems: list[tuple[int, str]] = field(default_factory=list)
    values: int = 0

    def walk(self, node: yaml.Node, loc: Loc) -> None:
        line = node.start_mark.line + 1
        self.values += 1
        if self.values > MAX_VALUES:
            raise _RefusedError(
                line, f"more than {MAX_VALUES} values, counting what aliases repeat"
            )
        if len(loc) > MAX_DEPTH:
            raise _RefusedError(line, f"aliases nest the policy more than {MAX_DEPTH} levels deep")
        self.lines[loc] = line
        if isinstance(node, yaml.ScalarNode) and node.tag == _MERGE:
            node.tag = _STR  # '<<' as a value is the text '<<'; only as a key is it a merge
        elif isinstance(node, yaml.SequenceNode):
            for i, item in enumerate(node.value):
                self.walk(item, (*loc, i))
        elif isinstance(node, yaml.MappingNode):
            self._mapping(node, loc)

    def _mapping(self, node: yaml.MappingNode, loc: Loc) -> None:
        seen: dict[str, int] = {}
        for key_node, value_node in node.value:
            line = key_node.start_mark.line + 1
            if key_node.tag == _MERGE:
                self.walk(value_node, (*loc, "<<"))  # checked; its lines fall back to loc's
                continue
            problem = _key_problem(key_node)
            if problem:
                self.problems.append((line, f"{_dotted(loc)}: {problem}"))
                continue
            key = str(key_node.value)
            if key in seen:
                where = _dotted((*loc, key))
                self.problems.append((line, f"{where}: duplicate key (first on line {seen[key]})"))
            seen[key] = line
            self.walk(value_node, (*loc, key))
            self.lines[(*loc, key)] = line


def _parse(text: str, source: str) -> tuple[Any, dict[Loc, int]]:
    """The data of ``text`` and the line of each path in it; PolicyError for anything else."""
    try:
        loader = _Loader(text)
    except yaml.reader.ReaderError as exc:
        where = f"{source}:{_line_at(text, exc.position)}"
        character = f"U+{exc.character:04X}" if isinstance(exc.character, int) else "character"
        raise PolicyError(
            [f"{where}: the non-printable character {character} is not allowed in YAML: remove it"],
            hint="retype that line; invisible characters often come with pasted text",
        ) from None
    try:
        node = loader.get_single_node()
        if node is None:
            raise PolicyError([f"{source}:1: the policy is empty"], hint=HINT)
        index = _Index()
        index.walk(node, ())
        if index.problems:
            raise PolicyError(
                [f"{source}:{line}: {msg}" for line, msg in index.problems],
                hint="each key may appear once in a mapping; quote keys that are not text",
            )
        return loader.construct_document(node), index.lines
    except _RefusedError as exc:
        raise PolicyError([f"{source}:{exc.line}: {exc.message}"], hint=PLAIN_YAML) from None
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = f"{source}:{mark.line + 1 if mark else 1}"
        what = exc.problem or exc.context
        if exc.context and exc.problem and exc.problem.startswith("but "):
            what = f"{exc.context}, {exc.problem}"  # "but found another document" needs its start
        raise PolicyError(
            [f"{where}: not valid YAML: {what}"],
            hint="check indentation and quoting around that line",
        ) from None
    except yaml.YAMLError as exc:  # unmarked: none known past the reader, kept as a backstop
        raise PolicyError([f"{source}:1: not valid YAML: {exc}"], hint=PLAIN_YAML) from None
    finally:
        loader.dispose()


def _decode(raw: bytes, source: str) -> str:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        before = raw[: exc.start].decode("utf-8")  # valid up to the first bad byte
        raise PolicyError(
            [
                f"{source}:{_line_at(before, len(before))}: not UTF-8 text"
                f" (byte 0x{raw[exc.start]:02x} on this line)"
            ],
            hint="save the file as UTF-8",
        ) from None


# ---------------------------------------------------------------- public


@dataclass(frozen=True)
class Located:
    """A valid policy and the line of each of its paths, for checks made after loading."""

    policy: Policy
    source: str
    lines: Mapping[Loc, int]

    def problem(self, loc: Loc, message: str) -> str:
        """``file:line: field: message`` for the value at ``loc`` (or its nearest parent)."""
        return f"{self.source}:{_nearest_line(loc, self.lines)}: {_dotted(loc)}: {message}"


def load(path: Path) -> Policy:
    """Load and validate the policy at ``path``."""
    return load_located(path).policy


def loads(text: str | bytes, source: str = "<policy>") -> Policy:
    """Validate policy YAML ``text`` (bytes must be UTF-8); ``source`` names it in errors."""
    return loads_located(text, source).policy


def load_located(path: Path) -> Located:
    """:func:`load`, keeping the line of each path in the file."""
    try:
        with path.open("rb") as stream:
            raw = stream.read(MAX_BYTES + 1)  # a device or a huge file is not read whole
    except OSError as exc:
        reason = exc.strerror or str(exc)
        raise PolicyError([f"{path}: cannot read the policy: {reason}"]) from None
    return loads_located(raw, str(path))


def loads_located(text: str | bytes, source: str = "<policy>") -> Located:
    """:func:`loads`, keeping the line of each path in the text."""
    if len(text) > MAX_BYTES:
        raise PolicyError(
            [f"{source}:1: longer than {MAX_BYTES} bytes: a policy is a few kB"],
            hint="check that this is the policy file",
        )
    if isinstance(text, bytes):
        text = _decode(text, source)
    data, lines = _parse(text, source)
    if not isinstance(data, dict):
        raise PolicyError(
            [f"{source}:1: the policy must be a mapping of sections (name, roles, windows, …)"],
            hint=HINT,
        )
    try:
        policy = Policy.model_validate(data)
    except ValidationError as exc:
        raise PolicyError(
            [_describe(error, source, lines, data) for error in exc.errors()], hint=HINT
        ) from None
    return Located(policy, source, lines)


# ---------------------------------------------------------------- pydantic errors → lines


def _dotted(loc: Loc) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "(top level)"


def _describe(error: Any, source: str, lines: Mapping[Loc, int], data: Any) -> str:
    """One problem: where, which field, what is wrong and what is allowed."""
    kind = error["type"]
    data_loc = _data_loc(tuple(error["loc"]), data, missing=kind == "missing")
    line = _nearest_line(data_loc, lines)
    path = _dotted(data_loc)
    if kind == "extra_forbidden":
        allowed = _allowed_keys(data_loc[:-1])
        msg = f"unknown key {data_loc[-1]!r}"
        if allowed:
            msg += f"; allowed here: {', '.join(allowed)}"
    elif kind == "missing":
        msg = "required, but missing"
    else:
        msg = str(error["msg"]).removeprefix("Value error, ")
        value = error.get("input")
        if kind == "string_type" and value is None:
            msg += " (the value is empty)"
        elif kind == "string_type" and isinstance(value, bool | int | float):
            read = "true/false" if isinstance(value, bool) else "a number"
            msg += f" ({value!r} is read as {read}: quote it to make it text)"
    return f"{source}:{line}: {path}: {msg}"


def _data_loc(loc: Loc, data: Any, *, missing: bool) -> Loc:
    """The parts of pydantic's ``loc`` that index the data: it adds union members ('http',
    'str', 'function-after[…]') and '[key]', which are not in the file. The last part of a
    missing field is kept: it names the key to add."""
    out: list[str | int] = []
    current = data
    for i, part in enumerate(loc):
        in_dict = isinstance(current, dict) and isinstance(part, str) and part in current
        in_list = isinstance(current, list) and isinstance(part, int) and 0 <= part < len(current)
        following = loc[i + 1] if i + 1 < len(loc) else None
        if in_dict and following in current and following not in _keys(current[part]):
            continue  # a union member named as a field: 'command' in ('command', 'exit_code')
        if in_dict or in_list:
            current = current[part]
        elif not (missing and i == len(loc) - 1):
            continue
        out.append(part)
    return tuple(out)


def _keys(value: Any) -> Any:
    return value if isinstance(value, dict) else ()


def _nearest_line(loc: Loc, lines: Mapping[Loc, int]) -> int:
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
        info = model.model_fields.get(part) if _is_model(model) else None
        if info is None:
            return []
        model = _model_in(info.annotation)
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
