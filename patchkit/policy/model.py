"""The patch policy as typed data: one model per section of a written patch-management policy.

Validated once, at the edge (``patchkit.policy.loader``); past the loader nothing re-checks. Every
model forbids unknown keys, so a typo is an error, never a silently ignored setting.
"""

from __future__ import annotations

import math
import re
from datetime import date, datetime, timedelta
from typing import Annotated, Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from croniter import croniter
from dateutil import rrule
from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PlainSerializer,
    WithJsonSchema,
    field_validator,
    model_validator,
)

from patchkit.model import Severity

# ---------------------------------------------------------------- value types

_DURATION = re.compile(r"^\s*(?:(\d+)\s*d)?\s*(?:(\d+)\s*h)?\s*(?:(\d+)\s*m)?\s*(?:(\d+)\s*s)?\s*$")


def parse_duration(value: Any) -> timedelta:
    """``"4h"``, ``"1h30m"``, ``"90s"``, ``"2d"``; a bare number is minutes."""
    if isinstance(value, timedelta):
        return value
    if isinstance(value, bool):
        raise ValueError("a duration such as 30m, 4h or 1h30m")
    if isinstance(value, int | float):
        if value < 0:
            raise ValueError("a duration cannot be negative")
        return timedelta(minutes=value)
    if isinstance(value, str):
        match = _DURATION.match(value)
        if match and any(match.groups()):
            d, h, m, s = (int(x) if x else 0 for x in match.groups())
            return timedelta(days=d, hours=h, minutes=m, seconds=s)
    raise ValueError(f"{value!r} is not a duration: use e.g. 30m, 4h, 1h30m, 90s or 2d")


def format_duration(value: timedelta) -> str:
    seconds = int(value.total_seconds())
    parts = []
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        if seconds >= size:
            parts.append(f"{seconds // size}{unit}")
            seconds %= size
    return "".join(parts) or "0m"


Duration = Annotated[
    timedelta,
    BeforeValidator(parse_duration),
    PlainSerializer(format_duration, return_type=str),
    WithJsonSchema(
        {
            "anyOf": [
                {"type": "string", "pattern": r"^(\d+d)?(\d+h)?(\d+m)?(\d+s)?$"},
                {"type": "number", "minimum": 0, "description": "minutes"},
            ],
            "description": "a duration: 30m, 4h, 1h30m, 90s, 2d (a bare number is minutes)",
        }
    ),
]


class Amount(BaseModel):
    """A count of hosts, or a percentage of some total (``5`` or ``"20%"``)."""

    model_config = ConfigDict(frozen=True)
    value: float
    percent: bool = False

    def of(self, total: int, *, minimum: int = 1) -> int:
        """Resolve against ``total`` hosts: a percentage rounds up, never below ``minimum``."""
        if not self.percent:
            return max(minimum, int(self.value))
        return max(minimum, math.ceil(total * self.value / 100))

    def __str__(self) -> str:
        return f"{self.value:g}%" if self.percent else str(int(self.value))


def _parse_amount(value: Any) -> Any:
    if isinstance(value, Amount | dict):
        return value
    if isinstance(value, bool):
        raise ValueError("a count (5) or a percentage ('20%')")
    if isinstance(value, int):
        if value < 0:
            raise ValueError("a count cannot be negative")
        return Amount(value=value)
    if isinstance(value, str) and value.strip().endswith("%"):
        try:
            pct = float(value.strip()[:-1])
        except ValueError:
            pass
        else:
            if 0 < pct <= 100:
                return Amount(value=pct, percent=True)
            raise ValueError(f"{value!r}: a percentage must be above 0% and at most 100%")
    raise ValueError(f"{value!r} is neither a count (5) nor a percentage ('20%')")


CountOrPercent = Annotated[
    Amount,
    BeforeValidator(_parse_amount),
    PlainSerializer(str, return_type=str),
    WithJsonSchema(
        {
            "anyOf": [
                {"type": "integer", "minimum": 0},
                {"type": "string", "pattern": r"^\d+(\.\d+)?%$"},
            ],
            "description": "a count of hosts (5) or a percentage ('20%')",
        }
    ),
]

Patterns = list[str]


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


# ---------------------------------------------------------------- sections


class Scope(Section):
    """Which inventory hosts the policy governs (Ansible host patterns or group names)."""

    include: Patterns = Field(default_factory=lambda: ["all"])
    exclude: Patterns = Field(default_factory=list)


class Roles(Section):
    owner: str = Field(description="Who owns this policy (a team or person).")
    approvers: list[str] = Field(
        default_factory=list, description="Who may approve a plan made under this policy."
    )
    approval_required: bool = Field(
        default=True, description="A plan must be approved before it runs."
    )
    contacts: dict[str, str] = Field(
        default_factory=dict, description="Contact per inventory group (group: address)."
    )

    @model_validator(mode="after")
    def _approvers_when_required(self) -> Roles:
        if self.approval_required and not self.approvers:
            raise ValueError("approval_required is true but no approvers are named")
        return self


