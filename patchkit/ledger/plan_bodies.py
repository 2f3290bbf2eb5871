"""How the ledger stores a plan's body: its JSON, compressed.

A 50,000-host plan is about 265 MB of compact JSON; held as one string to be bound into an
INSERT, the text, its UTF-8 bytes and the driver's copy tripled the memory of ``patchkit plan``
(1.2 GB). Its hosts repeat the same few updates, so zlib packs it to about 12 MB, and the text
is compressed piece by piece as it is made (``JsonPieces``), never whole. Plans saved before
ledger schema 7 keep their text in ``plans.body`` and read as before.
"""

from __future__ import annotations

import json
import zlib
from collections.abc import Mapping
from typing import Any

from sqlalchemy import Connection, select

from patchkit.ledger import schema as t
from patchkit.planning.pieces import JsonPieces

CHUNK = 1 << 20
LEVEL = 6  # zlib's default: 12 MB for the 50,000-host plan in 1.8 s; level 1 gives 20 MB in 0.9 s


def pack(body: Mapping[str, Any]) -> bytes:
    """The compressed compact JSON of ``body`` (keys sorted), made without holding its text."""
    packer = zlib.compressobj(LEVEL)
    pieces = JsonPieces(separators=(",", ":"), ensure_ascii=False, whole_at=6, reuse=True)
    parts: list[bytes] = []
    held: list[str] = []  # about a megabyte of text per call: millions of small ones, each
    size = 0  # returning a bytes object of its own (mostly empty), cost 290 MB at 50k hosts
    for piece in pieces.pieces(body):
        held.append(piece)
        size += len(piece)
        if size >= CHUNK:
            parts.append(packer.compress("".join(held).encode()))
            held, size = [], 0
    parts.append(packer.compress("".join(held).encode()))
    parts.append(packer.flush())
    return b"".join(parts)


def unpack(text: str | None, packed: bytes | None) -> dict[str, Any]:
    """The body of a ``plans`` row: ``packed`` (schema 7 on) or the ``text`` of older rows.

    Raises ValueError (json.JSONDecodeError, zlib.error) for a body that does not decode."""
    try:
        raw: str | bytes = zlib.decompress(packed) if packed is not None else (text or "")
    except zlib.error as exc:
        raise ValueError(f"the stored plan body does not decompress: {exc}") from None
    body = json.loads(raw)
    if not isinstance(body, dict):
        raise ValueError("the stored plan body is not a JSON object")
    return body


def read(conn: Connection, plan_id: str) -> dict[str, Any] | None:
    """The stored body of plan ``plan_id`` (None: no such plan); ValueError as ``unpack``."""
    query = select(t.plans.c.body, t.plans.c.body_z).where(t.plans.c.id == plan_id)
    row = conn.execute(query).first()
    return None if row is None else unpack(row.body, row.body_z)
