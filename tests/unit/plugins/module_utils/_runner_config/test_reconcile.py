# Copyright (c) dood.gitlab_runner contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The per-runner state machine, with the GitLab client replaced at its one seam by an in-memory GitLab."""

from __future__ import annotations

import errno
import json
import secrets

import pytest

from ansible_collections.dood.gitlab_runner.plugins.module_utils import config_toml
from ansible_collections.dood.gitlab_runner.plugins.module_utils.gitlab_api import GitLabError
from ansible_collections.dood.gitlab_runner.plugins.module_utils._runner_config import model, options, reconcile
from ansible_collections.dood.gitlab_runner.plugins.module_utils._runner_config.store import LocalStore


class MemoryGitLab:
    """The GitLabClient methods the reconciler calls, over a dict of runners; every call is recorded."""

    def __init__(self):
        self.runners = {}
        self.calls = []
        self.next_id = 1

    def _new(self, settings):
        runner_id = self.next_id
        self.next_id += 1
        token = 'glrt-' + secrets.token_urlsafe(20)
        self.runners[runner_id] = dict(settings, id=runner_id, token=token, status='never_contacted')
        return {'id': runner_id, 'token': token, 'token_expires_at': None}

    def create_user_runner(self, api_token, settings):
        self.calls.append('POST /user/runners')
        return self._new(settings)

    def get_runner(self, api_token, runner_id):
        self.calls.append('GET /runners/{0}'.format(runner_id))
        runner = self.runners.get(runner_id)
        return None if runner is None else dict((k, v) for k, v in runner.items() if k != 'token')

    def update_runner(self, api_token, runner_id, changes):
        self.calls.append('PUT /runners/{0}'.format(runner_id))
        self.runners[runner_id].update(changes)

    def verify(self, token, system_id=None):
        self.calls.append('POST /runners/verify')
        for runner in self.runners.values():
            if runner['token'] == token:
                return {'id': runner['id'], 'token_expires_at': None}
        return None

    def delete_runner(self, api_token, runner_id):
        self.calls.append('DELETE /runners/{0}'.format(runner_id))
        self.runners.pop(runner_id, None)

    def delete_by_token(self, token):
        self.calls.append('DELETE /runners')
        for runner_id, runner in list(self.runners.items()):
            if runner['token'] == token:
                del self.runners[runner_id]

    def reset_token_by_id(self, api_token, runner_id):
        self.calls.append('POST /runners/{0}/reset_authentication_token'.format(runner_id))
        self.runners[runner_id]['token'] = 'glrt-' + secrets.token_urlsafe(20)
        return {'token': self.runners[runner_id]['token'], 'token_expires_at': None}


class Ctx:
    def __init__(self, check_mode=False):
        self.check_mode = check_mode
        self.secrets = set()
        self.warnings = []
        self.tmpdir = None

    def secret(self, value):
        if value:
            self.secrets.add(value)
        return value

    def warn(self, msg):
        self.warnings.append(msg)

    def deprecate(self, msg, version):
        self.warnings.append(msg)


def params_for(*runners, **top):
    params = dict((o.name, o.default) for o in options.OPTIONS)
    params.update({'api_url': 'https://gitlab.example.com', 'api_token': 'glpat-' + secrets.token_urlsafe(10)})
    params.update(top)
    params['runners'] = []
    for runner in runners:
        full = dict((o.name, o.default) for o in options.RUNNER_OPTIONS)
        full.update(runner)
        params['runners'].append(full)
    return params


def converge(tmp_path, gitlab, params, check_mode=False, store_class=LocalStore):
    directory = tmp_path / 'conf'
    directory.mkdir(mode=0o700, exist_ok=True)
    ctx = Ctx(check_mode)
    store = store_class(str(directory / 'config.toml'), check_mode, ctx.secret)
    runners = model.Validator(params, ctx.secret, lambda name, **where: None).runners()
    raw, existing, _changed = store.open()
    rec = reconcile.Reconciler(ctx, params, runners, store)
    rec.tokens.client = lambda runner: gitlab
    desired = rec.run(raw, existing)
    return rec, desired, store


PROJECT_RUNNER = {'name': 'build', 'runner_type': 'project_type', 'project_id': 4, 'tag_list': ['dood'], 'paused': False}


