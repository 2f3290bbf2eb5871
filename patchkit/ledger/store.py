"""The ledger: one object for every record patchkit keeps (see the mixins it is made of)."""

from __future__ import annotations

from patchkit.ledger.advisories import AdvisoryRecords
from patchkit.ledger.base import DEFAULT_PATH, default_url, shown_url
from patchkit.ledger.planning import PlanningRecords
from patchkit.ledger.queries import RunQueries
from patchkit.ledger.runs import RunRecords
from patchkit.ledger.software import SoftwareRecords

__all__ = ["DEFAULT_PATH", "Ledger", "default_url", "shown_url"]


class Ledger(PlanningRecords, RunRecords, RunQueries, SoftwareRecords, AdvisoryRecords):
    """The record of assessments, plans, approvals, runs and advisory feeds, on SQLite or
    PostgreSQL by URL.

    Opening it creates or migrates the schema (``LedgerBase``); each method is one
    transaction, and a database error becomes a LedgerError naming the ledger.
    """
