"""``patchkit advisories import|status``: advisory feed files into the ledger; what it holds."""

from __future__ import annotations

import getpass
import json
import sys
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import click

from patchkit.advisories import AdvisoryError, read_feed
from patchkit.advisories.types import FeedKind
from patchkit.cli.consoles import console, err_console
from patchkit.cli.planning import parse_time
from patchkit.errors import ExitCode, PatchkitError
from patchkit.ledger import Ledger
from patchkit.ledger.advisories import ImportResult, StoredFeed
from patchkit.reports.terminal import Fit, FittedTable

HOW_TO_IMPORT = (
    "patchkit advisories import FILE… (docs/advisories.md: what to fetch, and a cron job)"
)
_KINDS = {kind: i for i, kind in enumerate(FeedKind)}


class NotImportedError(PatchkitError, ValueError):
    """Several files of one import command could not be read; the others were imported."""

    exit_code = ExitCode.BAD_INPUT


def _ledger(ctx: click.Context) -> Ledger:
    return Ledger(ctx.obj.get("ledger") if ctx.obj else None)


def _day(value: datetime) -> str:
    return f"{value.astimezone(UTC):%Y-%m-%d %H:%M} UTC"


def age_days(stored: StoredFeed, at: datetime) -> int:
    """Whole days from the feed's date to ``at``; 0 for a date ahead of it (a clock off)."""
    return max((at - stored.feed.date).days, 0)


def _age(days: int) -> str:
    return f"{days} day old" if days == 1 else f"{days} days old"


def _many(count: int, what: str) -> str:
    return f"{count:,} {what}" if count == 1 else f"{count:,} {what}s"


def _counts(stored: StoredFeed) -> str:
    feed = stored.feed
    counts = f"{_many(feed.records, 'record')}, {_many(feed.cves, 'CVE')}"
    return counts + (f", {feed.ignored:,} ignored" if feed.ignored else "")


def _feed_json(stored: StoredFeed, at: datetime | None = None) -> dict[str, Any]:
    feed = stored.feed
    shown: dict[str, Any] = {
        "id": stored.id,
        "kind": feed.kind.value,
        "source": feed.source,
        "location": stored.location,
        "sha256": feed.sha256,
        "date": feed.date.isoformat(),
        "dated_by": feed.dated_by.value,
        "records": feed.records,
        "cves": feed.cves,
        "version": feed.version,
        "ignored": feed.ignored,
        "imported_at": stored.imported_at.isoformat(),
        "imported_by": stored.imported_by,
        "current": stored.current,
    }
    if at is not None:
        shown["age_days"] = age_days(stored, at)
    return shown


def _imported_line(path: Path, result: ImportResult) -> str:
    stored = result.feed
    feed = stored.feed
    version = f" {feed.version}" if feed.version else ""
    head = f"{path}: {feed.kind.value}{version} of {_day(feed.date)}, {_counts(stored)}: "
    if not result.stored:
        when = f"{stored.imported_at.astimezone(UTC):%Y-%m-%d %H:%M} UTC"
        return head + f"already imported (#{stored.id}, {when} by {stored.imported_by}), not again"
    if not stored.current:
        newer = "OSV feed of this path" if feed.kind is FeedKind.OSV else feed.kind.value
        return head + f"imported (#{stored.id}), not in use: a newer {newer} is current"
    if result.replaced is not None:
        old = result.replaced
        return head + f"imported (#{stored.id}), replaces #{old.id} of {_day(old.feed.date)}"
    return head + f"imported (#{stored.id})"


def _import_one(ledger: Ledger, path: Path, by: str) -> ImportResult:
    with err_console.status(f"reading {path}…") as status:
        value = read_feed(path)

        def progress(done: int, total: int) -> None:
            status.update(f"storing {path}: {done:,} of {total:,} rows…")

        return ledger.import_feed(value, datetime.now(UTC), by, progress=progress)


def _refused(failed: Sequence[tuple[Path, AdvisoryError]], count: int) -> PatchkitError:
    if len(failed) == 1:
        return failed[0][1]
    lines = "\n  ".join(error.message.replace("\n", "\n  ") for _, error in failed)
    return NotImportedError(
        f"{len(failed)} of {count} files were not imported (the others were):\n  {lines}",
        hint=failed[0][1].hint,
    )


@click.group()
def advisories() -> None:
    """Advisory feeds in the ledger: the Debian security tracker, OSV, CISA KEV, FIRST EPSS.

    patchkit never downloads them: fetch the files (a cron job with curl -R, see
    docs/advisories.md) and import them here.
    """


