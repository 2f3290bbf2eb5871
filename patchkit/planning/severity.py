"""How severe a pending update is: the policy's severity rules over the update and its CVEs (pure).

Rules are tried in order and the first that matches wins, as they always were. A rule's update
conditions (``packages``, ``origins``, ``security``) test the update; its vulnerability
conditions (``kev``, ``cvss_min``, ``epss_min``, ``urgency``, ``cves``) test one CVE the update
fixes, all of them the same CVE. An update fixing several CVEs is rated once per CVE and takes
the highest severity any of them earns, so one known-exploited flaw among ten minor ones
decides. An update fixing none is rated once, and rules with vulnerability conditions pass it by.
No rule matching: the policy's security or default severity.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from patchkit.advisories.knowledge import CveFacts
from patchkit.model import PendingUpdate, Severity
from patchkit.planning.priority import globs
from patchkit.policy.model import Policy, SeverityRule

SECURITY_DEFAULT = "security_severity"
DEFAULT = "default_severity"


@dataclass(frozen=True, slots=True)
class Rating:
    """An update's severity, the rule that set it, and the CVE that rule matched."""

    severity: Severity
    rule: int | None  # index into classification.severity_rules; None: a policy default
    cve: str | None = None  # the CVE the rule's vulnerability conditions matched
    fallback: str | None = None  # SECURITY_DEFAULT or DEFAULT when no rule matched

    def why(self, policy: Policy) -> str:
        """``rule 2 (kev: true) for CVE-…``, or the policy key that gave the severity."""
        if self.rule is None:
            return self.fallback or DEFAULT
        text = f"rule {self.rule + 1} ({describe(policy.classification.severity_rules[self.rule])})"
        return f"{text} for {self.cve}" if self.cve else text


def describe(rule: SeverityRule) -> str:
    """A rule's conditions as a short line, in the policy's own words."""
    parts: list[str] = []
    if rule.packages:
        parts.append("packages: " + ", ".join(rule.packages))
    if rule.origins:
        parts.append("origins: " + ", ".join(rule.origins))
    if rule.security is not None:
        parts.append(f"security: {str(rule.security).lower()}")
    if rule.kev is not None:
        parts.append(f"kev: {str(rule.kev).lower()}")
    if rule.cvss_min is not None:
        parts.append(f"cvss_min: {rule.cvss_min:g}")
    if rule.epss_min is not None:
        parts.append(f"epss_min: {rule.epss_min:g}")
    if rule.urgency:
        parts.append("urgency: " + ", ".join(u.value for u in rule.urgency))
    if rule.cves:
        parts.append("cves: " + ", ".join(rule.cves))
    return "; ".join(parts)


def _update_matches(rule: SeverityRule, update: PendingUpdate, security: bool) -> bool:
    if rule.packages and not globs(update.package, rule.packages):
        return False
    if rule.origins and not globs(update.origin, rule.origins):
        return False
    return rule.security is None or rule.security == security


def _cve_matches(rule: SeverityRule, facts: CveFacts | None) -> bool:
    if not rule.tests_vulnerabilities:
        return True
    if facts is None:
        return False
    if rule.cves and facts.cve not in rule.cves:
        return False
    if rule.kev is not None and rule.kev != facts.known_exploited:
        return False
    if rule.cvss_min is not None and (facts.cvss is None or facts.cvss.base_score < rule.cvss_min):
        return False
    if rule.epss_min is not None and (facts.epss is None or facts.epss.epss < rule.epss_min):
        return False
    return not rule.urgency or facts.urgency in rule.urgency


def _first(update: PendingUpdate, security: bool, policy: Policy, facts: CveFacts | None) -> Rating:
    rules = policy.classification
    for index, rule in enumerate(rules.severity_rules):
        if _update_matches(rule, update, security) and _cve_matches(rule, facts):
            cve = facts.cve if facts is not None and rule.tests_vulnerabilities else None
            return Rating(rule.severity, index, cve)
    if security:
        return Rating(rules.security_severity, None, fallback=SECURITY_DEFAULT)
    return Rating(rules.default_severity, None, fallback=DEFAULT)


def rate(
    update: PendingUpdate, security: bool, policy: Policy, cves: Sequence[CveFacts] = ()
) -> Rating:
    """The update's severity: the highest any of its CVEs earns (see the module docstring).

    Ties go to the earlier rule, then to the CVE first in ``cves``: the same inputs always
    name the same rule.
    """
    if not cves:
        return _first(update, security, policy, None)
    ratings = [_first(update, security, policy, facts) for facts in cves]
    return max(
        ratings,
        key=lambda r: (r.severity.rank, -(r.rule if r.rule is not None else 1 << 30)),
    )
