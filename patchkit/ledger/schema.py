"""The ledger's tables (SQLAlchemy Core): the same schema on SQLite and PostgreSQL.

Times are stored as timezone-aware timestamps in UTC; plan bodies as JSON text and package sets
as their canonical text (the exact bytes that were hashed, so a stored plan or set can be
verified against its hash).
"""

from __future__ import annotations

from sqlalchemy import (
    Boolean,
    Column,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    false,
)

# Bump with a step in migrations.py whenever an existing table changes.
SCHEMA_VERSION = 5

metadata = MetaData()

meta = Table(
    "meta",
    metadata,
    Column("key", String(64), primary_key=True),
    Column("value", Text, nullable=False),
)

assessments = Table(
    "assessments",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("started", DateTime(timezone=True), nullable=False),
    Column("source", Text, nullable=False),  # inventory path, or the findings file imported
    Column("hosts", Integer, nullable=False),
)

# What is installed on hosts, one row per distinct set (hosts made from one image share it),
# content-addressed: ``digest`` is the SHA-256 of ``body``, the set's canonical form
# (patchkit.model.PackageSet.canonical: one ``name, version, arch, source, source_version`` line
# per package, tab-separated, sorted). Plain text rather than compressed: it is the exact bytes
# hashed, readable and searchable with SQL, and PostgreSQL compresses long values (TOAST) itself.
package_sets = Table(
    "package_sets",
    metadata,
    Column("digest", String(64), primary_key=True),
    Column("packages", Integer, nullable=False),
    Column("body", Text, nullable=False),
)

findings = Table(
    "findings",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("assessment_id", ForeignKey("assessments.id"), nullable=False),
    Column("host", String(255), nullable=False),
    Column("assessed_at", DateTime(timezone=True), nullable=False),
    Column("reachable", Boolean, nullable=False),
    Column("reboot_pending", Boolean, nullable=False),
    Column("message", Text, nullable=False),
    # version 5: the distribution facts and what is installed; None: not collected (findings
    # of older ledgers, unreachable hosts, format 1 findings files)
    Column("distribution", String(64)),
    Column("release", String(64)),  # the codename: bookworm
    Column("release_version", String(64)),
    Column("package_set", ForeignKey("package_sets.digest")),
    Index("ix_findings_host_time", "host", "assessed_at"),
)

pending_updates = Table(
    "pending_updates",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("finding_id", ForeignKey("findings.id"), nullable=False, index=True),
    Column("package", String(255), nullable=False),
    Column("installed", String(255)),
    Column("candidate", String(255), nullable=False),
    Column("origin", String(255), nullable=False),
    Column("first_seen", DateTime(timezone=True), nullable=False),
)

plans = Table(
    "plans",
    metadata,
    Column("id", String(64), primary_key=True),
    Column("hash", String(64), nullable=False, unique=True),
    Column("policy", String(255), nullable=False),
    Column("window", String(255), nullable=False),
    Column("window_start", DateTime(timezone=True), nullable=False),
    Column("made_at", DateTime(timezone=True), nullable=False),
    Column("saved_at", DateTime(timezone=True), nullable=False),
    Column("body", Text, nullable=False),
    # who first saved the plan (patchkit plan --by, default the OS user): separation of duties
    Column("made_by", String(255), nullable=False, server_default=""),
)

approvals = Table(
    "approvals",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("plan_id", ForeignKey("plans.id"), nullable=False, index=True),
    Column("plan_hash", String(64), nullable=False),
    Column("approved_by", String(255), nullable=False),
    Column("approved_at", DateTime(timezone=True), nullable=False),
    Column("comment", Text, nullable=False),
    # downtime approval: the approver also approved the reboots the policy wants approved
    Column("reboots", Boolean, nullable=False, server_default=false()),
    # an emergency approval lets the plan run outside its window occurrence
    Column("emergency", Boolean, nullable=False, server_default=false()),
    Column("expires", DateTime(timezone=True)),  # None: approvals of schema 3 (never expire)
    Column("signature", Text),  # armored `ssh-keygen -Y sign` signature of the approval
    Column("consumed_by", String(64)),  # the run that used it: an approval is used once
)

runs = Table(
    "runs",
    metadata,
    Column("id", String(64), primary_key=True),
    Column("plan_id", ForeignKey("plans.id"), nullable=False, index=True),
    Column("plan_hash", String(64), nullable=False),
    Column("started", DateTime(timezone=True), nullable=False),
    Column("ended", DateTime(timezone=True)),
    Column("status", String(32), nullable=False),  # running, completed, halted, failed, …
    Column("reason", Text, nullable=False),
    Column("holder", String(255), nullable=False),  # host:pid of the controller running it
    Column("heartbeat", DateTime(timezone=True), nullable=False),
    Column("emergency", Boolean, nullable=False, server_default=false()),  # outside its window
)

batches = Table(
    "batches",
    metadata,
    Column("run_id", ForeignKey("runs.id"), primary_key=True),
    Column("number", Integer, primary_key=True),
    Column("status", String(32), nullable=False),  # not-started, running, completed, halted …
    Column("hosts", Integer, nullable=False),
    Column("failed", Integer, nullable=False),
    Column("started", DateTime(timezone=True)),
    Column("ended", DateTime(timezone=True)),
    Column("reason", Text, nullable=False),
)

host_phases = Table(
    "host_phases",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("run_id", ForeignKey("runs.id"), nullable=False),
    Column("batch", Integer, nullable=False),
    Column("host", String(255), nullable=False),
    Column("phase", String(32), nullable=False),
    Column("attempt", Integer, nullable=False, server_default="1"),  # failure_handling.retries
    Column("status", String(32), nullable=False),  # ok, failed, unreachable, skipped, pending
    Column("started", DateTime(timezone=True)),
    Column("ended", DateTime(timezone=True)),
    Column("message", Text, nullable=False),
    Column("data", Text, nullable=False),  # the phase's result as JSON
    Index("ix_host_phases_run_host", "run_id", "host"),
)

package_changes = Table(
    "package_changes",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("run_id", ForeignKey("runs.id"), nullable=False, index=True),
    Column("host", String(255), nullable=False),
    Column("package", String(255), nullable=False),
    Column("before", String(255)),
    Column("after", String(255)),
)

snapshots = Table(
    "snapshots",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("run_id", ForeignKey("runs.id"), nullable=False, index=True),
    Column("host", String(255), nullable=False),
    Column("backend", String(64), nullable=False),
    Column("snapshot_id", Text, nullable=False),
    Column("taken", DateTime(timezone=True), nullable=False),
    Column("released", DateTime(timezone=True)),
)

audit = Table(
    "audit",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("at", DateTime(timezone=True), nullable=False),
    Column("who", String(255), nullable=False),
    Column("action", String(64), nullable=False),
    Column("detail", Text, nullable=False),
)

# Which run holds which host: a second run or resume touching a held host is refused. A lock
# whose holder died (SIGKILL, a lost machine) stays until taken over explicitly.
locks = Table(
    "locks",
    metadata,
    Column("host", String(255), primary_key=True),
    Column("run_id", ForeignKey("runs.id")),  # None: held by assess or release (no run)
    # what holds it: run (run and resume), rollback, release, assess
    Column("purpose", String(32), nullable=False, server_default="run"),
    Column("holder", String(255), nullable=False),  # host:pid of the controller
    Column("acquired", DateTime(timezone=True), nullable=False),
    Column("heartbeat", DateTime(timezone=True), nullable=False),
)
