# Copyright (c) dood.gitlab_runner contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The runner_info module through ansible-playbook against the fake GitLab.

Oracles: the config.toml runner_config wrote (parsed here), the fake GitLab's state and its request log.
"""

from __future__ import annotations

import json
import secrets
import subprocess
import sys
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

WRITES = ('POST', 'PUT', 'DELETE')


def project_setup(gitlab):
    admin = gitlab.new_user(admin=True)
    group_id = gitlab.new_group(admin)
    project_id = gitlab.new_project(admin, group_id=group_id)
    return admin, group_id, project_id


def info(host, params, check=False, verbosity=0):
    """Run runner_info on the host's config.toml; return (task result, whole output)."""
    args = dict({'path': str(host.path)}, **params)
    play = [{'hosts': 'localhost', 'gather_facts': False, 'tasks': [
        {'name': 'Report the runners', 'dood.gitlab_runner.runner_info': args},
    ]}]
    path = host.root / '{0}-info.yml'.format(host.name)
    path.write_text(json.dumps(play, indent=2))
    cmd = [str(Path(sys.executable).with_name('ansible-playbook')), '-i', 'localhost,', '-c', 'local', str(path)]
    if check:
        cmd.append('--check')
    if verbosity:
        cmd.append('-' + 'v' * verbosity)
    env = dict(host.env, ANSIBLE_STDOUT_CALLBACK='ansible.posix.json')
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300, check=False)
    # At -vvv ansible-playbook prints its version banner before the JSON document.
    start = proc.stdout.find('\n{')
    data = json.loads(proc.stdout if proc.stdout.startswith('{') else proc.stdout[start + 1:])
    task = next(iter(data['plays'][0]['tasks'][0]['hosts'].values()))
    return task, proc.stdout + proc.stderr


def last_seq(gitlab):
    log = gitlab.requests()
    return log[-1]['seq'] if log else 0


def converge(gitlab, host, admin, project, names=('info-01', 'info-02')):
    runners = [{'name': n, 'runner_type': 'project_type', 'project_id': project, 'tag_list': ['docker-dood', n],
                'run_untagged': False, 'maximum_timeout': 3600} for n in names]
    result = host.run({'api_url': gitlab.url, 'api_token': admin, 'concurrent': 3, 'runners': runners})
    assert not result.failed, result.msg
    return host.config()


def test_file_only_report_sends_nothing_and_hides_tokens(gitlab, make_host):
    admin, _group, project = project_setup(gitlab)
    host = make_host('file-only')
    cfg = converge(gitlab, host, admin, project)
    mark = last_seq(gitlab)

    task, output = info(host, {}, verbosity=3)

    assert not task.get('failed'), task
    assert task['changed'] is False
    assert task['exists'] is True
    assert task['system_id'] == (host.dir / '.runner_system_id').read_text()
    assert task['concurrent'] == 3
    assert task['api_requests'] == 0
    assert [r['name'] for r in task['runners']] == [e['name'] for e in cfg['runners']]
    for item, entry in zip(task['runners'], cfg['runners']):
        assert item['id'] == entry['id'] > 0
        assert item['url'] == entry['url'] == gitlab.url
        assert item['executor'] == entry['executor']
        assert item['has_token'] is True
        assert item['token_expires_at'] is None and item['token_expires_in_days'] is None
        assert item['token_obtained_at'] == entry['token_obtained_at'].strftime('%Y-%m-%dT%H:%M:%SZ')
        assert item['server'] is None and item['server_error'] is None
        assert 'token' not in item
    # Not one request reached GitLab, and no token is anywhere in the output, even at -vvv.
    assert gitlab.requests(mark) == []
    for entry in cfg['runners']:
        assert entry['token'] not in output
    assert admin not in output


def test_server_view_one_get_per_runner_and_read_only(gitlab, make_host):
    admin, _group, project = project_setup(gitlab)
    host = make_host('with-api')
    cfg = converge(gitlab, host, admin, project)
    state_before = dict((r['id'], r) for r in gitlab.runners())
    mark = last_seq(gitlab)

    task, output = info(host, {'api_url': gitlab.url, 'api_token': admin, 'allow_http': True}, check=True)

    assert not task.get('failed'), task
    assert task['changed'] is False
    log = [r for r in gitlab.requests(mark) if r['path'].startswith('/api/v4')]
    assert [(r['method'], r['path']) for r in log] == [('GET', '/api/v4/runners/{0}'.format(e['id'])) for e in cfg['runners']]
    assert task['api_requests'] == len(cfg['runners'])
    for item in task['runners']:
        server = item['server']
        oracle = state_before[item['id']]
        assert item['server_error'] is None
        assert server['status'] == oracle['status'] == 'never_contacted'
        assert server['contacted_at'] is None
        assert server['description'] == item['name']
        assert sorted(server['tag_list']) == sorted(oracle['tag_list'])
        assert server['run_untagged'] is False and server['maximum_timeout'] == 3600
        assert server['runner_type'] == 'project_type'
        assert 'token' not in server and 'token_sha256' not in server
    for entry in cfg['runners']:
        assert entry['token'] not in output
    assert admin not in output


