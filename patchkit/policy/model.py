"""The patch policy as typed data: one model per section of a written patch-management policy.

Validated once, at the edge (``patchkit.policy.loader``); past the loader nothing re-checks. Every
model forbids unknown keys, so a typo is an error, never a silently ignored setting. Every value
is bounded to what an operator can mean (a count of hosts is at least 1 where 0 would do nothing,
a timeout is above 0, a date lies in 2000-2200, a window opens at all): a mistake is refused here
with a message, rather than surfacing as a crash or a silent no-op halfway through a window.
"""

from __future__ import annotations

import re
from datetime import timedelta
from itertools import pairwise
from typing import Annotated, Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from croniter import croniter
from dateutil import rrule
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    field_validator,
    model_validator,
)
from pydantic.json_schema import GenerateJsonSchema

from patchkit.advisories.types import CVE_ID, Urgency
from patchkit.model import Severity
from patchkit.policy.recurrence import (
    ANCHOR,
    any_day_matches,
    check_parts,
    never_opens,
    openings,
    rrule_parts,
)
from patchkit.policy.urls import webhook_problems
from patchkit.policy.values import (
    LONG_TEXT,
    MAX_DURATION,
    MAX_HOSTS,
    SHORT_TEXT,
    Amount,
    CountOrPercent,
    Day,
    Duration,
    HostsOrPercent,
    HttpUrl,
    Label,
    NodeAddress,
    Paragraph,
    Patterns,
    Prose,
    SomeHosts,
    Text,
    Within,
    format_duration,
    show_value,
    word,
)

# ---------------------------------------------------------------- base


class Section(BaseModel):
    # str_max_length is a backstop for any text field without a tighter limit of its own.
    model_config = ConfigDict(
        extra="forbid", frozen=True, allow_inf_nan=False, str_max_length=LONG_TEXT
    )


# ---------------------------------------------------------------- sections


class Scope(Section):
    """Which inventory hosts the policy governs (Ansible host patterns or group names)."""

    include: SomeHosts = Field(default_factory=lambda: ["all"])
    exclude: Patterns = Field(default_factory=list)


class Signatures(Section):
    """Approvals signed with OpenSSH keys: who may sign is an ``allowed_signers`` file."""

    allowed_signers: Text = Field(
        description="OpenSSH allowed_signers file (ssh-keygen(1) ALLOWED SIGNERS): one line per "
        "approver, 'NAME KEYTYPE KEY'. A relative path is relative to the policy file."
    )
    required: bool = Field(
        default=True, description="run refuses an approval without a valid signature."
    )


class Roles(Section):
    owner: Text = Field(description="Who owns this policy (a team or person).")
    approvers: list[Text] = Field(
        default_factory=list, description="Who may approve a plan made under this policy."
    )
    approval_required: bool = Field(
        default=True, description="A plan must be approved before it runs."
    )
    contacts: dict[Text, Text] = Field(
        default_factory=dict, description="Contact per inventory group (group: address)."
    )
    approvals_needed: int = Field(
        default=1, ge=1, le=10, description="Approvals by different approvers a plan needs."
    )
    separation_of_duties: bool = Field(
        default=False, description="Whoever made a plan may not approve it."
    )
    approval_expires: Annotated[Duration, Within(MAX_DURATION, above_zero=True)] | None = Field(
        default=None,
        description="How long an approval stays valid after it is given (default: until the "
        "end of the window occurrence it approves).",
    )
    emergency_approvers: list[Text] = Field(
        default_factory=list,
        description="Who may approve an emergency run outside the plan's window.",
    )
    signatures: Signatures | None = Field(
        default=None, description="Approvals signed with SSH keys (ssh-keygen -Y sign)."
    )

    @model_validator(mode="after")
    def _approvers_when_required(self) -> Roles:
        if self.approval_required and not self.approvers:
            raise ValueError("approval_required is true but no approvers are named")
        if self.approval_required and self.approvals_needed > len(set(self.approvers)):
            raise ValueError(
                f"approvals_needed is {self.approvals_needed} but only "
                f"{len(set(self.approvers))} approver(s) are named"
            )
        return self