class SeverityRule(Section):
    """Give updates matching every condition set here a severity (first matching rule wins)."""

    severity: Severity
    packages: Patterns = Field(default_factory=list, description="Package name globs.")
    origins: Patterns = Field(default_factory=list, description="Origin (suite) globs.")
    security: bool | None = Field(default=None, description="Only security (or non-security).")

    @model_validator(mode="after")
    def _has_condition(self) -> SeverityRule:
        if not self.packages and not self.origins and self.security is None:
            raise ValueError("a severity rule needs packages, origins or security to match on")
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
    minimum_age: Duration = Field(
        default=timedelta(0), description="An update is applied only once known this long."
    )
    security_origins: Patterns = Field(
        default_factory=lambda: ["*-security", "*security*"],
        description="Origins whose updates count as security updates.",
    )
    severity_rules: list[SeverityRule] = Field(default_factory=list)
    security_severity: Severity = Severity.HIGH
    default_severity: Severity = Severity.MEDIUM


class TierRule(Section):
    """Asset criticality from a host variable's value or from group membership."""

    criticality: int = Field(ge=1, le=10, description="Weight: 10 the most critical asset.")
    label: str = ""
    groups: Patterns = Field(default_factory=list)
    values: list[str | int] = Field(
        default_factory=list, description="Values of the criticality variable."
    )

    @model_validator(mode="after")
    def _has_condition(self) -> TierRule:
        if not self.groups and not self.values:
            raise ValueError("a tier rule needs groups or values to match on")
        return self


class Criticality(Section):
    variable: str = Field(default="tier", description="Host variable holding the asset tier.")
    tiers: list[TierRule] = Field(default_factory=list, description="First matching rule wins.")
    default: int = Field(default=1, ge=1, le=10)


class Freeze(Section):
    start: date
    end: date
    reason: str = ""

    @model_validator(mode="after")
    def _ordered(self) -> Freeze:
        if self.end < self.start:
            raise ValueError("a freeze ends before it starts")
        return self


