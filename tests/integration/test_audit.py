# Copyright (c) dood.gitlab_runner contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The fleet audit playbook (dood.gitlab_runner.audit) over simulated hosts against the fake GitLab.

The fleet is built with runner_config (each host its own config directory, two of them sharing a system_id as
cloned images do); the expected findings are computed from what the test set up and from the fake GitLab's state.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import Host


def run_audit(tmp_path, env, hosts, extra):
    inventory = {'all': {'hosts': dict((h.name, {'gitlab_runner_config_dir': str(h.dir)}) for h in hosts),
                         'vars': {'ansible_connection': 'local'}}}
    inv = tmp_path / 'inventory.json'
    inv.write_text(json.dumps(inventory))
    extra_file = tmp_path / 'audit-vars.json'
    extra_file.write_text(json.dumps(extra))
    extra_file.chmod(0o600)
    cmd = [str(Path(sys.executable).with_name('ansible-playbook')), '-i', str(inv), 'dood.gitlab_runner.audit',
           '-e', '@' + str(extra_file)]
    return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300, check=False)


@pytest.fixture()
def fleet(gitlab, tmp_path, ansible_env):
    """Five hosts: two clones sharing a system_id, one with a short-lived token, one contacted, one without config."""
    admin = gitlab.new_user(admin=True)
    group = gitlab.new_group(admin)
    project = gitlab.new_project(admin, group_id=group)
    cloned_id = 'r_' + 'C10NEDimage1'
    hosts = {}

    def host(name, system_id, runners, expiry=None):
        h = Host(tmp_path, ansible_env, name, system_id=system_id)
        hosts[name] = h
        if runners is None:
            return h
        gitlab.settings(project_runner_token_expiration_interval=expiry)
        result = h.run({'api_url': gitlab.url, 'api_token': admin, 'runners': [
            {'name': r, 'runner_type': 'project_type', 'project_id': project, 'tag_list': ['docker-dood', name]} for r in runners]})
        assert not result.failed, result.msg
        gitlab.settings(project_runner_token_expiration_interval=None)
        return h

    host('clone-a', cloned_id, ['clone-a-docker'])
    host('clone-b', cloned_id, ['clone-b-docker'])
    host('short', 'r_SHORTlived01', ['short-docker'], expiry=3 * 86400)
    contacted = host('busy', 'r_BUSYhost0001', ['busy-docker', 'busy-extra'])
    host('bare', 'r_BAREhost0001', None)
    # The busy host's runners really run: each checks in with the host's system_id.
    for entry in contacted.config()['runners']:
        status, _h, _d = gitlab.api('POST', '/runners/verify', body={'token': entry['token'], 'system_id': 'r_BUSYhost0001'})
        assert status == 200
    # Runners on GitLab no host declares: one with the fleet's tag, one without (outside the filter).
    stray = gitlab.api('POST', '/user/runners', token=admin, body={
        'runner_type': 'project_type', 'project_id': project, 'description': 'forgotten-vm', 'tag_list': ['docker-dood']})[2]
    other = gitlab.api('POST', '/user/runners', token=admin, body={
        'runner_type': 'project_type', 'project_id': project, 'description': 'gpu-box', 'tag_list': ['gpu']})[2]
    # A runner deleted on GitLab while its host still declares it.
    gone = hosts['clone-b'].config()['runners'][0]
    assert gitlab.api('DELETE', '/runners/{0}'.format(gone['id']), token=admin)[0] == 204
    return {'admin': admin, 'project': project, 'hosts': hosts, 'stray': stray, 'other': other, 'gone': gone,
            'cloned_id': cloned_id}


def test_audit_reports_every_finding(gitlab, tmp_path, ansible_env, fleet):
    report_file = tmp_path / 'report.json'
    mark = gitlab.requests()[-1]['seq']
    proc = run_audit(tmp_path, ansible_env, list(fleet['hosts'].values()), {
        'gitlab_runner_url': gitlab.url, 'gitlab_runner_api_token': fleet['admin'], 'gitlab_runner_allow_http': True,
        'gitlab_runner_audit_tag_list': ['docker-dood'], 'gitlab_runner_audit_expiry_days': 7,
        'gitlab_runner_audit_report_file': str(report_file)})
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    report = json.loads(report_file.read_text())
    state = dict((r['id'], r) for r in gitlab.runners())

    assert report['hosts'] == 5
    assert report['runners'] == 5
    assert report['no_config'] == ['bare']
    assert report['shared_system_ids'] == {fleet['cloned_id']: ['clone-a', 'clone-b']}

    [expiring] = report['expiring_tokens']
    short_id = fleet['hosts']['short'].config()['runners'][0]['id']
    assert (expiring['host'], expiring['name'], expiring['id']) == ('short', 'short-docker', short_id)
    assert 2.9 < expiring['token_expires_in_days'] <= 3.0

    # Never contacted: every declared runner GitLab still has except the busy host's two, plus the stray one.
    declared_never = sorted((i['host'], i['name']) for i in report['never_contacted'] if 'host' in i)
    assert declared_never == [('clone-a', 'clone-a-docker'), ('short', 'short-docker')]
    for item in report['never_contacted']:
        if 'host' in item:
            assert state[item['id']]['contacted_at'] is None
    assert [i['id'] for i in report['never_contacted'] if 'host' not in i] == [fleet['stray']['id']]

    assert [r['id'] for r in report['undeclared_on_gitlab']] == [fleet['stray']['id']]
    assert fleet['other']['id'] not in [r['id'] for r in report['undeclared_on_gitlab']]
    [missing] = report['not_on_gitlab']
    assert (missing['host'], missing['id']) == ('clone-b', fleet['gone']['id']) and '404' in missing['server_error']

    # Read-only: not one write request reached GitLab, and no token appears anywhere in the output.
    assert [r for r in gitlab.requests(mark) if r['method'] != 'GET'] == []
    output = proc.stdout + proc.stderr + report_file.read_text()
    assert fleet['admin'] not in output
    for host in fleet['hosts'].values():
        if host.path.exists():
            for entry in host.config()['runners']:
                assert entry['token'] not in output


def test_audit_fail_switch_and_file_only_mode(gitlab, tmp_path, ansible_env, fleet):
    mark = gitlab.requests()[-1]['seq']
    proc = run_audit(tmp_path, ansible_env, list(fleet['hosts'].values()),
                     {'gitlab_runner_audit_fail': True, 'gitlab_runner_audit_expiry_days': 7})
    # Without an API token: the files alone, no request, and the failure names what was found.
    assert proc.returncode != 0
    assert '1 shared system_id(s)' in proc.stdout
    assert '1 token(s) expiring within 7' in proc.stdout
    assert '0 runner(s) on GitLab no host declares' in proc.stdout
    assert gitlab.requests(mark) == []

    clean = [fleet['hosts']['busy']]
    proc = run_audit(tmp_path, ansible_env, clean, {
        'gitlab_runner_url': gitlab.url, 'gitlab_runner_api_token': fleet['admin'], 'gitlab_runner_allow_http': True,
        'gitlab_runner_audit_fail': True})
    assert proc.returncode == 0, proc.stdout[-3000:]
