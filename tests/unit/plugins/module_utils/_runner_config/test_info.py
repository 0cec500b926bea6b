# Copyright (c) dood.gitlab_runner contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""runner_info's helpers: which GitLab a runner talks to, and how long its token lives."""

from __future__ import annotations

import datetime

from ansible_collections.dood.gitlab_runner.plugins.module_utils import config_toml
from ansible_collections.dood.gitlab_runner.plugins.module_utils._runner_config import info


def test_same_gitlab_ignores_case_and_trailing_slash_only():
    assert info._same_gitlab('https://GitLab.example.com/', 'https://gitlab.example.com')
    assert not info._same_gitlab('https://gitlab.example.com:8443', 'https://gitlab.example.com')
    assert not info._same_gitlab('http://gitlab.example.com', 'https://gitlab.example.com')
    assert not info._same_gitlab('https://gitlab.example.com/sub', 'https://gitlab.example.com')


def test_days_left_and_iso():
    now = datetime.datetime(2026, 1, 1, tzinfo=datetime.timezone.utc)
    assert info._days_left(now + datetime.timedelta(hours=36), now) == 1.5
    assert info._days_left(config_toml.ZERO_TIME, now) is None
    assert info._iso(now) == '2026-01-01T00:00:00Z'
    assert info._iso(config_toml.ZERO_TIME) is None
