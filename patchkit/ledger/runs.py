"""The ledger's run records: runs, batches, phases, rollbacks, snapshots and host locks."""

from __future__ import annotations

import json
from collections.abc import Callable, Collection, Mapping, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import (
    Connection,
    delete,
    insert,
    select,
    update,
)
from sqlalchemy.dialects import postgresql, sqlite

from patchkit.errors import RefusedError
from patchkit.ledger import schema as t
from patchkit.ledger.base import LedgerBase, audit, aware, lock_row, this_controller, utc
from patchkit.ledger.planning import PlanningRecords


class RunRecords(LedgerBase):
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
        approvals: Collection[int] = (),
        emergency: bool = False,
    ) -> None:
        """Record a new run, consume the ``approvals`` admission counted for it, and lock its
        ``hosts``, in one transaction (see ``lock``): a second run of the same plan, or a race
        for the same hosts, is refused with nothing written."""
        with self._tx("cannot write to") as conn:
            conn.execute(
                insert(t.runs).values(
                    id=run_id,
                    plan_id=plan_id,
                    plan_hash=plan_hash,
                    started=utc(at),
                    status="running",
                    reason="",
                    holder=holder,
                    heartbeat=utc(at),
                    emergency=emergency,
                )
            )
            if approvals:
                PlanningRecords._consume(conn, approvals, run_id)
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
                .values(status="running", reason="", ended=None, heartbeat=utc(at))
            )
            audit(conn, at, holder, "resume", run_id)

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
            "started": utc(started) if started else None,
            "ended": utc(ended) if ended else None,
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
            conn.execute(update(t.runs).where(t.runs.c.id == run_id).values(heartbeat=utc(at)))

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
            "ended": utc(ended),
            "data": json.dumps(dict(phase.data) | {"seconds": phase.seconds}, default=str),
            "controller": this_controller(),
            "via": getattr(phase, "via", ""),
        }
        attempt = getattr(phase, "attempt", 1)
        done = conn.execute(
            update(t.host_phases)
            .where(rows.run_id == run_id, rows.host == host, rows.phase == phase.phase)
            .where(rows.attempt == attempt)
            .values(batch=batch, **values)
        )
        if not done.rowcount:
            conn.execute(
                insert(t.host_phases).values(
                    run_id=run_id,
                    batch=batch,
                    host=host,
                    phase=phase.phase,
                    attempt=attempt,
                    started=utc(started),
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
        final: bool = True,
    ) -> None:
        """Every phase, package change and snapshot of a batch's hosts, in one transaction.

        Phases already recorded as they happened are updated, not repeated; a host run again
        (a resumed batch) replaces its earlier rows of the same try. ``final=False``: a try
        that will be followed by another (failure_handling.retries): its phases and changes
        are kept, no rollback is marked pending.
        """
        with self._tx("cannot write to") as conn:
            for out in outcomes:
                for phase in out.phases:
                    self._put_phase(
                        conn, run_id, batch, out.host, phase, started=started, ended=ended
                    )
                if out.needs_rollback and final:
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
                            taken=utc(started),
                        )
                    )
            conn.execute(update(t.runs).where(t.runs.c.id == run_id).values(heartbeat=utc(ended)))

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
                "taken": aware(r.taken),
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
                .values(released=utc(at))
            )
            audit(conn, at, "patchkit", "release", f"{run_id} {host}")

    # ------------------------------------------------------------------ locks

    def locks(self, hosts: Collection[str]) -> list[dict[str, Any]]:
        """The locks held on ``hosts`` (by any holder), with what holds each (``purpose``)."""
        query = select(t.locks).where(t.locks.c.host.in_(list(hosts))).order_by(t.locks.c.host)
        with self._tx("cannot read") as conn:
            return [_lock(r) for r in conn.execute(query)]

    def lock(
        self,
        run_id: str | None,
        hosts: Collection[str],
        *,
        holder: str,
        at: datetime,
        may_take: Callable[[dict[str, Any]], bool],
        purpose: str = "run",
    ) -> None:
        """Take ``hosts`` for ``holder`` in one transaction, or take nothing (see ``_take``).

        ``run_id`` is the run the locks are for (None for assess and release); ``purpose`` is
        what holds them: run (run and resume), rollback, release or assess.
        """
        with self._tx("cannot write to") as conn:
            self._take(
                conn, run_id, hosts, holder=holder, at=at, may_take=may_take, purpose=purpose
            )

    @staticmethod
    def _take(
        conn: Connection,
        run_id: str | None,
        hosts: Collection[str],
        *,
        holder: str,
        at: datetime,
        may_take: Callable[[dict[str, Any]], bool],
        purpose: str = "run",
    ) -> None:
        """Lock ``hosts``. A host locked by another holder (another controller, run or
        purpose) is taken over only when ``may_take(lock)`` says so; otherwise RefusedError
        names the holders, and the caller's transaction, rolled back, has taken nothing.

        Safe against another controller taking the same hosts at the same instant: each lock
        is claimed by an insert that does nothing when the host's row exists (the database's
        primary key decides who was first, not an earlier read), and hosts are claimed in
        sorted order, so that two controllers wanting several of the same hosts cannot
        deadlock. On SQLite the first insert takes the database's write lock, so the read
        that follows cannot go stale.
        """
        wanted = sorted(set(hosts))
        if not wanted:
            return
        values = {
            "run_id": run_id,
            "purpose": purpose,
            "holder": holder,
            "acquired": utc(at),
            "heartbeat": utc(at),
        }
        kept = [row for host in wanted if (row := _claim(conn, host, values, may_take)) is not None]
        if kept:
            raise _refusal(kept)
        if run_id is not None and purpose == "run":
            runs = update(t.runs).where(t.runs.c.id == run_id)
            conn.execute(runs.values(holder=holder, heartbeat=utc(at)))

    def heartbeat(
        self,
        run_id: str | None,
        *,
        at: datetime,
        holder: str | None = None,
        purpose: str = "run",
    ) -> None:
        """Refresh the locks held for ``run_id`` and ``purpose`` (by ``holder``; by any holder
        when None), and the run's own heartbeat when they are the run's (purpose ``run``)."""
        with self._tx("cannot write to") as conn:
            if run_id is not None and purpose == "run":
                conn.execute(update(t.runs).where(t.runs.c.id == run_id).values(heartbeat=utc(at)))
            conn.execute(
                update(t.locks).where(*_held_for(run_id, holder, purpose)).values(heartbeat=utc(at))
            )

    def unlock(
        self, run_id: str | None, *, holder: str | None = None, purpose: str = "run"
    ) -> None:
        """Let go of the locks held for ``run_id`` and ``purpose`` (by ``holder``; by any
        holder when None). Nothing else: another holder's locks on the same run stay."""
        with self._tx("cannot write to") as conn:
            conn.execute(delete(t.locks).where(*_held_for(run_id, holder, purpose)))

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
            "started": utc(started),
            "ended": utc(ended),
            "data": json.dumps(
                result.data | {"seconds": sum(p.seconds for p in result.phases)}, default=str
            ),
            "controller": this_controller(),
            "via": next((p.via for p in reversed(result.phases) if p.via), ""),
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
            audit(conn, ended, who, "rollback", detail)

    def finish_run(self, run_id: str, *, status: str, reason: str, at: datetime) -> None:
        with self._tx("cannot write to") as conn:
            conn.execute(
                update(t.runs)
                .where(t.runs.c.id == run_id)
                .values(status=status, reason=reason, ended=utc(at), heartbeat=utc(at))
            )


