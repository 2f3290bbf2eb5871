"""Unit: ledger URLs patchkit cannot use are refused by name (no database is reached)."""

from __future__ import annotations

from pathlib import Path

import pytest

from patchkit.errors import ExitCode, LedgerError
from patchkit.ledger import Ledger


@pytest.mark.parametrize(
    "url, said",
    [
        ("mysql://patchkit@db/patchkit", "mysql is not a database patchkit keeps its ledger in"),
        ("oracle://scott@db", "oracle is not a database"),
        ("postgres://u@127.0.0.1/db", "postgres is not a database"),
        ("ledger.sqlite", "this URL is not a database"),
        ("sqlite:///", "a SQLite ledger needs a file"),
        (
            "postgresql+psycopg2://u:pw@127.0.0.1/db",
            "the database driver psycopg2 is not installed",
        ),
    ],
)
def test_unusable_urls_are_refused_by_name(url: str, said: str) -> None:
    with pytest.raises(LedgerError) as refused:
        Ledger(url)
    assert said in refused.value.message
    assert refused.value.exit_code == ExitCode.BAD_INPUT
    assert "pw" not in refused.value.message  # the password stays masked


def test_a_ledger_path_that_cannot_be_made_is_an_error(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(LedgerError, match="cannot open the ledger"):
        Ledger(f"sqlite:///{blocker}/sub/ledger.sqlite")
