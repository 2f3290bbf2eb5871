"""Unit: the pure host-pattern matcher agrees with Ansible's InventoryManager on real fleets."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest
from ansible.inventory.manager import InventoryManager, split_host_pattern
from ansible.parsing.dataloader import DataLoader
from hypothesis import given, settings
from hypothesis import strategies as st

from patchkit import inventory
from patchkit.model import Host
from patchkit.planning import patterns
from patchkit.planning.patterns import PatternError

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "inventories" / "example" / "hosts.yml"
INI = ROOT / "inventories" / "example-ini" / "hosts.ini"


class Fleet:
    """One inventory seen both ways: patchkit's Host records and Ansible's InventoryManager."""

    def __init__(self, source: Path) -> None:
        self.hosts = inventory.load(source)
        self.ansible = InventoryManager(loader=DataLoader(), sources=[str(source)])
        self.groups = sorted(g for g in self.ansible.groups if g not in ("all", "ungrouped"))

    def ansible_names(self, pattern: str | list[str]) -> list[str]:
        return [h.name for h in self.ansible.get_hosts(pattern)]

    def name_ordered(self, group: str) -> bool:
        """Whether Ansible lists this group's hosts in name order (subscripts then agree)."""
        names = [h.name for h in self.ansible.groups[group].get_hosts()]
        return names == sorted(names)


@pytest.fixture(scope="module")
def example() -> Fleet:
    return Fleet(EXAMPLE)


@pytest.fixture(scope="module")
def ini() -> Fleet:
    return Fleet(INI)


def agree(fleet: Fleet, pattern: str | list[str]) -> tuple[str, ...]:
    got = patterns.select(fleet.hosts, [pattern] if isinstance(pattern, str) else pattern)
    assert set(got) == set(fleet.ansible_names(pattern)), pattern
    assert list(got) == [h.name for h in fleet.hosts if h.name in set(got)]  # input order
    return got


TABLE = [
    "all",
    "*",
    "prod",
    "laptops",
    "db",
    "db-prod-03",
    "staging:dev",
    "staging,dev",
    "staging, dev",
    "prod:&web",
    "prod,&web",
    "&web",
    "prod:!web",
    "!prod",
    "all:!laptops",
    "prod:&web:!web-prod-01",
    "!web-prod-01:prod:&web",
    "prod,!db,&servers",
    "web-staging-*",
    "*-legacy*",
    "*prod*",
    "db_*",
    "*_db_prod",
    "lt-00[0-1]?",
    "lt-00[!0]*",
    "~^db-(prod|dev)",
    "~web",
    "~.*-0[12]$",
    "~canary|legacy",
    "servers:&canary",
    "ungrouped",
    "nosuch",
    "nosuch:prod",
    "web:22",
    "db-prod-03:22",
    "",
    "prod_internal:&batch",
    "app:&staging:!canary",
]


@pytest.mark.parametrize("pattern", TABLE)
def test_patterns_agree_with_ansible(example: Fleet, pattern: str) -> None:
    agree(example, pattern)


def test_a_pattern_list_is_one_expression(example: Fleet) -> None:
    got = agree(example, ["!canary", "staging", "&app"])
    assert got and all(n.startswith("app-staging-") for n in got)
    assert patterns.select(example.hosts, []) == ()


SUBSCRIPTS = [
    "db[0]",
    "db[1]",
    "db[-1]",
    "db[1:3]",
    "db[2:]",
    "db[0:0]",
    "web[2:0]",
    "web[1-2]",
    "laptops[5:9]",
    "laptops[60:200]",
    "orders_db_prod[1:]",
    "prod:&web[0:3]",
    "web[0:3]:!web-prod-01",
    "staging:!web-staging-*[1:]",
]


@pytest.mark.parametrize("pattern", SUBSCRIPTS)
def test_subscripts_agree_on_groups_listed_in_name_order(example: Fleet, pattern: str) -> None:
    for group in ("db", "web", "laptops", "orders_db_prod", "staging"):
        assert example.name_ordered(group), group  # the condition for agreeing (see patterns)
    agree(example, pattern)


def test_subscripts_count_in_input_order() -> None:
    hosts = [Host("c", ("g",)), Host("a", ("g",)), Host("b", ("g",))]
    assert patterns.select(hosts, ["g[0]"]) == ("c",)
    assert patterns.select(hosts, ["g[1:]"]) == ("a", "b")


