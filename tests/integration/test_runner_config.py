# Copyright (c) dood.gitlab_runner contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The runner_config module through ansible-playbook against the fake GitLab.

Every behaviour is a ladder (check, apply, apply again, check again) and is judged by independent oracles: what
the fake GitLab holds and was asked, the parsed config.toml and its mode.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
import tomllib
from datetime import datetime, timezone
from pathlib import Path

import pytest

from conftest import ladder

WRITES = ('POST', 'PUT', 'DELETE')


def sha(token):
    return hashlib.sha256(token.encode()).hexdigest()


def project_setup(gitlab):
    admin = gitlab.new_user(admin=True)
    group_id = gitlab.new_group(admin)
    project_id = gitlab.new_project(admin, group_id=group_id)
    return admin, group_id, project_id


def create_runner(gitlab, pat, project_id, **settings):
    """A runner made the way a user makes one in GitLab's UI; returns (id, token)."""
    body = dict({'runner_type': 'project_type', 'project_id': project_id, 'run_untagged': True}, **settings)
    status, _headers, data = gitlab.api('POST', '/user/runners', token=pat, body=body)
    assert status == 201, data
    return data['id'], data['token']


def writes(gitlab, since=0):
    return [r for r in gitlab.requests(since) if r['method'] in WRITES and r['path'].startswith('/api/v4')]


def api_requests(gitlab, since=0):
    return [r for r in gitlab.requests(since) if r['path'].startswith('/api/v4')]


def last_seq(gitlab):
    log = gitlab.requests()
    return log[-1]['seq'] if log else 0


def test_fixed_token_ladder(gitlab, host):
    admin, _group, project = project_setup(gitlab)
    runner_id, token = create_runner(gitlab, admin, project)
    params = {'api_url': gitlab.url, 'concurrent': 2, 'runners': [
        {'name': 'build-01', 'token': token, 'docker': {'image': 'docker:27-cli'}}]}

    ladder(host.run, params)

    cfg = host.config()
    assert cfg['concurrent'] == 2
    [entry] = cfg['runners']
    assert entry['name'] == 'build-01'
    assert entry['id'] == runner_id
    assert entry['token'] == token
    assert entry['url'] == gitlab.url
    assert entry['executor'] == 'docker'
    assert entry['docker'] == {'image': 'docker:27-cli'}
    assert entry['token_expires_at'] == datetime(1, 1, 1, tzinfo=timezone.utc)
    assert entry['token_obtained_at'].year >= 2024
    assert host.mode() == 0o600
    # The fixed token was verified once, with this host's system_id, and nothing was created.
    system_id = (host.dir / '.runner_system_id').read_text()
    assert len(gitlab.runners()) == 1
    managers = gitlab.runner_by_id(runner_id)['managers']
    assert [m['system_id'] for m in managers] == [system_id]
    assert gitlab.count_requests('POST', r'^/api/v4/runners/verify$') == 1


def test_api_token_flow_ladder_and_noop_cost(gitlab, host):
    admin, _group, project = project_setup(gitlab)
    params = {'api_url': gitlab.url, 'api_token': admin, 'runners': [
        {'name': 'api-01', 'runner_type': 'project_type', 'project_id': project, 'tag_list': ['docker-dood'],
         'run_untagged': False, 'maximum_timeout': 3600, 'locked': True},
        {'name': 'api-02', 'runner_type': 'project_type', 'project_id': project, 'tag_list': ['other']},
    ]}
    _c1, apply1, _a2, _c2 = ladder(host.run, params, first_action='created')

    runners = gitlab.runners()
    assert len(runners) == 2, 'each declared runner is created exactly once'
    assert gitlab.count_requests('POST', r'^/api/v4/user/runners$') == 2
    by_desc = dict((r['description'], r) for r in runners)
    assert by_desc['api-01']['tag_list'] == ['docker-dood']
    assert by_desc['api-01']['run_untagged'] is False
    assert by_desc['api-01']['maximum_timeout'] == 3600
    assert by_desc['api-01']['locked'] is True
    cfg = host.config()
    assert [e['name'] for e in cfg['runners']] == ['api-01', 'api-02']
    for entry in cfg['runners']:
        assert entry['token'].startswith('glrt-')
        assert sha(entry['token']) == by_desc[entry['name']]['token_sha256']
    assert dict((r['name'], r['id']) for r in apply1.task['runners']) == dict((e['name'], e['id']) for e in cfg['runners'])
    # The host calls of the first converge: the read, both pending creations in one write, both tokens in the last one.
    assert apply1.task['host_calls'] == 3

    # A no-op re-run: no write request, at most one request per runner; the file is untouched.
    before = host.raw()
    mark = last_seq(gitlab)
    result = host.run(params)
    assert not result.changed
    assert writes(gitlab, mark) == []
    assert len(api_requests(gitlab, mark)) <= 2
    assert host.raw() == before
    # N more runs still hold exactly the two runners.
    for _i in range(3):
        host.run(params)
    assert len(gitlab.runners()) == 2
    assert gitlab.count_requests('POST', r'^/api/v4/user/runners$') == 2