def _cve_id(value: str) -> str:
    text = value.strip().upper()
    if not CVE_ID.match(text):
        raise ValueError(f"not a CVE id: {value!r} (CVE-YYYY-NNNN)")
    return text


CveId = Annotated[str, AfterValidator(_cve_id)]


class SeverityRule(Section):
    """Give updates matching every condition set here a severity (first matching rule wins).

    ``packages``, ``origins`` and ``security`` test the update. ``kev``, ``cvss_min``,
    ``epss_min``, ``urgency`` and ``cves`` test the vulnerabilities it fixes (from the imported
    advisories): the rule matches when one of them meets all of these at once. An update that
    fixes several is rated for each, and takes the highest severity they earn.
    """

    severity: Severity
    packages: Patterns = Field(default_factory=list, description="Package name globs.")
    origins: Patterns = Field(default_factory=list, description="Origin (suite) globs.")
    security: bool | None = Field(default=None, description="Only security (or non-security).")
    kev: bool | None = Field(
        default=None,
        description="true: a fixed CVE is in CISA's Known Exploited Vulnerabilities catalog; "
        "false: one that is not.",
    )
    cvss_min: Annotated[float, Field(ge=0, le=10)] | None = Field(
        default=None, description="A fixed CVE's CVSS base score is at least this (0-10)."
    )
    epss_min: Annotated[float, Field(ge=0, le=1)] | None = Field(
        default=None,
        description="A fixed CVE's EPSS probability of exploitation is at least this (0-1).",
    )
    urgency: list[Urgency] = Field(
        default_factory=list,
        description="A fixed CVE's urgency in the Debian tracker (or Ubuntu priority) is one "
        "of these.",
    )
    cves: Annotated[list[CveId], Field(max_length=MAX_HOSTS)] = Field(
        default_factory=list, description="The update fixes one of these CVEs."
    )

    @property
    def tests_vulnerabilities(self) -> bool:
        """Whether the rule has a condition on the CVEs an update fixes."""
        return (
            self.kev is not None
            or self.cvss_min is not None
            or self.epss_min is not None
            or bool(self.urgency)
            or bool(self.cves)
        )

    @model_validator(mode="after")
    def _has_condition(self) -> SeverityRule:
        if (
            not self.packages
            and not self.origins
            and self.security is None
            and not self.tests_vulnerabilities
        ):
            raise ValueError(
                "a severity rule needs something to match on: packages, origins, security, "
                "kev, cvss_min, epss_min, urgency or cves"
            )
        return self


class Classification(Section):
    """Which updates are in, and how severe each is."""

    updates: Literal["security", "all"] = Field(
        default="all", description="security: only updates from a security origin."
    )
    allow: Patterns = Field(
        default_factory=list, description="If set, only packages matching these globs."
    )
    deny: Patterns = Field(default_factory=list, description="Packages never patched (globs).")
    minimum_age: Annotated[Duration, Within(MAX_DURATION)] = Field(
        default=timedelta(0), description="An update is applied only once known this long."
    )
    security_origins: Patterns = Field(
        default_factory=lambda: ["*-security", "*security*"],
        description="Origins whose updates count as security updates.",
    )
    severity_rules: list[SeverityRule] = Field(default_factory=list)
    advisory_max_age: Annotated[Duration, Within(MAX_DURATION)] = Field(
        default=timedelta(days=7),
        description="The plan warns when an imported advisory feed (tracker, OSV, KEV, EPSS) "
        "is older than this.",
    )
    security_severity: Severity = Severity.HIGH
    default_severity: Severity = Severity.MEDIUM


def _tier_value(value: str | int) -> str | int:
    return word(value) if isinstance(value, str) else value


class TierRule(Section):
    """Asset criticality from a host variable's value or from group membership."""

    criticality: int = Field(ge=1, le=10, description="Weight: 10 the most critical asset.")
    label: Label = ""
    groups: Patterns = Field(default_factory=list)
    values: list[Annotated[str | int, AfterValidator(_tier_value)]] = Field(
        default_factory=list, description="Values of the criticality variable."
    )

    @model_validator(mode="after")
    def _has_condition(self) -> TierRule:
        if not self.groups and not self.values:
            raise ValueError("a tier rule needs groups or values to match on")
        return self


