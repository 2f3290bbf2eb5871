"""Cut the ordered hosts into batches: a canary first, then first-fit under cluster limits.

First-fit keeps priority order as far as anti-affinity allows: a host goes into the earliest
batch with room for it, so it is only ever pushed later because its cluster already has
``max_per_batch`` members there (or as many as its quorum allows down at once).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime, timedelta

from patchkit.planning.types import Batch, HostPlan
from patchkit.policy.model import Estimate


def host_estimate(packages: int, reboot: bool, estimate: Estimate) -> timedelta:
    """Expected time for one host: fixed cost, per package, and the reboot if there is one."""
    extra = estimate.reboot if reboot else timedelta(0)
    return estimate.base + estimate.per_package * packages + extra


def batch_duration(hosts: Sequence[HostPlan], concurrency: int) -> timedelta:
    """Hosts run ``concurrency`` at a time; each wave lasts as long as its slowest host."""
    total = timedelta(0)
    for start in range(0, len(hosts), max(1, concurrency)):
        total += max(h.estimate for h in hosts[start : start + concurrency])
    return total


def cut(
    ordered: Sequence[HostPlan],
    *,
    size: int,
    max_per_cluster: int | None,
    canary_size: int = 0,
    canary_pool: frozenset[str] = frozenset(),
    cluster_caps: Mapping[str, int] | None = None,
) -> tuple[tuple[HostPlan, ...], list[list[HostPlan]]]:
    """Return the canary batch (possibly empty) and the other batches, hosts in order.

    A cluster has at most ``max_per_cluster`` members in a batch, or fewer where
    ``cluster_caps`` says so (its quorum room, ``planning.quorum.batch_caps``). A cap is at
    least 1: the hosts of a cluster with no room are left out before they get here.
    """
    caps = dict(cluster_caps or {})
    if any(n < 1 for n in caps.values()):
        raise ValueError(f"a cluster cap below 1 places no host: {sorted(caps.items())}")

    def limit(cluster: str | None) -> int | None:
        if cluster is None:
            return None
        found = [n for n in (max_per_cluster, caps.get(cluster)) if n]
        return min(found) if found else None

    canary: list[HostPlan] = []
    if canary_size > 0:
        seen: Counter[str] = Counter()
        for host in ordered:
            if len(canary) == canary_size:
                break
            if host.host not in canary_pool:
                continue
            most = limit(host.cluster)
            if host.cluster and most is not None and seen[host.cluster] >= most:
                continue
            canary.append(host)
            if host.cluster:
                seen[host.cluster] += 1
    in_canary = {h.host for h in canary}
    rest = [h for h in ordered if h.host not in in_canary]
    return tuple(canary), _first_fit(rest, size, limit)


def _first_fit(
    ordered: Sequence[HostPlan], size: int, limit: Callable[[str | None], int | None]
) -> list[list[HostPlan]]:
    batches: list[list[HostPlan]] = []
    counts: list[Counter[str]] = []
    first_open = 0  # every batch before it is full
    cluster_next: dict[str, int] = {}  # no room for the cluster in any batch before this
    for host in ordered:
        most = limit(host.cluster)
        cluster = host.cluster if most is not None else None
        index = max(first_open, cluster_next.get(cluster, 0)) if cluster else first_open
        while index < len(batches) and (
            len(batches[index]) >= size
            or (cluster is not None and counts[index][cluster] >= (most or 0))
        ):
            index += 1
        if index == len(batches):
            batches.append([])
            counts.append(Counter())
        batches[index].append(host)
        if cluster is not None:
            counts[index][cluster] += 1
            full = counts[index][cluster] >= (most or 0)
            cluster_next[cluster] = index + 1 if full else index
        while first_open < len(batches) and len(batches[first_open]) >= size:
            first_open += 1
    return batches


def schedule(
    groups: Sequence[tuple[bool, Sequence[HostPlan]]],
    *,
    start: datetime,
    cutoff: datetime,
    concurrency: int,
    end: datetime | None = None,
) -> tuple[Batch, ...]:
    """Give each batch its estimated start and duration; mark for the next window those that
    would start at/after the cutoff or, by their estimate, end after the window (``end``), and
    every batch after them.

    Times are added and compared in UTC (same-zone arithmetic in Python is wall-clock, wrong
    across a DST change) and shown in the zone of ``start``.
    """
    out = []
    zone = start.tzinfo
    clock = start.astimezone(UTC)
    cutoff = cutoff.astimezone(UTC)
    last = end.astimezone(UTC) if end is not None else None
    late = False
    for number, (canary, hosts) in enumerate(groups, start=1):
        forks = max(1, min(concurrency, len(hosts)))
        duration = batch_duration(hosts, forks)
        late = late or clock >= cutoff or (last is not None and clock + duration > last)
        out.append(
            Batch(
                number=number,
                canary=canary,
                hosts=tuple(hosts),
                concurrency=forks,
                start=clock.astimezone(zone),
                duration=duration,
                next_window=late,
            )
        )
        clock += duration
    return tuple(out)