class Window(Section):
    """A named, recurring maintenance window."""

    name: str = Field(pattern=r"^[a-z0-9][a-z0-9-]*$")
    hosts: Patterns = Field(
        default_factory=lambda: ["all"], description="Which in-scope hosts it serves."
    )
    rrule: str | None = Field(default=None, description="RFC 5545 RRULE, e.g. FREQ=WEEKLY;BYDAY=SA")
    cron: str | None = Field(default=None, description="A 5-field cron expression of the start.")
    timezone: str = "UTC"
    duration: Duration
    cutoff: Duration = Field(
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
            rrule.rrulestr(text, dtstart=datetime(2000, 1, 1))
        except (ValueError, TypeError) as exc:
            raise ValueError(f"{value!r} is not an RFC 5545 RRULE: {exc}") from None
        return text

    @field_validator("cron")
    @classmethod
    def _valid_cron(cls, value: str | None) -> str | None:
        if value is None:
            return None
        if len(value.split()) != 5 or not croniter.is_valid(value):
            raise ValueError(
                f"{value!r} is not a 5-field cron expression (minute hour dom mon dow)"
            )
        return value

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(
                f"{value!r} is not a time zone name (e.g. UTC, Europe/Berlin)"
            ) from None
        return value

    @model_validator(mode="after")
    def _one_recurrence(self) -> Window:
        if (self.rrule is None) == (self.cron is None):
            raise ValueError("give exactly one of rrule or cron")
        if self.duration <= timedelta(0):
            raise ValueError("duration must be positive")
        if self.cutoff >= self.duration:
            raise ValueError("cutoff must be shorter than the duration")
        return self


class Canary(Section):
    size: CountOrPercent = Field(description="Hosts in the canary batch.")
    hosts: Patterns = Field(
        default_factory=lambda: ["all"], description="Hosts preferred for the canary."
    )


class AntiAffinity(Section):
    variable: str = Field(default="cluster", description="Host variable naming the cluster.")
    max_per_batch: int = Field(default=1, ge=1)


class Estimate(Section):
    """Time per host when there is no history: used to fit batches into the window."""

    base: Duration = Field(default=timedelta(minutes=3))
    per_package: Duration = Field(default=timedelta(seconds=20))
    reboot: Duration = Field(default=timedelta(minutes=3))


class Rollout(Section):
    batch_size: CountOrPercent = Field(default_factory=lambda: Amount(value=25, percent=True))
    concurrency: CountOrPercent = Field(
        default_factory=lambda: Amount(value=10),
        description="Hosts patched at the same time within a batch (Ansible forks).",
    )
    canary: Canary | None = None
    order: Literal["priority", "name"] = "priority"
    anti_affinity: AntiAffinity | None = Field(default_factory=AntiAffinity)
    error_threshold: CountOrPercent = Field(
        default_factory=lambda: Amount(value=10, percent=True),
        description="Failures (count or % of the hosts run so far) that halt the window.",
    )
    estimate: Estimate = Field(default_factory=Estimate)


class Prechecks(Section):
    min_free_disk: int = Field(default=500, ge=0, description="MiB free on / before patching.")
    healthy_before: bool = Field(default=True, description="Run verification before patching.")
    pending_reboot: Literal["note", "reboot-first", "skip-host"] = "note"


class Snapshot(Section):
    backend: str = Field(
        default="package", description="package or lab now; other names are accepted."
    )
    retention: Duration = Field(default=timedelta(days=7))


class BackupHook(Section):
    command: str = Field(description="Run on the controller before a host is patched.")
    timeout: Duration = Field(default=timedelta(minutes=10))


class Preparation(Section):
    prechecks: Prechecks = Field(default_factory=Prechecks)
    snapshot: Snapshot = Field(default_factory=Snapshot)
    backup: BackupHook | None = None


class Downtime(Section):
    reboot: Literal["if-needed", "always", "never"] = "if-needed"
    reboot_timeout: Duration = Field(default=timedelta(minutes=10))
    reboot_packages: Patterns = Field(
        default_factory=lambda: ["linux-image-*", "libc6", "systemd", "dbus", "demo-kernel"],
        description="Updates of these packages need a reboot (when reboot is if-needed).",
    )
    reboot_approval: Patterns = Field(
        default_factory=list, description="Hosts whose reboot needs explicit approval."
    )


class SystemdCheck(Section):
    type: Literal["systemd"]
    unit: str
    hosts: Patterns = Field(default_factory=lambda: ["all"])


class TcpCheck(Section):
    type: Literal["tcp"]
    port: int = Field(ge=1, le=65535)
    host: str = "127.0.0.1"
    hosts: Patterns = Field(default_factory=lambda: ["all"])


class HttpCheck(Section):
    type: Literal["http"]
    url: str = Field(pattern=r"^https?://")
    status: int = Field(default=200, ge=100, le=599)
    hosts: Patterns = Field(default_factory=lambda: ["all"])


class CommandCheck(Section):
    type: Literal["command"]
    command: str
    exit_code: int = 0
    hosts: Patterns = Field(default_factory=lambda: ["all"])


Check = Annotated[SystemdCheck | TcpCheck | HttpCheck | CommandCheck, Field(discriminator="type")]


class FailureHandling(Section):
    retries: int = Field(default=0, ge=0, le=5)
    rollback: Literal["host", "batch", "none"] = "host"
    on_threshold: Literal["halt", "continue"] = "halt"


class PolicyException(Section):
    """A host or package (or a package on some hosts) that is not patched, until it expires."""

    hosts: Patterns = Field(default_factory=list)
    packages: Patterns = Field(default_factory=list)
    owner: str
    reason: str
    expires: date

    @model_validator(mode="after")
    def _has_target(self) -> PolicyException:
        if not self.hosts and not self.packages:
            raise ValueError("an exception names hosts, packages, or both")
        return self


class Reporting(Section):
    deadlines: dict[Severity, int] = Field(
        default_factory=lambda: {
            Severity.CRITICAL: 7,
            Severity.HIGH: 14,
            Severity.MEDIUM: 30,
            Severity.LOW: 90,
        },
        description="Days from an update being known to it being installed, per severity.",
    )
    due_soon: int = Field(
        default=2,
        ge=0,
        description="Days before its deadline from which an outstanding update is due soon.",
    )


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

    variable: str = Field(
        default="env", description="Host variable naming the environment (a group works too)."
    )
    order: list[str] = Field(min_length=2, description="Environments, first to last.")
    min_hosts: int = Field(default=1, ge=1, description="Verified installs needed before.")
    soak: Duration = Field(
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


NotifyEvent = Literal["window-started", "batch-halted", "window-finished", "rollback-done"]
NOTIFY_EVENTS: tuple[NotifyEvent, ...] = (
    "window-started",
    "batch-halted",
    "window-finished",
    "rollback-done",
)


class Webhook(Section):
    """A receiver of notifications: JSON POSTed to ``url`` (with a Slack-compatible ``text``)."""

    url: str = Field(description="http:// or https:// URL the JSON payload is POSTed to.")
    events: list[NotifyEvent] = Field(
        default_factory=lambda: list(NOTIFY_EVENTS), description="Events sent (default: all)."
    )
    timeout: Duration = Field(default=timedelta(seconds=5), description="Per attempt.")
    retries: int = Field(default=3, ge=0, le=10, description="Attempts after the first.")
    token_env: str | None = Field(
        default=None,
        description="Environment variable holding a bearer token (never the token itself).",
    )

    @field_validator("url")
    @classmethod
    def _http(cls, value: str) -> str:
        if not value.startswith(("http://", "https://")):
            raise ValueError(f"{value!r}: a webhook URL starts with http:// or https://")
        return value


class Notifications(Section):
    webhooks: list[Webhook] = Field(default_factory=list)


class Policy(Section):
    """A patch-management policy."""

    name: str
    description: str = ""
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

    @model_validator(mode="after")
    def _unique_windows(self) -> Policy:
        names = [w.name for w in self.windows]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"window names must be unique: {', '.join(dupes)}")
        return self

    def window(self, name: str) -> Window:
        for window in self.windows:
            if window.name == name:
                return window
        raise KeyError(name)
