"""Integration: the roles' own molecule scenarios (molecule/), run as ``molecule test --all``.

Molecule brings its own lab up and tears it down (the ``default`` scenario; lab ``pkmol`` on
10.77.30.0/24 unless PATCHKIT_MOLECULE_LAB / PATCHKIT_MOLECULE_SUBNET say otherwise, see
.config/molecule/config.yml), so this test shares nothing with the other tests' labs. Each
scenario's converge applies a role, idempotence runs it again and fails on any change, and verify
checks the hosts' real state; this test fails unless every step of every scenario succeeded.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[2]
ANSI = re.compile(r"\x1b\[[0-9;]*m")
# create and destroy belong to the default scenario, which runs them once for all (shared state)
SHARED_STEPS = {"create", "destroy"}


def _sequence(scenario: Path, base: dict[str, Any]) -> list[str]:
    own = yaml.safe_load((scenario / "molecule.yml").read_text()) or {}
    steps: list[str] = (own.get("scenario") or base["scenario"])["test_sequence"]
    return steps


def test_every_molecule_scenario_passes() -> None:
    base = yaml.safe_load((ROOT / ".config" / "molecule" / "config.yml").read_text())
    scenarios = {
        path.parent.name: _sequence(path.parent, base)
        for path in sorted((ROOT / "molecule").glob("*/molecule.yml"))
        if path.parent.name != "default"
    }
    # one scenario per role, and the whole patch -> break -> rollback sequence
    assert set(scenarios) == {
        "precheck", "backup", "snapshot", "patch", "reboot", "verify", "rollback", "sequence"
    }  # fmt: skip
    bin_dir = Path(sys.executable).parent
    env = os.environ | {"PATH": f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}"}
    done = subprocess.run(
        [str(bin_dir / "molecule"), "test", "--all"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=2400,
    )
    output = ANSI.sub("", done.stdout + done.stderr)
    assert done.returncode == 0, output[-6000:]
    for name, steps in scenarios.items():
        for step in steps:
            if step not in SHARED_STEPS:
                assert f"{name} ➜ {step}: Executed: Successful" in output, (name, step)
    assert "default ➜ create: Executed: Successful" in output
    assert "default ➜ destroy: Executed: Successful" in output