# ---------------------------------------------------------------------- lock helpers

CLAIM_ATTEMPTS = 5  # a host let go or taken over between our insert and our read: try again


def _lock(row: Any) -> dict[str, Any]:
    return lock_row(row) | {"purpose": row.purpose}


def _held_for(run_id: str | None, holder: str | None, purpose: str) -> list[Any]:
    """The WHERE terms of the locks one holder took for one run (or none) and one purpose."""
    c = t.locks.c
    terms = [c.run_id.is_(None) if run_id is None else c.run_id == run_id, c.purpose == purpose]
    if holder is not None:
        terms.append(c.holder == holder)
    return terms


def _insert_if_free(conn: Connection, values: dict[str, Any]) -> bool:
    """Insert a lock row unless the host has one (committed, or being inserted by another
    transaction, which PostgreSQL waits for); whether this one went in.

    RETURNING tells, not the row count: psycopg reports none (-1) for these inserts.
    """
    dialect = sqlite if conn.dialect.name == "sqlite" else postgresql
    statement = (
        dialect.insert(t.locks)
        .values(**values)
        .on_conflict_do_nothing(index_elements=[t.locks.c.host])
        .returning(t.locks.c.host)
    )
    return conn.execute(statement).first() is not None


def _claim(
    conn: Connection,
    host: str,
    values: dict[str, Any],
    may_take: Callable[[dict[str, Any]], bool],
) -> Any:
    """Lock one host; None when it is ours now, else the row of the holder that keeps it.

    A row that is already ours (same holder, run and purpose), or that ``may_take`` lets us
    take, is deleted by its exact holder and replaced; when another controller was quicker to
    delete or replace it, the claim starts over and meets whoever holds the host now.
    """
    c = t.locks.c
    row: Any = None
    for _ in range(CLAIM_ATTEMPTS):
        if _insert_if_free(conn, {"host": host, **values}):
            return None
        row = conn.execute(select(t.locks).where(c.host == host)).first()
        if row is None:
            continue  # let go after our insert looked: it may be free now
        ours = (row.holder, row.run_id, row.purpose) == (
            values["holder"],
            values["run_id"],
            values["purpose"],
        )
        if not ours and not may_take(_lock(row)):
            return row
        conn.execute(
            delete(t.locks).where(c.host == host, *_held_for(row.run_id, row.holder, row.purpose))
        )
    if row is None:
        raise RefusedError(
            f"{host} was locked and let go {CLAIM_ATTEMPTS} times while patchkit tried to lock it",
            hint="another controller is busy with this host: try again in a moment",
        )
    return row


def describe_holder(lock: Mapping[str, Any]) -> str:
    """Who holds a lock, as messages name it: its run (if any), purpose, controller, heartbeat.

    ``lock`` is a lock as ``RunRecords.locks`` returns it.
    """
    run, purpose = lock["run"], str(lock["purpose"])
    if purpose == "run":
        what = f"run {run}"
    elif purpose == "rollback":
        what = f"the rollback of run {run}"
    else:
        what = f"patchkit {purpose}" + (f" for run {run}" if run else "")
    return (
        f"{what} (controller {lock['holder']}, last heartbeat "
        f"{lock['heartbeat']:%Y-%m-%d %H:%M:%S} UTC)"
    )


def describe_locks(locks: Sequence[Mapping[str, Any]]) -> str:
    """Which hosts are held by whom, one clause per holder (locks as ``locks`` returns them)."""
    by_holder: dict[str, list[str]] = {}
    for lock in locks:
        by_holder.setdefault(describe_holder(lock), []).append(str(lock["host"]))
    return "; ".join(f"{', '.join(hosts)} held by {who}" for who, hosts in by_holder.items())


def _refusal(rows: Sequence[Any]) -> RefusedError:
    return RefusedError(
        describe_locks([_lock(row) for row in rows]),
        hint="wait for it to end (rollback, release and assess wait with --wait); if its "
        "controller is dead, take the lock over with --take-over",
    )