class Criticality(Section):
    variable: Text = Field(default="tier", description="Host variable holding the asset tier.")
    tiers: list[TierRule] = Field(default_factory=list, description="First matching rule wins.")
    default: int = Field(default=1, ge=1, le=10)


class Freeze(Section):
    start: Day
    end: Day
    reason: Prose = ""

    @model_validator(mode="after")
    def _ordered(self) -> Freeze:
        if self.end < self.start:
            raise ValueError("a freeze ends before it starts")
        return self


_ZONE = re.compile(r"[A-Za-z0-9_+\-]+(?:/[A-Za-z0-9_+\-]+)*")


class Window(Section):
    """A named, recurring maintenance window."""

    name: str = Field(pattern=r"^[a-z0-9][a-z0-9-]*$", max_length=64)
    hosts: SomeHosts = Field(
        default_factory=lambda: ["all"], description="Which in-scope hosts it serves."
    )
    rrule: str | None = Field(
        default=None,
        max_length=500,
        description="RFC 5545 RRULE, e.g. FREQ=WEEKLY;BYDAY=SA (HOURLY to YEARLY; no COUNT).",
        json_schema_extra={"pattern": r"^(RRULE:)?[A-Za-z0-9=;,+\-]+$"},
    )
    cron: str | None = Field(
        default=None, max_length=200, description="A 5-field cron expression of the start."
    )
    timezone: str = Field(
        default="UTC",
        description="IANA time zone, e.g. Europe/Berlin.",
        json_schema_extra={"pattern": f"^{_ZONE.pattern}$", "maxLength": 64},
    )
    duration: Annotated[Duration, Within(timedelta(days=7), above_zero=True)]
    cutoff: Annotated[Duration, Within(timedelta(days=7))] = Field(
        default=timedelta(minutes=30), description="No batch starts this close to the end."
    )
    freeze: list[Freeze] = Field(default_factory=list)

    @field_validator("rrule")
    @classmethod
    def _valid_rrule(cls, value: str | None) -> str | None:
        if value is None:
            return None
        text = value.removeprefix("RRULE:")
        if "COUNT=" in text.upper():
            raise ValueError("COUNT is not supported (rules are anchored in 2000): use UNTIL")
        if "DTSTART" in text.upper():
            raise ValueError("give the rule only (FREQ=…); the start time comes from BYHOUR etc.")
        try:
            parts = rrule_parts(text)
            check_parts(parts)
        except ValueError as exc:
            raise ValueError(f"{show_value(value)} is not a usable RRULE: {exc}") from None
        try:
            rrule.rrulestr(text, dtstart=ANCHOR)
            some_day = parts["FREQ"] in ("MONTHLY", "YEARLY") or any_day_matches(parts)
        except Exception as exc:  # dateutil: ValueError, TypeError, KeyError…
            raise ValueError(f"{show_value(value)} is not an RFC 5545 RRULE: {exc}") from None
        if not some_day:
            raise ValueError("never opens: no calendar day matches its BY… parts")
        problem = never_opens(text, None)
        if problem:
            raise ValueError(problem)
        return text

    @field_validator("cron")
    @classmethod
    def _valid_cron(cls, value: str | None) -> str | None:
        if value is None:
            return None
        try:
            valid = len(value.split()) == 5 and bool(croniter.is_valid(value))
        except Exception:  # is_valid itself raises on some inputs
            valid = False
        if not valid:
            raise ValueError(
                f"{show_value(value)} is not a 5-field cron expression (minute hour dom mon dow)"
            )
        if re.search(r"\bR\b", value, re.IGNORECASE):
            raise ValueError("R (a random time) is not allowed: a window opens at set times")
        problem = never_opens(None, value)
        if problem:
            raise ValueError(problem)
        return value

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        if len(value) <= 64 and _ZONE.fullmatch(value):
            try:
                ZoneInfo(value)
            # Not found; not a TZif file (zone1970.tab); a directory (America); too long.
            except (ZoneInfoNotFoundError, ValueError, OSError):
                pass
            else:
                return value
        raise ValueError(f"{show_value(value)} is not a time zone name (e.g. UTC, Europe/Berlin)")

    @model_validator(mode="after")
    def _one_recurrence(self) -> Window:
        if (self.rrule is None) == (self.cron is None):
            raise ValueError("give exactly one of rrule or cron")
        if self.cutoff >= self.duration:
            raise ValueError("cutoff must be shorter than the duration")
        try:
            starts = openings(self.rrule, self.cron, 64)
        except Exception:  # the field checks passed; the planner reports it
            starts = []
        gap = min((b - a for a, b in pairwise(starts)), default=None)
        if gap is not None and gap < self.duration:
            raise ValueError(
                f"two openings are {format_duration(gap)} apart but it lasts "
                f"{format_duration(self.duration)}: they would overlap (shorten duration, or "
                "open less often)"
            )
        return self


