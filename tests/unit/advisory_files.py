"""Advisory feed files for the ledger and CLI tests: the readers' test data (test_advisory_feeds),
written as they are downloaded: dated by their modification time, zipped, gzipped."""

from __future__ import annotations

import gzip
import json
import os
import zipfile
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from tests.unit.test_advisory_feeds import EPSS, tracker, write_json

AT = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)


def dated(path: Path, when: datetime) -> Path:
    """Give ``path`` the modification time ``when`` (what curl -R keeps from the server)."""
    os.utime(path, (when.timestamp(), when.timestamp()))
    return path


def tracker_file(
    folder: Path, name: str = "tracker.json", *, when: datetime = AT, said: str | None = None
) -> Path:
    """The tracker's JSON of test_advisory_feeds; ``said`` changes a description (new bytes)."""
    data = tracker()
    if said is not None:
        data["openssl"]["CVE-2024-0001"]["description"] = said
    return dated(write_json(folder / name, data), when)


def osv_zip(path: Path, *records: dict[str, Any]) -> Path:
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        for record in records:
            archive.writestr(f"{record['id']}.json", json.dumps(record))
    return path


def epss_file(path: Path, day: str) -> Path:
    path.write_bytes(gzip.compress(EPSS.replace("2026-11-30", day).encode()))
    return path
