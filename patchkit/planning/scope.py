"""Which hosts a policy governs, and for every host left out, why.

Policy patterns use Ansible's host-pattern syntax; ``patterns.select`` resolves them over the
typed Host records, so this stays pure.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date

from patchkit.model import Host
from patchkit.planning import patterns
from patchkit.planning.priority import Matcher
from patchkit.planning.types import SkipKind
from patchkit.policy.model import Policy, PolicyException


def matcher(hosts: Sequence[Host]) -> Matcher:
    """Resolve pattern lists over ``hosts``, each distinct list once, over one shared index."""
    cache: dict[tuple[str, ...], frozenset[str]] = {}
    selector = patterns.Selector(hosts)

    def match(pats: Sequence[str]) -> frozenset[str]:
        key = tuple(pats)
        if key not in cache:
            cache[key] = frozenset(selector.select(key)) if key else frozenset()
        return cache[key]

    return match


@dataclass(frozen=True)
class ScopeEntry:
    host: Host
    in_scope: bool
    kind: SkipKind | None  # why it is out (None when in scope)
    reason: str


def live_exceptions(policy: Policy, today: date) -> tuple[PolicyException, ...]:
    """Exceptions that still apply on ``today`` (the expiry day itself still counts)."""
    return tuple(e for e in policy.exceptions if e.expires >= today)


def host_exception(
    host: Host, exceptions: Sequence[PolicyException], match: Matcher
) -> PolicyException | None:
    """A live exception that takes the whole host out (one naming hosts and no packages)."""
    for exc in exceptions:
        if exc.hosts and not exc.packages and host.name in match(exc.hosts):
            return exc
    return None


def describe_exception(exc: PolicyException) -> str:
    return f"exception until {exc.expires}: {exc.reason} (owner {exc.owner})"


def resolve(
    hosts: Sequence[Host], policy: Policy | None, today: date, match: Matcher | None = None
) -> tuple[ScopeEntry, ...]:
    """Every host with its verdict; without a policy every host is in scope."""
    if policy is None:
        return tuple(ScopeEntry(h, True, None, "no policy: every host is in scope") for h in hosts)
    match = match or matcher(hosts)
    included = match(policy.scope.include)
    excluded = match(policy.scope.exclude)
    exceptions = live_exceptions(policy, today)
    out = []
    for host in hosts:
        if host.name not in included:
            pats = ", ".join(policy.scope.include)
            out.append(ScopeEntry(host, False, SkipKind.OUT_OF_SCOPE, f"not matched by {pats}"))
            continue
        if host.name in excluded:
            which = [p for p in policy.scope.exclude if host.name in match([p])]
            reason = f"excluded by {', '.join(which) or ', '.join(policy.scope.exclude)}"
            out.append(ScopeEntry(host, False, SkipKind.EXCLUDED, reason))
            continue
        exc = host_exception(host, exceptions, match)
        if exc is not None:
            out.append(ScopeEntry(host, False, SkipKind.EXCEPTION, describe_exception(exc)))
            continue
        out.append(ScopeEntry(host, True, None, "in scope"))
    return tuple(out)
