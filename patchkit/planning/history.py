"""What the ledger remembers, as planner input: where each update was installed and whether it
was verified (staged promotion), and how long each phase took on each host (window-fit
estimates). Pure: the ledger adapter builds a ``History``; the rules below only read it.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from fnmatch import fnmatchcase
from types import MappingProxyType

from patchkit.model import Host, Severity
from patchkit.policy.model import Estimate, Promotion

PHASES = ("precheck", "snapshot", "patch", "reboot", "verify")
MIN_SAMPLES = 3  # fewer past durations than this: the policy's estimate is used instead
PERCENTILE = 0.9
POLICY_BASIS = "policy estimate (no history)"


@dataclass(frozen=True)
class Install:
    """One update installed by a run on one host, and what verification said afterwards."""

    host: str
    at: datetime
    verified: bool  # False: the host failed verification after this install


@dataclass(frozen=True)
class History:
    """``installs``: (package, version) -> installs, oldest first. ``durations``: host ->
    phase -> seconds of past runs, oldest first."""

    installs: Mapping[tuple[str, str], tuple[Install, ...]] = field(
        default_factory=lambda: MappingProxyType({})
    )
    durations: Mapping[str, Mapping[str, tuple[float, ...]]] = field(
        default_factory=lambda: MappingProxyType({})
    )

    def digest_data(self) -> list[object]:
        """A canonical, JSON-able form (the plan's hash covers its history)."""
        installs = [
            [package, version, [[i.host, i.at.isoformat(), i.verified] for i in rows]]
            for (package, version), rows in sorted(self.installs.items())
        ]
        durations = [
            [host, [[phase, list(values)] for phase, values in sorted(phases.items())]]
            for host, phases in sorted(self.durations.items())
        ]
        return [installs, durations]


# ---------------------------------------------------------------- staged promotion


def environment_of(host: Host, promotion: Promotion) -> str | None:
    """The first environment of the promotion order the host is in: by the variable's value,
    or by a group of that name."""
    value = host.var(promotion.variable)
    for env in promotion.order:
        if (value is not None and str(value) == env) or env in host.groups:
            return env
    return None


def _exempt(package: str, version: str, severity: Severity, promotion: Promotion) -> str | None:
    if severity in promotion.exempt.severities:
        return f"exempt from promotion: {severity.value} severity"
    for pattern in promotion.exempt.packages:
        name, _, wanted = pattern.partition("=")
        if fnmatchcase(package, name) and (not wanted or fnmatchcase(version, wanted)):
            return f"exempt from promotion: {pattern}"
    return None


def _hours(delta: timedelta) -> str:
    return f"{math.ceil(delta.total_seconds() / 3600)} h"


def promotion_verdict(
    package: str,
    version: str,
    severity: Severity,
    env: str | None,
    envs: Mapping[str, str | None],
    history: History,
    promotion: Promotion | None,
    at: datetime,
) -> tuple[str | None, str | None]:
    """``(hold reason, note)`` for installing ``package`` ``version`` in environment ``env``.

    ``envs`` maps every host of the inventory to its environment. Hosts outside the promotion
    order are not gated. A version that failed verification in this environment or a lower one
    more often than ``max_failure_rate`` allows is blocked until a newer version arrives (in the
    first environment too: a broken version is not offered again); otherwise, beyond the first
    environment, it needs ``min_hosts`` verified installs in the environment just before, the
    ``min_hosts``-th at least ``soak`` ago.
    """
    if promotion is None or env is None or env not in promotion.order:
        return None, None
    index = promotion.order.index(env)
    exempt = _exempt(package, version, severity, promotion)
    if exempt is not None:
        return None, exempt
    so_far = set(promotion.order[: index + 1])  # this environment and those before it
    installs = [
        i for i in history.installs.get((package, version), ()) if envs.get(i.host) in so_far
    ]
    failed = [i for i in installs if not i.verified]
    if failed and len(failed) / len(installs) > promotion.max_failure_rate:
        where = ", ".join(sorted({f"{i.host} ({envs[i.host]})" for i in failed}))
        return (
            f"blocked: failed verification on {len(failed)} of {len(installs)} host(s) so far "
            f"({where}); a newer version is needed",
            None,
        )
    if index == 0:
        return None, None
    previous = promotion.order[index - 1]
    verified = sorted(i.at for i in installs if i.verified and envs.get(i.host) == previous)
    need = promotion.min_hosts
    if len(verified) < need:
        return f"awaiting promotion: verified on {len(verified)}/{need} {previous} hosts", None
    ready = verified[need - 1] + promotion.soak
    if ready > at:
        return (
            f"awaiting promotion: verified on {len(verified)}/{need} {previous} hosts; "
            f"{_hours(ready - at)} left",
            None,
        )
    return None, None


# ---------------------------------------------------------------- estimates


def percentile(values: Sequence[float], fraction: float = PERCENTILE) -> float:
    """Nearest-rank percentile (0 < fraction <= 1) of a non-empty list."""
    ordered = sorted(values)
    rank = max(1, math.ceil(fraction * len(ordered)))
    return ordered[rank - 1]


def host_estimate(
    similar: Sequence[str],
    packages: int,
    reboot: bool,
    history: History,
    fallback: Estimate,
) -> tuple[timedelta, str]:
    """Expected time for ``host`` and where it comes from.

    Per phase, the 90th percentile of the past durations of the ``similar`` hosts (the host
    itself and those of its tier); the reboot phase only when a reboot is expected. With fewer
    than three samples for any phase needed, the policy's estimate for hosts without history.
    """
    phases = [p for p in PHASES if reboot or p != "reboot"]
    total = 0.0
    samples = 0
    for phase in phases:
        values = [v for h in similar for v in history.durations.get(h, {}).get(phase, ())]
        if len(values) < MIN_SAMPLES:
            extra = fallback.reboot if reboot else timedelta(0)
            policy = fallback.base + fallback.per_package * packages + extra
            return policy, POLICY_BASIS
        total += percentile(values)
        samples = max(samples, len(values))
    return timedelta(seconds=round(total)), f"p90 of {samples} past runs of similar hosts"
