"""The plan's stored form: a versioned JSON body, its content hash, and the way back to ``Plan``.

``encode`` turns a ``Plan`` into plain JSON data; ``decode`` turns a stored body back into the
same typed ``Plan`` (``decode(encode(p)) == p``), refusing a body of another format. The hash
covers what the plan decides; ``UNHASHED`` names what it leaves out. ``verify`` recomputes it
from the body itself, so that an edited body is refused rather than trusted for the hash stored
beside it.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import types
import typing
from collections.abc import Mapping
from datetime import date, datetime, timedelta
from enum import Enum
from functools import cache
from typing import Any

from pydantic import TypeAdapter

from patchkit.errors import PlanningError, RefusedError
from patchkit.model import freeze
from patchkit.planning.pieces import JsonPieces
from patchkit.planning.types import Plan
from patchkit.policy.values import Amount, CountOrPercent

FORMAT = "patchkit-plan/2"

# Top-level keys outside the hash (besides id and hash themselves), and per-batch keys.
UNHASHED = ("made_at", "warnings", "format")
UNHASHED_BATCH = ("start",)


def jsonable(value: Any, memo: dict[int, Any] | None = None) -> Any:
    """Plain JSON data for any plan value: ISO times, seconds for durations, enum values.

    A frozen dataclass met again (the same object: the planner shares one SelectedUpdate among
    the hosts of an image, the ledger one PendingUpdate) gives the same dict again, made once
    per ``memo`` (one per call when not given): treat the result as read-only.
    """
    return _plain(value, {} if memo is None else memo)


_SCALARS = frozenset({str, int, float, bool, type(None)})


_FIELDS: dict[type, tuple[tuple[str, ...], bool] | None] = {}


def _frozen_fields(kind: type) -> tuple[tuple[str, ...], bool] | None:
    """A dataclass's field names and whether it is frozen; None for any other type."""
    try:
        return _FIELDS[kind]
    except KeyError:
        pass
    found = None
    if dataclasses.is_dataclass(kind):
        frozen = bool(getattr(kind, "__dataclass_params__").frozen)  # noqa: B009 - not typed
        found = tuple(f.name for f in dataclasses.fields(kind)), frozen
    _FIELDS[kind] = found
    return found


def _plain(value: Any, memo: dict[int, Any]) -> Any:
    kind = type(value)
    if kind in _SCALARS:
        return value
    described = _frozen_fields(kind)
    if described is not None:
        names, frozen = described
        if frozen:
            done = memo.get(id(value))
            if done is not None:
                return done
        out = {name: _plain(getattr(value, name), memo) for name in names}
        if frozen:
            memo[id(value)] = out  # ``value`` outlives the call: its id is not reused
        return out
    if isinstance(value, Enum):
        return value.value
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, timedelta):
        return int(value.total_seconds())
    if isinstance(value, Amount):
        return str(value)
    if isinstance(value, Mapping):
        return {str(k): _plain(v, memo) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v, memo) for v in value]
    return value


_CANONICAL: dict[str, Any] = {"separators": (",", ":"), "ensure_ascii": False, "default": str}


def canonical(data: Any) -> bytes:
    return json.dumps(data, sort_keys=True, **_CANONICAL).encode()


def digest(data: Any) -> str:
    """SHA-256 (hex) of ``canonical(data)``, taken piece by piece: a 50,000-host plan's text is
    hundreds of megabytes, and needs not be held for its hash."""
    found = hashlib.sha256()
    for piece in JsonPieces(**_CANONICAL).pieces(data):
        found.update(piece.encode())
    return found.hexdigest()


def encode(plan: Plan) -> dict[str, Any]:
    """The body stored in the ledger and printed by ``plan --format json``."""
    body: dict[str, Any] = jsonable(plan)
    body["format"] = FORMAT
    return body


def body_hash(body: Mapping[str, Any]) -> str:
    """SHA-256 of what the plan decides: the body without id, hash and ``UNHASHED``."""
    data = {k: v for k, v in body.items() if k not in ("id", "hash", *UNHASHED)}
    data["batches"] = [
        {k: v for k, v in b.items() if k not in UNHASHED_BATCH} for b in body.get("batches", [])
    ]
    return digest(data)


def plan_id(digest: str) -> str:
    return f"plan-{digest[:12]}"


def verify(body: Mapping[str, Any], stored_hash: str) -> None:
    """Refuse (exit 3) a body whose content does not give its hash (an edited ledger row).

    A body of another format (an older patchkit's) is refused as such first: its hash was
    computed another way, and it was not edited.
    """
    _check_format(body)
    digest = body_hash(body)
    if (
        digest != stored_hash
        or body.get("hash") != stored_hash
        or body.get("id") != plan_id(digest)
    ):
        raise RefusedError(
            f"plan {body.get('id')} in the ledger does not match its hash: its body was changed "
            "after it was made",
            hint="do not run it; make a new plan (patchkit plan) and have it approved, and find "
            "out who changed the ledger (patchkit report audit)",
        )


def decode(body: Mapping[str, Any]) -> Plan:
    """The typed plan of a stored body (PlanningError for another format or a broken body)."""
    _check_format(body)
    data = {k: v for k, v in body.items() if k != "format"}
    try:
        plan: Plan = _build(Plan, data)
    except (KeyError, TypeError, ValueError) as exc:
        raise PlanningError(
            f"plan {body.get('id')} cannot be read: {type(exc).__name__}: {exc}",
            hint="make a new plan (patchkit plan)",
        ) from None
    return plan


def _check_format(body: Mapping[str, Any]) -> None:
    fmt = body.get("format")
    if fmt != FORMAT:
        made = "an older patchkit" if fmt in (None, "patchkit-plan/1") else f"format {fmt}"
        raise PlanningError(
            f"plan {body.get('id')} was made by {made}; this patchkit runs {FORMAT} plans",
            hint="make a new plan (patchkit plan) and have it approved",
        )


@cache
def _hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


_AMOUNT: TypeAdapter[Amount] = TypeAdapter(CountOrPercent)


def _build(kind: Any, value: Any) -> Any:
    """``value`` (plain JSON data) as an instance of the annotated type ``kind``."""
    origin = typing.get_origin(kind)
    if origin in (typing.Union, types.UnionType):
        options = typing.get_args(kind)
        if value is None and type(None) in options:
            return None
        (inner,) = [o for o in options if o is not type(None)]
        return _build(inner, value)
    if dataclasses.is_dataclass(kind) and isinstance(kind, type):
        hints = _hints(kind)
        fields = {f.name for f in dataclasses.fields(kind)}
        unknown = set(value) - fields
        if unknown:
            raise ValueError(f"unknown key(s) {sorted(unknown)} in {kind.__name__}")
        return kind(**{name: _build(hints[name], v) for name, v in value.items()})
    if origin is tuple:
        args = typing.get_args(kind)
        return tuple(_build(args[0], v) for v in value)
    if origin in (dict, Mapping, typing.get_origin(Mapping[str, Any])):
        _, inner = typing.get_args(kind)
        return {str(k): _build(inner, v) for k, v in value.items()}
    if kind is Any:
        return freeze(value)
    if kind is datetime:
        return datetime.fromisoformat(value)
    if kind is date:
        return date.fromisoformat(value)
    if kind is timedelta:
        return timedelta(seconds=value)
    if kind is Amount:
        return _AMOUNT.validate_python(value)
    if isinstance(kind, type) and issubclass(kind, Enum):
        return kind(value)
    if kind in (str, int, float, bool):
        if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
            raise TypeError(f"{value!r} is not {kind.__name__}")
        return value
    raise TypeError(f"no decoder for {kind!r}")
