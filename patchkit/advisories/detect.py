"""Which feed a file is, from its first bytes, and reading any feed by what it is."""

from __future__ import annotations

import re
import zlib
from pathlib import Path

from patchkit.advisories.epss import read_epss
from patchkit.advisories.files import GZIP_MAGIC
from patchkit.advisories.kev import read_kev
from patchkit.advisories.osv import read_osv
from patchkit.advisories.problems import Problems
from patchkit.advisories.tracker import read_tracker
from patchkit.advisories.types import AdvisoryFeed, EpssScores, FeedKind, KevCatalog

HEAD_BYTES = 64 * 1024  # enough to see the first keys of any feed, however it is indented
_ZIP_MAGIC = b"PK\x03\x04"
# {"<source package>": {"CVE-…" or "TEMP-…": — the tracker's first keys
_TRACKER_HEAD = re.compile(r'\{\s*"[^"\\]*"\s*:\s*\{\s*"(CVE|TEMP)-')
_OSV_KEY = re.compile(r'"(schema_version|affected|modified|aliases|upstream)"\s*:')
_KNOWN = "the Debian tracker's JSON, an OSV record, directory or zip, KEV JSON or EPSS CSV"


def _head(path: Path, problems: Problems) -> bytes:
    try:
        with path.open("rb") as stream:
            head = stream.read(HEAD_BYTES)
    except OSError as exc:
        problems.fail(f"cannot read: {exc.strerror or exc}")
    if head.startswith(GZIP_MAGIC):
        try:
            return zlib.decompressobj(16 + zlib.MAX_WBITS).decompress(head, HEAD_BYTES)
        except zlib.error as exc:
            problems.fail(f"cannot read: a broken gzip file ({exc})")
    return head


def detect(path: Path) -> FeedKind:
    """The kind of feed at ``path``: a directory or zip is OSV; a file is told by its first
    bytes. AdvisoryError when it is none that patchkit reads. Only the reader checks the rest.
    """
    if path.is_dir():
        return FeedKind.OSV
    problems = Problems(str(path))
    head = _head(path, problems)
    if head.startswith(_ZIP_MAGIC):
        return FeedKind.OSV
    text = head.decode("utf-8-sig", errors="replace").lstrip()
    first = text.split("\n", 1)[0]
    if (first.startswith("#") and "score_date" in first) or first.startswith("cve,epss"):
        return FeedKind.EPSS
    if text.startswith("{"):
        if '"catalogVersion"' in text or '"cveID"' in text:
            return FeedKind.KEV
        if _TRACKER_HEAD.match(text):
            return FeedKind.DEBIAN_TRACKER
        if '"id"' in text and _OSV_KEY.search(text):
            return FeedKind.OSV
    return problems.fail(f"not an advisory feed patchkit reads ({_KNOWN})")


def read_feed(path: Path) -> AdvisoryFeed | KevCatalog | EpssScores:
    """Read ``path`` with the reader of the kind :func:`detect` finds; all of it, or raise."""
    kind = detect(path)
    if kind is FeedKind.DEBIAN_TRACKER:
        return read_tracker(path)
    if kind is FeedKind.OSV:
        return read_osv(path)
    if kind is FeedKind.KEV:
        return read_kev(path)
    return read_epss(path)
