"""Advisory feeds about the lab's demo packages, written in the real formats.

The CVEs are the made-up ones the demo packages' changelogs name (patchkit.lab.catalog), and a
few more, so that every state of the audit appears on the lab's Debian bookworm hosts:

- CVE-2026-940001: libdemo (demo-lib), fixed in 1.1, which the lab repository offers; in the
  KEV catalog, EPSS 0.94: the known-exploited flaw a policy rule makes critical;
- CVE-2026-940002: libdemo, fixed in 1.1, mild;
- CVE-2026-940003: libdemo, open (no fix released yet);
- CVE-2026-940010: demo-kernel, fixed in 1.1;
- CVE-2026-940020: demo-app, fixed upstream in 2.0, a version the lab repository does not have.

The OSV records (as Debian's OSV export has them) add CVSS vectors and publication dates for
the three CVEs the lab's updates fix.

``patchkit lab feeds DIR`` writes them for the demo; the unit tests of the commands and the lab
test of the whole path (tests/integration/test_vulnerabilities_lab.py) write them too. They
claim nothing about real software: the CVE numbers are made up.
"""

from __future__ import annotations

import gzip
import json
import os
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from patchkit.lab.catalog import KERNEL_CVES, LIB_CVES

KEV_CVE, MILD_CVE = LIB_CVES
OPEN_CVE = "CVE-2026-940003"
(KERNEL_CVE,) = KERNEL_CVES
APP_CVE = "CVE-2026-940020"
ALL_CVES = (KEV_CVE, MILD_CVE, OPEN_CVE, KERNEL_CVE, APP_CVE)


def _fixed(version: str, urgency: str) -> dict[str, Any]:
    return {
        "status": "resolved",
        "repositories": {"bookworm": "1.0", "bookworm-security": "1.1"},
        "fixed_version": version,
        "urgency": urgency,
    }


def tracker_data() -> dict[str, Any]:
    """The Debian Security Tracker's JSON (tracker/data/json) for the demo source packages."""
    return {
        "libdemo": {
            KEV_CVE: {
                "description": "demo-lib reads past the end of a name buffer (lab)",
                "scope": "remote",
                "releases": {"bookworm": _fixed("1.1", "high")},
            },
            MILD_CVE: {
                "description": "demo-lib leaks a file descriptor (lab)",
                "scope": "local",
                "releases": {"bookworm": _fixed("1.1", "low")},
            },
            OPEN_CVE: {
                "description": "demo-lib mishandles long lines (lab); no fix yet",
                "scope": "local",
                "releases": {
                    "bookworm": {
                        "status": "open",
                        "repositories": {"bookworm": "1.0"},
                        "urgency": "medium",
                    }
                },
            },
        },
        "demo-kernel": {
            KERNEL_CVE: {
                "description": "demo-kernel trusts a length field (lab)",
                "scope": "local",
                "releases": {"bookworm": _fixed("1.1", "medium")},
            }
        },
        "demo-app": {
            APP_CVE: {
                "description": "demo-app logs a token (lab); fixed upstream in 2.0",
                "scope": "remote",
                "releases": {"bookworm": _fixed("2.0", "medium")},
            }
        },
    }


# CVSS 3.1 vectors: 9.8 (network, no privileges), 4.3, 7.8 (local)
_CVSS = {
    KEV_CVE: "CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H",
    MILD_CVE: "CVSS:3.1/AV:N/AC:L/PR:L/UI:N/S:U/C:L/I:N/A:N",
    KERNEL_CVE: "CVSS:3.1/AV:L/AC:L/PR:L/UI:N/S:U/C:H/I:H/A:H",
}
_SOURCES = {KEV_CVE: "libdemo", MILD_CVE: "libdemo", KERNEL_CVE: "demo-kernel"}


def osv_records(when: datetime) -> list[dict[str, Any]]:
    """OSV records (schema 1.6) for the CVEs the lab's updates fix, published ten days before."""
    stamp = (when - timedelta(days=10)).strftime("%Y-%m-%dT%H:%M:%SZ")
    return [
        {
            "schema_version": "1.6.0",
            "id": f"DEBIAN-{cve}",
            "modified": when.strftime("%Y-%m-%dT%H:%M:%SZ"),
            "published": stamp,
            "upstream": [cve],
            "summary": f"{_SOURCES[cve]}: lab vulnerability {cve}",
            "severity": [{"type": "CVSS_V3", "score": vector}],
            "affected": [
                {
                    "package": {"ecosystem": "Debian:12", "name": _SOURCES[cve]},
                    "ranges": [
                        {"type": "ECOSYSTEM", "events": [{"introduced": "0"}, {"fixed": "1.1"}]}
                    ],
                }
            ],
        }
        for cve, vector in _CVSS.items()
    ]


def kev_data(when: datetime) -> dict[str, Any]:
    """CISA's known_exploited_vulnerabilities.json with the one lab entry."""
    return {
        "title": "CISA Catalog of Known Exploited Vulnerabilities",
        "catalogVersion": f"{when:%Y.%m.%d}",
        "dateReleased": when.strftime("%Y-%m-%dT%H:%M:%S.000Z"),
        "count": 1,
        "vulnerabilities": [
            {
                "cveID": KEV_CVE,
                "vendorProject": "patchkit lab",
                "product": "demo-lib",
                "vulnerabilityName": "patchkit lab demo-lib Buffer Overread Vulnerability",
                "dateAdded": f"{when:%Y-%m-%d}",
                "shortDescription": "demo-lib reads past the end of a name buffer.",
                "requiredAction": "Apply updates per vendor instructions.",
                "dueDate": f"{when:%Y-%m-%d}",
                "knownRansomwareCampaignUse": "Unknown",
                "notes": "",
                "cwes": ["CWE-125"],
            }
        ],
    }


def epss_text(when: datetime) -> str:
    """FIRST's epss_scores-YYYY-MM-DD.csv (before gzip)."""
    rows = {KEV_CVE: (0.94334, 0.99912), MILD_CVE: (0.00043, 0.1102), KERNEL_CVE: (0.0121, 0.78)}
    lines = [
        f"#model_version:v2025.03.14,score_date:{when:%Y-%m-%d}T00:00:00+0000",
        "cve,epss,percentile",
        *(f"{cve},{e:.5f},{p:.5f}" for cve, (e, p) in rows.items()),
    ]
    return "\n".join(lines) + "\n"


def write_feeds(folder: Path, when: datetime | None = None) -> list[Path]:
    """The feeds as a cron job would leave them (the tracker dated by its mtime, as curl -R):
    the tracker JSON, a folder of OSV records, the KEV catalog, the EPSS scores."""
    when = when or datetime.now(UTC)
    folder.mkdir(parents=True, exist_ok=True)
    tracker = folder / "tracker.json"
    tracker.write_text(json.dumps(tracker_data()), encoding="utf-8")
    os.utime(tracker, (when.timestamp(), when.timestamp()))
    osv = folder / "osv"
    osv.mkdir(exist_ok=True)
    for record in osv_records(when):
        (osv / f"{record['id']}.json").write_text(json.dumps(record), encoding="utf-8")
    kev = folder / "known_exploited_vulnerabilities.json"
    kev.write_text(json.dumps(kev_data(when)), encoding="utf-8")
    epss = folder / f"epss_scores-{when:%Y-%m-%d}.csv.gz"
    epss.write_bytes(gzip.compress(epss_text(when).encode(), mtime=0))  # same bytes each time
    return [tracker, osv, kev, epss]
