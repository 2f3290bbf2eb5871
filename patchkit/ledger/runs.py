"""The ledger's run records: runs, batches, phases, rollbacks, snapshots and host locks."""

from __future__ import annotations

import json
from collections.abc import Callable, Collection, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import (
    Connection,
    delete,
    insert,
    select,
    update,
)

from patchkit.errors import RefusedError
from patchkit.ledger import schema as t
from patchkit.ledger.base import LedgerBase, audit, aware, lock_row, utc


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
    ) -> None:
        """Record a new run and lock its ``hosts`` in one transaction (see ``lock``)."""
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
        """The locks held on ``hosts`` (by any run)."""
        query = select(t.locks).where(t.locks.c.host.in_(list(hosts))).order_by(t.locks.c.host)
        with self._tx("cannot read") as conn:
            return [lock_row(r) for r in conn.execute(query)]

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
            if (r.run_id != run_id or r.holder != holder) and not may_take(lock_row(r))
        ]
        if blocking:
            first = blocking[0]
            raise RefusedError(
                f"{', '.join(r.host for r in blocking)} held by run {first.run_id} "
                f"(controller {first.holder}, last heartbeat "
                f"{aware(first.heartbeat):%Y-%m-%d %H:%M:%S} UTC)",
                hint="wait for that run to end; if its controller is dead, take the lock "
                "over with --take-over",
            )
        conn.execute(delete(t.locks).where(t.locks.c.host.in_(wanted)))
        for host in wanted:
            conn.execute(
                insert(t.locks).values(
                    host=host, run_id=run_id, holder=holder, acquired=utc(at), heartbeat=utc(at)
                )
            )
        runs = update(t.runs).where(t.runs.c.id == run_id)
        conn.execute(runs.values(holder=holder, heartbeat=utc(at)))

    def heartbeat(self, run_id: str, *, at: datetime) -> None:
        with self._tx("cannot write to") as conn:
            conn.execute(update(t.runs).where(t.runs.c.id == run_id).values(heartbeat=utc(at)))
            conn.execute(
                update(t.locks).where(t.locks.c.run_id == run_id).values(heartbeat=utc(at))
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
            "started": utc(started),
            "ended": utc(ended),
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
            audit(conn, ended, who, "rollback", detail)

    def finish_run(self, run_id: str, *, status: str, reason: str, at: datetime) -> None:
        with self._tx("cannot write to") as conn:
            conn.execute(
                update(t.runs)
                .where(t.runs.c.id == run_id)
                .values(status=status, reason=reason, ended=utc(at), heartbeat=utc(at))
            )
