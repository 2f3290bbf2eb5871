"""The long run of the edge fuzzing (tests/unit/fuzzing.py): N hostile cases, counts printed.

    .venv/bin/python benchmarks/fuzz_edges.py --cases 5000 [--seed 1] [--show 5]

Prints how many cases of each kind ended in each exit code, and every case that broke the rule
(a traceback, an internal error, an undocumented exit code, a hang), with its command line.
Exit 1 when any did. ``make fuzz`` runs it with 5,000 cases.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

from hypothesis import HealthCheck, given, seed, settings

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.unit.fuzzing import Case, Outcome, attempt, cases


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", type=int, default=5000)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--show", type=int, default=5, help="broken cases printed in full")
    args = parser.parse_args()

    codes: Counter[tuple[str, str]] = Counter()
    broken: list[tuple[Case, Outcome]] = []
    scratch_root = Path(tempfile.mkdtemp(prefix="patchkit-fuzz-"))
    started = time.monotonic()

    @seed(args.seed)
    @settings(
        max_examples=args.cases,
        deadline=None,
        database=None,
        suppress_health_check=list(HealthCheck),
        phases=["generate"],  # count cases as drawn; no shrinking of failures
    )
    @given(case=cases())
    def one(case: Case) -> None:
        scratch = Path(tempfile.mkdtemp(dir=scratch_root))
        try:
            outcome = attempt(case, scratch)
        finally:
            shutil.rmtree(scratch, ignore_errors=True)
        kind = case.kind.split(" (")[0]
        why = outcome.broken
        codes[(kind, why or f"exit {outcome.code}")] += 1
        if why is not None:
            broken.append((case, outcome))

    try:
        one()
    finally:
        shutil.rmtree(scratch_root, ignore_errors=True)
    elapsed = time.monotonic() - started
    total = sum(codes.values())
    print(f"{total} cases in {elapsed:.0f} s ({total / max(elapsed, 1e-9):.1f} per second)")
    for kind in sorted({k for k, _ in codes}):
        row = ", ".join(f"{what}: {n}" for (k, what), n in sorted(codes.items()) if k == kind)
        print(f"  {kind}: {row}")
    print(f"broken: {len(broken)}")
    for case, outcome in broken[: args.show]:
        shown = " ".join(a if len(a) <= 80 else a[:77] + "..." for a in case.argv)
        print(f"--- {case.kind}: {outcome.broken}: patchkit {shown}")
        for line in outcome.stderr.strip().splitlines()[-12:]:
            print(line if len(line) <= 300 else line[:297] + "...")
    return 1 if broken else 0


if __name__ == "__main__":
    sys.exit(main())
