"""Unit: the reports' JSON encoder (patchkit.reports.jsondoc) writes what
``json.dumps(asdict(value), indent=2, default=str)`` wrote, byte for byte, for every kind of
field, whole or in pieces, however often a value repeats."""

from __future__ import annotations

import dataclasses
import enum
import json
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from patchkit.reports import jsondoc


class Colour(enum.StrEnum):
    RED = "red"
    ODD = 'a "quoted"\nvalue é'


class Level(enum.IntEnum):
    LOW = 1
    HIGH = 7


@dataclass(frozen=True)
class Leaf:
    text: str
    number: int
    ratio: float | None
    flag: bool
    when: datetime | None = None
    day: date | None = None
    colour: Colour = Colour.RED
    level: Level = Level.LOW


@dataclass(frozen=True)
class Empty:
    pass


@dataclass
class Node:  # not frozen, with containers of everything
    name: str
    leaves: tuple[Leaf, ...] = ()
    items: list[Any] = dataclasses.field(default_factory=list)
    by: dict[Any, Any] = dataclasses.field(default_factory=dict)
    child: Any = None
    nothing: Empty = dataclasses.field(default_factory=Empty)


@dataclass(frozen=True)
class Box:
    value: Any


def expected(value: Any) -> str:
    """What the reports wrote before: asdict (of every dataclass inside ``value``, as in a
    report's fields), then json.dumps with their options."""
    return json.dumps(dataclasses.asdict(Box(value))["value"], indent=2, default=str)


def both(value: Any) -> list[str]:
    """The encoder's text whole, and joined from pieces at every walking depth."""
    return [jsondoc.dumps(value), *("".join(jsondoc.pieces(value, w)) for w in range(5))]


WHEN = datetime(2026, 11, 25, 10, 0, tzinfo=UTC)


def every_kind() -> Node:
    leaves = (
        Leaf("plain", 0, 0.1, True, WHEN, date(2026, 1, 31), Colour.ODD, Level.HIGH),
        Leaf("ünïcödé \u2028 \x00 \x1b[2J </script>", -(10**30), float("nan"), False),
        Leaf("", 2**63, float("inf"), True, WHEN - timedelta(microseconds=1)),
        Leaf("tab\tand\\slash", 7, float("-inf"), False, datetime(2026, 3, 1, 12, 30)),
        Leaf("small", 1, 1e-320, True),
        Leaf("big", 1, 1.5e300, False),
    )
    return Node(
        "every kind",
        leaves,
        items=[None, True, False, 1, 2.5, "x", (), [], {}, Empty(), [[[]]], ({"a": ()},)],
        by={
            "text": "value",
            3: "int key",
            2.5: "float key",
            True: "bool key",
            None: "null key",
            Colour.RED: "enum key",
            Level.HIGH: "int enum key",
            "nested": {"deeper": [leaves[0], {"k": Empty()}]},
        },
        child=Node("child", (leaves[1],), by={"": []}),
    )


def test_every_field_kind_is_written_as_asdict_and_json_dumps_wrote_it() -> None:
    value = every_kind()
    assert set(both(value)) == {expected(value)}


def test_a_top_level_built_from_fields_is_the_dict_the_reports_made() -> None:
    value = every_kind()
    top = {"format": "demo/1", **jsondoc.fields(value), "extra": 3}
    old = json.dumps(
        {"format": "demo/1", **dataclasses.asdict(value), "extra": 3}, indent=2, default=str
    )
    assert set(both(top)) == {old}


def test_values_that_repeat_are_written_as_they_were_each_time() -> None:
    # hosts of one image share one long tuple of CVE rows and one row object; the same
    # objects also appear at other depths, where their text is indented otherwise
    shared = tuple(Leaf(f"CVE-{n}", n, n / 3, n % 2 == 0) for n in range(40))
    row = Leaf("shared row", 1, None, True, WHEN)
    hosts = tuple(Node(f"h{n}", shared, items=[row, row], child=row) for n in range(30))
    value = {"hosts": hosts, "again": shared, "deep": [[shared, row]], "rows": [row] * 3}
    assert set(both(value)) == {expected(value)}


def test_pieces_never_hold_a_big_document_whole() -> None:
    shared = tuple(Leaf(f"CVE-{n}", n, None, False) for n in range(200))
    hosts = tuple(Node(f"h{n}", shared) for n in range(300))
    got = list(jsondoc.pieces({"hosts": hosts}))
    whole = "".join(got)
    assert whole == expected({"hosts": hosts})
    assert max(len(p) for p in got) < len(whole) / 100  # a host's text at most


def test_a_key_json_cannot_write_is_refused_as_json_refuses_it() -> None:
    with pytest.raises(TypeError):
        json.dumps({(1, 2): "tuple key"}, indent=2, default=str)
    with pytest.raises(TypeError):
        jsondoc.dumps({(1, 2): "tuple key"})


# ---------------------------------------------------------------- any document

scalars = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats()  # NaN and the infinities too
    | st.text(max_size=8)  # any character: non-ASCII, quotes, line breaks, controls
    | st.sampled_from([*Colour, *Level])
    | st.datetimes(timezones=st.just(UTC))
    | st.dates()
)
keys = st.text(max_size=5) | st.integers() | st.booleans() | st.none() | st.floats()


def _containers(inner: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    leaf = st.builds(Leaf, st.text(max_size=4), st.integers(), st.floats(), st.booleans())
    return (
        st.lists(inner, max_size=4)
        | st.lists(inner, max_size=3).map(tuple)
        | st.dictionaries(keys, inner, max_size=4)
        | st.builds(Node, st.text(max_size=4), st.lists(leaf, max_size=3).map(tuple), child=inner)
        | st.just(Empty())
    )


def _repeated(value: Any) -> list[Any]:
    """One object in several places, and one long tuple of it twice: the encoder may give
    again what it wrote for them. Applied once, at the top: nested, the text would grow by 33
    times per level."""
    many = (value,) * 33
    return [value, many, {"again": value, "many": many}, [many]]


trees = st.recursive(scalars, _containers, max_leaves=30)
documents = trees | trees.map(_repeated) | st.lists(trees, max_size=3).map(_repeated)


@settings(max_examples=300, deadline=None)
@given(documents)
def test_any_document_is_written_as_asdict_and_json_dumps_wrote_it(value: Any) -> None:
    assert set(both(value)) == {expected(value)}
