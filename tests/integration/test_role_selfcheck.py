# Copyright (c) dood.gitlab_runner contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The runner role end to end on this machine, Docker replaced by scripted stand-ins of the community.docker modules.

Everything but the daemon runs for real: the preflight, runner_config against the fake GitLab, runner_info reading the
config.toml that was written, and the self-check's reasoning. The stand-ins (stub_collections/, first on the collections
path) answer from a script per test and record every call, so each self-check failure can be provoked and each
parameter the role hands to Docker (socket, environment, volumes) read back. Settings come from the command line
(`-e key=value`), so booleans arrive as the strings a user types.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from test_runner_config import create_runner, project_setup

ROOT = Path(__file__).resolve().parents[2]
STUBS = Path(__file__).resolve().parent / 'stub_collections'
HOST_ID = 'ABCD:EFGH:host-daemon-id'


class Run:
    def __init__(self, proc, calls):
        self.rc = proc.returncode
        self.output = proc.stdout + proc.stderr
        self.calls = calls

    def params(self, module, name=None):
        return [c['params'] for c in self.calls if c['module'] == module
                and (name is None or name in (c['params'].get('name'), c['params'].get('container')))]


@pytest.fixture()
def role(tmp_path, ansible_env, gitlab):
    """Run the runner role once with `-e` strings and a JSON vars file; return a Run."""
    admin, _group, project = project_setup(gitlab)
    config_dir = tmp_path / 'srv' / 'config'

    def run(cli=(), role_vars=None, script=None, tokens=1, pre_tasks=None, library=None, selfcheck_only=False):
        runners = role_vars.get('gitlab_runner_runners') if role_vars else None
        values = {'gitlab_runner_url': gitlab.url, 'gitlab_runner_config_dir': str(config_dir)}
        if selfcheck_only:
            # Only the self-check's tasks, against a config.toml the test wrote (no facts, no GitLab)
            play = [{'hosts': 'localhost', 'gather_facts': False, 'tasks': [{'ansible.builtin.include_role': {
                'name': 'dood.gitlab_runner.runner', 'tasks_from': 'selfcheck'}}]}]
        else:
            fixed = [create_runner(gitlab, admin, project)[1] for _i in range(tokens)]
            if runners is None:
                values['gitlab_runner_token'] = fixed[0]
            else:
                values['gitlab_runner_runners'] = [dict(entry, token=fixed[i]) for i, entry in enumerate(runners)]
            play = [{'hosts': 'localhost', 'gather_facts': True, 'gather_subset': ['min'], 'pre_tasks': pre_tasks or [],
                     'roles': [{'role': 'dood.gitlab_runner.runner'}]}]
        values.update({k: v for k, v in (role_vars or {}).items() if k != 'gitlab_runner_runners'})
        (tmp_path / 'vars.json').write_text(json.dumps(values))
        (tmp_path / 'play.yml').write_text(json.dumps(play))
        default_script = {
            'docker_container': {'gitlab-runner': {'changed': True, 'container': {'State': {'Running': True}}},
                                 'gitlab-runner-selfcheck': {'container': {'Output': HOST_ID + '\n'}}},
            'docker_container_info': {'gitlab-runner': {
                'exists': True, 'container': {'State': {'Running': True, 'Restarting': False}}}},
            'docker_container_exec': {'gitlab-runner': {'rc': 0, 'stdout': 'Verifying runner... is valid'}},
            'docker_host_info': {'host': {'host_info': {'ID': HOST_ID}}},
        }
        for module, answers in (script or {}).items():
            default_script[module].update(answers)
        (tmp_path / 'script.json').write_text(json.dumps(default_script))
        calls = tmp_path / 'calls.jsonl'
        calls.write_text('')
        env = dict(ansible_env)
        env['ANSIBLE_COLLECTIONS_PATH'] = '{0}:{1}'.format(STUBS, env['ANSIBLE_COLLECTIONS_PATH'])
        env.update({'DOOD_DOCKER_SCRIPT': str(tmp_path / 'script.json'), 'DOOD_DOCKER_CALLS': str(calls)})
        command = [str(Path(sys.executable).with_name('ansible-playbook')), '-i', 'localhost,', '-c', 'local',
                   '-e', '@' + str(tmp_path / 'vars.json'), '-e', 'gitlab_runner_allow_http=true',
                   '-e', 'gitlab_runner_install_docker=false']
        for item in cli:
            command += ['-e', item]
        if library:
            command += ['-M', str(library)]
        command.append(str(tmp_path / 'play.yml'))
        proc = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300, check=False)
        return Run(proc, [json.loads(line) for line in calls.read_text().splitlines()])

    def write_config(entries):
        """config.toml as gitlab-runner writes it: (name, executor, environment, volumes) per runner."""
        lines = ['concurrent = 4', '']
        for number, (name, executor, environment, volumes) in enumerate(entries, start=1):
            lines += ['[[runners]]', '  name = {0}'.format(json.dumps(name)), '  url = "https://gitlab.example.com"',
                      '  id = {0}'.format(number), '  token = "glrt-test-{0}-not-a-token"'.format(number),
                      '  executor = {0}'.format(json.dumps(executor))]
            if environment:
                lines.append('  environment = {0}'.format(json.dumps(environment)))
            if executor == 'docker':
                lines += ['  [runners.docker]', '    image = "docker:27.5.1-cli"']
                if volumes is not None:
                    lines.append('    volumes = {0}'.format(json.dumps(volumes)))
        config_dir.mkdir(parents=True, mode=0o700, exist_ok=True)
        (config_dir / 'config.toml').write_text('\n'.join(lines) + '\n')

    run.config = lambda: tomllib.loads((config_dir / 'config.toml').read_text())
    run.write_config = write_config
    return run