def test_ladder_creates_once_then_reads_once_per_run(tmp_path):
    gitlab = MemoryGitLab()
    params = params_for(PROJECT_RUNNER)
    rec, _desired, store = converge(tmp_path, gitlab, params, check_mode=True)
    assert rec.changed and rec.results[0]['action'] == 'created' and gitlab.calls == []
    rec, _desired, store = converge(tmp_path, gitlab, params)
    assert rec.results[0]['action'] == 'created' and gitlab.calls == ['POST /user/runners']
    assert dict((k, v) for k, v in store.record('build').items() if k != 'applied') == {'id': 1, 'created': True}
    written = config_toml.parse(open(store.path, 'rb').read())
    assert written['runners'][0]['token'] == gitlab.runners[1]['token']
    gitlab.calls = []
    rec, _desired, _store = converge(tmp_path, gitlab, params)
    assert not rec.changed and rec.results[0]['action'] == 'unchanged' and gitlab.calls == ['GET /runners/1']


def test_drift_is_repaired_and_check_mode_only_predicts_it(tmp_path):
    gitlab = MemoryGitLab()
    params = params_for(PROJECT_RUNNER)
    converge(tmp_path, gitlab, params)
    gitlab.runners[1]['paused'] = True
    gitlab.calls = []
    rec, _d, _s = converge(tmp_path, gitlab, params, check_mode=True)
    assert rec.results[0]['action'] == 'updated' and 'PUT /runners/1' not in gitlab.calls
    rec, _d, _s = converge(tmp_path, gitlab, params)
    assert rec.results[0]['action'] == 'updated' and gitlab.runners[1]['paused'] is False


def test_runner_deleted_in_gitlab_is_recreated(tmp_path):
    gitlab = MemoryGitLab()
    params = params_for(PROJECT_RUNNER)
    converge(tmp_path, gitlab, params)
    del gitlab.runners[1]
    rec, _d, store = converge(tmp_path, gitlab, params)
    assert rec.results[0] == {'name': 'build', 'id': 2, 'action': 'recreated', 'config': 'updated', 'token_expires_at': None}
    assert store.record('build')['id'] == 2


def test_fixed_token_runner_deleted_in_gitlab_fails_with_the_fix(tmp_path):
    gitlab = MemoryGitLab()
    token = gitlab._new({'description': 'ui'})['token']
    params = params_for({'name': 'ui', 'token': token})
    rec, _d, _s = converge(tmp_path, gitlab, params)
    assert (rec.results[0]['action'], rec.results[0]['config']) == ('verified', 'added'), 'a given token creates nothing'
    gitlab.runners.clear()
    with pytest.raises(reconcile.RunFailed, match="Runner 'ui' \\(id 1\\) cannot work: it no longer exists in GitLab"):
        converge(tmp_path, gitlab, params)


def test_absent_runner_is_deleted_and_its_entry_dropped(tmp_path):
    gitlab = MemoryGitLab()
    converge(tmp_path, gitlab, params_for(PROJECT_RUNNER))
    rec, desired, store = converge(tmp_path, gitlab, params_for(dict(PROJECT_RUNNER, state='absent')))
    assert rec.results[0]['action'] == 'removed' and rec.results[0]['config'] == 'removed' and gitlab.runners == {}
    assert 'runners' not in desired and store.record('build') == {}
    rec, desired, store = converge(tmp_path, gitlab, params_for(dict(PROJECT_RUNNER, state='absent')))
    assert rec.results == [{'name': 'build', 'id': 0, 'action': 'unchanged', 'config': 'unchanged', 'token_expires_at': None}]
    assert not rec.changed


def test_gitlab_errors_become_one_sentence_with_the_fix(tmp_path):
    gitlab = MemoryGitLab()

    def refuse(api_token, settings):
        raise GitLabError('POST', '/user/runners', 403, '403 Forbidden - Insufficient permissions')

    gitlab.create_user_runner = refuse
    with pytest.raises(reconcile.RunFailed) as failure:
        converge(tmp_path, gitlab, params_for(PROJECT_RUNNER))
    assert failure.value.msg == (
        "Could not create runner 'build': GitLab answered 403 (403 Forbidden - Insufficient permissions) for POST "
        "/api/v4/user/runners. The token lacks a scope or role: creating needs create_runner, reading/updating/deleting "
        "needs manage_runner (or api), and the owner role of the group or project. config.toml was left unchanged.")


