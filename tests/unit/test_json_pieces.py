"""JSON in pieces (patchkit.planning.pieces): joined, the pieces are json.dumps's text exactly."""

from __future__ import annotations

import hashlib
import json
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from patchkit.planning import codec
from patchkit.planning.pieces import JsonPieces

scalars = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False)
    | st.text(max_size=8)  # any character: non-ASCII, quotes, line breaks
)
documents = st.recursive(
    scalars,
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.tuples(inner, inner)
        | st.dictionaries(st.text(max_size=5), inner, max_size=4)
    ),
    max_leaves=40,
)
LAYOUTS: list[dict[str, Any]] = [
    {},
    {"indent": 2},
    {"indent": 2, "ensure_ascii": False},
    {"separators": (",", ":"), "ensure_ascii": False, "default": str},
    {"indent": 3, "separators": (";", "= ")},
]


@settings(max_examples=300)
@given(documents, st.integers(min_value=0, max_value=4), st.booleans())
def test_the_pieces_are_json_dumps_exactly(data: Any, whole_at: int, reuse: bool) -> None:
    for layout in LAYOUTS:
        pieces = JsonPieces(**layout, whole_at=whole_at, reuse=reuse)
        assert "".join(pieces.pieces(data)) == json.dumps(data, sort_keys=True, **layout)


class Opaque:
    def __str__(self) -> str:
        return "opaque\nvalue"


def test_keys_that_are_no_strings_and_unknown_values_are_encoded_as_json_does() -> None:
    data = {"a": [{1: "one", 2: Opaque()}, Opaque()], "b": {"x": {"y": [1.5, None]}}}
    for whole_at in range(5):
        for indent in (None, 2):
            pieces = JsonPieces(indent=indent, default=str, whole_at=whole_at)
            want = json.dumps(data, sort_keys=True, indent=indent, default=str)
            assert "".join(pieces.pieces(data)) == want


def test_a_shared_value_is_encoded_once_and_written_wherever_it_recurs() -> None:
    shared = {"package": "openssl", "cves": [{"cve": "CVE-2026-1", "kev": True}]}
    data = {"hosts": [{"name": f"h{i}", "updates": [shared, shared]} for i in range(3)]}
    pieces = JsonPieces(indent=2, whole_at=4, reuse=True)
    calls: list[Any] = []
    whole = pieces._whole

    def counted(value: Any) -> str:
        calls.append(value)
        return whole(value)

    pieces._whole = counted  # type: ignore[assignment]
    assert "".join(pieces.pieces(data)) == json.dumps(data, sort_keys=True, indent=2)
    assert calls == [shared]


def test_the_plan_hash_is_taken_from_the_pieces_as_from_the_whole_text() -> None:
    body = {"id": "x", "hash": "y", "made_at": "now", "batches": [{"start": 1, "hosts": ["é"]}]}
    data = {"batches": [{"hosts": ["é"]}]}
    assert codec.body_hash(body) == hashlib.sha256(codec.canonical(data)).hexdigest()
    assert (
        codec.digest({"k": [1, "é", None]})
        == hashlib.sha256(codec.canonical({"k": [1, "é", None]})).hexdigest()
    )