def test_string_booleans_from_the_command_line(role):
    result = role(['gitlab_runner_socket_risk_acknowledged=true', 'gitlab_runner_selfcheck=false',
                   'gitlab_runner_validate_certs=false', 'gitlab_runner_prune_runners=false'],
                  {'docker_no_proxy': ['localhost']})
    assert result.rc == 0, result.output[-3000:]
    # install_docker=false (a string) kept the docker role out, selfcheck=false skipped the self-check,
    # risk_acknowledged=true silenced the note
    assert 'Check that the OS family is supported' not in result.output
    assert result.params('docker_container_info') == []
    assert 'any job can start a' not in result.output
    assert [p['name'] for p in result.params('docker_container')] == ['gitlab-runner']
    # NO_PROXY alone (no proxy) adds nothing to the container or the jobs
    assert result.params('docker_container', 'gitlab-runner')[0]['env'] == {}
    assert role.config()['runners'][0]['environment'] == ['DOCKER_BUILDKIT=1']


def test_string_false_is_false(role):
    result = role(['gitlab_runner_allow_http=false', 'gitlab_runner_socket_risk_acknowledged=false'])
    assert result.rc != 0
    assert 'GitLab URLs must start with https:// (set gitlab_runner_allow_http to true' in result.output
    assert result.calls == []


def test_one_socket_setting_everywhere_and_the_proxy_reaches_container_and_jobs(role):
    proxy = 'http://proxy.example.com:3128'
    result = role(['gitlab_runner_docker_socket=/run/user/1000/docker.sock', 'gitlab_runner_socket_risk_acknowledged=true'],
                  {'docker_http_proxy': proxy, 'docker_https_proxy': proxy, 'docker_no_proxy': ['localhost', '.corp'],
                   'gitlab_runner_container_env': {'TZ': 'UTC', 'NO_PROXY': 'own-value'},
                   'gitlab_runner_runners': [
                       {'name': 'defaults'},
                       {'name': 'own-env', 'environment': ['HTTP_PROXY=http://other:8080', 'A=1']}]},
                  script={'docker_host_info': {'host': {'host_info': {'ID': HOST_ID}}}}, tokens=2)
    assert result.rc == 0, result.output[-3000:]
    # every Docker module of the role went to the configured socket
    assert result.calls and {c['params'].get('docker_host') for c in result.calls} == {'unix:///run/user/1000/docker.sock'}
    runner = result.params('docker_container', 'gitlab-runner')[0]
    assert '/run/user/1000/docker.sock:/var/run/docker.sock' in runner['volumes']
    assert runner['env'] == {'HTTP_PROXY': proxy, 'http_proxy': proxy, 'HTTPS_PROXY': proxy, 'https_proxy': proxy,
                             'NO_PROXY': 'own-value', 'no_proxy': 'localhost,.corp', 'TZ': 'UTC'}
    selfcheck = result.params('docker_container', 'gitlab-runner-selfcheck')[0]
    assert selfcheck['volumes'] == ['/run/user/1000/docker.sock:/var/run/docker.sock']
    # the jobs: the socket in the default volumes, the proxy in every runner's environment unless it sets its own
    runners = {r['name']: r for r in role.config()['runners']}
    assert runners['defaults']['docker']['volumes'] == ['/run/user/1000/docker.sock:/var/run/docker.sock', '/cache']
    assert runners['defaults']['environment'] == [
        'DOCKER_BUILDKIT=1', 'HTTP_PROXY=' + proxy, 'http_proxy=' + proxy, 'HTTPS_PROXY=' + proxy, 'https_proxy=' + proxy,
        'NO_PROXY=localhost,.corp', 'no_proxy=localhost,.corp']
    assert runners['own-env']['environment'][:2] == ['HTTP_PROXY=http://other:8080', 'A=1']
    assert 'HTTP_PROXY=' + proxy not in runners['own-env']['environment']
    assert 'https_proxy=' + proxy in runners['own-env']['environment']