class Canary(Section):
    size: HostsOrPercent = Field(description="Hosts in the canary batch.")
    hosts: SomeHosts = Field(
        default_factory=lambda: ["all"], description="Hosts preferred for the canary."
    )
    soak: Annotated[Duration, Within(timedelta(days=1))] = Field(
        default=timedelta(0),
        description="How long the next batch waits after a good canary (e.g. 30m).",
    )
    on_failure: Literal["halt", "continue"] = Field(
        default="halt",
        description="halt: a canary host that is not patched halts the window; continue: the "
        "error threshold alone decides.",
    )


class AntiAffinity(Section):
    variable: Text = Field(default="cluster", description="Host variable naming the cluster.")
    max_per_batch: int = Field(default=1, ge=1, le=MAX_HOSTS)
    max_unavailable: HostsOrPercent | None = Field(
        default=None,
        description="Cluster members that may be down at once (count, or % of the cluster's "
        "size), counting members already down: unreachable when assessed, failed or left "
        "unpatched earlier in the run.",
    )


class Estimate(Section):
    """Time per host when there is no history: used to fit batches into the window."""

    base: Annotated[Duration, Within(timedelta(days=1))] = Field(default=timedelta(minutes=3))
    per_package: Annotated[Duration, Within(timedelta(hours=1))] = Field(
        default=timedelta(seconds=20)
    )
    reboot: Annotated[Duration, Within(timedelta(hours=2))] = Field(default=timedelta(minutes=3))


class Rollout(Section):
    batch_size: HostsOrPercent = Field(default_factory=lambda: Amount(value=25, percent=True))
    concurrency: HostsOrPercent = Field(
        default_factory=lambda: Amount(value=10),
        description="Hosts patched at the same time within a batch (Ansible forks).",
    )
    canary: Canary | None = None
    order: Literal["priority", "name"] = "priority"
    anti_affinity: AntiAffinity | None = Field(default_factory=AntiAffinity)
    # 0 stays allowed: execution.rules.threshold_crossed reads it as "the first failure
    # halts", the same as 1, and lab policies and tests use it that way.
    error_threshold: CountOrPercent = Field(
        default_factory=lambda: Amount(value=10, percent=True),
        description="Failures (count, or % of the hosts run so far) that halt the window; "
        "0 and 1 both halt at the first failed host.",
    )
    estimate: Estimate = Field(default_factory=Estimate)


class Prechecks(Section):
    min_free_disk: int = Field(
        default=500, ge=0, le=1024 * 1024, description="MiB free on / before patching."
    )
    healthy_before: bool = Field(default=True, description="Run verification before patching.")
    pending_reboot: Literal["note", "reboot-first", "skip-host"] = "note"


class Snapshot(Section):
    # the backends roles/patchkit_snapshot ships; any other name would fail every host at run
    backend: Literal["package", "lab", "none"] = Field(
        default="package",
        description="package: versions recorded and the old .debs kept on the host; lab: a btrfs "
        "snapshot of a lab host; none: no snapshot (failed hosts cannot be rolled back).",
    )
    retention: Annotated[Duration, Within(MAX_DURATION)] = Field(default=timedelta(days=7))


