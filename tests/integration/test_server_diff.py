# Copyright (c) dood.gitlab_runner contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""--diff shows what changes in GitLab beside the config.toml diff: a drift repair and a re-creation."""

from __future__ import annotations

from test_runner_config import project_setup


def server_part(result):
    diff = result.task.get('diff')
    assert isinstance(diff, list) and len(diff) == 2, diff
    assert diff[0]['before_header'].endswith('config.toml')
    return diff[1]


def test_diff_shows_drift_repair_and_recreation(gitlab, host):
    admin, _group, project = project_setup(gitlab)
    params = {'api_url': gitlab.url, 'api_token': admin, 'runners': [{
        'name': 'build', 'runner_type': 'project_type', 'project_id': project, 'tag_list': ['dood'],
        'run_untagged': False, 'paused': False}]}
    created = host.run(params, diff=True)
    assert not created.failed, created.msg
    server = server_part(created)
    assert "runner 'build'" in server['after'] and '"project_type"' in server['after'] and 'status: "created"' in server['after']
    assert server['before'].strip().endswith('(none)')
    [remote] = gitlab.runners()

    # Someone pauses the runner and changes its tags in GitLab's UI.
    status, _h, _b = gitlab.api('PUT', '/runners/{0}'.format(remote['id']), token=admin, body={'paused': True, 'tag_list': ['other']})
    assert status == 200
    for check in (True, False):
        repaired = host.run(params, check=check, diff=True)
        assert not repaired.failed and repaired.changed, repaired.msg
        server = server_part(repaired)
        assert 'paused: true' in server['before'] and 'paused: false' in server['after'], server
        assert '"other"' in server['before'] and '"dood"' in server['after']
        diff_file = repaired.task['diff'][0]
        assert diff_file['before'] == diff_file['after'], 'the file does not change for a drift repair'
    assert gitlab.runner_by_id(remote['id'])['paused'] is False

    # The runner is deleted in GitLab: the next run creates it again and shows both ids.
    status, _h, _b = gitlab.api('DELETE', '/runners/{0}'.format(remote['id']), token=admin)
    assert status == 204
    recreated = host.run(params, diff=True)
    assert not recreated.failed, recreated.msg
    assert recreated.actions() == {'build': 'recreated'}
    server = server_part(recreated)
    [again] = gitlab.runners()
    assert 'id: {0}'.format(remote['id']) in server['before'] and 'gone or rejected' in server['before']
    assert "(id {0})".format(again['id']) in server['after'] and 'status: "recreated"' in server['after']
    output = recreated.output + repaired.output + created.output
    tokens = [admin] + [e['token'] for e in host.config()['runners']]
    assert [t[:6] for t in tokens if t in output] == []
    quiet = host.run(params, diff=True)
    assert not quiet.changed and not isinstance(quiet.task.get('diff'), list)
