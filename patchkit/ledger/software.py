"""The ledger's software inventory: package sets stored once per digest, read back interned."""

from __future__ import annotations

from collections.abc import Collection, Iterable

from sqlalchemy import Connection, func, select
from sqlalchemy.dialects import postgresql, sqlite

from patchkit.errors import LedgerError
from patchkit.ledger import schema as t
from patchkit.ledger.base import LedgerBase, aware
from patchkit.model import HostSoftware, InstalledPackage, PackageSet

_CHUNK = 500  # ids or digests per IN (…): far below SQLite's and PostgreSQL's limits


def store_sets(conn: Connection, sets: Iterable[PackageSet]) -> None:
    """Insert each set not stored yet, in the caller's transaction.

    The digests already stored are skipped without sending their bodies; two controllers
    saving the same new set at once both succeed (ON CONFLICT DO NOTHING: PostgreSQL makes the
    second wait for the first, then skips).
    """
    wanted = {s.digest: s for s in sets}
    if not wanted:
        return
    stored: set[str] = set()
    digests = sorted(wanted)
    for start in range(0, len(digests), _CHUNK):
        part = digests[start : start + _CHUNK]
        query = select(t.package_sets.c.digest).where(t.package_sets.c.digest.in_(part))
        stored.update(conn.execute(query).scalars())
    rows = [
        {"digest": d, "packages": len(s.packages), "body": s.canonical()}
        for d, s in sorted(wanted.items())
        if d not in stored
    ]
    if rows:
        dialect = sqlite if conn.dialect.name == "sqlite" else postgresql
        insert = dialect.insert(t.package_sets).on_conflict_do_nothing(
            index_elements=[t.package_sets.c.digest]
        )
        conn.execute(insert, rows)


def load_sets(
    conn: Connection, digests: Iterable[str], pool: dict[str, PackageSet] | None = None
) -> dict[str, PackageSet]:
    """The sets of ``digests``, one object per digest (kept in ``pool`` across calls).

    A body that no longer hashes to its digest is refused: someone changed the ledger by hand.
    """
    pool = {} if pool is None else pool
    missing = sorted({d for d in digests if d not in pool})
    for start in range(0, len(missing), _CHUNK):
        part = missing[start : start + _CHUNK]
        query = select(t.package_sets.c.digest, t.package_sets.c.body)
        for digest, body in conn.execute(query.where(t.package_sets.c.digest.in_(part))):
            made = parse_body(body)
            if made.digest != digest:
                raise LedgerError(
                    f"package set {digest} in the ledger does not match its digest"
                    f" ({made.digest}): it was changed after it was stored",
                    hint="restore the ledger from a backup, or assess the hosts again",
                )
            pool[digest] = made
    return pool


def parse_body(body: str) -> PackageSet:
    """A set from its canonical form (``PackageSet.canonical``)."""
    return PackageSet(InstalledPackage(*line.split("\t")) for line in body.splitlines())


class SoftwareRecords(LedgerBase):
    def latest_software(self, hosts: Collection[str] | None = None) -> dict[str, HostSoftware]:
        """Each host's newest known software (only for ``hosts`` when given), with its release.

        From the host's latest assessment that listed its packages: a host unreachable since is
        given as last seen (``assessed_at`` tells how old that is); a host never listed is
        absent. Hosts with the same packages share one PackageSet object.
        """
        f = t.findings
        latest = (
            select(f.c.host, func.max(f.c.id).label("fid"))
            .where(f.c.package_set.is_not(None))
            .group_by(f.c.host)
            .subquery()
        )
        query = select(
            f.c.host,
            f.c.assessed_at,
            f.c.distribution,
            f.c.release,
            f.c.release_version,
            f.c.package_set,
        ).join(latest, latest.c.fid == f.c.id)
        wanted = set(hosts) if hosts is not None else None
        with self._tx("cannot read") as conn:
            rows = [r for r in conn.execute(query) if wanted is None or r.host in wanted]
            sets = load_sets(conn, (r.package_set for r in rows))
        return {
            r.host: HostSoftware(
                host=r.host,
                assessed_at=aware(r.assessed_at),
                release=r.release,
                software=sets[r.package_set],
                distribution=r.distribution,
                release_version=r.release_version,
            )
            for r in sorted(rows, key=lambda r: r.host)
        }

    def package_set(self, digest: str) -> PackageSet | None:
        """One stored set by its digest, or None."""
        with self._tx("cannot read") as conn:
            return load_sets(conn, [digest]).get(digest)
