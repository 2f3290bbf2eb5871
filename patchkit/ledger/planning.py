"""The ledger's planning records: assessments and their findings, plans, approvals."""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterable, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

from sqlalchemy import (
    Connection,
    func,
    insert,
    select,
    update,
)

from patchkit.errors import RefusedError
from patchkit.ledger import plan_bodies
from patchkit.ledger import schema as t
from patchkit.ledger.base import LedgerBase, audit, aware, new_id, utc
from patchkit.ledger.software import load_sets, store_sets
from patchkit.model import Approval, Finding, PackageSet, PendingUpdate
from patchkit.planning import codec


@dataclass(frozen=True)
class StoredPlan:
    """A plan as the ledger holds it: the body is checked against ``hash`` before use."""

    body: dict[str, Any]
    hash: str
    made_by: str
    saved_at: datetime


class PlanningRecords(LedgerBase):
    # ------------------------------------------------------------ assessments

    def record_assessment(
        self, found: Sequence[Finding], *, source: str, started: datetime
    ) -> tuple[Finding, ...]:
        """Store one assessment in one transaction; return the findings with first_seen set.

        ``first_seen`` of an update is the earliest time any assessment saw that candidate on
        that host (or the one given, if earlier): compliance deadlines run from it. Each
        distinct package set is stored once, and only if the ledger does not hold it yet.
        """
        out = []
        with self._tx("cannot write to") as conn:
            result = conn.execute(
                insert(t.assessments).values(started=utc(started), source=source, hosts=len(found))
            )
            assessment_id = new_id(result)
            store_sets(conn, (f.software for f in found if f.software is not None))
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
                        distribution=finding.distribution,
                        release=finding.release,
                        release_version=finding.release_version,
                        package_set=finding.software.digest if finding.software else None,
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
                out.append(replace(finding, updates=tuple(updates)))
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

    def latest_findings(
        self, hosts: Collection[str] | None = None, updates: UpdatesWanted | None = None
    ) -> dict[str, Finding]:
        """The newest finding per host (only for ``hosts`` when given); hosts with the same
        packages share one PackageSet object, hosts with the same pending updates one tuple.

        ``updates``: given the package sets of those findings, the package names whose
        pending updates to read (an audit of a few CVEs needs only those of their packages;
        a fleet's findings hold half a million update rows); Finding.updates then holds only
        those. It may answer None: all of them."""
        latest = (
            select(t.findings.c.host, func.max(t.findings.c.id).label("fid"))
            .group_by(t.findings.c.host)
            .subquery()
        )
        query = select(t.findings).join(latest, latest.c.fid == t.findings.c.id)
        wanted = set(hosts) if hosts is not None else None
        with self._tx("cannot read") as conn:
            rows = [r for r in conn.execute(query) if wanted is None or r.host in wanted]
            return {f.host: f for f in _findings_of(conn, rows, updates)}

    def latest_reachable_findings(self, hosts: Collection[str] | None = None) -> dict[str, Finding]:
        """The newest finding per host that reached the host (only for ``hosts`` when given).

        What a host had pending when it was last seen: a host unreachable in its latest
        assessments is compared with this (the new-update alerts), and a host never reached
        has no entry. Hosts with the same packages share one PackageSet object.
        """
        latest = (
            select(t.findings.c.host, func.max(t.findings.c.id).label("fid"))
            .where(t.findings.c.reachable.is_(True))
            .group_by(t.findings.c.host)
            .subquery()
        )
        query = select(t.findings).join(latest, latest.c.fid == t.findings.c.id)
        wanted = set(hosts) if hosts is not None else None
        with self._tx("cannot read") as conn:
            rows = [r for r in conn.execute(query) if wanted is None or r.host in wanted]
            return {f.host: f for f in _findings_of(conn, rows)}

    # ------------------------------------------------------------ plans

    def save_plan(self, body: dict[str, Any], *, saved_at: datetime, made_by: str = "") -> bool:
        """Store a plan body (as made by ``plan_body``); False if that plan was already saved.

        ``made_by`` (who planned it) is kept with the first save only: separation of duties
        judges the approvers against it.
        """
        known = select(t.plans.c.id).where(t.plans.c.id == body["id"])
        with self._tx("cannot read") as conn:
            if conn.execute(known).first() is not None:
                return False  # planned again from the same inputs: not packed again
        packed = plan_bodies.pack(body)  # outside the write: it takes seconds for a big fleet
        with self._tx("cannot write to") as conn:
            if conn.execute(known).first() is not None:
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
                    body="",
                    body_z=packed,
                    made_by=made_by,
                )
            )
            audit(conn, saved_at, made_by or "patchkit", "plan", f"{body['id']} {body['hash']}")
        return True

    def plan(self, plan_id: str) -> dict[str, Any] | None:
        stored = self.stored_plan(plan_id)
        return stored.body if stored is not None else None

    def stored_plan(self, plan_id: str) -> StoredPlan | None:
        """The plan row: its body as stored, the hash stored beside it, who made it."""
        plans = t.plans.c
        query = select(plans.body, plans.body_z, plans.hash, plans.made_by, plans.saved_at)
        with self._tx("cannot read") as conn:
            row = conn.execute(query.where(plans.id == plan_id)).first()
        if row is None:
            return None
        try:
            body = plan_bodies.unpack(row.body, row.body_z)
        except ValueError:
            # the hash check refuses it by name, as the edited row it is (not an older format)
            body = {"id": plan_id, "format": codec.FORMAT, "unreadable": True}
        return StoredPlan(body, row.hash, row.made_by, aware(row.saved_at))

    # ------------------------------------------------------------ approvals

    def approve(
        self,
        plan_id: str,
        plan_hash: str,
        *,
        by: str,
        at: datetime,
        comment: str = "",
        reboots: bool = False,
        emergency: bool = False,
        expires: datetime | None = None,
        signature: str | None = None,
    ) -> Approval:
        """Store one approval of ``plan_hash`` and its audit line; return it as stored."""
        with self._tx("cannot write to") as conn:
            result = conn.execute(
                insert(t.approvals).values(
                    plan_id=plan_id,
                    plan_hash=plan_hash,
                    approved_by=by,
                    approved_at=utc(at),
                    comment=comment,
                    reboots=reboots,
                    emergency=emergency,
                    expires=utc(expires) if expires is not None else None,
                    signature=signature,
                )
            )
            approval_id = new_id(result)
            what = [
                "with reboots" if reboots else "",
                "EMERGENCY (outside the window)" if emergency else "",
                "signed" if signature is not None else "",
                f"until {utc(expires):%Y-%m-%d %H:%M:%SZ}" if expires is not None else "",
            ]
            detail = " ".join([f"{plan_id} {plan_hash}", *(w for w in what if w)])
            audit(conn, at, by, "approve", detail)
        return Approval(
            id=approval_id,
            plan_id=plan_id,
            plan_hash=plan_hash,
            by=by,
            at=utc(at),
            comment=comment,
            reboots=reboots,
            emergency=emergency,
            expires=utc(expires) if expires is not None else None,
            signature=signature,
        )

    def approvals(self, plan_id: str) -> list[Approval]:
        """Every approval of ``plan_id`` (any hash, used or not), oldest first."""
        query = select(t.approvals).where(t.approvals.c.plan_id == plan_id)
        with self._tx("cannot read") as conn:
            return [_approval(r) for r in conn.execute(query.order_by(t.approvals.c.id))]

    @staticmethod
    def _consume(conn: Connection, approval_ids: Collection[int], run_id: str) -> None:
        """Mark the approvals used by ``run_id``, in the caller's (run start) transaction.

        An approval starts one run: one already used by another run is refused, naming that
        run, and the caller's transaction rolls back. Used by ``run_id`` itself already is
        fine (a resume). Only rows still unused are written, so of two runs starting at once
        on the same approvals one writes them and the other finds them taken.
        """
        ids = sorted(set(approval_ids))
        if not ids:
            return
        approvals = t.approvals
        conn.execute(
            update(approvals)
            .where(approvals.c.id.in_(ids), approvals.c.consumed_by.is_(None))
            .values(consumed_by=run_id)
        )
        rows = conn.execute(
            select(approvals.c.id, approvals.c.consumed_by).where(approvals.c.id.in_(ids))
        ).all()
        found = {r.id: r.consumed_by for r in rows}
        missing = [i for i in ids if i not in found]
        if missing:
            raise RefusedError(
                f"approval(s) {', '.join(map(str, missing))} are no longer in the ledger",
                hint="someone removed them: have the plan approved again (patchkit approve)",
            )
        taken = {i: run for i, run in found.items() if run != run_id}
        if taken:
            runs = ", ".join(sorted(set(taken.values())))
            raise RefusedError(
                f"approval(s) {', '.join(map(str, sorted(taken)))} were used by run {runs} "
                f"before run {run_id} could start on them",
                hint=f"see patchkit status {min(taken.values())}; to patch again, make a new plan "
                "(patchkit plan) and have it approved",
            )


