"""The ledger's tables (SQLAlchemy Core): the same schema on SQLite and PostgreSQL.

Times are stored as timezone-aware timestamps in UTC; plan bodies as JSON text and package sets
as their canonical text (the exact bytes that were hashed, so a stored plan or set can be
verified against its hash). Imported advisory feeds are stored row by row (version 6), so that
the fixes of a few releases can be read without reading a whole feed.
"""

from __future__ import annotations

from sqlalchemy import (
    Boolean,
    Column,
    Date,
    DateTime,
    Float,
    ForeignKey,
    ForeignKeyConstraint,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
    false,
)

# Bump with a step in migrations.py whenever an existing table changes.
SCHEMA_VERSION = 8

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
    # the plan's JSON: as text in plans saved before schema 7 (then body_z is NULL); since, ""
    # here and body_z holds it zlib-compressed (ledger/plan_bodies.py: 265 MB -> 12 MB at 50k)
    Column("body", Text, nullable=False),
    Column("body_z", LargeBinary),
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
    # who ran it: the controller process (host:pid) that recorded it, and the execution node
    # it went through ("": the controller reached the host itself)
    Column("controller", String(255), nullable=False, server_default=""),
    Column("via", String(255), nullable=False, server_default=""),
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


# ---------------------------------------------------------------- advisory feeds (version 6)
# One row per import of a feed file; what the file held is in the tables below, each row tied to
# its feed by ``feed_id`` and numbered by ``seq`` in the order the reader gave it (so a feed read
# back is the same value the reader made). Older imports stay: they prove what was known when.
advisory_feeds = Table(
    "advisory_feeds",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("kind", String(32), nullable=False),  # patchkit.advisories.FeedKind
    Column("source", Text, nullable=False),  # the path as it was given
    Column("location", Text, nullable=False),  # the path resolved: which OSV feed this replaces
    Column("sha256", String(64), nullable=False),
    Column("feed_date", DateTime(timezone=True), nullable=False),
    Column("dated_by", String(32), nullable=False),  # patchkit.advisories.FeedDating
    Column("records", Integer, nullable=False),
    Column("cves", Integer, nullable=False),
    Column("version", Text),  # KEV catalogVersion, EPSS model_version
    Column("ignored", Integer, nullable=False),
    Column("title", Text),  # KEV's title
    Column("imported_at", DateTime(timezone=True), nullable=False),
    Column("imported_by", String(255), nullable=False),
    UniqueConstraint("kind", "sha256", name="uq_advisory_feeds_kind_sha256"),  # same bytes: once
)

# The vulnerability records of a tracker or OSV feed; lists as compact JSON arrays.
advisory_records = Table(
    "advisory_records",
    metadata,
    Column("feed_id", ForeignKey("advisory_feeds.id"), primary_key=True),
    Column("seq", Integer, primary_key=True, autoincrement=False),
    Column("advisory", Text, nullable=False),  # its id: CVE-…, DSA-…, USN-…
    Column("cves", Text, nullable=False),
    Column("description", Text, nullable=False),
    Column("scope", String(16)),
    Column("published", DateTime(timezone=True)),
    Column("modified", DateTime(timezone=True)),
    Column("aliases", Text, nullable=False),
    Column("debian_bugs", Text, nullable=False),
)

advisory_cvss = Table(
    "advisory_cvss",
    metadata,
    Column("feed_id", Integer, primary_key=True),
    Column("record_seq", Integer, primary_key=True, autoincrement=False),
    Column("position", Integer, primary_key=True, autoincrement=False),
    Column("version", String(8), nullable=False),
    Column("vector", Text, nullable=False),
    Column("base_score", Float, nullable=False),
    ForeignKeyConstraint(
        ["feed_id", "record_seq"], ["advisory_records.feed_id", "advisory_records.seq"]
    ),
)

# One vulnerability in one source package on one release. The tracker's notes (repositories,
# no-dsa, next point update) are kept as one compact JSON object in ``notes``, None for OSV:
# nothing decides on them, and a package's CVEs on one release mostly share the same notes.
advisory_fixes = Table(
    "advisory_fixes",
    metadata,
    Column("feed_id", ForeignKey("advisory_feeds.id"), primary_key=True),
    Column("seq", Integer, primary_key=True, autoincrement=False),
    Column("vulnerability", Text, nullable=False),
    Column("package", Text, nullable=False),
    Column("distro", String(32), nullable=False),
    Column("release", Text, nullable=False),  # bookworm (tracker), 12 or 22.04 (OSV)
    Column("variant", Text, nullable=False),  # Ubuntu's pro, pro:fips-updates; "" otherwise
    Column("status", String(16), nullable=False),
    Column("fixed_version", Text),
    Column("introduced", Text),
    Column("urgency", String(32)),
    Column("urgency_by_nvd", Boolean, nullable=False),
    Column("advisory", Text, nullable=False),
    Column("notes", Text),
    # the planner loads the fixes of the releases its hosts run
    Index("ix_advisory_fixes_release", "feed_id", "distro", "release", "variant"),
)

kev_entries = Table(
    "kev_entries",
    metadata,
    Column("feed_id", ForeignKey("advisory_feeds.id"), primary_key=True),
    Column("seq", Integer, primary_key=True, autoincrement=False),
    Column("cve", String(32), nullable=False),
    Column("vendor_project", Text, nullable=False),
    Column("product", Text, nullable=False),
    Column("name", Text, nullable=False),
    Column("description", Text, nullable=False),
    Column("required_action", Text, nullable=False),
    Column("date_added", Date, nullable=False),
    Column("due_date", Date, nullable=False),
    Column("known_ransomware", Boolean, nullable=False),
    Column("cwes", Text, nullable=False),
)

# A score's date is its feed's (EPSS files score one day): not repeated per row.
epss_scores = Table(
    "epss_scores",
    metadata,
    Column("feed_id", ForeignKey("advisory_feeds.id"), primary_key=True),
    Column("seq", Integer, primary_key=True, autoincrement=False),
    Column("cve", String(32), nullable=False),
    Column("epss", Float, nullable=False),
    Column("percentile", Float, nullable=False),
)

# in the order they refer to each other: a migration creates them so
ADVISORY_TABLES = (
    advisory_feeds,
    advisory_records,
    advisory_cvss,
    advisory_fixes,
    kev_entries,
    epss_scores,
)