def test_registration_token_flow(gitlab, host):
    reg = gitlab.registration_token('instance')
    params = {'api_url': gitlab.url, 'runners': [
        {'name': 'legacy-01', 'registration_token': reg, 'tag_list': ['docker-dood'], 'description': 'Runner DooD'}]}
    _c1, apply1, _a2, _c2 = ladder(host.run, params, first_action='created')
    assert 'registration token' in apply1.output and 'deprecat' in apply1.output.lower()
    [runner] = gitlab.runners()
    assert runner['description'] == 'Runner DooD'
    assert runner['runner_type'] == 'instance_type'
    [entry] = host.config()['runners']
    assert sha(entry['token']) == runner['token_sha256']
    assert entry['id'] == runner['id']


def test_registration_disallowed_410(gitlab, host):
    reg = gitlab.registration_token('instance')
    gitlab.settings(allow_runner_registration_token=False)
    params = {'api_url': gitlab.url, 'runners': [{'name': 'legacy-01', 'registration_token': reg, 'run_untagged': True}]}
    result = host.run(params)
    assert result.failed
    assert '410' in result.msg and 'runner registration disallowed' in result.msg
    assert 'runner_type' in result.msg, 'the message must say what to do instead'
    assert gitlab.runners() == []


def test_shared_token_two_hosts(gitlab, make_host):
    admin, _group, project = project_setup(gitlab)
    runner_id, token = create_runner(gitlab, admin, project)
    host_a, host_b = make_host('a'), make_host('b')
    params = {'api_url': gitlab.url, 'runners': [{'name': 'shared', 'token': token}]}
    ladder(host_a.run, params)
    ladder(host_b.run, params)
    managers = gitlab.runner_by_id(runner_id)['managers']
    ids = {(host_a.dir / '.runner_system_id').read_text(), (host_b.dir / '.runner_system_id').read_text()}
    assert {m['system_id'] for m in managers} == ids
    assert len(gitlab.runners()) == 1

    # Removing it from one host removes only that host's runner manager; the runner serves the other host on.
    gone = host_a.run({'api_url': gitlab.url, 'runners': [{'name': 'shared', 'state': 'absent'}]})
    assert gone.changed and gone.actions() == {'shared': 'removed'}
    assert host_a.config().get('runners', []) == []
    runner = gitlab.runner_by_id(runner_id)
    assert runner is not None
    assert [m['system_id'] for m in runner['managers']] == [(host_b.dir / '.runner_system_id').read_text()]
    assert [e['name'] for e in host_b.config()['runners']] == ['shared']


def test_recreated_after_server_side_deletion(gitlab, host):
    admin, _group, project = project_setup(gitlab)
    params = {'api_url': gitlab.url, 'api_token': admin, 'runners': [
        {'name': 'api-01', 'runner_type': 'project_type', 'project_id': project, 'run_untagged': True}]}
    host.run(params)
    old_id = host.config()['runners'][0]['id']
    status, _h, _b = gitlab.api('DELETE', '/runners/{0}'.format(old_id), token=admin)
    assert status == 204

    check = host.run(params, check=True)
    assert check.changed and check.actions() == {'api-01': 'recreated'}
    assert gitlab.runners() == []
    result = host.run(params)
    assert result.actions() == {'api-01': 'recreated'}
    [runner] = gitlab.runners()
    [entry] = host.config()['runners']
    assert entry['id'] == runner['id'] != old_id
    assert sha(entry['token']) == runner['token_sha256']
    assert not host.run(params).changed


def test_recreated_when_token_rejected_with_verify(gitlab, host):
    reg = gitlab.registration_token('instance')
    params = {'api_url': gitlab.url, 'server_check': 'verify', 'runners': [
        {'name': 'legacy-01', 'registration_token': reg, 'run_untagged': True}]}
    host.run(params)
    token = host.config()['runners'][0]['token']
    status, _h, _b = gitlab.api('DELETE', '/runners', body={'token': token})
    assert status == 204
    result = host.run(params)
    assert result.actions() == {'legacy-01': 'recreated'}
    [runner] = gitlab.runners()
    assert sha(host.config()['runners'][0]['token']) == runner['token_sha256']
    again = host.run(params)
    assert not again.changed


