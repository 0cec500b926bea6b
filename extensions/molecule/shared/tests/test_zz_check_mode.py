# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Check mode on the converged host predicts no change (runs last: after the reconfigure tests restored it)."""
from __future__ import annotations

import re

from conftest import SCENARIO_DIR, run_playbook


def test_check_mode_reports_no_change():
    output = run_playbook(SCENARIO_DIR / "converge.yml", check=True)
    recap = re.findall(r"^(\S+)\s+: ok=\d+\s+changed=(\d+)\s+unreachable=0\s+failed=0", output, re.MULTILINE)
    assert recap, output[-2000:]
    assert {host: int(changed) for host, changed in recap} == {host: 0 for host, dummy in recap}, output[-4000:]
