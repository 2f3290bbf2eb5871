"""The ledger: the one record of assessments, plans, approvals and runs (SQLite, PostgreSQL)."""

from patchkit.ledger.store import DEFAULT_PATH, Ledger, default_url

__all__ = ["DEFAULT_PATH", "Ledger", "default_url"]
