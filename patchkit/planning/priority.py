"""Which pending updates a host gets, how severe each is, and how critical the host is.

Severity x criticality gives the priority that orders hosts: with the example policy a tier-1
server with a critical fix goes first, an employee's laptop with a routine update last.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime
from fnmatch import fnmatchcase

from patchkit.model import Finding, Host, PendingUpdate
from patchkit.policy.model import Policy, PolicyException

# Resolves a list of host patterns to the names of the hosts it matches (computed once per list).
Matcher = Callable[[Sequence[str]], frozenset[str]]


def globs(name: str, patterns: Sequence[str]) -> bool:
    return any(fnmatchcase(name, p) for p in patterns)


def is_security(update: PendingUpdate, policy: Policy) -> bool:
    return globs(update.origin, policy.classification.security_origins)


def criticality_of(host: Host, policy: Policy, match: Matcher) -> tuple[int, str]:
    """Weight and label of the first tier rule the host matches (by group or variable value)."""
    crit = policy.criticality
    value = host.var(crit.variable)
    for rule in crit.tiers:
        by_group = bool(rule.groups) and host.name in match(rule.groups)
        by_value = value is not None and str(value) in {str(v) for v in rule.values}
        if by_group or by_value:
            return rule.criticality, rule.label or f"criticality {rule.criticality}"
    return crit.default, "default"


def package_exception(
    host: Host, package: str, exceptions: Sequence[PolicyException], match: Matcher
) -> PolicyException | None:
    """The first live exception holding ``package`` back on ``host``."""
    for exc in exceptions:
        if not exc.packages or not globs(package, exc.packages):
            continue
        if exc.hosts and host.name not in match(exc.hosts):
            continue
        return exc
    return None


class PackageExceptions:
    """``package_exception`` for a fleet: the live exceptions naming each package (whichever
    hosts they name) are found once, for every host that has it pending (a fleet's hosts
    repeat a few hundred packages); same answer, in the same order."""

    def __init__(self, exceptions: Sequence[PolicyException], match: Matcher) -> None:
        self._exceptions = tuple(exceptions)
        self._match = match
        self._naming: dict[str, tuple[PolicyException, ...]] = {}

    def holding(self, host: Host, package: str) -> PolicyException | None:
        """The first live exception holding ``package`` back on ``host``."""
        naming = self._naming.get(package)
        if naming is None:
            naming = self._naming[package] = tuple(
                e for e in self._exceptions if e.packages and globs(package, e.packages)
            )
        return package_exception(host, package, naming, self._match) if naming else None


def hold_reason(
    update: PendingUpdate,
    security: bool,
    first_seen: datetime,
    at: datetime,
    policy: Policy,
) -> str | None:
    """Why the policy's classification keeps ``update`` out, or None when it is in."""
    rules = policy.classification
    if rules.updates == "security" and not security:
        return f"not a security update (origin {update.origin}); the policy patches security only"
    if rules.allow and not globs(update.package, rules.allow):
        return "not in the policy's allow list"
    denied = [p for p in rules.deny if fnmatchcase(update.package, p)]
    if denied:
        return f"denied by the policy ({denied[0]})"
    eligible = first_seen + rules.minimum_age
    if eligible > at:
        return (
            f"too new: known since {first_seen:%Y-%m-%d %H:%M}, "
            f"eligible from {eligible:%Y-%m-%d %H:%M}"
        )
    return None


def reboot_needed(package: str, policy: Policy) -> bool:
    return globs(package, policy.downtime.reboot_packages)


def expects_reboot(any_update_reboots: bool, finding: Finding, policy: Policy) -> bool:
    """Whether the host will reboot in the window under the policy's reboot setting."""
    mode = policy.downtime.reboot
    if mode == "always":
        return True
    if mode == "never":
        return False
    return any_update_reboots or finding.reboot_pending