# given the package sets of the findings read, the packages whose pending updates to read (None:
# all of them); at most NAMES_READ names (one query names them all with the findings' ids)
UpdatesWanted = Callable[[Iterable[PackageSet]], Collection[str] | None]
NAMES_READ = 400


def _by_package(update: PendingUpdate) -> tuple[str, str, str]:
    """A host's updates in a fixed order, whatever order the database gave their rows in."""
    return (update.package, update.candidate, update.origin)


class _Interned:
    """One object per distinct value read: a fleet's hosts repeat the same few hundred pending
    updates, times and release names, and 50,000 copies of each would be most of the memory."""

    def __init__(self) -> None:
        self.times: dict[datetime, datetime] = {}
        self.texts: dict[str, str] = {}
        self.updates: dict[tuple[Any, ...], PendingUpdate] = {}
        self.lists: dict[tuple[int, ...], tuple[PendingUpdate, ...]] = {}

    def time(self, raw: datetime) -> datetime:
        made = self.times.get(raw)
        if made is None:
            made = self.times[raw] = aware(raw)
        return made

    def text(self, raw: str | None) -> str | None:
        return None if raw is None else self.texts.setdefault(raw, raw)

    def pending(self, updates: list[PendingUpdate]) -> tuple[PendingUpdate, ...]:
        """A host's updates (each made by ``update``), sorted by package, as the tuple every
        host with the same updates shares."""
        key = tuple(map(id, updates))  # interned: the same update is the same object
        made = self.lists.get(key)
        if made is None:
            made = self.lists[key] = tuple(sorted(updates, key=_by_package))
        return made

    def update(self, raw: tuple[Any, ...]) -> PendingUpdate:
        made = self.updates.get(raw)
        if made is None:
            package, installed, candidate, origin, first_seen = raw
            made = self.updates[raw] = PendingUpdate(
                package, installed, candidate, origin, self.time(first_seen)
            )
        return made