class CountingStore(LocalStore):
    """A LocalStore that counts its writes (each one a host call when the GitLab side runs on the controller) and can
    fail the one numbered ``fail_at``."""

    fail_at = None

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.puts = []

    def _put(self, config, state, backup, final=False):
        self.puts.append((config is not None, final))
        if len(self.puts) == self.fail_at:
            raise OSError(errno.EROFS, 'Read-only file system')
        super()._put(config, state, backup, final)


def three_runners():
    return params_for(*[dict(PROJECT_RUNNER, name=name) for name in ('a', 'b', 'c')])


def on_disk(store):
    with open(store.files.state_path) as handle:
        journal = json.load(handle)
    with open(store.path, 'rb') as handle:
        config = config_toml.parse(handle.read())
    return journal, config


def test_creations_with_an_api_token_are_journaled_ahead_in_one_write_and_their_tokens_in_another(tmp_path):
    gitlab = MemoryGitLab()
    create = gitlab.create_user_runner
    seen = []

    def create_checked(api_token, settings):
        with open(str(tmp_path / 'conf' / '.dood_gitlab_runner.json')) as handle:
            seen.append(sorted(json.load(handle)['pending']))
        return create(api_token, settings)

    gitlab.create_user_runner = create_checked
    rec, _desired, store = converge(tmp_path, gitlab, three_runners(), store_class=CountingStore)
    assert [r['action'] for r in rec.results] == ['created'] * 3
    assert seen == [['a', 'b', 'c']] * 3, 'every pending record is on disk before the first request'
    assert store.puts == [(False, False), (True, True)], 'one journal write ahead, then the final write'
    journal, config = on_disk(store)
    assert 'pending' not in journal
    assert [e['token'] for e in config['runners']] == [gitlab.runners[i]['token'] for i in (1, 2, 3)]


def test_a_refused_creation_keeps_the_runners_made_before_it_and_drops_the_unsent_records(tmp_path):
    gitlab = MemoryGitLab()
    create = gitlab.create_user_runner

    def refuse_b(api_token, settings):
        if settings['description'] == 'b':
            raise GitLabError('POST', '/user/runners', 403, '403 Forbidden - Insufficient permissions')
        return create(api_token, settings)

    gitlab.create_user_runner = refuse_b
    with pytest.raises(reconcile.RunFailed) as failure:
        converge(tmp_path, gitlab, three_runners(), store_class=CountingStore)
    assert failure.value.msg.startswith("Could not create runner 'b': GitLab answered 403")
    assert failure.value.msg.endswith('config.toml keeps what this run did before the failure; the next run continues '
                                      'from there.')
    journal, config = on_disk(LocalStore(str(tmp_path / 'conf' / 'config.toml')))
    assert 'pending' not in journal, 'b was refused for sure and c was never sent'
    assert [(e['name'], e['token']) for e in config['runners']] == [('a', gitlab.runners[1]['token'])]
    gitlab.create_user_runner = create
    gitlab.calls = []
    rec, _desired, _store = converge(tmp_path, gitlab, three_runners())
    assert [r['action'] for r in rec.results] == ['unchanged', 'created', 'created']
    assert gitlab.calls.count('POST /user/runners') == 2 and len(gitlab.runners) == 3


def test_a_final_write_that_fails_deletes_every_runner_it_would_have_kept(tmp_path):
    gitlab = MemoryGitLab()
    CountingStore.fail_at = 2
    try:
        with pytest.raises(reconcile.RunFailed) as failure:
            converge(tmp_path, gitlab, three_runners(), store_class=CountingStore)
    finally:
        CountingStore.fail_at = None
    assert failure.value.msg.startswith("Runners 'a', 'b', 'c': the module could not write ")
    assert 'after GitLab created them (ids 1, 2, 3), so it deleted them again' in failure.value.msg
    assert gitlab.runners == {} and gitlab.calls.count('DELETE /runners') == 3


def test_doing_names_the_call():
    assert reconcile.doing(GitLabError('GET', '/runners/3')) == 'read'
    assert reconcile.doing(GitLabError('POST', '/runners/3/reset_authentication_token')) == 'renew the token of'
    assert reconcile.doing(GitLabError('DELETE', '/runners/managers')) == 'remove this host from'