def test_fixed_token_rejected_fails_with_fix(gitlab, host):
    admin, _group, project = project_setup(gitlab)
    _id, token = create_runner(gitlab, admin, project)
    params = {'api_url': gitlab.url, 'server_check': 'verify', 'runners': [{'name': 'fixed', 'token': token}]}
    host.run(params)
    before = host.raw()
    gitlab.api('DELETE', '/runners', body={'token': token})
    result = host.run(params)
    assert result.failed
    assert 'fixed' in result.msg and 'create a new runner' in result.msg.lower()
    assert token not in result.output
    assert host.raw() == before


def test_server_side_drift_repaired(gitlab, host):
    admin, _group, project = project_setup(gitlab)
    params = {'api_url': gitlab.url, 'api_token': admin, 'runners': [
        {'name': 'api-01', 'runner_type': 'project_type', 'project_id': project, 'tag_list': ['a', 'b'],
         'run_untagged': False, 'paused': False, 'maximum_timeout': 1800}]}
    host.run(params)
    runner_id = host.config()['runners'][0]['id']
    status, _h, _b = gitlab.api('PUT', '/runners/{0}'.format(runner_id), token=admin,
                                body={'tag_list': ['c'], 'paused': True, 'maximum_timeout': 7200})
    assert status == 200
    before = host.raw()
    check = host.run(params, check=True)
    assert check.changed and check.actions() == {'api-01': 'updated'}
    assert gitlab.runner_by_id(runner_id)['paused'] is True, 'check mode must not repair'
    result = host.run(params)
    assert result.actions() == {'api-01': 'updated'}
    runner = gitlab.runner_by_id(runner_id)
    assert sorted(runner['tag_list']) == ['a', 'b'] and runner['paused'] is False and runner['maximum_timeout'] == 1800
    assert host.raw() == before, 'a server-side repair leaves the file alone'
    assert not host.run(params).changed


def test_token_rotated_by_runner_survives(gitlab, host):
    admin, _group, project = project_setup(gitlab)
    _id, token = create_runner(gitlab, admin, project)
    params = {'api_url': gitlab.url, 'runners': [{'name': 'rotating', 'token': token}]}
    host.run(params)
    # gitlab-runner rotates its token (docs/gitlab-runner-config.md §2.8) and saves the file itself.
    status, _h, data = gitlab.api('POST', '/runners/reset_authentication_token', body={'token': token})
    assert status == 201
    new_token = data['token']
    cfg = host.config()
    # ... re-encoding the whole file: the values it keeps for unset settings come along (docs/gitlab-runner-config.md §2.1).
    text = host.path.read_text().replace(token, new_token)
    assert text.lstrip().startswith('[[runners]]'), 'the declaration sets no global key'
    text = ('concurrent = 1\ncheck_interval = 0\nconnection_max_age = "15m0s"\nshutdown_timeout = 0\n\n'
            '[session_server]\n  session_timeout = 1800\n\n' + text.lstrip() +
            '  [runners.cache]\n    MaxUploadedArchiveSize = 0\n    [runners.cache.s3]\n      AssumeRoleMaxConcurrency = 0\n'
            '    [runners.cache.gcs]\n    [runners.cache.azure]\n')
    host.path.write_text(text)
    host.path.chmod(0o600)
    rewritten = host.raw()

    for _i in range(2):
        mark = last_seq(gitlab)
        result = host.run(params)
        assert not result.failed, result.msg
        assert not result.changed
        assert host.config()['runners'][0]['token'] == new_token, 'the rotated token must never be replaced by the old one'
    assert len(writes(gitlab, mark)) == 0
    assert cfg['runners'][0]['id'] == host.config()['runners'][0]['id']
    assert host.raw() == rewritten, 'a file gitlab-runner re-encoded means the same: it is left alone'


def test_new_declared_token_replaces_old(gitlab, host):
    admin, _group, project = project_setup(gitlab)
    _id1, token1 = create_runner(gitlab, admin, project)
    id2, token2 = create_runner(gitlab, admin, project)
    host.run({'api_url': gitlab.url, 'runners': [{'name': 'r', 'token': token1}]})
    result = host.run({'api_url': gitlab.url, 'runners': [{'name': 'r', 'token': token2}]})
    assert result.changed and result.actions() == {'r': 'updated'}
    entry = host.config()['runners'][0]
    assert entry['token'] == token2 and entry['id'] == id2
    assert not host.run({'api_url': gitlab.url, 'runners': [{'name': 'r', 'token': token2}]}).changed


