"""Advisory feeds read from files into typed values: the Debian tracker, OSV, KEV and EPSS.

Readers return all of a file or raise :class:`AdvisoryError`; nothing here stores or matches.
"""

from __future__ import annotations

from patchkit.advisories.detect import detect, read_feed
from patchkit.advisories.epss import read_epss
from patchkit.advisories.errors import AdvisoryError
from patchkit.advisories.kev import read_kev
from patchkit.advisories.osv import read_osv
from patchkit.advisories.tracker import read_tracker
from patchkit.advisories.types import (
    Advisory,
    AdvisoryFeed,
    Cvss,
    Distro,
    EpssScore,
    EpssScores,
    Feed,
    FeedDating,
    FeedKind,
    FixStatus,
    KevCatalog,
    KevEntry,
    PackageFix,
    Release,
    Scope,
    TrackerNotes,
    Urgency,
)
from patchkit.advisories.versions import is_fixed, parse_version

__all__ = [
    "Advisory",
    "AdvisoryError",
    "AdvisoryFeed",
    "Cvss",
    "Distro",
    "EpssScore",
    "EpssScores",
    "Feed",
    "FeedDating",
    "FeedKind",
    "FixStatus",
    "KevCatalog",
    "KevEntry",
    "PackageFix",
    "Release",
    "Scope",
    "TrackerNotes",
    "Urgency",
    "detect",
    "is_fixed",
    "parse_version",
    "read_epss",
    "read_feed",
    "read_kev",
    "read_osv",
    "read_tracker",
]