def test_contacted_runner_and_managers(gitlab, make_host):
    admin, _group, project = project_setup(gitlab)
    host = make_host('managers')
    cfg = converge(gitlab, host, admin, project, names=('solo',))
    [entry] = cfg['runners']
    system_id = (host.dir / '.runner_system_id').read_text()
    # The runner process checks in once with this host's system_id (what `gitlab-runner verify` does).
    status, _h, _d = gitlab.api('POST', '/runners/verify', body={'token': entry['token'], 'system_id': system_id})
    assert status == 200

    task, _out = info(host, {'api_url': gitlab.url, 'api_token': admin, 'allow_http': True, 'managers': True})

    [item] = task['runners']
    assert item['server']['status'] == 'online'
    contacted = datetime.fromisoformat(item['server']['contacted_at'].replace('Z', '+00:00'))
    assert abs((datetime.now(timezone.utc) - contacted).total_seconds()) < 120
    assert [m['system_id'] for m in item['server']['managers']] == [system_id]
    assert item['server']['manager_on_this_host'] is True
    assert gitlab.count_requests('GET', r'^/api/v4/runners/\d+/managers$') == 1


def test_deleted_runner_and_foreign_url_are_reported_not_fatal(gitlab, make_host):
    admin, _group, project = project_setup(gitlab)
    host = make_host('drift')
    cfg = converge(gitlab, host, admin, project)
    gone = cfg['runners'][0]
    status, _h, _d = gitlab.api('DELETE', '/runners/{0}'.format(gone['id']), token=admin)
    assert status == 204
    # The second entry points at another GitLab: the API token must never be sent there.
    text = host.path.read_text().replace('url = "{0}"'.format(gitlab.url), 'url = "https://other.invalid"', 2)
    text = text.replace('url = "https://other.invalid"', 'url = "{0}"'.format(gitlab.url), 1)
    host.path.write_text(text)
    mark = last_seq(gitlab)

    task, _out = info(host, {'api_url': gitlab.url, 'api_token': admin, 'allow_http': True})

    assert not task.get('failed'), task
    first, second = task['runners']
    assert first['server'] is None and '404' in first['server_error'] and str(gone['id']) in first['server_error']
    assert second['url'] == 'https://other.invalid'
    assert second['server'] is None and 'not asked' in second['server_error']
    assert [r['path'] for r in gitlab.requests(mark)] == ['/api/v4/runners/{0}'.format(gone['id'])]


def test_token_expiry_days(gitlab, make_host):
    admin, _group, project = project_setup(gitlab)
    gitlab.settings(project_runner_token_expiration_interval=5 * 86400)
    host = make_host('expiring')
    cfg = converge(gitlab, host, admin, project, names=('short-lived',))
    [entry] = cfg['runners']

    task, _out = info(host, {})

    [item] = task['runners']
    expected = (entry['token_expires_at'] - datetime.now(timezone.utc)) / timedelta(days=1)
    assert 4.9 < item['token_expires_in_days'] <= 5.0
    assert abs(item['token_expires_in_days'] - expected) < 0.02
    assert item['token_expires_at'] == entry['token_expires_at'].strftime('%Y-%m-%dT%H:%M:%SZ')


def test_listing_with_filters(gitlab, make_host):
    admin, _group, project = project_setup(gitlab)
    host = make_host('lister')
    converge(gitlab, host, admin, project, names=('fleet-a', 'fleet-b'))
    stray = 'stray-' + secrets.token_hex(3)
    status, _h, data = gitlab.api('POST', '/user/runners', token=admin, body={
        'runner_type': 'project_type', 'project_id': project, 'description': stray, 'tag_list': ['docker-dood']})
    assert status == 201, data
    other_id = gitlab.api('POST', '/user/runners', token=admin, body={
        'runner_type': 'project_type', 'project_id': project, 'description': 'unrelated', 'tag_list': ['gpu']})[2]['id']

    by_tag, _out = info(host, {'api_url': gitlab.url, 'api_token': admin, 'allow_http': True,
                               'gitlab_runners': {'scope': 'project', 'project_id': str(project), 'tag_list': ['docker-dood']}})
    by_desc, _out = info(host, {'api_url': gitlab.url, 'api_token': admin, 'allow_http': True, 'read_files': False,
                                'gitlab_runners': {'description': '^stray-'}})

    assert sorted(r['description'] for r in by_tag['gitlab_runners']) == sorted(['fleet-a', 'fleet-b', stray])
    assert other_id not in [r['id'] for r in by_tag['gitlab_runners']]
    assert [r['description'] for r in by_desc['gitlab_runners']] == [stray]
    assert by_desc['exists'] is False and by_desc['runners'] == [] and by_desc['system_id'] is None
    assert by_tag['exists'] is True and len(by_tag['runners']) == 2
    assert by_desc['gitlab_runners'][0]['status'] == 'never_contacted'
    assert set(by_desc['gitlab_runners'][0]) == {'id', 'description', 'runner_type', 'status', 'paused', 'created_at'}