class BackupHook(Section):
    command: Paragraph = Field(
        description="Run on the controller (bash) before a host is patched, with PATCHKIT_HOST, "
        "PATCHKIT_HOST_ADDRESS, PATCHKIT_RUN_ID and PATCHKIT_BATCH set; a failure or timeout "
        "leaves the host unpatched."
    )
    timeout: Annotated[Duration, Within(timedelta(days=1), above_zero=True)] = Field(
        default=timedelta(minutes=10)
    )

    @field_validator("command")
    @classmethod
    def _passes_through_ansible(cls, value: str) -> str:
        # the command reaches the playbook inside a Jinja raw block (execution/ansible.py)
        if "endraw" in value:
            raise ValueError("the command may not contain 'endraw' (Ansible would read it)")
        return value


class Preparation(Section):
    prechecks: Prechecks = Field(default_factory=Prechecks)
    snapshot: Snapshot = Field(default_factory=Snapshot)
    backup: BackupHook | None = None


class Downtime(Section):
    reboot: Literal["if-needed", "always", "never"] = "if-needed"
    # bare metal updating its firmware on the way can take hours to come back
    reboot_timeout: Annotated[Duration, Within(timedelta(hours=6), above_zero=True)] = Field(
        default=timedelta(minutes=10), description="How long a host may take to come back."
    )
    reboot_packages: Patterns = Field(
        default_factory=lambda: ["linux-image-*", "libc6", "systemd", "dbus", "demo-kernel"],
        description="Updates of these packages need a reboot (when reboot is if-needed).",
    )
    reboot_approval: Patterns = Field(
        default_factory=list, description="Hosts whose reboot needs explicit approval."
    )


class SystemdCheck(Section):
    type: Literal["systemd"]
    unit: Text
    hosts: SomeHosts = Field(default_factory=lambda: ["all"])


class TcpCheck(Section):
    type: Literal["tcp"]
    port: int = Field(ge=1, le=65535)
    host: Text = "127.0.0.1"
    hosts: SomeHosts = Field(default_factory=lambda: ["all"])


class HttpCheck(Section):
    type: Literal["http"]
    url: HttpUrl
    status: int = Field(default=200, ge=100, le=599)
    hosts: SomeHosts = Field(default_factory=lambda: ["all"])


class CommandCheck(Section):
    type: Literal["command"]
    command: Paragraph
    exit_code: int = Field(default=0, ge=0, le=255, description="Exit status when healthy.")
    hosts: SomeHosts = Field(default_factory=lambda: ["all"])


Check = Annotated[SystemdCheck | TcpCheck | HttpCheck | CommandCheck, Field(discriminator="type")]


class FailureHandling(Section):
    retries: int = Field(default=0, ge=0, le=5)
    rollback: Literal["host", "batch", "none"] = "host"
    on_threshold: Literal["halt", "continue"] = "halt"


class PolicyException(Section):
    """A host or package (or a package on some hosts) that is not patched, until it expires."""

    hosts: Patterns = Field(default_factory=list)
    packages: Patterns = Field(default_factory=list)
    owner: Text
    reason: Paragraph
    expires: Day

    @model_validator(mode="after")
    def _has_target(self) -> PolicyException:
        if not self.hosts and not self.packages:
            raise ValueError("an exception names hosts, packages, or both")
        return self


MAX_DEADLINE = 3650  # days; ten years is a typo, not a deadline


DEFAULT_DEADLINES = {
    Severity.CRITICAL: 7,
    Severity.HIGH: 14,
    Severity.MEDIUM: 30,
    Severity.LOW: 90,
}


class Reporting(Section):
    deadlines: dict[Severity, Annotated[int, Field(ge=1, le=MAX_DEADLINE)]] = Field(
        default_factory=lambda: dict(DEFAULT_DEADLINES),
        description="Days from an update being known to it being installed, per severity; a "
        "severity left out keeps its default (critical 7, high 14, medium 30, low 90).",
    )
    due_soon: int = Field(
        default=2,
        ge=0,
        le=MAX_DEADLINE,
        description="Days before its deadline from which an outstanding update is due soon "
        "(shorter than the shortest deadline).",
    )
    clock: Literal["first-seen", "advisory"] = Field(
        default="first-seen",
        description="When an update's deadline starts: first-seen, the first assessment that "
        "saw it on the host; advisory, the earliest publication date of the CVEs it fixes "
        "(imported advisories), falling back to first-seen for an update with no dated CVE.",
    )

    @field_validator("deadlines", mode="after")
    @classmethod
    def _with_defaults(cls, given: dict[Severity, int]) -> dict[Severity, int]:
        # A severity left out keeps its default deadline: {critical: 3} tightens critical only.
        return DEFAULT_DEADLINES | given

    @model_validator(mode="after")
    def _sane(self) -> Reporting:
        given = sorted(self.deadlines.items(), key=lambda item: list(Severity).index(item[0]))
        for (worse, short), (milder, long) in pairwise(given):
            if short > long:
                raise ValueError(
                    f"deadlines: {worse} ({short} days) is longer than {milder} ({long} days);"
                    " a more severe update gets the shorter deadline"
                )
        if given and self.due_soon >= min(days for _, days in given):
            raise ValueError(
                f"due_soon ({self.due_soon} days) must be shorter than the shortest deadline"
                f" ({min(days for _, days in given)} days), or every update is due soon at once"
            )
        return self


