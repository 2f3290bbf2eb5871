"""FIRST's EPSS scores (epss_scores-YYYY-MM-DD.csv, gzip or not), read.

The file's first line is a comment carrying the model and the day scored,
``#model_version:v2025.03.14,score_date:2025-03-14T00:00:00+0000`` (newer files end the time
in ``Z``), then the header ``cve,epss,percentile``, then one row per CVE; both numbers are
between 0 and 1.
"""

from __future__ import annotations

import math
from datetime import datetime
from pathlib import Path

from patchkit.advisories.files import MAX_BYTES, bulk, read_file
from patchkit.advisories.problems import Problems
from patchkit.advisories.types import CVE_ID, EpssScore, EpssScores, Feed, FeedDating, FeedKind

COLUMNS = ("cve", "epss", "percentile")
_EXPECTED_FIRST = "'#model_version:…,score_date:…'"


def _metadata(first: str, problems: Problems) -> tuple[str | None, datetime]:
    if not first.startswith("#"):
        problems.fail(f"line 1: expected {_EXPECTED_FIRST}, found {first[:60]!r}")
    pairs = (part.partition(":") for part in first[1:].split(","))
    meta = {key.strip(): value.strip() for key, _, value in pairs}
    stated = meta.get("score_date")
    if not stated:
        problems.fail(f"line 1: no score_date (expected {_EXPECTED_FIRST})")
    try:
        scored = datetime.fromisoformat(stated)
    except ValueError:
        problems.fail(f"line 1: score_date: not a date and time: {stated!r}")
    if scored.utcoffset() is None:
        problems.fail(f"line 1: score_date: a time without a UTC offset: {stated!r}")
    return meta.get("model_version") or None, scored


def _probability(problems: Problems, record: str, column: str, text: str) -> float | None:
    try:
        value = float(text)
    except ValueError:
        problems.add(record, column, f"not a number: {text!r}")
        return None
    if not math.isfinite(value) or not 0.0 <= value <= 1.0:
        problems.add(record, column, f"not between 0 and 1: {text!r}")
        return None
    return value


def read_epss(path: Path, *, max_bytes: int = MAX_BYTES) -> EpssScores:
    """Read an EPSS CSV at ``path``; AdvisoryError names the line and column of each problem."""
    with bulk():
        return _read_epss(path, max_bytes)


def _read_epss(path: Path, max_bytes: int) -> EpssScores:
    problems = Problems(str(path))
    raw = read_file(path, problems, max_bytes=max_bytes)
    try:
        lines = raw.data.decode("utf-8-sig").splitlines()
    except UnicodeDecodeError as exc:
        problems.fail(f"not UTF-8 text (byte {exc.start})")
    if not lines:
        problems.fail("empty: not an EPSS file")
    model, scored = _metadata(lines[0], problems)
    # No field of the format is ever quoted: a split is the whole CSV parsing it needs.
    header = [column.strip() for column in lines[1].split(",")] if len(lines) > 1 else []
    missing = [column for column in COLUMNS if column not in header]
    if missing:
        found = ",".join(header)
        problems.fail(f"line 2: expected the header {','.join(COLUMNS)}, found {found!r}")
    at = [header.index(column) for column in COLUMNS]
    scores: dict[str, EpssScore] = {}
    for number, line in enumerate(lines[2:], start=3):
        if not line.strip():
            continue
        row = line.split(",")
        record = f"line {number}"
        if len(row) != len(header):
            problems.add(record, "", f"{len(row)} columns, the header has {len(header)}")
            continue
        cve, epss, percentile = (row[i].strip() for i in at)
        record = f"line {number} ({cve})"
        if not CVE_ID.match(cve):
            problems.add(record, "cve", f"not a CVE id: {cve!r}")
            continue
        probability = _probability(problems, record, "epss", epss)
        rank = _probability(problems, record, "percentile", percentile)
        if cve in scores:
            problems.add(record, "cve", "listed twice")
        elif probability is not None and rank is not None:
            scores[cve] = EpssScore(cve, probability, rank, scored)
    problems.check()
    if not scores:
        # a header alone: a cut download, which would replace the current scores with none
        problems.fail("no scores after the header: not imported")
    feed = Feed(
        kind=FeedKind.EPSS,
        source=str(path),
        sha256=raw.sha256,
        date=scored,
        dated_by=FeedDating.STATED,
        records=len(scores),
        cves=len(scores),
        version=model,
    )
    return EpssScores(feed=feed, model_version=model, scores=tuple(scores.values()))