# One config.toml per socket setting, as gitlab-runner writes it: (name, executor, environment, volumes) per runner,
# and the runners whose jobs would not see the socket. No entry is declared: the self-check reads the deployed file.
SOCKET_CASES = [
    ('/var/run/docker.sock', [
        ('defaults', 'docker', None, ['/var/run/docker.sock:/var/run/docker.sock', '/cache']),
        ('no-socket', 'docker', None, ['/cache', '/srv/x:/srv/x']),
        ('no-volumes', 'docker', None, None),
        ('run-is-var-run', 'docker', None, ['/run/docker.sock:/run/docker.sock']),
        ('directory', 'docker', None, ['/var/run:/var/run']),
        ('directory-elsewhere', 'docker', None, ['/var/run:/sockets']),
        ('moved', 'docker', ['DOCKER_HOST=unix:///sockets/docker.sock'], ['/var/run/docker.sock:/sockets/docker.sock']),
        ('moved-unmounted', 'docker', ['DOCKER_HOST=unix:///sockets/docker.sock'], ['/var/run/docker.sock:/var/run/docker.sock']),
        ('tcp', 'docker', ['DOCKER_HOST=tcp://docker:2375'], ['/cache']),
        ('shell', 'shell', None, None),
    ], ['no-socket', 'no-volumes', 'directory-elsewhere', 'moved-unmounted']),
    ('/srv/docker/docker.sock', [
        ('follows-the-setting', 'docker', None, ['/srv/docker/docker.sock:/var/run/docker.sock', '/cache']),
        ('default-path-copied', 'docker', None, ['/var/run/docker.sock:/var/run/docker.sock']),
        ('directory-above', 'docker', None, ['/srv/docker:/var/run']),
    ], ['default-path-copied']),
]


@pytest.mark.parametrize('socket,entries,blind', SOCKET_CASES, ids=[c[0] for c in SOCKET_CASES])
def test_selfcheck_names_each_runner_whose_jobs_miss_the_socket(role, socket, entries, blind):
    role.write_config(entries)
    result = role(['gitlab_runner_docker_socket=' + socket], selfcheck_only=True)
    assert result.rc != 0
    assert 'Check that the jobs of every runner see the Docker socket' in result.output
    named = sorted(name for name, *_rest in entries if "Runner '{0}': none of its docker.volumes".format(name) in result.output)
    assert named == sorted(blind), result.output[-3000:]
    assert 'Add "{0}:/var/run/docker.sock" to the runner\'s docker.volumes'.format(socket) in result.output
    assert 'glrt-test-' not in result.output
    # the failing check comes before the container that would have run `docker info`
    assert result.params('docker_container', 'gitlab-runner-selfcheck') == []
    # with those entries gone, the same self-check passes
    role.write_config([entry for entry in entries if entry[0] not in blind])
    result = role(['gitlab_runner_docker_socket=' + socket], selfcheck_only=True)
    assert result.rc == 0, result.output[-3000:]
    assert result.params('docker_container', 'gitlab-runner-selfcheck')[0]['volumes'] == [socket + ':/var/run/docker.sock']


SELFCHECK_FAILURES = [
    ('container not running',
     {'docker_container_info': {'gitlab-runner': {'exists': True, 'container': {'State': {'Running': False, 'Restarting': True,
                                                                                          'Status': 'restarting'}}}}},
     "The runner container 'gitlab-runner' is not running (restarting). Read `docker logs gitlab-runner`."),
    ('verify fails', {'docker_container_exec': {'gitlab-runner': {'rc': 1, 'stderr': 'ERROR: Verifying runner... is removed'}}},
     "`gitlab-runner verify` failed in 'gitlab-runner': config.toml does not parse, or GitLab answered 403 for a runner "
     "token (token revoked or rotated elsewhere, runner deleted in GitLab). Its output: ERROR: Verifying runner... is removed"),
    ('socket reaches another daemon', {'docker_container': {'gitlab-runner-selfcheck': {'container': {'Output': 'OTHER:ID\n'}}}},
     "A container with /var/run/docker.sock mounted did not reach this host's Docker daemon"),
]


@pytest.mark.parametrize('script,message', [c[1:] for c in SELFCHECK_FAILURES], ids=[c[0] for c in SELFCHECK_FAILURES])
def test_selfcheck_failure_messages(role, script, message):
    role.write_config([('a', 'docker', None, ['/var/run/docker.sock:/var/run/docker.sock'])])
    result = role(script=script, selfcheck_only=True)
    assert result.rc != 0
    assert ' '.join(message.split()) in ' '.join(result.output.split()), result.output[-3000:]


def test_python_older_than_3_9_is_refused_before_the_host_is_touched(role, tmp_path):
    library = tmp_path / 'library'
    library.mkdir()
    (library / 'old_python_facts.py').write_text(
        '#!/usr/bin/python\nfrom ansible.module_utils.basic import AnsibleModule\n'
        'module = AnsibleModule(argument_spec={})\n'
        "module.exit_json(ansible_facts={'python': {'version': {'major': 3, 'minor': 6, 'micro': 8}}})\n")
    result = role(['gitlab_runner_socket_risk_acknowledged=true'], library=library,
                  pre_tasks=[{'name': 'Report the Python of an EL 8 host', 'old_python_facts': {}}])
    assert result.rc != 0
    assert ('The host runs Python 3.6 and the modules of this collection need 3.9 or newer: point '
            'ansible_python_interpreter at a newer Python (EL 8 is not supported') in result.output
    assert result.calls == []
    assert not (tmp_path / 'srv' / 'config').exists()