def test_state_absent_and_prune(gitlab, host):
    admin, _group, project = project_setup(gitlab)
    runners = [{'name': n, 'runner_type': 'project_type', 'project_id': project, 'run_untagged': True} for n in ('a', 'b', 'c')]
    host.run({'api_url': gitlab.url, 'api_token': admin, 'runners': runners})
    assert len(gitlab.runners()) == 3
    ids = dict((e['name'], e['id']) for e in host.config()['runners'])

    absent = {'api_url': gitlab.url, 'api_token': admin, 'runners': [dict(runners[0], state='absent'), runners[1], runners[2]]}
    ladder(host.run, absent)
    assert gitlab.runner_by_id(ids['a']) is None
    assert sorted(e['name'] for e in host.config()['runners']) == ['b', 'c']

    # Undeclared entries stay without prune ...
    only_b = {'api_url': gitlab.url, 'api_token': admin, 'runners': [runners[1]]}
    assert not host.run(only_b).changed
    assert gitlab.runner_by_id(ids['c']) is not None
    # ... and go, from the file and from GitLab, with it.
    _c1, apply1, _a2, _c2 = ladder(host.run, dict(only_b, prune=True))
    assert apply1.actions() == {'b': 'unchanged', 'c': 'removed'}
    assert gitlab.runner_by_id(ids['c']) is None
    assert [r['id'] for r in gitlab.runners()] == [ids['b']]
    assert [e['name'] for e in host.config()['runners']] == ['b']


def test_file_structure_matches_gitlab_runner(gitlab, host):
    admin, _group, project = project_setup(gitlab)
    _id, token = create_runner(gitlab, admin, project)
    params = {
        'api_url': gitlab.url, 'concurrent': 4, 'check_interval': 3, 'log_level': 'info', 'listen_address': ':9252',
        'connection_max_age': '15m', 'session_server': {'session_timeout': 1800},
        'runners': [{
            'name': 'dood', 'token': token, 'limit': 2, 'environment': ['DOCKER_BUILDKIT=1'],
            'tls_ca_file': '/etc/gitlab-runner/certs/ca.crt', 'feature_flags': {'FF_USE_FASTZIP': True},
            'docker': {'image': 'docker:27-cli', 'privileged': False, 'pull_policy': 'if-not-present',
                       'volumes': ['/var/run/docker.sock:/var/run/docker.sock', '/cache'],
                       'services': [{'name': 'postgres:16', 'alias': 'db'}]},
            'cache': {'Type': 's3', 'Shared': True, 's3': {'ServerAddress': 's3.example.com', 'BucketName': 'cache'}},
            'extra': {'unhealthy_interval': '1h'},
        }],
    }
    result = host.run(params)
    assert result.changed, result.msg
    text = host.path.read_text()
    cfg = tomllib.loads(text)
    entry = cfg['runners'][0]
    assert cfg['connection_max_age'] == '15m0s'
    assert cfg['session_server'] == {'session_timeout': 1800}
    assert entry['tls-ca-file'] == '/etc/gitlab-runner/certs/ca.crt'
    assert entry['feature_flags'] == {'FF_USE_FASTZIP': True}
    assert entry['docker']['services'] == [{'name': 'postgres:16', 'alias': 'db'}]
    assert entry['cache']['s3']['BucketName'] == 'cache'
    assert entry['unhealthy_interval'] == '1h0m0s'
    assert isinstance(entry['token_obtained_at'], datetime)
    # gitlab-runner's own encoding: unquoted datetimes, [[runners.docker.services]] arrays of tables, 2-space indent.
    assert '  token_expires_at = 0001-01-01T00:00:00Z\n' in text
    assert '\n    [[runners.docker.services]]\n' in text
    assert '\n  [runners.docker]\n' in text
    assert text.index('  name = "dood"') < text.index('  url = ') < text.index('  id = ') < text.index('  executor = ')


