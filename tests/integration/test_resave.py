# Copyright (c) dood.gitlab_runner contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""After gitlab-runner rotated the tokens and re-saved config.toml its own way, the module is quiet.

For each declaration: the module writes the file; the runner test double (the one molecule runs) rotates every token
with ``gitlab-runner reset-token --all-runners`` against the fake GitLab and saves the whole file as gitlab-runner
v18.10.1 does (zero values written, string-or-array keys as arrays, omitempty falses dropped); then the module runs
again with the same declaration: changed=false, the file's bytes untouched, the rotated tokens kept.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from test_runner_config import create_runner, project_setup

DOUBLE = Path(__file__).resolve().parents[1] / 'molecule_support' / 'runner-double' / 'gitlab_runner_double.py'
DOOD_DEFAULTS = {'executor': 'docker', 'environment': ['DOCKER_BUILDKIT=1'],
                 'docker': {'image': 'docker:27.5.1-cli', 'privileged': False, 'pull_policy': 'if-not-present',
                            'volumes': ['/var/run/docker.sock:/var/run/docker.sock', '/cache']}}


def declarations(gitlab):
    admin, group, project = project_setup(gitlab)
    _id, fixed = create_runner(gitlab, admin, project)
    registration = gitlab.registration_token('instance')
    return {
        'role-defaults-fixed-token': {'runner_defaults': DOOD_DEFAULTS, 'global_defaults': {'concurrent': 4, 'log_level': 'info'},
                                      'runners': [{'name': 'one-line', 'token': fixed}]},
        'services-and-s3-cache': {'api_token': admin, 'runners': [{
            'name': 'api', 'runner_type': 'project_type', 'project_id': project, 'run_untagged': True,
            'docker': {'image': 'ruby:3.3', 'pull_policy': 'always', 'services': [{'name': 'postgres:16', 'alias': 'db'}]},
            'cache': {'Type': 's3', 'Shared': False, 's3': {'BucketName': 'ci', 'Insecure': False, 'ServerAddress': 'minio:9000'}}}]},
        'shell-with-flags': {'api_token': admin, 'runners': [{
            'name': 'shell', 'runner_type': 'group_type', 'group_id': group, 'run_untagged': True, 'executor': 'shell',
            'limit': 2, 'environment': ['LANG=C.UTF-8'], 'feature_flags': {'FF_USE_FASTZIP': False}}]},
        'globals': {'api_token': admin, 'concurrent': 8, 'log_level': 'warning', 'log_format': 'json', 'check_interval': 0,
                    'listen_address': ':9252', 'connection_max_age': '1h', 'labels': {'env': 'prod'},
                    'session_server': {'listen_address': '[::]:8093', 'session_timeout': 900},
                    'runners': [{'name': 'g', 'runner_type': 'instance_type', 'run_untagged': True}]},
        'durations-and-extra': {'api_token': admin, 'runner_version': '19.3.0', 'runners': [{
            'name': 'durations', 'runner_type': 'instance_type', 'run_untagged': True,
            'extra': {'unhealthy_interval': '90m', 'prepare_timeout': 300, 'custom_build_dir': {'enabled': True},
                      'artifact': {'upload_timeout': '2h'}}}]},
        'several-flows': {'api_token': admin, 'runner_defaults': DOOD_DEFAULTS, 'runners': [
            {'name': 'legacy', 'registration_token': registration, 'run_untagged': True},
            {'name': 'created', 'runner_type': 'project_type', 'project_id': project, 'run_untagged': True,
             'docker': {'image': 'docker:27-cli', 'shm_size': 0, 'cap_add': []}}]},
    }


def resave_with_the_double(host, version):
    env = dict(os.environ, PYTHONPATH=host.env['ANSIBLE_COLLECTIONS_PATH'].split(':')[0], DOUBLE_SAVES_AS=version)
    proc = subprocess.run([sys.executable, str(DOUBLE), 'reset-token', '--all-runners', '-c', str(host.path)], env=env,
                          capture_output=True, text=True, timeout=120, check=False)
    assert proc.returncode == 0, proc.stderr[-2000:]


@pytest.mark.parametrize('case', ['role-defaults-fixed-token', 'services-and-s3-cache', 'shell-with-flags', 'globals',
                                  'durations-and-extra', 'several-flows'])
def test_module_is_quiet_after_gitlab_runner_saved_the_file(gitlab, make_host, case):
    params = dict(declarations(gitlab)[case], api_url=gitlab.url)
    host = make_host(case)
    first = host.run(params)
    assert not first.failed and first.changed, first.msg
    written = host.raw()
    tokens = [r['token'] for r in host.config()['runners']]

    resave_with_the_double(host, params.get('runner_version', '18.10.1'))

    saved = host.raw()
    assert saved != written, 'the double rotated the tokens and re-encoded the file'
    rotated = [r['token'] for r in host.config()['runners']]
    assert all(new != old for new, old in zip(rotated, tokens))
    again = host.run(params)
    assert not again.failed, again.msg
    assert not again.changed, again.task
    assert host.raw() == saved, 'the module must not rewrite a file gitlab-runner saved'
    assert [r['token'] for r in tomllib.loads(saved.decode())['runners']] == rotated
