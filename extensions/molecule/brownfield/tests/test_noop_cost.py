# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The no-op cost of the one-line include on this converged host, from benchmarks/role_noop.py.

The task counts by where they run are printed and written to benchmarks/results/role-noop-brownfield.json (they
are figures, see benchmarks/RESULTS.md); what is asserted is that the runs succeed and change nothing.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys

from conftest import ROOT, SCENARIO_DIR


def test_noop_runs_change_nothing(host):
    output = ROOT / "benchmarks" / "results" / "role-noop-brownfield.json"
    proc = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "role_noop.py"), "-i", os.environ["MOLECULE_INVENTORY_FILE"],
         str(SCENARIO_DIR / "converge.yml"), "--runs", "2", "--output", str(output)],
        capture_output=True, text=True, check=False, env=os.environ.copy(), timeout=900)
    print(proc.stdout)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    row = json.loads(output.read_text(encoding="utf-8"))["hosts"][host.check_output("hostname")]
    assert row["changed"] == 0 and row["failed"] == 0, row