def test_prune_entries_written_by_gitlab_runner_register(gitlab, host):
    """Entries this module never recorded follow gitlab-runner's unregister rule: no orphan, no shared runner lost."""
    admin, _group, project = project_setup(gitlab)
    reg = gitlab.registration_token('instance')
    status, _h, legacy = gitlab.api('POST', '/runners', body={'token': reg, 'description': 'old'})
    assert status == 201
    shared_id, shared = create_runner(gitlab, admin, project)
    system_id = 's_0123456789ab'
    (host.dir / '.runner_system_id').write_text(system_id)
    gitlab.api('POST', '/runners/verify', body={'token': shared, 'system_id': system_id})
    # What `gitlab-runner register` leaves behind: entries with their tokens and ids, no state of this module.
    host.path.write_text(
        'concurrent = 1\n\n'
        '[[runners]]\n  name = "old-legacy"\n  url = "{0}"\n  id = {1}\n  token = "{2}"\n  executor = "shell"\n\n'
        '[[runners]]\n  name = "old-shared"\n  url = "{0}"\n  id = {3}\n  token = "{4}"\n  executor = "shell"\n'.format(
            gitlab.url, legacy['id'], legacy['token'], shared_id, shared))
    result = host.run({'api_url': gitlab.url, 'prune': True, 'runners': []})
    assert not result.failed, result.msg
    assert result.actions() == {'old-legacy': 'removed', 'old-shared': 'removed'}
    assert gitlab.runner_by_id(legacy['id']) is None, 'a legacy runner pruned from the file must not stay orphaned'
    remaining = gitlab.runner_by_id(shared_id)
    assert remaining is not None, 'a glrt- runner may serve other hosts: only this host\'s manager goes'
    assert [m['system_id'] for m in remaining['managers']] == []
    assert host.config().get('runners', []) == []


def test_gitlab_side_host_runs_the_whole_module_on_the_host(gitlab, host):
    """For networks where only the runner hosts reach GitLab: the same ladder, the module itself on the host."""
    admin, _group, project = project_setup(gitlab)
    params = {'api_url': gitlab.url, 'api_token': admin, 'gitlab_side': 'host', 'runners': [
        {'name': 'on-host', 'runner_type': 'project_type', 'project_id': project, 'run_untagged': True}]}
    _c1, apply1, apply2, _c2 = ladder(host.run, params, first_action='created')
    assert 'host_calls' not in apply1.task and 'host_calls' not in apply2.task, 'the module ran, not the action plugin'
    controller = dict(params, gitlab_side='controller')
    again = host.run(controller)
    assert not again.changed and again.task['host_calls'] == 1, 'both sides read and write the same files'
    assert len(gitlab.runners()) == 1


def test_state_file_written_by_0_1_0_is_adopted(gitlab, host):
    """A host converged by 0.1.0 (the whole module on the host, its state file): the new code adopts both."""
    old = host.root / 'collection-0.1.0'
    old.mkdir()
    archive = subprocess.run(['git', '-C', str(Path(__file__).resolve().parents[2]), 'archive', 'd9a6f1a', 'plugins'],
                             capture_output=True, check=False)
    if archive.returncode != 0:
        pytest.skip('the 0.1.0 sources (commit d9a6f1a) are not in this checkout\'s history')
    subprocess.run(['tar', '-x', '-C', str(old)], input=archive.stdout, check=True)
    admin, _group, project = project_setup(gitlab)
    params = {'api_url': gitlab.url, 'api_token': admin, 'allow_http': True, 'path': str(host.path), 'runners': [
        {'name': 'legacy-host', 'runner_type': 'project_type', 'project_id': project, 'run_untagged': True, 'limit': 2}]}
    tree = host.root / 'old-collections' / 'ansible_collections' / 'dood'
    tree.mkdir(parents=True)
    (tree / 'gitlab_runner').symlink_to(old)
    args = host.root / 'old-args.json'
    args.write_text(json.dumps({'ANSIBLE_MODULE_ARGS': params}))
    env = dict(host.env, PYTHONPATH=str(tree.parent.parent))
    proc = subprocess.run([sys.executable, '-m', 'ansible_collections.dood.gitlab_runner.plugins.modules.runner_config', str(args)],
                          env=env, capture_output=True, text=True, timeout=120, check=False)
    assert '"changed": true' in proc.stdout, proc.stdout[-2000:] + proc.stderr[-2000:]
    state = json.loads((host.dir / '.dood_gitlab_runner.json').read_text())
    assert state['runners']['legacy-host']['created'] is True and 'applied' not in state['runners']['legacy-host']
    written = host.raw()
    result = host.run({k: v for k, v in params.items() if k != 'path'})
    assert not result.failed, result.msg
    assert not result.changed and result.actions() == {'legacy-host': 'unchanged'}, result.task
    assert host.raw() == written and len(gitlab.runners()) == 1
    assert json.loads((host.dir / '.dood_gitlab_runner.json').read_text())['runners']['legacy-host']['id'] == gitlab.runners()[0]['id']
