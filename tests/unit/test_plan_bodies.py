"""Unit: the ledger keeps a plan's body as compressed JSON (patchkit.ledger.plan_bodies); plans
stored as text by schema 6 and before read as before, and a broken body is refused by name."""

from __future__ import annotations

import json
import sqlite3
import zlib
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from patchkit.errors import RefusedError
from patchkit.ledger import Ledger, plan_bodies
from patchkit.planning import codec

T0 = datetime(2026, 11, 1, 9, 0, tzinfo=UTC)
SHARED = {"package": "libssl3", "cves": [{"cve": "CVE-2026-1", "epss": 0.5, "kev": True}]}


def body(hosts: int = 3) -> dict[str, Any]:
    made: dict[str, Any] = {
        "id": "plan-abc",
        "policy": "lab",
        "made_at": T0.isoformat(),
        "window": {"name": "w", "start": T0.isoformat()},
        "owner": "Zoë Ørsted",  # not ASCII
        "batches": [
            {"hosts": [{"host": f"web{n}", "updates": [SHARED], "held": []} for n in range(hosts)]}
        ],
        "nothing": None,
        "ratio": 0.1,
    }
    made["hash"] = codec.body_hash(made)
    return made


def test_a_body_packs_to_the_compressed_compact_json_of_it() -> None:
    made = body()
    text = zlib.decompress(plan_bodies.pack(made)).decode()
    assert text == json.dumps(made, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    assert plan_bodies.unpack("", plan_bodies.pack(made)) == made


def test_hosts_repeating_the_same_updates_pack_small() -> None:
    made = body(hosts=2000)
    text = json.dumps(made, separators=(",", ":"))
    assert len(plan_bodies.pack(made)) * 20 < len(text)


def test_a_body_stored_as_text_reads_as_before() -> None:
    assert plan_bodies.unpack('{"id": "plan-old"}', None) == {"id": "plan-old"}


@pytest.mark.parametrize(
    ("text", "packed", "why"),
    [
        ("", b"not zlib", "does not decompress"),
        ("", zlib.compress(b"[1, 2]"), "not a JSON object"),
        ("{broken", None, "Expecting property name"),
    ],
)
def test_a_broken_body_is_a_value_error(text: str, packed: bytes | None, why: str) -> None:
    with pytest.raises(ValueError, match=why):
        plan_bodies.unpack(text, packed)


def test_the_ledger_stores_it_packed_and_refuses_an_edit(tmp_path: Path) -> None:
    path = tmp_path / "ledger.sqlite"
    ledger = Ledger(f"sqlite:///{path}")
    made = body()
    assert ledger.save_plan(made, saved_at=T0)
    assert not ledger.save_plan(made, saved_at=T0)  # once by id
    with sqlite3.connect(path) as conn:
        stored_text, packed = conn.execute("SELECT body, body_z FROM plans").fetchone()
    assert stored_text == "" and zlib.decompress(packed)
    stored = ledger.stored_plan("plan-abc")
    assert stored is not None and stored.body == made
    # a body edited in the database no longer gives its hash
    edited = zlib.compress(zlib.decompress(packed).replace(b"libssl3", b"libssl9"))
    with sqlite3.connect(path) as conn:
        conn.execute("UPDATE plans SET body_z = ?", (edited,))
    changed = ledger.stored_plan("plan-abc")
    assert changed is not None and changed.body["batches"] != made["batches"]
    assert codec.body_hash(changed.body) != changed.hash
    # and one that does not decompress at all is refused by the hash check, by name
    with sqlite3.connect(path) as conn:
        conn.execute("UPDATE plans SET body_z = ?", (b"garbage",))
    broken = ledger.stored_plan("plan-abc")
    assert broken is not None and broken.body["unreadable"] is True
    with pytest.raises(RefusedError, match="plan plan-abc in the ledger does not match its hash"):
        codec.verify(broken.body, broken.hash)
    ledger.close()