def _findings_of(
    conn: Connection, rows: Sequence[Any], updates: UpdatesWanted | None = None
) -> list[Finding]:
    """The findings of these ``findings`` rows, with their pending updates (those of the
    packages ``updates`` names, when it names some) and package sets."""
    pu = t.pending_updates
    one = _Interned()
    text = one.text
    sets = load_sets(conn, (r.package_set for r in rows if r.package_set is not None))
    names = updates(sets.values()) if updates is not None else None
    if names is not None and len(names) > NAMES_READ:
        names = None  # too many to name in one query beside the ids: all are read
    # each row becomes its interned update as it is read: a fleet's half a million rows are a
    # few hundred distinct updates, and holding the rows first doubled the memory of a plan
    pending: dict[int, list[PendingUpdate]] = {}
    ids = [r.id for r in rows]
    # in no order: ``pending`` sorts each host's updates by package
    columns = select(pu.c.finding_id, pu.c.package, pu.c.installed, pu.c.candidate, pu.c.origin)
    columns = columns.add_columns(pu.c.first_seen)
    if names is not None:
        columns = columns.where(pu.c.package.in_(sorted(names)))
    made, update = one.updates, one.update
    for chunk in range(0, len(ids), 500):
        part = ids[chunk : chunk + 500]
        for row in conn.execute(columns.where(pu.c.finding_id.in_(part))):
            raw = tuple(row[1:])
            found = made.get(raw)  # most rows are an update met before
            pending.setdefault(row[0], []).append(found if found is not None else update(raw))
    return [
        Finding(
            host=r.host,
            assessed_at=one.time(r.assessed_at),
            reachable=r.reachable,
            updates=one.pending(pending.get(r.id, [])),
            reboot_pending=r.reboot_pending,
            message=one.texts.setdefault(r.message, r.message),
            release=text(r.release),
            software=sets[r.package_set] if r.package_set is not None else None,
            distribution=text(r.distribution),
            release_version=text(r.release_version),
        )
        for r in rows
    ]


def _approval(row: Any) -> Approval:
    return Approval(
        id=row.id,
        plan_id=row.plan_id,
        plan_hash=row.plan_hash,
        by=row.approved_by,
        at=aware(row.approved_at),
        comment=row.comment,
        reboots=bool(row.reboots),
        emergency=bool(row.emergency),
        expires=aware(row.expires) if row.expires is not None else None,
        signature=row.signature,
        consumed_by=row.consumed_by,
    )
