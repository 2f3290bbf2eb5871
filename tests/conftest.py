"""Shared by unit and integration tests."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(autouse=True)
def _own_inventory_cache(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Each test reads inventories into a cache of its own, never the user's ~/.cache: what one
    test (or an earlier run) cached cannot answer for another."""
    monkeypatch.setenv("PATCHKIT_INVENTORY_CACHE", str(tmp_path / "inventory-cache"))
