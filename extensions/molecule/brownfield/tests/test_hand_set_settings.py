# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""config.toml keeps every setting an administrator added by hand after `gitlab-runner register`.

The one-line include declares a URL and a token; the settings below were never declared, so adopting the runner
must not drop them (brownfield.yml lists them, prepare.yml wrote them).
"""
from __future__ import annotations


def test_hand_set_settings_kept(config_toml, brownfield):
    runner = config_toml["runners"][0]
    for table, settings in brownfield["test_hand_set"].items():
        entry = runner
        for part in table.split(".")[1:]:
            entry = entry.get(part, {})
        # only the hand-set keys are compared (and printed on failure): the entry also holds the runner's token
        kept = {key: entry.get(key) for key in settings}
        assert kept == settings, table
