# Copyright (c) dood.gitlab_runner contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Fault matrix: every API call runner_config makes, under every way GitLab (or the way to it) can fail.

Each case: prepare GitLab and the host so that the next run makes the call, break that call, run, then judge:
the run fails with a message naming the runner, the endpoint, the status and what to do; config.toml is
byte-for-byte as before; idempotent calls were sent retries+1 times and creations were never sent again after
GitLab may have acted; no token shows. Then heal, run: it converges and GitLab holds exactly the declared runners;
run again: nothing changes.

The module runs over TLS with a private CA through a TCP relay (TcpGate) that can refuse connections or hand a
connection to an impostor whose certificate does not verify; HTTP-level faults come from the fake GitLab.
The matrix runs the module directly (Ansible's module protocol, no ansible-playbook) to stay fast.
"""

from __future__ import annotations

import hashlib
import re
import time

import pytest

from conftest import FakeGitLabProcess, Host, TcpGate

TIMEOUT = 2          # the module's timeout option in this file (not less: a loaded machine must not time out early)
DELAY = 3            # a "slow response" fault: longer than TIMEOUT
RETRIES = 1

KINDS = ('500', '502', '503', '429', 'timeout', 'refused', 'reset', 'tls', 'non_json')

# What the message must say for each fault: (the status or failure, what to do).
EXPECT = {
    '500': ('GitLab answered 500', 'check its health'),
    '502': ('GitLab answered 502', 'check its health'),
    '503': ('GitLab answered 503', 'check its health'),
    '429': ('GitLab answered 429', 'retry after 1 seconds'),
    'timeout': ('no answer within the timeout of {0}s'.format(TIMEOUT), 'raise timeout'),
    'refused': ('connection refused', 'check that GitLab runs'),
    'reset': ('connection dropped', 'The connection broke'),
    'tls': ('TLS certificate could not be verified', 'ca_path or ca_content'),
    'non_json': ('not JSON', 'points at GitLab itself'),
}


def sha(token):
    return hashlib.sha256(token.encode()).hexdigest()


class Ctx:
    """One case: the fake GitLab, the relay, the host, and the objects a scenario made."""

    def __init__(self, env, gitlab, gate, host):
        self.env = env
        self.gitlab = gitlab
        self.gate = gate
        self.host = host
        self.admin = gitlab.new_user(admin=True)
        self.group = gitlab.new_group(self.admin)
        self.project = gitlab.new_project(self.admin, group_id=self.group)
        self.base = {'api_url': 'https://localhost:{0}'.format(gate.port), 'ca_content': env['tls']['ca_pem'],
                     'timeout': TIMEOUT, 'retries': RETRIES, 'retry_delay': 0.2}
        self.secrets = [self.admin]
        self.runner_id = None

    def params(self, **top):
        return dict(self.base, **top)

    def run(self, params, **kwargs):
        result = self.host.module(params, **kwargs)
        return result

    def created(self, api_token=True):
        return self.params(api_token=self.admin, runners=[{
            'name': 'r1', 'runner_type': 'project_type', 'project_id': self.project, 'tag_list': ['dood'],
            'run_untagged': False}]) if api_token else None

    def ui_runner(self):
        status, _h, data = self.gitlab.api('POST', '/user/runners', token=self.admin,
                                           body={'runner_type': 'project_type', 'project_id': self.project, 'run_untagged': True})
        assert status == 201, data
        self.secrets.append(data['token'])
        self.runner_id = data['id']
        return data['token']

    def setup_run(self, params):
        result = self.run(params)
        assert not result.failed, result.msg
        return result


def check_one_runner(ctx, description='r1'):
    """GitLab holds exactly the declared runner and config.toml holds its live token."""
    runners = ctx.gitlab.runners()
    assert len(runners) == 1, runners
    [runner] = runners
    assert runner['description'] == description
    [entry] = ctx.host.config()['runners']
    assert entry['id'] == runner['id']
    assert sha(entry['token']) == runner['token_sha256']
    if ctx.runner_id is not None:
        assert runner['id'] == ctx.runner_id, 'the known runner must be kept, not replaced'


def check_no_runner(ctx):
    assert ctx.gitlab.runners() == []
    assert ctx.host.config().get('runners', []) == []


# -- scenarios: each prepares the state in which the next run makes the call under test ------------------------

def prep_create(ctx):
    return ctx.created()


def prep_register(ctx):
    reg = ctx.gitlab.registration_token('project', ctx.project)
    ctx.secrets.append(reg)
    return ctx.params(api_token=ctx.admin, runners=[{'name': 'r1', 'registration_token': reg, 'run_untagged': True}])


def prep_verify(ctx):
    token = ctx.ui_runner()
    return ctx.params(runners=[{'name': 'r1', 'token': token}])


def check_verify(ctx):
    [runner] = ctx.gitlab.runners()
    assert runner['id'] == ctx.runner_id
    system_id = (ctx.host.dir / '.runner_system_id').read_text()
    assert [m['system_id'] for m in runner['managers']] == [system_id]
    [entry] = ctx.host.config()['runners']
    assert entry['id'] == ctx.runner_id and sha(entry['token']) == runner['token_sha256']


def prep_get(ctx):
    params = ctx.created()
    ctx.setup_run(params)
    ctx.runner_id = ctx.host.config()['runners'][0]['id']
    return params


def prep_put(ctx):
    params = prep_get(ctx)
    status, _h, _b = ctx.gitlab.api('PUT', '/runners/{0}'.format(ctx.runner_id), token=ctx.admin, body={'tag_list': ['other']})
    assert status == 200
    return params


def check_put(ctx):
    check_one_runner(ctx)
    assert ctx.gitlab.runner_by_id(ctx.runner_id)['tag_list'] == ['dood']


def prep_delete_by_id(ctx):
    params = prep_get(ctx)
    params['runners'][0]['state'] = 'absent'
    return params


def prep_delete_by_token(ctx):
    reg = ctx.gitlab.registration_token('project', ctx.project)
    ctx.secrets.append(reg)
    ctx.setup_run(ctx.params(runners=[{'name': 'r1', 'registration_token': reg, 'run_untagged': True}]))
    return ctx.params(runners=[{'name': 'r1', 'state': 'absent'}])


def prep_delete_manager(ctx):
    token = ctx.ui_runner()
    ctx.setup_run(ctx.params(runners=[{'name': 'r1', 'token': token}]))
    assert len(ctx.gitlab.runner_by_id(ctx.runner_id)['managers']) == 1
    return ctx.params(runners=[{'name': 'r1', 'state': 'absent'}])


def check_delete_manager(ctx):
    runner = ctx.gitlab.runner_by_id(ctx.runner_id)
    assert runner is not None and runner['managers'] == [], 'only this host leaves a runner whose token came from outside'
    assert len(ctx.gitlab.runners()) == 1
    assert ctx.host.config().get('runners', []) == []


def prep_reset_by_id(ctx):
    params = prep_get(ctx)
    ctx.host.path.unlink()       # config.toml lost; the state file beside it still knows the runner's id
    return params


def prep_list(ctx):
    """A creation whose answer was lost: the runner exists in GitLab, config.toml does not know it."""
    params = ctx.created()
    for _attempt in range(3):
        mark = last_seq(ctx.gitlab)
        ctx.gitlab.add_fault(r'^/api/v4/user/runners$', method='POST', kind='delay', delay=DELAY, times=1)
        result = ctx.run(params)
        assert result.failed and 'GitLab may have created the runner anyway' in result.msg, result.msg
        wait_for_delayed(ctx.gitlab, mark)
        reached = sum(f['hits'] for f in ctx.gitlab.faults())
        ctx.gitlab.clear_faults()
        if reached:
            break
        # The machine was so busy that the request timed out before it reached GitLab: nothing to adopt, try again.
    [runner] = ctx.gitlab.runners()
    ctx.runner_id = runner['id']
    assert ctx.host.raw() is None
    return params


# name: (prepare, method, path regex, connection number of the call in the run, endpoint regex for the message,
#        check after convergence, whether the call creates a runner)
SCENARIOS = {
    'create': (prep_create, 'POST', r'^/api/v4/user/runners$', 1, 'POST /api/v4/user/runners', check_one_runner, True),
    'register': (prep_register, 'POST', r'^/api/v4/runners$', 1, 'POST /api/v4/runners', check_one_runner, True),
    'verify': (prep_verify, 'POST', r'^/api/v4/runners/verify$', 1, 'POST /api/v4/runners/verify', check_verify, False),
    'get': (prep_get, 'GET', r'^/api/v4/runners/\d+$', 1, 'GET /api/v4/runners/', check_one_runner, False),
    'put': (prep_put, 'PUT', r'^/api/v4/runners/\d+$', 2, 'PUT /api/v4/runners/', check_put, False),
    'delete_by_id': (prep_delete_by_id, 'DELETE', r'^/api/v4/runners/\d+$', 1, 'DELETE /api/v4/runners/', check_no_runner, False),
    'delete_by_token': (prep_delete_by_token, 'DELETE', r'^/api/v4/runners$', 1, 'DELETE /api/v4/runners[. ]', check_no_runner, False),
    'delete_manager': (prep_delete_manager, 'DELETE', r'^/api/v4/runners/managers$', 1, 'DELETE /api/v4/runners/managers',
                       check_delete_manager, False),
    'reset_by_id': (prep_reset_by_id, 'POST', r'^/api/v4/runners/\d+/reset_authentication_token$', 2,
                    'POST /api/v4/runners/', check_one_runner, False),
    'list': (prep_list, 'GET', r'^/api/v4/projects/\d+/runners$', 1, 'GET /api/v4/projects/', check_one_runner, False),
}


def last_seq(gitlab):
    log = gitlab.requests()
    return log[-1]['seq'] if log else 0


def wait_for_delayed(gitlab, since, deadline=20.0):
    """Wait until every request the current delay faults held since ``since`` has been handled (GitLab acts after
    the delay), so that no held request lands in a later phase or case."""
    end = time.time() + deadline
    while time.time() < end:
        held = sum(f['hits'] for f in gitlab.faults() if f['kind'] == 'delay')
        done = sum(1 for r in gitlab.requests(since) if r.get('fault') == 'delay')
        if done >= held:
            return
        time.sleep(0.1)
    raise AssertionError('delayed requests did not finish')


@pytest.fixture(scope='module')
def env(tls_material):
    with FakeGitLabProcess(tls_cert=tls_material['cert'], tls_key=tls_material['key'], tls_ca=tls_material['ca']) as gitlab, \
            FakeGitLabProcess(tls_cert=tls_material['impostor_cert'], tls_key=tls_material['impostor_key']) as impostor:
        gate = TcpGate(gitlab.port)
        try:
            yield {'gitlab': gitlab, 'impostor': impostor, 'gate': gate, 'tls': tls_material}
        finally:
            gate.close()


def inject(ctx, kind, method, path, conn):
    gitlab, gate = ctx.gitlab, ctx.gate
    if kind in ('500', '502', '503'):
        gitlab.add_fault(path, method=method, kind='status', status=int(kind))
    elif kind == '429':
        gitlab.add_fault(path, method=method, kind='backoff', retry_after=1)
    elif kind == 'timeout':
        gitlab.add_fault(path, method=method, kind='delay', delay=DELAY)
    elif kind == 'reset':
        gitlab.add_fault(path, method=method, kind='reset')
    elif kind == 'non_json':
        gitlab.add_fault(path, method=method, kind='non_json')
    elif kind == 'refused':
        gate.refuse_from(conn)
    elif kind == 'tls':
        gate.impostor_from(conn, ctx.env['impostor'].port)


def expected_attempts(kind, creates):
    """How often the call must reach GitLab: idempotent calls are retried, creations only after a 429."""
    if kind == 'non_json':
        return 1
    if creates:
        return RETRIES + 1 if kind == '429' else 1
    return RETRIES + 1


@pytest.mark.parametrize('kind', KINDS)
@pytest.mark.parametrize('scenario', list(SCENARIOS))
def test_fault(env, tmp_path, ansible_env, scenario, kind):
    prepare, method, path, conn, endpoint, check, creates = SCENARIOS[scenario]
    gitlab, gate = env['gitlab'], env['gate']
    gitlab.reset()
    gate.normal()
    ctx = Ctx(env, gitlab, gate, Host(tmp_path, ansible_env, 'h'))
    params = prepare(ctx)
    before = ctx.host.raw()
    state_before = gitlab.runners()

    mark = last_seq(gitlab)
    inject(ctx, kind, method, path, conn)
    started = time.time()
    try:
        result = ctx.run(params)
    finally:
        gate.normal()
    elapsed = time.time() - started
    assert result.failed, 'the run must fail under {0}: {1!r}'.format(kind, result.task)
    msg = result.msg
    status_text, advice = EXPECT[kind]
    assert "runner 'r1'" in msg, msg
    assert re.search(endpoint, msg), msg
    assert status_text in msg, msg
    assert advice in msg, msg
    assert ctx.host.raw() == before, 'config.toml must be byte-for-byte as before the failed run'
    if kind not in ('refused', 'tls'):
        hits = sum(f['hits'] for f in gitlab.faults())
        assert hits == expected_attempts(kind, creates), (kind, hits)
    if kind == '429':
        assert elapsed >= 1.0, 'Retry-After: 1 must be honoured before the retry'
    if kind == 'timeout':
        wait_for_delayed(gitlab, mark)
    if creates and kind != 'timeout':
        assert gitlab.runners() == state_before == [], 'no runner may appear from a refused creation'
    gitlab.clear_faults()

    healed = ctx.run(params)
    assert not healed.failed, healed.msg
    again = ctx.run(params)
    assert not again.failed, again.msg
    assert not again.changed, 'the run after the converging one must change nothing: {0!r}'.format(again.task)
    check(ctx)
    known = ctx.secrets + [e['token'] for e in (ctx.host.config().get('runners') or [])]
    for output in (result.output, healed.output, again.output):
        assert not [t for t in known if t in output], 'a token leaked into the output'