@pytest.mark.parametrize('params, words', [
    ({'api_token': 'generated'}, 'api_url'),
    ({'api_url': 'http://127.0.0.1:9', 'api_token': 'generated'}, 'allow_http'),
    ({'api_url': 'https://gitlab.invalid/api/v4', 'api_token': 'generated'}, '/api/v4'),
    ({'api_url': 'https://gitlab.invalid', 'gitlab_runners': {'scope': 'group'}}, 'group_id'),
])
def test_bad_input_fails_before_any_request(gitlab, make_host, params, words):
    host = make_host('bad')
    if params.get('api_token') == 'generated':
        params = dict(params, api_token='glpat-' + secrets.token_urlsafe(20))
    params.setdefault('api_token', 'glpat-' + secrets.token_urlsafe(20))
    task, output = info(host, params)
    assert task.get('failed'), task
    assert words in task['msg']
    assert params['api_token'] not in output
    assert gitlab.requests() == []


def test_missing_and_broken_files(gitlab, make_host):
    host = make_host('empty')
    task, _out = info(host, {})
    assert not task.get('failed') and task['exists'] is False and task['runners'] == []
    assert task['system_id'] == (host.dir / '.runner_system_id').read_text()

    token = 'glrt-' + secrets.token_urlsafe(20)
    host.path.write_text('concurrent = 1\n[[runners]]\n  name = "x"\n  token = "{0}"\n  url = = "broken"\n'.format(token))
    task, output = info(host, {})
    assert task.get('failed') and 'not valid TOML' in task['msg']
    assert token not in output
    assert gitlab.requests() == []


def test_job_volumes_and_docker_host_as_written(gitlab, make_host):
    """What each runner's jobs would mount, read from the file; of the environment only DOCKER_HOST is returned."""
    host = make_host('volumes')
    secret_value = 'glpat-' + secrets.token_urlsafe(12)
    tokens = ['glrt-' + secrets.token_urlsafe(20) for _i in range(3)]
    host.path.write_text(
        'concurrent = 2\n'
        '[[runners]]\n  name = "default-socket"\n  url = "https://gitlab.example.com"\n  id = 1\n  token = "{0}"\n'
        '  executor = "docker"\n  [runners.docker]\n    image = "docker:27.5.1-cli"\n'
        '    volumes = ["/var/run/docker.sock:/var/run/docker.sock", "/cache"]\n'
        '[[runners]]\n  name = "own-host"\n  url = "https://gitlab.example.com"\n  id = 2\n  token = "{1}"\n'
        '  executor = "docker"\n'
        '  environment = ["DOCKER_HOST=unix:///old.sock", "API_KEY={3}", "DOCKER_HOST=unix:///run/x/docker.sock"]\n'
        '  [runners.docker]\n    image = "docker:27.5.1-cli"\n    volumes = ["/run/x:/run/x"]\n'
        '[[runners]]\n  name = "shell"\n  url = "https://gitlab.example.com"\n  id = 3\n  token = "{2}"\n'
        '  executor = "shell"\n'.format(tokens[0], tokens[1], tokens[2], secret_value))

    task, output = info(host, {}, verbosity=3)

    assert not task.get('failed'), task
    by_name = {item['name']: item for item in task['runners']}
    assert by_name['default-socket']['docker_volumes'] == ['/var/run/docker.sock:/var/run/docker.sock', '/cache']
    assert by_name['default-socket']['job_docker_host'] is None
    assert by_name['own-host']['docker_volumes'] == ['/run/x:/run/x']
    assert by_name['own-host']['job_docker_host'] == 'unix:///run/x/docker.sock'
    assert by_name['shell']['docker_volumes'] == [] and by_name['shell']['job_docker_host'] is None
    assert secret_value not in output
    assert [t for t in tokens if t in output] == []
    assert gitlab.requests() == []
