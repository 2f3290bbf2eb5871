"""CISA's Known Exploited Vulnerabilities catalog (known_exploited_vulnerabilities.json), read.

Its schema (known_exploited_vulnerabilities_schema.json in cisagov/kev-data) requires
``catalogVersion``, ``dateReleased``, ``count`` and ``vulnerabilities``, and of each entry
``cveID``, ``vendorProject``, ``product``, ``vulnerabilityName``, ``dateAdded``,
``shortDescription``, ``requiredAction`` and ``dueDate``; ``knownRansomwareCampaignUse`` is
``Known`` or ``Unknown`` and ``cwes`` a list. A ``count`` that disagrees with the entries is a
cut or edited file, and refused.
"""

from __future__ import annotations

import enum
from pathlib import Path

from patchkit.advisories.files import MAX_BYTES, decode_json, read_file
from patchkit.advisories.problems import Fields, Problems
from patchkit.advisories.types import CVE_ID, Feed, FeedDating, FeedKind, KevCatalog, KevEntry


class RansomwareUse(enum.StrEnum):
    """The values of ``knownRansomwareCampaignUse``."""

    KNOWN = "Known"
    UNKNOWN = "Unknown"


def _entry(problems: Problems, index: int, value: object) -> KevEntry | None:
    where = f"vulnerabilities[{index}]"
    cve = value.get("cveID") if isinstance(value, dict) else None
    fields = Fields(problems, f"{where} ({cve})" if isinstance(cve, str) else where, "", value)
    cve = fields.text("cveID", required=True)
    if cve is not None and not CVE_ID.match(cve):
        fields.problem("cveID", f"not a CVE id: {cve!r}")
        cve = None
    texts = {
        key: fields.text(key, required=True)
        for key in (
            "vendorProject",
            "product",
            "vulnerabilityName",
            "shortDescription",
            "requiredAction",
        )
    }
    added = fields.day("dateAdded", required=True)
    due = fields.day("dueDate", required=True)
    ransomware = fields.choice("knownRansomwareCampaignUse", RansomwareUse)
    cwes = fields.strings("cwes")
    if cve is None or added is None or due is None or None in texts.values():
        return None
    return KevEntry(
        cve=cve,
        vendor_project=texts["vendorProject"] or "",
        product=texts["product"] or "",
        name=texts["vulnerabilityName"] or "",
        description=texts["shortDescription"] or "",
        required_action=texts["requiredAction"] or "",
        date_added=added,
        due_date=due,
        known_ransomware=ransomware is RansomwareUse.KNOWN,
        cwes=cwes,
    )


def read_kev(path: Path, *, max_bytes: int = MAX_BYTES) -> KevCatalog:
    """Read the KEV catalog JSON at ``path`` (gzip too); AdvisoryError lists what is wrong."""
    problems = Problems(str(path))
    raw = read_file(path, problems, max_bytes=max_bytes)
    _, data = decode_json(raw.data, problems)
    problems.check()
    if not isinstance(data, dict) or "vulnerabilities" not in data:
        problems.fail("not the KEV catalog: expected an object with 'vulnerabilities'")
    catalog = Fields(problems, "", "", data)
    title = catalog.text("title") or ""
    version = catalog.text("catalogVersion", required=True)
    released = catalog.timestamp("dateReleased", required=True)
    count = catalog.integer("count", required=True)
    items = catalog.array("vulnerabilities", required=True)
    entries: dict[str, KevEntry] = {}
    for index, value in enumerate(items):
        entry = _entry(problems, index, value)
        if entry is None:
            continue
        if entry.cve in entries:
            problems.add(f"vulnerabilities[{index}] ({entry.cve})", "cveID", "listed twice")
            continue
        entries[entry.cve] = entry
    if count is not None and count != len(items):
        catalog.problem("count", f"says {count:,}, the catalog holds {len(items):,} entries")
    if not items:
        # the real catalog never shrinks to nothing: a placeholder or a cut download, which,
        # imported, would replace the current catalog and silently unmatch every kev rule
        catalog.problem("vulnerabilities", "empty: the catalog lists no vulnerability")
    problems.check()
    if released is None:  # cannot be: a missing date is a problem, raised above
        problems.fail("no dateReleased")
    feed = Feed(
        kind=FeedKind.KEV,
        source=str(path),
        sha256=raw.sha256,
        date=released,
        dated_by=FeedDating.STATED,
        records=len(entries),
        cves=len(entries),
        version=version,
    )
    return KevCatalog(feed=feed, title=title, entries=tuple(sorted(entries.values(), key=_key)))


def _key(entry: KevEntry) -> str:
    return entry.cve
