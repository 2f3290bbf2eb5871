"""Ansible host patterns (the ``hosts:`` and ``--limit`` syntax) resolved over Host records.

The rules are those of ``ansible.inventory.manager.InventoryManager.get_hosts``:

- a pattern list is split on ``,``; without a comma, on ``:`` unless the whole text is one host
  address (``host:22``, an IPv6 address, ``web[1:3]``); whitespace around items is dropped;
- plain items are applied first (union), then ``&`` items (intersection), then ``!`` items
  (exclusion), whatever their order in the list; with only ``&``/``!`` items, ``all`` is the
  start;
- an item that is exactly a host's name selects that host; otherwise it is matched against
  group names (a group brings every host of it and of its child groups, which Host.groups
  already lists) and, when no group matched or the item is a regex or has any of ``. ? * [``,
  against host names too;
- ``~`` starts a regular expression (matched at the start of the name, as ``re.match``);
  anything else is an fnmatch glob (case-sensitive, whole name); ``all`` matches every host,
  ``ungrouped`` the hosts in no group;
- ``item[i]``, ``item[i:j]`` (inclusive) and ``item[i:]`` select among the hosts the item
  matched.

Differences from Ansible, by necessity: subscripts count hosts in the order of the ``hosts``
argument (patchkit.inventory gives them sorted by name), where Ansible counts them in the order
the inventory lists them, group by group; the two agree when each group lists its hosts in
name order. An absent ``localhost`` matches nothing (Ansible makes up an implicit one).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from fnmatch import translate

from patchkit.model import Host


class PatternError(ValueError):
    """A host pattern Ansible would refuse: a bad regex or an out-of-range subscript."""


def select(hosts: Sequence[Host], patterns: Sequence[str]) -> tuple[str, ...]:
    """Names of the hosts the patterns select, in the order of ``hosts``.

    No pattern selects nothing; an empty pattern (``""``) selects all, as in Ansible. To resolve
    many pattern lists over the same hosts, make one Selector and ask it each time.
    """
    return Selector(hosts).select(patterns)


def matches(host: Host, pattern: str) -> bool:
    """Whether one pattern (a list is fine) selects ``host``, judged from the host alone.

    Exact for everything but subscripts, which need the other hosts and raise PatternError,
    and for a name shared by a group and another host (Ansible then picks the host alone).
    """
    items = split([pattern])
    for item in items:
        body = item[1:] if item[0] in "&!" else item
        if body and _split_subscript(body)[1] is not None:
            raise PatternError(f"{pattern!r}: a subscript depends on the other hosts")
    return bool(Selector([host]).evaluate(items))


def split(patterns: str | Iterable[str]) -> list[str]:
    """The single items of a pattern list, as Ansible's ``split_host_pattern`` gives them."""
    if isinstance(patterns, str):
        patterns = [patterns]
    items: list[str] = []
    for text in patterns:
        if "," in text:
            parts = text.split(",")
        elif _is_address(text):
            parts = [text]
        else:
            # ':' separates items, but not inside brackets: web[1:3] is one item
            parts = _COLON_ITEM.findall(text)
        items.extend(p.strip() for p in parts if p.strip())
    return items


_COLON_ITEM = re.compile(r"(?:[^\s:\[\]]|\[[^\]]*\])+")
_SUBSCRIPT = re.compile(r"^(.+)\[(?:(-?[0-9]+)|([0-9]+)[:-]([0-9]*))\]$")
_GLOB_CHARS = (".", "?", "*", "[")


class Selector:
    """Resolves patterns over one host list (its group memberships indexed once)."""

    def __init__(self, hosts: Sequence[Host]) -> None:
        self.order = [h.name for h in hosts]
        self.names = frozenset(self.order)
        members: dict[str, set[str]] = {"all": set(self.names), "ungrouped": set()}
        for host in hosts:
            if not host.groups:
                members["ungrouped"].add(host.name)
            for group in host.groups:
                members.setdefault(group, set()).add(host.name)
        self.members = members

    def select(self, patterns: Sequence[str]) -> tuple[str, ...]:
        """Names of the hosts the patterns select, in the order of the host list."""
        if isinstance(patterns, str):
            patterns = [patterns]
        if not patterns:
            return ()
        chosen = self.evaluate(split(patterns))
        return tuple(name for name in self.order if name in chosen)

    def evaluate(self, items: Sequence[str]) -> set[str]:
        """Names selected by already split items."""
        chosen: set[str] = set()
        for item in _ordered(items):
            if item in self.names:
                chosen.add(item)
            elif item[0] == "!":
                chosen -= self.match(item[1:])
            elif item[0] == "&":
                chosen &= self.match(item[1:])
            else:
                chosen |= self.match(item)
        return chosen

    def match(self, pattern: str) -> set[str]:
        """Hosts one item (without its & or !) matches, subscript applied."""
        if not pattern:
            raise PatternError("an empty pattern after '&' or '!'")
        expr, subscript = _split_subscript(pattern)
        found = self.enumerate(expr)
        if subscript is None or not found:
            return found
        ordered = [name for name in self.order if name in found]
        start, end = subscript
        # Ansible reads an end of 0 as no end at all: [i:0] is [i]
        if not end:
            if -len(ordered) <= start < len(ordered):
                return {ordered[start]}
            raise PatternError(f"no hosts matched the subscripted pattern {pattern!r}")
        last = len(ordered) - 1 if end == -1 else end  # [i:] runs to the last host
        return set(ordered[start : last + 1])

    def enumerate(self, expr: str) -> set[str]:
        regex = _compile(expr)
        groups = [g for g in self.members if regex.match(g)]
        found: set[str] = set()
        for group in groups:
            found |= self.members[group]
        if not groups or expr[0] == "~" or any(c in expr for c in _GLOB_CHARS):
            found |= {name for name in self.names if regex.match(name)}
        return found


