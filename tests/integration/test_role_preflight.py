# Copyright (c) dood.gitlab_runner contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The runner role's preflight: bad settings fail in one task, with every problem named, before the host is touched."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

CASES = [
    ('neither', {}, ['Declare the runners either with gitlab_runner_token']),
    ('both', {'gitlab_runner_token': 'glrt-x', 'gitlab_runner_runners': [{'name': 'a', 'token': 'glrt-y'}]},
     ['not both and not neither']),
    ('duplicate names', {'gitlab_runner_runners': [{'name': 'a', 'token': 'glrt-x'}, {'name': 'a', 'token': 'glrt-y'}]},
     ["Runner names must be unique in gitlab_runner_runners: ['a', 'a']."]),
    ('no url', {'gitlab_runner_url': '', 'gitlab_runner_token': 'glrt-x'},
     ['Set gitlab_runner_url (for example https://gitlab.example.com) or give every runner its own url']),
    ('plain http', {'gitlab_runner_url': 'http://gitlab.example.com', 'gitlab_runner_token': 'glrt-x'},
     ['GitLab URLs must start with https:// (set gitlab_runner_allow_http to true']),
    ('two credentials', {'gitlab_runner_runners': [{'name': 'a', 'token': 'glrt-x', 'registration_token': 'GR1'}]},
     ["Runners ['a'] need exactly one way to get a token"]),
    ('runner_type without api token', {'gitlab_runner_runners': [{'name': 'a', 'runner_type': 'instance_type'}]},
     ["Runners ['a'] need exactly one way to get a token"]),
    ('relative paths', {'gitlab_runner_token': 'glrt-x', 'gitlab_runner_config_dir': 'relative/dir'},
     ['gitlab_runner_config_dir and gitlab_runner_docker_socket must be absolute paths.']),
]


@pytest.mark.parametrize('name,overrides,messages', CASES, ids=[c[0] for c in CASES])
def test_preflight_fails_before_touching_the_host(tmp_path, ansible_env, name, overrides, messages):
    config_dir = tmp_path / 'srv' / 'config'
    role_vars = {'gitlab_runner_url': 'https://gitlab.example.com', 'gitlab_runner_install_docker': False,
                 'gitlab_runner_config_dir': str(config_dir), 'gitlab_runner_socket_risk_acknowledged': True}
    role_vars.update(overrides)
    play = [{'hosts': 'localhost', 'gather_facts': False,
             'roles': [{'role': 'dood.gitlab_runner.runner', 'vars': role_vars}]}]
    path = tmp_path / 'play.yml'
    path.write_text(json.dumps(play))
    playbook = Path(sys.executable).with_name('ansible-playbook')
    proc = subprocess.run([str(playbook), '-i', 'localhost,', '-c', 'local', str(path)], env=ansible_env,
                          capture_output=True, text=True, timeout=180, check=False)
    assert proc.returncode != 0, name
    out = proc.stdout + proc.stderr
    assert 'Check the settings before touching the host' in out
    for message in messages:
        assert message in out, (name, out[-2000:])
    assert not config_dir.exists(), 'nothing may be created before the settings are checked'
