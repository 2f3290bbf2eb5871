"""The one module that talks to the database. Rows stop here; callers get model values."""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Collection, Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import (
    Connection,
    Engine,
    create_engine,
    delete,
    event,
    func,
    insert,
    inspect,
    select,
    update,
)
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, SQLAlchemyError

from patchkit.errors import LedgerError, RefusedError
from patchkit.ledger import migrations
from patchkit.ledger import schema as t
from patchkit.model import Finding, PendingUpdate
from patchkit.planning.history import PHASES as PLANNED_PHASES
from patchkit.planning.history import History, Install

DEFAULT_PATH = Path(".patchkit/ledger.sqlite")


def default_url() -> str:
    return f"sqlite:///{DEFAULT_PATH}"


def shown_url(url: str) -> str:
    """``url`` as messages show it: a password in it (user:password@ or ?password=) masked."""
    try:
        parsed = make_url(url)
    except (ArgumentError, ValueError):
        # Not a URL SQLAlchemy reads, but it may still hold "user:password@": mask that.
        return re.sub(r"(://[^/:@]*:)[^/@]*@", r"\1***@", url)
    if parsed.password is None and "password" not in parsed.query:
        return url  # as given: rendering would re-quote it (sqlite:///file:… → file%3A…)
    if "password" in parsed.query:
        parsed = parsed.difference_update_query(["password"]).set(
            password=str(parsed.query["password"])
        )
    return parsed.render_as_string(hide_password=True)


def _utc(value: datetime) -> datetime:
    return value.astimezone(UTC)


def _aware(value: datetime) -> datetime:
    """SQLite hands times back without a zone; they were stored in UTC."""
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def _audit(conn: Connection, at: datetime, who: str, action: str, detail: str) -> None:
    """One line of the audit trail, in the caller's transaction."""
    conn.execute(insert(t.audit).values(at=_utc(at), who=who, action=action, detail=detail))


def _lock_row(row: Any) -> dict[str, Any]:
    return {
        "host": row.host,
        "run": row.run_id,
        "holder": row.holder,
        "acquired": _aware(row.acquired),
        "heartbeat": _aware(row.heartbeat),
    }


def _new_id(result: Any) -> int:
    """The integer key an INSERT just made (SQLAlchemy types it as optional)."""
    return int(result.inserted_primary_key[0])


