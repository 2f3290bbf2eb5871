"""The ledger read back: the run history, one run whole, installed updates and the planner's
history."""

from __future__ import annotations

import json
from collections.abc import Collection
from datetime import datetime
from typing import Any

from sqlalchemy import (
    Connection,
    func,
    select,
)

from patchkit.ledger import plan_bodies
from patchkit.ledger import schema as t
from patchkit.ledger.base import LedgerBase, aware, utc
from patchkit.planning.history import PHASES as PLANNED_PHASES
from patchkit.planning.history import History, Install


class RunQueries(LedgerBase):
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
            query = query.where(t.runs.c.started >= utc(since))
        if limit:
            query = query.limit(limit)
        with self._tx("cannot read") as conn:
            rows = conn.execute(query).all()
            hp = t.host_phases.c
            ran = conn.execute(
                select(hp.run_id, hp.controller, hp.via)
                .distinct()
                .where(hp.run_id.in_([r.id for r in rows]))
            ).all()
        controllers: dict[str, set[str]] = {}
        nodes: dict[str, set[str]] = {}
        for row in ran:
            if row.controller:
                controllers.setdefault(row.run_id, set()).add(row.controller)
            if row.via:
                nodes.setdefault(row.run_id, set()).add(row.via)
        return [
            {
                "id": r.id,
                "plan": r.plan_id,
                "policy": r.policy,
                "window": r.window,
                "status": r.status,
                "reason": r.reason,
                "started": aware(r.started),
                "ended": aware(r.ended) if r.ended else None,
                "batches": int(r.batches or 0),
                "hosts": int(r.hosts or 0),
                "failed": int(r.failed or 0),
                "holder": r.holder,  # the controller that started or last resumed it
                # the controllers and execution nodes its hosts' phases ran from
                "controllers": sorted(controllers.get(r.id, ())),
                "nodes": sorted(nodes.get(r.id, ())),
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
                patched_at[(r.run_id, r.host)] = aware(r.ended)
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
            seen = _first_seen(conn) if changes else {}
            rated = _planned_severities(conn, {c.run_id for c in changes})
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
                    "installed_at": aware(patched[1]),
                    "first_seen": aware(first) if first else None,
                    "origin": origin,
                    # the severity the approved plan gave it (by its CVEs too); None: not in it
                    "severity": rated.get((c.run_id, c.host, c.package, c.after)),
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
            "started": aware(run.started),
            "ended": aware(run.ended) if run.ended else None,
            "holder": run.holder,
            "emergency": bool(run.emergency),
            "batches": [
                {
                    "number": b.number,
                    "status": b.status,
                    "hosts": b.hosts,
                    "failed": b.failed,
                    "reason": b.reason,
                    "started": aware(b.started) if b.started else None,
                    "ended": aware(b.ended) if b.ended else None,
                }
                for b in batches
            ],
            "phases": [
                {
                    "batch": p.batch,
                    "host": p.host,
                    "phase": p.phase,
                    "attempt": p.attempt,
                    "status": p.status,
                    "message": p.message,
                    "seconds": json.loads(p.data).get("seconds"),
                    "data": json.loads(p.data),
                    "controller": p.controller,
                    "via": p.via,
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
                    "released": aware(s.released) if s.released else None,
                }
                for s in snaps
            ],
        }


def _first_seen(conn: Connection) -> dict[tuple[str, str, str], tuple[datetime, str]]:
    """(host, package, version) of each installed change → when an assessment of the host
    first saw that update pending, and its origin; only for the updates runs installed (a
    fleet's assessments hold far more pending updates than runs ever installed)."""
    pc, f, pu = t.package_changes, t.findings, t.pending_updates
    query = (
        select(
            pc.c.host,
            pc.c.package,
            pc.c.after,
            func.min(pu.c.first_seen).label("first"),
            func.max(pu.c.origin).label("origin"),
        )
        .join(f, f.c.host == pc.c.host)
        .join(pu, pu.c.finding_id == f.c.id)
        .where(pc.c.after.is_not(None), pu.c.package == pc.c.package, pu.c.candidate == pc.c.after)
        .group_by(pc.c.host, pc.c.package, pc.c.after)
    )
    return {(r.host, r.package, r.after): (r.first, r.origin) for r in conn.execute(query)}


def _planned_severities(
    conn: Connection, run_ids: Collection[str]
) -> dict[tuple[str, str, str, str], str]:
    """(run, host, package, candidate) → the severity its run's plan gave the update."""
    if not run_ids:
        return {}
    plan_of = dict(
        conn.execute(select(t.runs.c.id, t.runs.c.plan_id).where(t.runs.c.id.in_(run_ids))).all()
    )
    out: dict[tuple[str, str, str, str], str] = {}
    for plan_id in set(plan_of.values()):
        try:
            body = plan_bodies.read(conn, plan_id) or {}
            severities = {
                (h["host"], u["package"], u["candidate"]): str(u["severity"])
                for b in body.get("batches", ())
                for h in b["hosts"]
                for u in h["updates"]
            }
        except (ValueError, KeyError, TypeError):
            continue  # a body the plan reader would refuse: its severities are not trusted
        for run, plan in plan_of.items():
            if plan == plan_id:
                out.update({(run, *key): value for key, value in severities.items()})
    return out
