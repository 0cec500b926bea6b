# Copyright (c) dood.gitlab_runner contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The whole runner role at -vvvv, in check and diff mode, on a first run and on a re-run: no token anywhere.

The role runs against this machine with a config directory of the test's own. Docker Engine is not installed and
the container step goes to the benchmark's stand-in of community.docker (it reports an unchanged container and
touches no daemon), so everything else the role does, the runner_config module included, runs for real.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from test_runner_config import create_runner, project_setup

ROOT = Path(__file__).resolve().parents[2]


def test_runner_role_leaks_no_secret_at_vvvv(gitlab, tmp_path, ansible_env):
    admin, _group, project = project_setup(gitlab)
    _id, fixed = create_runner(gitlab, admin, project)
    registration = gitlab.registration_token('instance')
    config_dir = tmp_path / 'srv' / 'gitlab-runner' / 'config'
    role_vars = {
        'gitlab_runner_url': gitlab.url, 'gitlab_runner_allow_http': True, 'gitlab_runner_api_token': admin,
        'gitlab_runner_install_docker': False, 'gitlab_runner_selfcheck': False,
        'gitlab_runner_socket_risk_acknowledged': True, 'gitlab_runner_config_dir': str(config_dir),
        'gitlab_runner_container_env': {'SOME_SETTING': 'visible'},
        'gitlab_runner_runners': [
            {'name': 'fixed', 'token': fixed},
            {'name': 'legacy', 'registration_token': registration, 'run_untagged': True},
            {'name': 'api', 'runner_type': 'project_type', 'project_id': project, 'tag_list': ['docker-dood']},
        ],
    }
    play = [{'hosts': 'localhost', 'gather_facts': True, 'gather_subset': ['min'],
             'roles': [{'role': 'dood.gitlab_runner.runner', 'vars': role_vars}]}]
    playbook = tmp_path / 'role.yml'
    playbook.write_text(json.dumps(play))
    env = dict(ansible_env)
    env['ANSIBLE_COLLECTIONS_PATH'] = '{0}:{1}'.format(ROOT / 'benchmarks' / 'stub_collections', env['ANSIBLE_COLLECTIONS_PATH'])
    command = [str(Path(sys.executable).with_name('ansible-playbook')), '-i', 'localhost,', '-c', 'local', '-vvvv', '--diff',
               str(playbook)]
    outputs = []
    for check in (True, False, True, False):
        proc = subprocess.run(command + (['--check'] if check else []), env=env, capture_output=True, text=True,
                              timeout=300, check=False)
        assert proc.returncode == 0, (proc.stdout + proc.stderr)[-4000:]
        outputs.append(proc.stdout + proc.stderr)
    assert 'changed=0' in outputs[-1] and 'changed=0' in outputs[-2], 're-runs change nothing'
    issued = [line.split('"')[1] for line in (config_dir / 'config.toml').read_text().splitlines()
              if line.strip().startswith('token = ')]
    assert len(issued) == 3
    secrets = [admin, fixed, registration] + issued
    everything = '\n'.join(outputs)
    assert 'Reconcile config.toml with GitLab' in everything and '********' in everything
    assert [s[:6] for s in secrets if s in everything] == []
    for path in config_dir.rglob('*'):
        if path.is_file() and path.name != 'config.toml':
            assert [s[:6] for s in secrets if s in path.read_text(errors='replace')] == [], path
    assert [s[:6] for s in secrets if s in repr(gitlab.requests())] == []
    assert (config_dir / 'config.toml').stat().st_mode & 0o777 == 0o600
    assert config_dir.stat().st_mode & 0o777 == 0o700
