"""Quorum under anti-affinity: how many members of a cluster may be down at once
(``rollout.anti_affinity.max_unavailable``), and which hosts must wait so that none goes further.

The planner uses it to leave out the hosts of a cluster that has no room left and to cap the
cluster's members per batch; the run uses ``held_for_quorum`` before each wave, counting what
the run itself failed or left unpatched. Pure: inventory, findings and outcomes come in as
arguments.
"""

from __future__ import annotations

import math
from collections.abc import Collection, Iterable, Mapping, Sequence
from fractions import Fraction

from patchkit.model import Finding, Host
from patchkit.planning.types import ClusterState, HostPlan, SkipKind, SkippedHost
from patchkit.policy.model import AntiAffinity
from patchkit.policy.values import Amount

_SHOWN = 8  # member names in a reason before "and N more"


def limit_of(max_unavailable: Amount, size: int) -> int:
    """Members of a cluster of ``size`` that may be down at once.

    A percentage rounds down, unlike ``Amount.of``: rounding up would let 2 of a 3-member
    cluster go down under 50% and break a majority quorum. It never falls below 1, though: the
    loader refuses a count of 0, and a limit of 0 would leave a small cluster (20% of 3)
    unpatched for ever; a cluster that must not be patched takes a policy exception instead.
    """
    if not max_unavailable.percent:
        return max(1, int(max_unavailable.value))
    # The decimal the policy wrote, not its binary float: 0.3% of 1000 is 3, not 2.
    share = Fraction(repr(max_unavailable.value)) / 100
    return max(1, math.floor(size * share))


def cluster_states(
    inventory: Sequence[Host],
    findings: Mapping[str, Finding],
    affinity: AntiAffinity,
    wanted: Collection[str],
) -> dict[str, ClusterState]:
    """The state of each cluster named in ``wanted``, by name; empty without max_unavailable.

    Every inventory host with the cluster value is a member, in scope or not. A member is down
    when its latest finding says unreachable; one never assessed is unknown, not down.
    """
    if affinity.max_unavailable is None:
        return {}
    members: dict[str, list[str]] = {}
    for host in inventory:
        value = host.var(affinity.variable)
        # str() as the host plans name their cluster, so that 1 and "1" are the same cluster
        if value is not None and str(value) in wanted:
            members.setdefault(str(value), []).append(host.name)
    out = {}
    for name, hosts in sorted(members.items()):
        down = [h for h in hosts if (f := findings.get(h)) is not None and not f.reachable]
        out[name] = ClusterState(
            name=name,
            size=len(hosts),
            limit=limit_of(affinity.max_unavailable, len(hosts)),
            down=tuple(sorted(down)),
            members=tuple(sorted(hosts)),
        )
    return out


def hold_back(
    candidates: Sequence[HostPlan], states: Mapping[str, ClusterState]
) -> tuple[list[HostPlan], list[SkippedHost]]:
    """Split the hosts to plan into those that may be patched and those skipped because their
    cluster already has ``limit`` members down (or more)."""
    kept: list[HostPlan] = []
    skipped: list[SkippedHost] = []
    for host in candidates:
        state = states.get(host.cluster) if host.cluster is not None else None
        if state is not None and state.budget <= 0:
            skipped.append(SkippedHost(host.host, SkipKind.QUORUM, reason(state, state.down)))
        else:
            kept.append(host)
    return kept, skipped


def batch_caps(states: Mapping[str, ClusterState]) -> dict[str, int]:
    """Members per batch each cluster allows: its room left at planning (clusters with none
    have no host left to place, see ``hold_back``)."""
    return {name: s.budget for name, s in states.items() if s.budget > 0}


def held_for_quorum(
    hosts: Sequence[HostPlan], clusters: Sequence[ClusterState], down_now: Collection[str]
) -> dict[str, str]:
    """The hosts of ``hosts`` (a batch or a wave about to start) that must not start now,
    each with the reason.

    A cluster's members down are those down at planning and those in ``down_now`` (hosts the
    run failed or left unpatched). At most ``limit - down`` of its hosts start in one go, the
    first ones in the order given; a host already counted as down takes no room, since
    starting it takes nothing more down. Hosts outside ``clusters`` are never held.
    """
    by_name = {c.name: c for c in clusters}
    now = set(down_now)
    down = {c.name: set(c.down) | (set(c.members) & now) for c in clusters}
    starting: dict[str, list[str]] = {}
    held: dict[str, str] = {}
    for host in hosts:
        state = by_name.get(host.cluster) if host.cluster is not None else None
        if state is None or host.host in down[state.name]:
            continue
        going = starting.setdefault(state.name, [])
        if len(down[state.name]) + len(going) >= state.limit:
            held[host.host] = reason(state, down[state.name], going)
        else:
            going.append(host.host)
    return held


def reason(state: ClusterState, down: Iterable[str], starting: Sequence[str] = ()) -> str:
    """Why a member of ``state`` may not be patched now, naming the members down."""
    names = sorted(down)
    text = f"cluster {state.name}: {len(names)} of {state.size} members down"
    text += f" ({_names(names)})" if names else ""
    if starting:
        text += f", {len(starting)} starting now ({_names(starting)})"
    return text + f", max_unavailable {state.limit}: patching another would break quorum"


def _names(hosts: Sequence[str]) -> str:
    if len(hosts) <= _SHOWN:
        return ", ".join(hosts)
    return f"{', '.join(hosts[:_SHOWN])} and {len(hosts) - _SHOWN} more"