def test_an_out_of_range_index_is_an_error_as_in_ansible(example: Fleet) -> None:
    with pytest.raises(PatternError, match="subscript"):
        patterns.select(example.hosts, ["canary[99]"])
    assert patterns.select(example.hosts, ["canary[99:100]"]) == ()


def test_a_bad_regex_is_an_error(example: Fleet) -> None:
    with pytest.raises(PatternError):
        patterns.select(example.hosts, ["~web("])


INI_TABLE = [
    "ungrouped",
    "bastion.example.net",
    "webservers:&staging",
    "prod:!web",
    "web0[1-2].example.net",
    "~web0[12]",
    "*.corp.example.net",
    "servers:!canary",
    "batch[1]",
    "web[0:1]",
    "db-[ab].example.net",
]


@pytest.mark.parametrize("pattern", INI_TABLE)
def test_patterns_agree_on_the_ini_variant(ini: Fleet, pattern: str) -> None:
    agree(ini, pattern)


def test_matches_judges_one_host(example: Fleet) -> None:
    for pattern in ("prod:&web", "!laptops", "~^db", "*-legacy*", "canary", "web-prod-01"):
        chosen = set(patterns.select(example.hosts, [pattern]))
        for host in example.hosts:
            assert patterns.matches(host, pattern) == (host.name in chosen), (pattern, host)
    with pytest.raises(PatternError):
        patterns.matches(example.hosts[0], "db[0]")


SPLITS = [
    "web",
    "web:db",
    "web,db",
    "web:&db:!x",
    "web[1:3]",
    "web[1:3]:db",
    "web[1:3],db[0]",
    "host:22",
    "[::1]:22",
    "::1",
    "fe80::1:2",
    "2001:db8::[a:f]",
    "1:2:3:4:5:6:7:8",
    "1:2:3:4:5:6:7::",
    "::ffff:10.0.0.1",
    "10.0.0.[1:3]",
    "10.0.0.1:22",
    "a b:c",
    "~(web|db):x",
    "web[0]:db[1-2]",
    " web , db ",
    "web-:x",
    "web_:22",
    "db]x:y[",
]


@pytest.mark.parametrize("text", SPLITS)
def test_split_agrees_with_ansible(text: str) -> None:
    assert patterns.split(text) == split_host_pattern(text)


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet="ab1f:[],!&~*. -_", max_size=14))
def test_split_agrees_with_ansible_on_any_text(text: str) -> None:
    assert patterns.split(text) == split_host_pattern(text)


def item(fleet: Fleet) -> st.SearchStrategy[str]:
    names = [h.name for h in fleet.hosts]
    words = st.one_of(
        st.sampled_from(fleet.groups),
        st.sampled_from(names),
        st.sampled_from(
            ["all", "*", "*prod*", "web-*", "*_db_*", "~^db", "~(app|web)-dev", "lt-*"]
        ),
    )
    return st.tuples(st.sampled_from(["", "", "&", "!"]), words).map("".join)


@settings(max_examples=200, deadline=None)
@given(data=st.data())
def test_combinations_agree_with_ansible(example: Fleet, data: Any) -> None:
    items: Sequence[str] = data.draw(st.lists(item(example), min_size=1, max_size=5))
    joiner = data.draw(st.sampled_from([":", ",", None]))
    pattern: str | list[str] = list(items) if joiner is None else joiner.join(items)
    agree(example, pattern)


@settings(max_examples=100, deadline=None)
@given(data=st.data())
def test_subscripted_groups_in_combinations_agree(example: Fleet, data: Any) -> None:
    ordered = [g for g in example.groups if example.name_ordered(g)]
    group = data.draw(st.sampled_from(ordered))
    size = len(example.ansible.groups[group].get_hosts())
    start = data.draw(st.integers(0, size - 1))
    end = data.draw(st.integers(start, size + 2))
    sub = data.draw(st.sampled_from([f"[{start}]", f"[{start}:{end}]", f"[{start}:]"]))
    rest: list[str] = data.draw(st.lists(item(example), max_size=2))
    agree(example, ":".join([group + sub, *rest]))
