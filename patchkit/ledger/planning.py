"""The ledger's planning records: assessments and their findings, plans, approvals."""

from __future__ import annotations

import json
from collections.abc import Collection, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import (
    Connection,
    func,
    insert,
    select,
)

from patchkit.ledger import schema as t
from patchkit.ledger.base import LedgerBase, audit, aware, new_id, utc
from patchkit.model import Finding, PendingUpdate


class PlanningRecords(LedgerBase):
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
                insert(t.assessments).values(started=utc(started), source=source, hosts=len(found))
            )
            assessment_id = new_id(result)
            for finding in found:
                known = self._first_seen(conn, finding.host)
                updates = []
                for u in finding.updates:
                    seen = [x for x in (known.get((u.package, u.candidate)), u.first_seen) if x]
                    first = min([*seen, finding.assessed_at], key=utc)
                    updates.append(
                        PendingUpdate(u.package, u.installed, u.candidate, u.origin, aware(first))
                    )
                row = conn.execute(
                    insert(t.findings).values(
                        assessment_id=assessment_id,
                        host=finding.host,
                        assessed_at=utc(finding.assessed_at),
                        reachable=finding.reachable,
                        reboot_pending=finding.reboot_pending,
                        message=finding.message,
                    )
                )
                finding_id = new_id(row)
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
                                "first_seen": utc(u.first_seen or finding.assessed_at),
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
        return {(p, c): aware(first) for p, c, first in conn.execute(query)}

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
                            u.package, u.installed, u.candidate, u.origin, aware(u.first_seen)
                        )
                    )
            for r in rows:
                out[r.host] = Finding(
                    host=r.host,
                    assessed_at=aware(r.assessed_at),
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
                    window_start=utc(datetime.fromisoformat(body["window"]["start"])),
                    made_at=utc(datetime.fromisoformat(body["made_at"])),
                    saved_at=utc(saved_at),
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
                    approved_at=utc(at),
                    comment=comment,
                    reboots=reboots,
                )
            )
            detail = f"{plan_id} {plan_hash}" + (" with reboots" if reboots else "")
            audit(conn, at, by, "approve", detail)

    def approvals(self, plan_id: str) -> list[dict[str, Any]]:
        query = select(t.approvals).where(t.approvals.c.plan_id == plan_id)
        with self._tx("cannot read") as conn:
            return [
                {
                    "by": r.approved_by,
                    "at": aware(r.approved_at),
                    "hash": r.plan_hash,
                    "comment": r.comment,
                    "reboots": bool(r.reboots),
                }
                for r in conn.execute(query.order_by(t.approvals.c.id))
            ]
