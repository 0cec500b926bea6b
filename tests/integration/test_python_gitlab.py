# Copyright (c) dood.gitlab_runner contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""A standard GitLab client, python-gitlab, drives the fake GitLab through the runner life cycle: the fake answers
what real clients send, in the shapes they parse (not only what this collection's own client sends)."""

from __future__ import annotations

import importlib
import sys
import warnings
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT / 'tools') not in sys.path:
    sys.path.insert(0, str(ROOT / 'tools'))

from fake_gitlab.harness import FakeGitLabProcess, new_pat  # noqa: E402  pylint: disable=wrong-import-position

# python-gitlab is a development pin (requirements/dev.txt): the checkout's .venv must have it. Other environments
# that run this directory (the version matrix: ansible-core and pytest only) skip this file.
if Path(sys.prefix).resolve() == (ROOT / '.venv').resolve():
    gitlab = importlib.import_module('gitlab')
else:
    gitlab = pytest.importorskip('gitlab', reason='python-gitlab is installed from requirements/dev.txt only')


@pytest.fixture(scope='module')
def fake():
    with FakeGitLabProcess() as server:
        yield server


@pytest.fixture()
def owner(fake):
    """A group Owner with the scopes the collection documents for its API token, and the group."""
    fake.reset()
    token = fake.new_user(username='ci-owner', scopes=('create_runner', 'manage_runner', 'read_api'))
    return token, fake.new_group(token, name='infra')


def client(fake, token):
    return gitlab.Gitlab(fake.url, private_token=token, retry_transient_errors=False)


def test_auth_and_version(fake, owner):
    token, _group = owner
    gl = client(fake, token)
    with warnings.catch_warnings():
        warnings.simplefilter('error')  # python-gitlab warns when the user's web_url is not under the URL it was given
        gl.auth()
    assert (gl.user.id, gl.user.username) == (fake.user_ids[token], 'ci-owner')
    version, revision = gl.version()
    assert (version, revision) == (fake.api('GET', '/version', token)[2]['version'], 'fake-gitlab')
    assert version != 'unknown'  # what python-gitlab reports when GET /version fails


def test_auth_fails_without_a_valid_token(fake, owner):
    token, _group = owner
    for bad in (new_pat(), fake.add_token(token, expired=True)):
        with pytest.raises(gitlab.exceptions.GitlabAuthenticationError) as err:
            client(fake, bad).auth()
        assert err.value.response_code == 401
    with pytest.raises(gitlab.exceptions.GitlabAuthenticationError):
        gitlab.Gitlab(fake.url).auth()
    assert gitlab.Gitlab(fake.url).version() == ('unknown', 'unknown')  # 401 without a token


def test_runner_life_cycle(fake, owner):
    """Create (user runners), list (every page), get, update, verify, delete; each step checked in the fake's state."""
    token, group = owner
    gl = client(fake, token)
    gl.auth()
    created = [gl.user.runners.create({'runner_type': 'group_type', 'group_id': group, 'description': 'build-%d' % i,
                                       'tag_list': ['docker', 'linux'], 'run_untagged': False, 'maximum_timeout': 3600})
               for i in range(3)]
    for runner in created:
        assert runner.token.startswith('glrt-') and runner.token_expires_at is None
        state = fake.runner_by_id(runner.id)
        assert (state['runner_type'], state['group_id'], state['creator_id']) == ('group_type', group, gl.user.id)
        assert state['tag_list'] == ['docker', 'linux'] and state['run_untagged'] is False

    listed = gl.runners.list(per_page=2, get_all=True)  # two pages: python-gitlab follows the Link header
    assert sorted(r.id for r in listed) == sorted(r.id for r in created)
    assert fake.count_requests('GET', r'^/api/v4/runners$') == 2
    assert {r.description for r in listed} == {'build-0', 'build-1', 'build-2'}

    first = created[0]
    runner = gl.runners.get(first.id)
    assert (runner.description, runner.tag_list, runner.maximum_timeout, runner.status) == (
        'build-0', ['docker', 'linux'], 3600, 'never_contacted')
    runner.description = 'build-0-renamed'
    runner.tag_list = ['docker']
    runner.paused = True
    runner.save()
    state = fake.runner_by_id(first.id)
    assert (state['description'], state['tag_list'], state['paused']) == ('build-0-renamed', ['docker'], True)
    assert gl.runners.get(first.id).description == 'build-0-renamed'

    gl.runners.verify(first.token)  # raises on anything but success
    state = fake.runner_by_id(first.id)
    assert state['status'] == 'online' and [m['system_id'] for m in state['managers']] == ['<legacy>']
    with pytest.raises(gitlab.exceptions.GitlabVerifyError) as err:
        gl.runners.verify('glrt-' + new_pat()[6:])
    assert err.value.response_code == 403

    gl.runners.delete(first.id)
    assert fake.runner_by_id(first.id) is None
    with pytest.raises(gitlab.exceptions.GitlabGetError) as err:
        gl.runners.get(first.id)
    assert err.value.response_code == 404
    with pytest.raises(gitlab.exceptions.GitlabVerifyError):
        gl.runners.verify(first.token)  # a deleted runner's token is dead
    runner = gl.runners.get(created[1].id)
    runner.delete()
    assert sorted(r['id'] for r in fake.runners()) == [created[2].id]

    # every request carried the owner's token, never a token in clear in the log
    calls = [e for e in fake.requests() if e['path'] != '/api/v4/runners/verify']
    assert {e['credential']['kind'] for e in calls} == {'private_token'}
    assert all(token not in repr(e) and first.token not in repr(e) for e in fake.requests())


def test_scope_errors_reach_the_client(fake, owner):
    token, group = owner
    read_only = fake.add_token(token, scopes=('read_api',))
    gl = client(fake, read_only)
    gl.auth()
    with pytest.raises(gitlab.exceptions.GitlabCreateError) as err:
        gl.user.runners.create({'runner_type': 'group_type', 'group_id': group})
    assert err.value.response_code == 403 and 'insufficient_scope' in str(err.value.error_message)
    gl = client(fake, token)
    gl.auth()
    with pytest.raises(gitlab.exceptions.GitlabCreateError) as err:
        gl.user.runners.create({'runner_type': 'group_type', 'group_id': group + 1000})
    assert (err.value.response_code, err.value.error_message) == (400, '400 Bad request - Missing/invalid group')
