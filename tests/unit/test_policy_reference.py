"""docs/policy-reference.md stays true to the code: every key of the policy schema has its row,
no row names a key the schema does not have, and every test it names exists."""

from __future__ import annotations

import ast
import re
from collections.abc import Iterator, Mapping
from functools import cache
from pathlib import Path
from typing import Any

from patchkit.policy.model import Policy, PolicySchema

ROOT = Path(__file__).resolve().parents[2]
REFERENCE = ROOT / "docs" / "policy-reference.md"
TEST_ID = re.compile(r"`(tests/[\w/]+\.py)(?:::(\w+))?")
TOKEN = re.compile(r"`([^`]+)`")


def _resolve(schema: Mapping[str, Any], node: Mapping[str, Any]) -> Mapping[str, Any]:
    """Follows a `$ref`, and an optional value (`anyOf` of one object and null) to its object."""
    if "$ref" in node:
        return _resolve(schema, schema["$defs"][node["$ref"].rsplit("/", 1)[1]])
    for choice in node.get("anyOf", ()):
        if "$ref" in choice or choice.get("type") == "array":
            return _resolve(schema, choice)
    return node


def _is_section(schema: Mapping[str, Any], node: Mapping[str, Any]) -> bool:
    """A mapping of keys, or a list of them: its keys have the rows, it may have none itself."""
    node = _resolve(schema, node)
    if node.get("type") == "array" and "items" in node:
        return "oneOf" in node["items"] or _is_section(schema, node["items"])
    return "properties" in node


def _keys(
    schema: Mapping[str, Any], node: Mapping[str, Any], path: str
) -> Iterator[tuple[str, bool]]:
    """Each key path under ``node``, and whether it is a section (a mapping of further keys, or
    a list of such mappings), whose keys have the rows and which may have none itself."""
    node = _resolve(schema, node)
    if node.get("type") == "array" and "items" in node:
        items = node["items"]
        if "oneOf" in items:  # the checks: one row per field of each type
            for choice in items["oneOf"]:
                check = _resolve(schema, choice)
                kind = check["properties"]["type"]["const"]
                for field in check["properties"]:
                    if field not in ("type", "hosts"):
                        yield f"{path}[{kind}].{field}", False
            yield f"{path}[].type", False
            yield f"{path}[].hosts", False
            return
        yield from _keys(schema, items, path + "[]")
        return
    for field, sub in node.get("properties", {}).items():
        key = f"{path}.{field}" if path else field
        yield key, _is_section(schema, sub)
        yield from _keys(schema, sub, key)


@cache
def schema_keys(sections: bool = True) -> frozenset[str]:
    """Every key path of the policy schema; without ``sections``, only those holding a value."""
    schema = Policy.model_json_schema(mode="validation", schema_generator=PolicySchema)
    return frozenset(k for k, section in _keys(schema, schema, "") if sections or not section)


@cache
def documented_keys() -> frozenset[str]:
    """The keys named in the first cell of every table row, in the page's own spellings:
    `a.b`, `.c` (a sibling of the key before it), and `type: tcp` `.host` for a check's field."""
    keys: set[str] = set()
    for line in REFERENCE.read_text(encoding="utf-8").splitlines():
        if not line.startswith("| `"):
            continue
        tokens = TOKEN.findall(line.split(" | ", 1)[0])
        base = ""
        for token in tokens:
            token = token.split(" ", 1)[0] if token.endswith(("`", ")")) else token
            if token.startswith("type: "):
                base = f"verification[{token.removeprefix('type: ')}]"
            elif token.startswith("."):
                keys.add(base + token)
            else:
                keys.add(token)
                base = token.rsplit(".", 1)[0]
    return frozenset(keys)


def test_every_key_of_the_schema_has_its_row() -> None:
    missing = sorted(schema_keys(sections=False) - documented_keys())
    assert not missing, f"keys without a row in {REFERENCE.name}: {missing}"


def test_no_row_names_a_key_the_schema_does_not_have() -> None:
    unknown = sorted(documented_keys() - schema_keys())
    assert not unknown, f"rows in {REFERENCE.name} for keys the schema lacks: {unknown}"


def _tests_in(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    return {n.name for n in ast.walk(tree) if isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef)}


def test_every_test_the_reference_names_exists() -> None:
    text = REFERENCE.read_text(encoding="utf-8")
    wrong = []
    for path, name in sorted(set(TEST_ID.findall(text))):
        file = ROOT / path
        if not file.is_file():
            wrong.append(f"{path} (no such file)")
        elif name and name not in _tests_in(file):
            wrong.append(f"{path}::{name}")
    assert not wrong, f"{REFERENCE.name} names tests that do not exist: {wrong}"