class PromotionExempt(Section):
    severities: list[Severity] = Field(
        default_factory=list, description="Updates of these severities skip the stages."
    )
    packages: Patterns = Field(
        default_factory=list,
        description="Package globs, optionally with a version glob: 'openssl' or 'openssl=3.0.1*'.",
    )


class Promotion(Section):
    """Updates reach an environment only once verified in the one before it."""

    variable: Text = Field(
        default="env", description="Host variable naming the environment (a group works too)."
    )
    order: list[Text] = Field(min_length=2, description="Environments, first to last.")
    min_hosts: int = Field(default=1, ge=1, le=MAX_HOSTS, description="Verified installs needed.")
    soak: Annotated[Duration, Within(MAX_DURATION)] = Field(
        default=timedelta(hours=24), description="Time after the last of those installs."
    )
    max_failure_rate: float = Field(
        default=0.0,
        ge=0.0,
        le=1.0,
        description="Share of failed verifications in lower environments still allowed.",
    )
    exempt: PromotionExempt = Field(default_factory=PromotionExempt)

    @field_validator("order")
    @classmethod
    def _distinct(cls, value: list[str]) -> list[str]:
        if len(set(value)) != len(value):
            raise ValueError("each environment appears once in the promotion order")
        return value


NotifyEvent = Literal[
    "window-started", "batch-halted", "window-finished", "rollback-done", "new-updates"
]
NOTIFY_EVENTS: tuple[NotifyEvent, ...] = (
    "window-started",
    "batch-halted",
    "window-finished",
    "rollback-done",
    "new-updates",
)


class Webhook(Section):
    """A receiver of notifications: JSON POSTed to ``url`` (with a Slack-compatible ``text``)."""

    url: HttpUrl = Field(description="http:// or https:// URL the JSON payload is POSTed to.")
    events: list[NotifyEvent] = Field(
        default_factory=lambda: list(NOTIFY_EVENTS), description="Events sent (default: all)."
    )
    timeout: Annotated[Duration, Within(timedelta(minutes=5), above_zero=True)] = Field(
        default=timedelta(seconds=5), description="Per attempt."
    )
    retries: int = Field(default=3, ge=0, le=10, description="Attempts after the first.")
    token_env: str | None = Field(
        default=None,
        pattern=r"^[A-Za-z_][A-Za-z0-9_]*$",
        max_length=SHORT_TEXT,
        description="Environment variable holding a bearer token (never the token itself).",
    )

    @model_validator(mode="after")
    def _safe(self) -> Webhook:
        problems = webhook_problems(self.url, self.token_env)
        if problems:
            raise ValueError("; ".join(problems))
        return self


class Notifications(Section):
    webhooks: list[Webhook] = Field(default_factory=list)


def _env_glob(value: str) -> str:
    if not re.fullmatch(r"[A-Za-z_*?][A-Za-z0-9_*?]*", value):
        raise ValueError(f"{show_value(value)}: a variable name, or a glob of one (AWS_*)")
    if value.upper().startswith("PATCHKIT_"):
        raise ValueError("patchkit's own variables (the ledger URL, tokens) never go to a play")
    return value


EnvGlob = Annotated[str, AfterValidator(_env_glob)]