class Ledger:
    """Open (and create if needed) the ledger at ``url``: ``sqlite:///path`` or PostgreSQL."""

    def __init__(self, url: str | None = None) -> None:
        given = url or default_url()
        self.url = shown_url(given)  # for messages, which must never show a password
        try:
            self.engine = self._connect(given)
            with self.engine.begin() as conn:
                self._bring_up_to_date(conn)
        except (SQLAlchemyError, ValueError) as exc:  # ValueError: a port that is no number
            raise self._error("cannot open", exc) from None

    def _bring_up_to_date(self, conn: Connection) -> None:
        """Create a new ledger, or migrate an older one, in the caller's transaction."""
        version: str | None = None
        if inspect(conn).has_table(t.meta.name):
            stored = conn.execute(select(t.meta.c.value).where(t.meta.c.key == "schema"))
            version = stored.scalar_one_or_none()
        if version is None:
            t.metadata.create_all(conn)
            conn.execute(insert(t.meta).values(key="schema", value=str(t.SCHEMA_VERSION)))
            return
        current = int(version)
        if current > t.SCHEMA_VERSION:
            raise LedgerError(
                f"ledger {self.url} has schema {current}, newer than this patchkit's "
                f"{t.SCHEMA_VERSION}",
                hint="upgrade patchkit (every controller sharing a ledger needs the same version)",
            )
        for target, step in migrations.pending(current, t.SCHEMA_VERSION):
            try:
                step(conn)
            except SQLAlchemyError as exc:
                detail = str(getattr(exc, "orig", exc)).splitlines()[0]
                raise LedgerError(
                    f"cannot migrate the ledger {self.url} from schema {target - 1} to "
                    f"{target}: {detail}",
                    hint="nothing was changed (the migration is one transaction); check the "
                    "database user's rights to alter tables",
                ) from None
        t.metadata.create_all(conn)  # tables that are new in this version
        if current != t.SCHEMA_VERSION:
            conn.execute(
                update(t.meta).where(t.meta.c.key == "schema").values(value=str(t.SCHEMA_VERSION))
            )

    @staticmethod
    def _connect(url: str) -> Engine:
        if url.startswith("sqlite:///") and url != "sqlite:///:memory:":
            Path(url.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(url)
        if engine.dialect.name == "sqlite":

            @event.listens_for(engine, "connect")
            def _pragmas(dbapi_conn: Any, _record: Any) -> None:
                # The driver's own transaction handling commits DDL on its own; let SQLAlchemy
                # say BEGIN itself (below) so that a migration is one transaction here too.
                dbapi_conn.isolation_level = None
                cursor = dbapi_conn.cursor()
                cursor.execute("PRAGMA foreign_keys=ON")
                cursor.execute("PRAGMA journal_mode=WAL")  # readers never block the writer
                cursor.execute("PRAGMA busy_timeout=10000")
                cursor.close()

            @event.listens_for(engine, "begin")
            def _begin(conn: Connection) -> None:
                conn.exec_driver_sql("BEGIN")

        return engine

    def _error(self, what: str, exc: Exception) -> LedgerError:
        detail = str(getattr(exc, "orig", exc)).splitlines()[0]
        return LedgerError(
            f"{what} the ledger {self.url}: {detail}",
            hint="check the path or URL, its permissions and free disk space (--ledger or "
            "PATCHKIT_LEDGER choose another)",
        )

    @contextmanager
    def _tx(self, what: str) -> Iterator[Connection]:
        try:
            with self.engine.begin() as conn:
                yield conn
        except SQLAlchemyError as exc:
            raise self._error(what, exc) from None

    def close(self) -> None:
        self.engine.dispose()

    # ------------------------------------------------------------ assessments

    def record_assessment(
        self, found: Sequence[Finding], *, source: str, started: datetime
    ) -> tuple[Finding, ...]:
        """Store one assessment in one transaction; return the findings with first_seen set.

        ``first_seen`` of an update is the earliest time any assessment saw that candidate on
        that host (or the one given, if earlier): compliance deadlines run from it.
        """
        out = []
        with self._tx("cannot write to") as conn:
            result = conn.execute(
                insert(t.assessments).values(started=_utc(started), source=source, hosts=len(found))
            )
            assessment_id = _new_id(result)
            for finding in found:
                known = self._first_seen(conn, finding.host)
                updates = []
                for u in finding.updates:
                    seen = [x for x in (known.get((u.package, u.candidate)), u.first_seen) if x]
                    first = min([*seen, finding.assessed_at], key=_utc)
                    updates.append(
                        PendingUpdate(u.package, u.installed, u.candidate, u.origin, _aware(first))
                    )
                row = conn.execute(
                    insert(t.findings).values(
                        assessment_id=assessment_id,
                        host=finding.host,
                        assessed_at=_utc(finding.assessed_at),
                        reachable=finding.reachable,
                        reboot_pending=finding.reboot_pending,
                        message=finding.message,
                    )
                )
                finding_id = _new_id(row)
                if updates:
                    conn.execute(
                        insert(t.pending_updates),
                        [
                            {
                                "finding_id": finding_id,
                                "package": u.package,
                                "installed": u.installed,
                                "candidate": u.candidate,
                                "origin": u.origin,
                                "first_seen": _utc(u.first_seen or finding.assessed_at),
                            }
                            for u in updates
                        ],
                    )
                out.append(
                    Finding(
                        host=finding.host,
                        assessed_at=finding.assessed_at,
                        reachable=finding.reachable,
                        updates=tuple(updates),
                        reboot_pending=finding.reboot_pending,
                        message=finding.message,
                    )
                )
        return tuple(out)

    @staticmethod
    def _first_seen(conn: Connection, host: str) -> dict[tuple[str, str], datetime]:
        query = (
            select(t.pending_updates.c.package, t.pending_updates.c.candidate)
            .add_columns(func.min(t.pending_updates.c.first_seen))
            .join(t.findings, t.findings.c.id == t.pending_updates.c.finding_id)
            .where(t.findings.c.host == host)
            .group_by(t.pending_updates.c.package, t.pending_updates.c.candidate)
        )
        return {(p, c): _aware(first) for p, c, first in conn.execute(query)}

    def latest_findings(self, hosts: Collection[str] | None = None) -> dict[str, Finding]:
        """The newest finding per host (only for ``hosts`` when given)."""
        latest = (
            select(t.findings.c.host, func.max(t.findings.c.id).label("fid"))
            .group_by(t.findings.c.host)
            .subquery()
        )
        query = select(t.findings).join(latest, latest.c.fid == t.findings.c.id)
        wanted = set(hosts) if hosts is not None else None
        out: dict[str, Finding] = {}
        with self._tx("cannot read") as conn:
            rows = [r for r in conn.execute(query) if wanted is None or r.host in wanted]
            ids = [r.id for r in rows]
            updates: dict[int, list[PendingUpdate]] = {}
            for chunk in range(0, len(ids), 500):
                part = ids[chunk : chunk + 500]
                upd = select(t.pending_updates).where(t.pending_updates.c.finding_id.in_(part))
                for u in conn.execute(upd):
                    updates.setdefault(u.finding_id, []).append(
                        PendingUpdate(
                            u.package, u.installed, u.candidate, u.origin, _aware(u.first_seen)
                        )
                    )
            for r in rows:
                out[r.host] = Finding(
                    host=r.host,
                    assessed_at=_aware(r.assessed_at),
                    reachable=r.reachable,
                    updates=tuple(sorted(updates.get(r.id, []), key=lambda u: u.package)),
                    reboot_pending=r.reboot_pending,
                    message=r.message,
                )
        return out

    # ------------------------------------------------------------ plans

    def save_plan(self, body: dict[str, Any], *, saved_at: datetime) -> bool:
        """Store a plan body (as made by ``plan_body``); False if that plan was already saved."""
        with self._tx("cannot write to") as conn:
            exists = conn.execute(select(t.plans.c.id).where(t.plans.c.id == body["id"]))
            if exists.first() is not None:
                return False
            conn.execute(
                insert(t.plans).values(
                    id=body["id"],
                    hash=body["hash"],
                    policy=body["policy"],
                    window=body["window"]["name"],
                    window_start=_utc(datetime.fromisoformat(body["window"]["start"])),
                    made_at=_utc(datetime.fromisoformat(body["made_at"])),
                    saved_at=_utc(saved_at),
                    body=json.dumps(body, sort_keys=True),
                )
            )
        return True

    def plan(self, plan_id: str) -> dict[str, Any] | None:
        with self._tx("cannot read") as conn:
            row = conn.execute(select(t.plans.c.body).where(t.plans.c.id == plan_id)).first()
        if row is None:
            return None
        body: dict[str, Any] = json.loads(row.body)
        return body

    # ------------------------------------------------------------ approvals and runs

    def approve(
        self,
        plan_id: str,
        plan_hash: str,
        *,
        by: str,
        at: datetime,
        comment: str = "",
        reboots: bool = False,
    ) -> None:
        with self._tx("cannot write to") as conn:
            conn.execute(
                insert(t.approvals).values(
                    plan_id=plan_id,
                    plan_hash=plan_hash,
                    approved_by=by,
                    approved_at=_utc(at),
                    comment=comment,
                    reboots=reboots,
                )
            )
            detail = f"{plan_id} {plan_hash}" + (" with reboots" if reboots else "")
            _audit(conn, at, by, "approve", detail)

    def approvals(self, plan_id: str) -> list[dict[str, Any]]:
        query = select(t.approvals).where(t.approvals.c.plan_id == plan_id)
        with self._tx("cannot read") as conn:
            return [
                {
                    "by": r.approved_by,
                    "at": _aware(r.approved_at),
                    "hash": r.plan_hash,
                    "comment": r.comment,
                    "reboots": bool(r.reboots),
                }
                for r in conn.execute(query.order_by(t.approvals.c.id))
            ]

    def start_run(
        self,
        run_id: str,
        plan_id: str,
        plan_hash: str,
        *,
        at: datetime,
        holder: str,
        hosts: Collection[str] = (),
        may_take: Callable[[dict[str, Any]], bool] = lambda _lock: False,
    ) -> None:
        """Record a new run and lock its ``hosts`` in one transaction (see ``lock``)."""
        with self._tx("cannot write to") as conn:
            conn.execute(
                insert(t.runs).values(
                    id=run_id,
                    plan_id=plan_id,
                    plan_hash=plan_hash,
                    started=_utc(at),
                    status="running",
                    reason="",
                    holder=holder,
                    heartbeat=_utc(at),
                )
            )
            self._take(conn, run_id, hosts, holder=holder, at=at, may_take=may_take)

    def reopen_run(
        self,
        run_id: str,
        *,
        at: datetime,
        holder: str,
        hosts: Collection[str],
        may_take: Callable[[dict[str, Any]], bool],
    ) -> None:
        """Resume: the run is running again under ``holder``, which holds ``hosts``."""
        with self._tx("cannot write to") as conn:
            self._take(conn, run_id, hosts, holder=holder, at=at, may_take=may_take)
            conn.execute(
                update(t.runs)
                .where(t.runs.c.id == run_id)
                .values(status="running", reason="", ended=None, heartbeat=_utc(at))
            )
            _audit(conn, at, holder, "resume", run_id)

    def record_batch(
        self,
        run_id: str,
        number: int,
        *,
        status: str,
        hosts: int,
        failed: int = 0,
        started: datetime | None = None,
        ended: datetime | None = None,
        reason: str = "",
    ) -> None:
        """Insert or update a batch row (one transaction)."""
        values = {
            "status": status,
            "hosts": hosts,
            "failed": failed,
            "started": _utc(started) if started else None,
            "ended": _utc(ended) if ended else None,
            "reason": reason,
        }
        key = (t.batches.c.run_id == run_id) & (t.batches.c.number == number)
        with self._tx("cannot write to") as conn:
            if conn.execute(select(t.batches.c.number).where(key)).first() is None:
                conn.execute(insert(t.batches).values(run_id=run_id, number=number, **values))
            else:
                conn.execute(update(t.batches).where(key).values(**values))

    def record_phase(self, run_id: str, batch: int, host: str, phase: Any, *, at: datetime) -> None:
        """One phase of one host as soon as the playbook reports it (a ``PhaseOutcome``).

        Committed at once, so that a controller killed mid-batch loses nothing that was
        reported; ``record_outcomes`` completes the batch later without duplicating it.
        """
        with self._tx("cannot write to") as conn:
            self._put_phase(conn, run_id, batch, host, phase, started=at, ended=at)
            conn.execute(update(t.runs).where(t.runs.c.id == run_id).values(heartbeat=_utc(at)))

    @staticmethod
    def _put_phase(
        conn: Connection,
        run_id: str,
        batch: int,
        host: str,
        phase: Any,
        *,
        started: datetime,
        ended: datetime,
    ) -> None:
        """Insert the phase row, or update it when this run already has one for the host."""
        rows = t.host_phases.c
        values = {
            "status": phase.status,
            "message": phase.message,
            "ended": _utc(ended),
            "data": json.dumps(dict(phase.data) | {"seconds": phase.seconds}, default=str),
        }
        done = conn.execute(
            update(t.host_phases)
            .where(rows.run_id == run_id, rows.host == host, rows.phase == phase.phase)
            .values(batch=batch, **values)
        )
        if not done.rowcount:
            conn.execute(
                insert(t.host_phases).values(
                    run_id=run_id,
                    batch=batch,
                    host=host,
                    phase=phase.phase,
                    started=_utc(started),
                    **values,
                )
            )

    def record_outcomes(
        self,
        run_id: str,
        batch: int,
        outcomes: Sequence[Any],
        *,
        started: datetime,
        ended: datetime,
    ) -> None:
        """Every phase, package change and snapshot of a batch's hosts, in one transaction.

        Phases already recorded as they happened are updated, not repeated; a host run again
        (a resumed batch) replaces its earlier rows.
        """
        with self._tx("cannot write to") as conn:
            for out in outcomes:
                for phase in out.phases:
                    self._put_phase(
                        conn, run_id, batch, out.host, phase, started=started, ended=ended
                    )
                if out.needs_rollback:
                    conn.execute(
                        insert(t.host_phases).values(
                            run_id=run_id,
                            batch=batch,
                            host=out.host,
                            phase="rollback",
                            status="pending",
                            message=f"{out.failed_phase} {out.status}: rollback pending",
                            data="{}",
                        )
                    )
                if out.changes:
                    conn.execute(
                        delete(t.package_changes).where(
                            t.package_changes.c.run_id == run_id,
                            t.package_changes.c.host == out.host,
                        )
                    )
                for change in out.changes:
                    conn.execute(
                        insert(t.package_changes).values(
                            run_id=run_id,
                            host=out.host,
                            package=change.package,
                            before=change.before,
                            after=change.after,
                        )
                    )
                if out.snapshot is not None:
                    conn.execute(
                        delete(t.snapshots).where(
                            t.snapshots.c.run_id == run_id, t.snapshots.c.host == out.host
                        )
                    )
                    conn.execute(
                        insert(t.snapshots).values(
                            run_id=run_id,
                            host=out.host,
                            backend=out.snapshot[0],
                            snapshot_id=out.snapshot[1],
                            taken=_utc(started),
                        )
                    )
            conn.execute(update(t.runs).where(t.runs.c.id == run_id).values(heartbeat=_utc(ended)))

    # ------------------------------------------------------------------ snapshots

    def unreleased_snapshots(self) -> list[dict[str, Any]]:
        """Snapshots not released yet, each with what its run says about the host since."""
        with self._tx("cannot read") as conn:
            snaps = conn.execute(
                select(t.snapshots, t.runs.c.status.label("run_status"))
                .join(t.runs, t.runs.c.id == t.snapshots.c.run_id)
                .where(t.snapshots.c.released.is_(None))
                .order_by(t.snapshots.c.id)
            ).all()
            runs = sorted({r.run_id for r in snaps})
            phases = conn.execute(
                select(t.host_phases.c.run_id, t.host_phases.c.host, t.host_phases.c.phase,
                       t.host_phases.c.status)
                .where(t.host_phases.c.run_id.in_(runs))
                .where(t.host_phases.c.phase.in_(["verify", "rollback"]))
                .order_by(t.host_phases.c.id)
            ).all()  # fmt: skip
        last: dict[tuple[str, str, str], str] = {}
        for row in phases:
            last[(row.run_id, row.host, row.phase)] = row.status
        return [
            {
                "run": r.run_id,
                "run_status": r.run_status,
                "host": r.host,
                "backend": r.backend,
                "id": r.snapshot_id,
                "taken": _aware(r.taken),
                "verify": last.get((r.run_id, r.host, "verify")),
                "rollback": last.get((r.run_id, r.host, "rollback")),
            }
            for r in snaps
        ]

    def mark_released(self, run_id: str, host: str, *, at: datetime) -> None:
        with self._tx("cannot write to") as conn:
            conn.execute(
                update(t.snapshots)
                .where(t.snapshots.c.run_id == run_id, t.snapshots.c.host == host)
                .values(released=_utc(at))
            )
            _audit(conn, at, "patchkit", "release", f"{run_id} {host}")

    # ------------------------------------------------------------------ locks

    def locks(self, hosts: Collection[str]) -> list[dict[str, Any]]:
        """The locks held on ``hosts`` (by any run)."""
        query = select(t.locks).where(t.locks.c.host.in_(list(hosts))).order_by(t.locks.c.host)
        with self._tx("cannot read") as conn:
            return [_lock_row(r) for r in conn.execute(query)]

    def lock(
        self,
        run_id: str,
        hosts: Collection[str],
        *,
        holder: str,
        at: datetime,
        may_take: Callable[[dict[str, Any]], bool],
    ) -> None:
        """Take ``hosts`` for ``run_id`` in one transaction, or take nothing (see ``_take``)."""
        with self._tx("cannot write to") as conn:
            self._take(conn, run_id, hosts, holder=holder, at=at, may_take=may_take)

    @staticmethod
    def _take(
        conn: Connection,
        run_id: str,
        hosts: Collection[str],
        *,
        holder: str,
        at: datetime,
        may_take: Callable[[dict[str, Any]], bool],
    ) -> None:
        """Lock ``hosts``. A host locked by another run or controller is taken over only when
        ``may_take(lock)`` says so; otherwise RefusedError names the holder (nothing taken)."""
        wanted = sorted(set(hosts))
        if not wanted:
            return
        held = conn.execute(select(t.locks).where(t.locks.c.host.in_(wanted))).all()
        blocking = [
            r
            for r in held
            if (r.run_id != run_id or r.holder != holder) and not may_take(_lock_row(r))
        ]
        if blocking:
            first = blocking[0]
            raise RefusedError(
                f"{', '.join(r.host for r in blocking)} held by run {first.run_id} "
                f"(controller {first.holder}, last heartbeat "
                f"{_aware(first.heartbeat):%Y-%m-%d %H:%M:%S} UTC)",
                hint="wait for that run to end; if its controller is dead, take the lock "
                "over with --take-over",
            )
        conn.execute(delete(t.locks).where(t.locks.c.host.in_(wanted)))
        for host in wanted:
            conn.execute(
                insert(t.locks).values(
                    host=host, run_id=run_id, holder=holder, acquired=_utc(at), heartbeat=_utc(at)
                )
            )
        runs = update(t.runs).where(t.runs.c.id == run_id)
        conn.execute(runs.values(holder=holder, heartbeat=_utc(at)))

    def heartbeat(self, run_id: str, *, at: datetime) -> None:
        with self._tx("cannot write to") as conn:
            conn.execute(update(t.runs).where(t.runs.c.id == run_id).values(heartbeat=_utc(at)))
            conn.execute(
                update(t.locks).where(t.locks.c.run_id == run_id).values(heartbeat=_utc(at))
            )

    def unlock(self, run_id: str) -> None:
        with self._tx("cannot write to") as conn:
            conn.execute(delete(t.locks).where(t.locks.c.run_id == run_id))

    def record_rollback(
        self, run_id: str, result: Any, *, started: datetime, ended: datetime, who: str
    ) -> None:
        """A host's rollback (an ``execution.rollback.Result``): its ``rollback`` phase row.

        A pending row left by the run is completed; otherwise (a rollback asked for by hand, or
        a retry after a failed one) a new row is added. One transaction, with an audit entry.
        """
        status = {"rolled-back": "ok"}.get(result.status, result.status)
        values = {
            "status": status,
            "message": result.message,
            "started": _utc(started),
            "ended": _utc(ended),
            "data": json.dumps(
                result.data | {"seconds": sum(p.seconds for p in result.phases)}, default=str
            ),
        }
        rows = t.host_phases.c
        with self._tx("cannot write to") as conn:
            done = conn.execute(
                update(t.host_phases)
                .where(rows.run_id == run_id, rows.host == result.host)
                .where(rows.phase == "rollback", rows.status == "pending")
                .values(**values)
            )
            if not done.rowcount:
                conn.execute(
                    insert(t.host_phases).values(
                        run_id=run_id,
                        batch=result.batch,
                        host=result.host,
                        phase="rollback",
                        **values,
                    )
                )
            detail = f"{run_id} {result.host}: {result.status}: {result.message}"
            _audit(conn, ended, who, "rollback", detail)

    def finish_run(self, run_id: str, *, status: str, reason: str, at: datetime) -> None:
        with self._tx("cannot write to") as conn:
            conn.execute(
                update(t.runs)
                .where(t.runs.c.id == run_id)
                .values(status=status, reason=reason, ended=_utc(at), heartbeat=_utc(at))
            )

    def runs(
        self,
        *,
        statuses: Collection[str] = (),
        policy: str | None = None,
        since: datetime | None = None,
        limit: int | None = None,
    ) -> list[dict[str, Any]]:
        """Runs, newest first, with their plan's policy and window and per-run host counts."""
        per_batch = (
            select(
                t.batches.c.run_id,
                func.count().label("batches"),
                func.coalesce(func.sum(t.batches.c.hosts), 0).label("hosts"),
                func.coalesce(func.sum(t.batches.c.failed), 0).label("failed"),
            )
            .group_by(t.batches.c.run_id)
            .subquery()
        )
        query = (
            select(
                t.runs, t.plans.c.policy, t.plans.c.window, per_batch.c.batches,
                per_batch.c.hosts, per_batch.c.failed,
            )
            .join(t.plans, t.plans.c.id == t.runs.c.plan_id)
            .outerjoin(per_batch, per_batch.c.run_id == t.runs.c.id)
            .order_by(t.runs.c.started.desc(), t.runs.c.id.desc())
        )  # fmt: skip
        if statuses:
            query = query.where(t.runs.c.status.in_(list(statuses)))
        if policy:
            query = query.where(t.plans.c.policy == policy)
        if since:
            query = query.where(t.runs.c.started >= _utc(since))
        if limit:
            query = query.limit(limit)
        with self._tx("cannot read") as conn:
            rows = conn.execute(query).all()
        return [
            {
                "id": r.id,
                "plan": r.plan_id,
                "policy": r.policy,
                "window": r.window,
                "status": r.status,
                "reason": r.reason,
                "started": _aware(r.started),
                "ended": _aware(r.ended) if r.ended else None,
                "batches": int(r.batches or 0),
                "hosts": int(r.hosts or 0),
                "failed": int(r.failed or 0),
            }
            for r in rows
        ]

    def history(self, hosts: Collection[str] | None = None) -> History:
        """What past runs teach the planner: each update's installs with whether verification
        passed after it (installs whose verify never ran are no evidence either way), and each
        host's successful phase durations, oldest run first."""
        hp, pc = t.host_phases, t.package_changes
        wanted = set(hosts) if hosts is not None else None
        with self._tx("cannot read") as conn:
            rows = conn.execute(
                select(hp.c.run_id, hp.c.host, hp.c.phase, hp.c.status, hp.c.ended, hp.c.data)
                .join(t.runs, t.runs.c.id == hp.c.run_id)
                .where(hp.c.phase.in_(PLANNED_PHASES))
                .order_by(t.runs.c.started, hp.c.id)
            ).all()
            changes = conn.execute(
                select(pc.c.run_id, pc.c.host, pc.c.package, pc.c.after)
                .where(pc.c.after.is_not(None))
                .order_by(pc.c.id)
            ).all()
        verify: dict[tuple[str, str], str] = {}
        patched_at: dict[tuple[str, str], datetime] = {}
        durations: dict[str, dict[str, list[float]]] = {}
        for r in rows:
            if r.phase == "verify":
                verify[(r.run_id, r.host)] = r.status
            if r.phase == "patch" and r.ended is not None:
                patched_at[(r.run_id, r.host)] = _aware(r.ended)
            if r.status == "ok" and (wanted is None or r.host in wanted):
                seconds = json.loads(r.data).get("seconds")
                if seconds is not None:
                    durations.setdefault(r.host, {}).setdefault(r.phase, []).append(float(seconds))
        installs: dict[tuple[str, str], list[Install]] = {}
        for c in changes:
            key = (c.run_id, c.host)
            if verify.get(key) not in ("ok", "failed") or key not in patched_at:
                continue
            installs.setdefault((c.package, c.after), []).append(
                Install(c.host, patched_at[key], verify[key] == "ok")
            )
        return History(
            installs={
                k: tuple(sorted(v, key=lambda i: (i.at, i.host))) for k, v in installs.items()
            },
            durations={h: {p: tuple(v) for p, v in ph.items()} for h, ph in durations.items()},
        )

    def installed_updates(self) -> list[dict[str, Any]]:
        """Every update a run installed and kept (a rollback undid it: left out), with when it
        was first seen pending on that host and its origin: the data of time-to-patch."""
        hp, pc = t.host_phases, t.package_changes
        with self._tx("cannot read") as conn:
            ended = {
                (r.run_id, r.host, r.phase): (r.status, r.ended)
                for r in conn.execute(
                    select(hp.c.run_id, hp.c.host, hp.c.phase, hp.c.status, hp.c.ended).where(
                        hp.c.phase.in_(("patch", "rollback"))
                    )
                )
            }
            changes = conn.execute(
                select(pc.c.run_id, pc.c.host, pc.c.package, pc.c.after)
                .where(pc.c.after.is_not(None))
                .order_by(pc.c.id)
            ).all()
            seen = {
                (r.host, r.package, r.candidate): (r.first, r.origin)
                for r in conn.execute(
                    select(
                        t.findings.c.host,
                        t.pending_updates.c.package,
                        t.pending_updates.c.candidate,
                        func.min(t.pending_updates.c.first_seen).label("first"),
                        func.max(t.pending_updates.c.origin).label("origin"),
                    )
                    .join(t.findings, t.findings.c.id == t.pending_updates.c.finding_id)
                    .group_by(
                        t.findings.c.host,
                        t.pending_updates.c.package,
                        t.pending_updates.c.candidate,
                    )
                )
            }
        out = []
        for c in changes:
            patched = ended.get((c.run_id, c.host, "patch"))
            undone = ended.get((c.run_id, c.host, "rollback"))
            if patched is None or patched[1] is None or (undone and undone[0] == "ok"):
                continue
            first, origin = seen.get((c.host, c.package, c.after), (None, None))
            out.append(
                {
                    "run": c.run_id,
                    "host": c.host,
                    "package": c.package,
                    "version": c.after,
                    "installed_at": _aware(patched[1]),
                    "first_seen": _aware(first) if first else None,
                    "origin": origin,
                }
            )
        return out

    def run_record(self, run_id: str | None = None) -> dict[str, Any] | None:
        """A run with its batches, host phases and package changes (the newest if no id)."""
        with self._tx("cannot read") as conn:
            query = select(t.runs)
            query = (
                query.where(t.runs.c.id == run_id)
                if run_id
                else query.order_by(t.runs.c.started.desc())
            )
            run = conn.execute(query.limit(1)).first()
            if run is None:
                return None
            batches = conn.execute(
                select(t.batches).where(t.batches.c.run_id == run.id).order_by(t.batches.c.number)
            ).all()
            phases = conn.execute(
                select(t.host_phases)
                .where(t.host_phases.c.run_id == run.id)
                .order_by(t.host_phases.c.id)
            ).all()
            changes = conn.execute(
                select(t.package_changes)
                .where(t.package_changes.c.run_id == run.id)
                .order_by(t.package_changes.c.id)
            ).all()
            snaps = conn.execute(select(t.snapshots).where(t.snapshots.c.run_id == run.id)).all()
        return {
            "id": run.id,
            "plan": run.plan_id,
            "plan_hash": run.plan_hash,
            "status": run.status,
            "reason": run.reason,
            "started": _aware(run.started),
            "ended": _aware(run.ended) if run.ended else None,
            "holder": run.holder,
            "batches": [
                {
                    "number": b.number,
                    "status": b.status,
                    "hosts": b.hosts,
                    "failed": b.failed,
                    "reason": b.reason,
                    "started": _aware(b.started) if b.started else None,
                    "ended": _aware(b.ended) if b.ended else None,
                }
                for b in batches
            ],
            "phases": [
                {
                    "batch": p.batch,
                    "host": p.host,
                    "phase": p.phase,
                    "status": p.status,
                    "message": p.message,
                    "seconds": json.loads(p.data).get("seconds"),
                    "data": json.loads(p.data),
                }
                for p in phases
            ],
            "changes": [
                {"host": c.host, "package": c.package, "before": c.before, "after": c.after}
                for c in changes
            ],
            "snapshots": [
                {
                    "host": s.host,
                    "backend": s.backend,
                    "id": s.snapshot_id,
                    "released": _aware(s.released) if s.released else None,
                }
                for s in snaps
            ],
        }