@advisories.command("import")
@click.argument("files", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="Print what was imported as JSON.")
@click.option(
    "--by",
    default=getpass.getuser,
    show_default="the OS user",
    help="Who imports (kept with each import).",
)
@click.pass_context
def import_command(ctx: click.Context, files: tuple[Path, ...], as_json: bool, by: str) -> None:
    """Read each FILE (its kind is told from its content) and store it in the ledger.

    Each file is stored whole or not at all, in its own transaction; a file already imported
    (the same bytes) is not stored again. A bad file is named with its record and field, the
    others are still imported, and the command exits 2.
    """
    ledger = _ledger(ctx)
    done: list[dict[str, Any]] = []
    failed: list[tuple[Path, AdvisoryError]] = []
    for path in files:
        try:
            result = _import_one(ledger, path, by)
        except AdvisoryError as exc:
            failed.append((path, exc))
            error = {"message": exc.message, "problems": exc.problems, "hint": exc.hint}
            done.append({"file": str(path), "outcome": "error", "error": error})
            continue
        outcome = "imported" if result.stored else "already-imported"
        replaced = result.replaced.id if result.replaced is not None else None
        done.append(
            {
                "file": str(path),
                "outcome": outcome,
                "feed": _feed_json(result.feed),
                "replaced": replaced,
            }
        )
        if not as_json:
            console.print(_imported_line(path, result))
    if as_json:
        click.echo(json.dumps({"ledger": ledger.url, "files": done}, indent=2))
        if failed:
            sys.exit(ExitCode.BAD_INPUT)
    elif failed:
        raise _refused(failed, len(files))


def _table(title: str, feeds: Sequence[StoredFeed], at: datetime) -> FittedTable:
    table = FittedTable(title)
    for column in ("#", "kind", "source"):
        table.add_column(column, Fit.WHOLE)
    table.add_column("date (UTC)", Fit.WORDS)
    table.add_column("age", Fit.WORDS)
    for column in ("records", "CVEs"):
        table.add_column(column, Fit.WHOLE)
    table.add_column("imported (UTC)", Fit.WORDS)
    for s in feeds:
        feed = s.feed
        kind = f"{feed.kind.value} {feed.version}" if feed.version else feed.kind.value
        imported = f"{s.imported_at.astimezone(UTC):%Y-%m-%d %H:%M} by {s.imported_by}"
        table.add_row(
            str(s.id), kind, feed.source, f"{feed.date.astimezone(UTC):%Y-%m-%d %H:%M}",
            _age(age_days(s, at)), f"{feed.records:,}", f"{feed.cves:,}", imported,
        )  # fmt: skip
    return table


@advisories.command("status")
@click.option("--all", "show_all", is_flag=True, help="Also list older imports (kept, not used).")
@click.option("--at", "at_text", help="Give ages as of this ISO 8601 time (default: now).")
@click.option("--json", "as_json", is_flag=True, help="Print as JSON.")
@click.pass_context
def status(ctx: click.Context, show_all: bool, at_text: str | None, as_json: bool) -> None:
    """The feeds in use: kind, source, date, age and counts (--all: older imports too).

    In use is the newest tracker, KEV and EPSS feed, and the newest OSV feed of each path
    (docs/advisories.md). Exits 0, with no feeds too.
    """
    at = parse_time(at_text)
    ledger = _ledger(ctx)
    stored = ledger.feed_status()
    current = sorted(
        (s for s in stored if s.current), key=lambda s: (_KINDS[s.feed.kind], s.location)
    )
    older = sorted(
        (s for s in stored if not s.current),
        key=lambda s: (_KINDS[s.feed.kind], s.location, -s.feed.date.timestamp(), -s.id),
    )
    if as_json:
        shown = current + older if show_all else current
        out = {
            "ledger": ledger.url,
            "at": at.isoformat(),
            "feeds": [_feed_json(s, at) for s in shown],
        }
        click.echo(json.dumps(out, indent=2))
        return
    if not stored:
        err_console.print(
            f"no advisory feeds loaded in {ledger.url}: import them with {HOW_TO_IMPORT}"
        )
        return
    console.print(_table(f"{len(current)} advisory feed(s) in use", current, at))
    if show_all and older:
        console.print(_table(f"{len(older)} older import(s), kept but not used", older, at))
    elif older:
        err_console.print(f"{len(older)} older import(s) kept, not used: --all lists them")