class Connection(Section):
    """How the controller reaches hosts."""

    host_key_checking: bool = Field(
        default=True,
        description="Refuse a host whose SSH key is unknown or changed. false accepts any key "
        "(a man in the middle too); every plan preview says so. An inventory can opt single "
        "hosts out instead (ansible_host_key_checking: false).",
    )
    environment: list[EnvGlob] = Field(
        default_factory=list,
        description="Controller environment variables playbooks may see beyond Ansible's and "
        "SSH's own (globs, e.g. AWS_* for a dynamic inventory). PATCHKIT_* never.",
    )


class NodeGroup(Section):
    """Execution nodes near some hosts: their jobs run there (ansible-runner worker over SSH)."""

    name: str = Field(
        pattern=r"^[a-z0-9][a-z0-9-]*$",
        max_length=64,
        description="The group's name, as the hosts' node-group variable names it.",
    )
    nodes: Annotated[list[NodeAddress], Field(min_length=1, max_length=64)] = Field(
        description="The nodes, user@host[:port]; a run sends the group's hosts to one of them "
        "(chosen by the run id), or to the next that answers when that one does not."
    )
    hosts: Patterns = Field(
        default_factory=list,
        description="Host patterns this group serves, besides hosts whose variable names it.",
    )
    key: Text | None = Field(
        default=None, description="SSH private key (a file on the controller) for the nodes."
    )
    known_hosts: Text | None = Field(
        default=None,
        description="known_hosts file with the nodes' host keys (default: ssh's own); a node's "
        "host key is always checked.",
    )
    venv: Text = Field(
        default="/opt/patchkit-node",
        description="The nodes' virtualenv (patchkit node bootstrap --venv).",
    )


class Execution(Section):
    """Where jobs run: on the controller, or on execution nodes near the hosts."""

    variable: Text = Field(
        default="patchkit_node_group",
        description="Host variable naming the node group that serves the host (it wins over "
        "the groups' host patterns).",
    )
    node_groups: Annotated[list[NodeGroup], Field(max_length=100)] = Field(
        default_factory=list,
        description="Hosts of no group are patched from the controller.",
    )
    on_node_lost: Literal["halt", "continue"] = Field(
        default="halt",
        description="A node lost mid-job: halt ends the run interrupted; continue leaves its "
        "hosts without a verdict and goes on through the group's next node. Either way the run "
        "ends interrupted and resume reruns those hosts.",
    )

    @model_validator(mode="after")
    def _unique(self) -> Execution:
        _unique_names("node group", [g.name for g in self.node_groups])
        return self


def _unique_names(what: str, names: list[str]) -> None:
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise ValueError(f"{what} names must be unique: {', '.join(dupes)}")


class Policy(Section):
    """A patch-management policy."""

    name: Text
    description: Prose = ""
    scope: Scope = Field(default_factory=Scope)
    roles: Roles
    classification: Classification = Field(default_factory=Classification)
    criticality: Criticality = Field(default_factory=Criticality)
    windows: list[Window] = Field(min_length=1)
    rollout: Rollout = Field(default_factory=Rollout)
    preparation: Preparation = Field(default_factory=Preparation)
    downtime: Downtime = Field(default_factory=Downtime)
    verification: list[Check] = Field(default_factory=list)
    failure_handling: FailureHandling = Field(default_factory=FailureHandling)
    exceptions: list[PolicyException] = Field(default_factory=list)
    reporting: Reporting = Field(default_factory=Reporting)
    notifications: Notifications = Field(default_factory=Notifications)
    promotion: Promotion | None = None
    connection: Connection = Field(default_factory=Connection)
    execution: Execution = Field(default_factory=Execution)

    @model_validator(mode="after")
    def _unique_windows(self) -> Policy:
        _unique_names("window", [w.name for w in self.windows])
        return self

    def window(self, name: str) -> Window:
        for window in self.windows:
            if window.name == name:
                return window
        raise KeyError(name)


class PolicySchema(GenerateJsonSchema):
    """JSON Schema of policy files, with defaults written as a policy file writes them."""

    def encode_default(self, dft: Any) -> Any:
        if isinstance(dft, timedelta):
            return format_duration(dft)  # not pydantic's ISO 8601 "PT30M", which we refuse
        return super().encode_default(dft)
