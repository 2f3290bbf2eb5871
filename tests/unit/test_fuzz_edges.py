"""Unit: hostile policies, inventories, findings and command lines never crash or hang patchkit.

A bounded property-based run (``PATCHKIT_FUZZ_CASES``, default 120 cases, well under a minute);
``make fuzz`` runs 5,000 and prints what happened (benchmarks/fuzz_edges.py).
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

from hypothesis import HealthCheck, given, settings

from .fuzzing import Case, attempt, cases

CASES = int(os.environ.get("PATCHKIT_FUZZ_CASES", "120"))


@settings(
    max_examples=CASES,
    deadline=None,  # hangs are caught by the case's own alarm, not by timing examples
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    database=None,
)
@given(case=cases())
def test_hostile_input_ends_in_a_documented_exit_code(case: Case) -> None:
    scratch = Path(tempfile.mkdtemp(prefix="patchkit-fuzz-"))
    try:
        outcome = attempt(case, scratch)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    assert outcome.broken is None, f"{case.kind} {case.argv}: {outcome.broken}\n{outcome.stderr}"