def _ordered(items: Sequence[str]) -> list[str]:
    """Plain items first, then intersections, then exclusions; 'all' when there is no plain."""
    plain = [i for i in items if i[0] not in "&!"]
    both = [i for i in items if i[0] == "&"]
    excluded = [i for i in items if i[0] == "!"]
    return (plain or ["all"]) + both + excluded


def _compile(expr: str) -> re.Pattern[str]:
    try:
        return re.compile(expr[1:] if expr[0] == "~" else translate(expr))
    except re.error as exc:
        raise PatternError(f"invalid host pattern {expr!r}: {exc}") from None


def _split_subscript(pattern: str) -> tuple[str, tuple[int, int | None] | None]:
    """``web[1:3]`` → ("web", (1, 3)); ``web[2]`` → ("web", (2, None)); ``[1:]`` ends at -1."""
    if pattern[0] == "~":
        return pattern, None
    found = _SUBSCRIPT.match(pattern)
    if found is None:
        return pattern, None
    expr, index, start, end = found.groups()
    if index is not None:
        return expr, (int(index), None)
    return expr, (int(start), int(end) if end else -1)


# Host addresses (Ansible's parse_address with ranges allowed): a text that is one address
# with an optional port is a single item even with colons in it.
_ALNUM_RANGE = r"\[(?:[a-z]:[a-z]|[0-9]+:[0-9]+)(?::[0-9]+)?\]"
_LABEL = rf"(?:\w|{_ALNUM_RANGE})(?:[\w-]|{_ALNUM_RANGE})*(?<![_-])"
_HOSTNAME = re.compile(rf"^{_LABEL}(?:\.{_LABEL})*$", re.IGNORECASE)
_NUM_RANGE = r"\[[0-9]+:[0-9]+(?::[0-9]+)?\]"
_OCTET = rf"(?:[01]?[0-9]{{1,2}}|2[0-4][0-9]|25[0-5]|{_NUM_RANGE})"
_IPV4 = re.compile(rf"^(?:{_OCTET}\.){{3}}{_OCTET}$")
_HEX_RANGE = re.compile(r"\[[0-9a-f]+:[0-9a-f]+(?::[0-9]+)?\]", re.IGNORECASE)
_RANGE_MARK = "\x00"  # stands for a hex range while an IPv6 text is split on ':'
_HEXTET = re.compile(rf"^(?:[0-9a-f]{{1,4}}|{_RANGE_MARK})$", re.IGNORECASE)
_V4_IN_V6_HEADS = ("0:0:0:0:0:0:", "::ffff:", "::", "0:0:0:0:0:ffff:")
_HOST_PORT = re.compile(r"^((?:[^:\[\]]|\[[^\]]*\])*):([0-9]+)$")
_BRACKETED_PORT = re.compile(r"^\[(.+)\]:([0-9]+)$")


def _is_address(text: str) -> bool:
    for port_form in (_BRACKETED_PORT, _HOST_PORT):
        found = port_form.match(text)
        if found:
            text = found.group(1)
    return bool(_IPV4.match(text) or _is_ipv6(text) or _HOSTNAME.match(text))


def _is_ipv6(text: str) -> bool:
    """IPv6 in the forms Ansible accepts, where any 16-bit part may be a hex range."""
    marked = _HEX_RANGE.sub(_RANGE_MARK, text).lower()
    for head in _V4_IN_V6_HEADS:
        if marked.startswith(head):
            parts = marked[len(head) :].split(".")
            if len(parts) == 4 and all(_HEXTET.match(p) for p in parts):
                return True
    if "::" in marked:
        head, tail = marked.split("::", 1)
        before = head.split(":") if head else []
        after = tail.split(":") if tail else []
        if len(before) > 6 or len(after) > 6 or len(before) + len(after) > 7:
            return False
        return all(_HEXTET.match(p) for p in before + after)
    parts = marked.split(":")
    return len(parts) == 8 and all(_HEXTET.match(p) for p in parts)
