# Copyright (c) dood.gitlab_runner contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Crashes, races, a lost config.toml, expiring tokens, and a write that fails after GitLab created a runner.

Kills are real SIGKILLs: either from outside while the fake GitLab holds a request (delay fault), or from an audit
hook (PEP 578) installed by a sitecustomize file outside the collection, at an exact system call of the module
(the open of the temporary file, the rename onto config.toml or onto the state file). The module holds no test switch.
"""

from __future__ import annotations

import copy
import hashlib
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from conftest import kill_env

CONFIG_TEMP = r'/\.config\.toml\.[a-z0-9_]{8}$'
STATE_FILE = r'/\.dood_gitlab_runner\.json$'


def sha(token):
    return hashlib.sha256(token.encode()).hexdigest()


def setup_project(gitlab):
    admin = gitlab.new_user(admin=True)
    group = gitlab.new_group(admin)
    return admin, gitlab.new_project(admin, group_id=group)


def two_runners(gitlab, admin, project, **top):
    return dict({'api_url': gitlab.url, 'api_token': admin, 'runners': [
        {'name': n, 'runner_type': 'project_type', 'project_id': project, 'run_untagged': True} for n in ('r1', 'r2')]}, **top)


def assert_exactly_declared(gitlab, host, names=('r1', 'r2')):
    """GitLab holds exactly the declared runners, config.toml holds each one's live token, no temporary file is left."""
    runners = gitlab.runners()
    assert sorted(r['description'] for r in runners) == sorted(names), runners
    by_id = dict((r['id'], r) for r in runners)
    entries = host.config()['runners']
    assert sorted(e['name'] for e in entries) == sorted(names)
    for entry in entries:
        remote = by_id[entry['id']]
        assert remote['description'] == entry['name']
        assert sha(entry['token']) == remote['token_sha256']
    leftovers = [p.name for p in host.dir.iterdir() if re.match(r'^\.\.?[a-z_.]+\.[a-z0-9_]{8}$', p.name)]
    assert leftovers == [], leftovers


def kill_tree(pid):
    """SIGKILL a process and all its descendants (Ansible runs the module in a session of its own)."""
    children = {}
    for entry in os.listdir('/proc'):
        if entry.isdigit():
            try:
                with open('/proc/{0}/stat'.format(entry)) as handle:
                    fields = handle.read().rsplit(')', 1)[1].split()
                children.setdefault(int(fields[1]), []).append(int(entry))
            except (OSError, IndexError, ValueError):
                continue
    tree, todo = [], [pid]
    while todo:
        current = todo.pop()
        tree.append(current)
        todo.extend(children.get(current, []))
    for target in tree:
        try:
            os.kill(target, signal.SIGKILL)
        except ProcessLookupError:
            pass


def wait_fault_hit(gitlab, deadline=60.0):
    end = time.time() + deadline
    while time.time() < end:
        if any(f['hits'] for f in gitlab.faults()):
            return
        time.sleep(0.05)
    raise AssertionError('the request never reached the fake GitLab')


def wait_delayed_done(gitlab, deadline=30.0):
    """Wait until GitLab has handled every request a delay fault held (each test adds its delay faults once)."""
    end = time.time() + deadline
    while time.time() < end:
        held = sum(f['hits'] for f in gitlab.faults() if f['kind'] == 'delay')
        if sum(1 for r in gitlab.requests() if r.get('fault') == 'delay') >= held:
            return
        time.sleep(0.05)
    raise AssertionError('delayed requests did not finish')


def converge_after(gitlab, host, params):
    """The run after a crash converges (exactly the declared runners) and the one after it changes nothing."""
    result = host.run(params)
    assert not result.failed, result.msg
    assert_exactly_declared(gitlab, host)
    again = host.run(params)
    assert not again.failed and not again.changed, again.task
    assert gitlab.count_requests('POST', r'^/api/v4/user/runners$') >= 2
    return result


# (event, regex on the argument, argument index, occurrence, runners GitLab holds then): where the module is killed.
# Both runners are created with the API token, so both pending creations are journaled in one write before the first
# request and both tokens go into config.toml with the next write.
KILL_POINTS = {
    # Both creations are journaled as pending; the module dies before it sends either.
    'journaled_before_create': ('os.rename', STATE_FILE, 1, 1, 0),
    # r1 and r2 were created in GitLab; the module dies as it opens the temporary file for config.toml.
    'after_create_before_write': ('open', CONFIG_TEMP, 0, 1, 2),
    # The temporary file holds the new config.toml (and both tokens); the module dies before the rename.
    'during_write': ('os.rename', CONFIG_TEMP, 0, 1, 2),
    # config.toml holds both runners, the state file still records their creations as pending.
    'after_write_before_state': ('os.rename', STATE_FILE, 1, 2, 2),
}


@pytest.mark.parametrize('point', list(KILL_POINTS))
def test_killed_at_each_step_next_run_converges(gitlab, host, tmp_path, point):
    admin, project = setup_project(gitlab)
    params = two_runners(gitlab, admin, project)
    event, match, arg, nth, created = KILL_POINTS[point]
    killed = host.run(params, extra_env=kill_env(tmp_path, event, match, arg, nth))
    assert killed.failed, killed.task
    assert len(gitlab.runners()) == created, 'the kill must come at the step named'
    if host.path.exists():
        host.config()          # whatever was left is whole, parseable TOML
    converge_after(gitlab, host, params)
    assert gitlab.count_requests('POST', r'^/api/v4/user/runners$') == 2, 'adopted, not created again'


def test_killed_while_creation_request_in_flight(gitlab, host):
    """SIGKILL to the whole ansible-playbook process group while GitLab holds the creation request; GitLab then
    creates the runner anyway. The next run adopts it through the API instead of creating another."""
    admin, project = setup_project(gitlab)
    params = two_runners(gitlab, admin, project)
    gitlab.add_fault(r'^/api/v4/user/runners$', method='POST', kind='delay', delay=2, times=1)
    play = host.playbook(params)
    cmd = [str(Path(sys.executable).with_name('ansible-playbook')), '-i', 'localhost,', '-c', 'local', str(play)]
    proc = subprocess.Popen(cmd, env=host.env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # pylint: disable=consider-using-with
    try:
        wait_fault_hit(gitlab)
        kill_tree(proc.pid)
    finally:
        proc.wait(30)
    wait_delayed_done(gitlab)
    assert len(gitlab.runners()) == 1, 'GitLab created r1 after the module died'
    assert not host.path.exists(), 'the module died before it could write config.toml'
    result = converge_after(gitlab, host, params)
    assert result.actions() == {'r1': 'adopted', 'r2': 'created'}
    assert gitlab.count_requests('POST', r'^/api/v4/runners/\d+/reset_authentication_token$') == 1


def test_lost_creation_answer_with_duplicates_keeps_one(gitlab, host):
    """Two runners appeared for one lost answer (a proxy repeated the POST): one is adopted, the other deleted."""
    admin, project = setup_project(gitlab)
    params = two_runners(gitlab, admin, project, timeout=1, retries=0)
    gitlab.add_fault(r'^/api/v4/user/runners$', method='POST', kind='delay', delay=1.5, times=1)
    failed = host.run(params)
    assert failed.failed and 'GitLab may have created the runner anyway' in failed.msg, failed.msg
    assert "runner 'r1'" in failed.msg and 'POST /api/v4/user/runners' in failed.msg
    wait_delayed_done(gitlab)
    status, _h, _b = gitlab.api('POST', '/user/runners', token=admin, body={
        'runner_type': 'project_type', 'project_id': project, 'description': 'r1', 'run_untagged': True})
    assert status == 201
    assert len(gitlab.runners()) == 2
    converge_after(gitlab, host, params)


def test_write_failure_after_create_deletes_the_runner(gitlab, host):
    """The directory turns read-only while GitLab creates the runner: the module deletes the runner again."""
    admin, project = setup_project(gitlab)
    params = two_runners(gitlab, admin, project)
    params['runners'] = params['runners'][:1]
    host.run({'api_url': gitlab.url, 'runners': []})      # .runner_system_id and an empty config.toml exist
    before = host.raw()
    gitlab.add_fault(r'^/api/v4/user/runners$', method='POST', kind='delay', delay=2, times=1)
    outcome = {}
    worker = threading.Thread(target=lambda: outcome.setdefault('result', host.run(params)))
    worker.start()
    try:
        wait_fault_hit(gitlab)
        subprocess.run(['chattr', '+i', str(host.dir)], check=True)
        worker.join(120)
    finally:
        subprocess.run(['chattr', '-i', str(host.dir)], check=True)
    result = outcome['result']
    assert result.failed
    assert "Runner 'r1'" in result.msg and 'deleted that runner again' in result.msg, result.msg
    assert 'Operation not permitted' in result.msg and str(host.dir) in result.msg
    assert host.raw() == before
    assert gitlab.runners() == [], 'the runner whose token could not be kept must be gone'
    assert gitlab.count_requests('DELETE', r'^/api/v4/runners$') == 1
    result = host.run(params)
    assert not result.failed, result.msg
    assert_exactly_declared(gitlab, host, names=('r1',))


def test_lost_creation_answer_without_api_token_warns_with_fix(gitlab, host):
    reg = gitlab.registration_token('instance')
    params = {'api_url': gitlab.url, 'timeout': 1, 'retries': 0,
              'runners': [{'name': 'legacy', 'registration_token': reg, 'run_untagged': True}]}
    gitlab.add_fault(r'^/api/v4/runners$', method='POST', kind='delay', delay=1.5, times=1)
    failed = host.run(params)
    assert failed.failed
    assert "without api_token the next run cannot look for it, so check GitLab for a runner with description 'legacy'" in failed.msg
    wait_delayed_done(gitlab)
    result = host.run(params)
    assert not result.failed, result.msg
    warnings = ' '.join(result.task.get('warnings', []))
    assert "Runner 'legacy': a run at" in warnings and "description 'legacy'" in warnings and 'delete it' in warnings


def test_two_playbooks_race_on_one_host(gitlab, host):
    admin, project = setup_project(gitlab)
    params = two_runners(gitlab, admin, project)
    # Hold every creation a little so both runs are surely inside the module at the same time.
    gitlab.add_fault(r'^/api/v4/user/runners$', method='POST', kind='delay', delay=0.5)
    twin = copy.copy(host)
    twin.name = 'twin'
    results = {}
    threads = [threading.Thread(target=lambda h=h: results.setdefault(h.name, h.run(params))) for h in (host, twin)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(300)
    for name, result in results.items():
        assert not result.failed, (name, result.msg)
    assert gitlab.count_requests('POST', r'^/api/v4/user/runners$') == 2, 'the run that waited for the lock creates nothing'
    assert sorted(a for r in results.values() for a in r.actions().values()) == ['created', 'created', 'unchanged', 'unchanged']
    assert_exactly_declared(gitlab, host)


def test_same_host_twice_in_one_inventory(gitlab, host, ansible_env):
    admin, project = setup_project(gitlab)
    params = two_runners(gitlab, admin, project)
    gitlab.add_fault(r'^/api/v4/user/runners$', method='POST', kind='delay', delay=0.5)
    inventory = host.root / 'inventory.json'
    inventory.write_text(json.dumps({'all': {'hosts': {
        'alias-a': {'ansible_connection': 'local', 'ansible_python_interpreter': sys.executable},
        'alias-b': {'ansible_connection': 'local', 'ansible_python_interpreter': sys.executable}}}}))
    play = host.playbook(params)
    text = json.loads(play.read_text())
    text[0]['hosts'] = 'all'
    play.write_text(json.dumps(text))
    cmd = [str(Path(sys.executable).with_name('ansible-playbook')), '-i', str(inventory), '--forks', '2', str(play)]
    env = dict(ansible_env, ANSIBLE_STDOUT_CALLBACK='ansible.posix.json')
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300, check=False)
    data = json.loads(proc.stdout)
    hosts = data['plays'][0]['tasks'][0]['hosts']
    assert sorted(hosts) == ['alias-a', 'alias-b']
    assert not any(h.get('failed') for h in hosts.values()), hosts
    assert gitlab.count_requests('POST', r'^/api/v4/user/runners$') == 2
    assert_exactly_declared(gitlab, host)


def test_lost_config_toml_gets_token_by_id_without_duplicate(gitlab, host):
    admin, project = setup_project(gitlab)
    params = two_runners(gitlab, admin, project)
    assert not host.run(params).failed
    ids = dict((e['name'], e['id']) for e in host.config()['runners'])
    host.path.unlink()
    result = host.run(params)
    assert not result.failed, result.msg
    assert result.actions() == {'r1': 'updated', 'r2': 'updated'}
    assert dict((e['name'], e['id']) for e in host.config()['runners']) == ids
    assert gitlab.count_requests('POST', r'^/api/v4/user/runners$') == 2
    assert gitlab.count_requests('POST', r'^/api/v4/runners/\d+/reset_authentication_token$') == 2
    assert_exactly_declared(gitlab, host)
    assert not host.run(params).changed


def age_token(host, name, obtained_days_ago=None, expires_in=None):
    """Edit config.toml as time would: the token was obtained long ago, or expires at another time."""
    text = host.path.read_text()
    head, sep, rest = text.partition('name = "{0}"'.format(name))
    stamp = '%Y-%m-%dT%H:%M:%SZ'
    now = datetime.now(timezone.utc)
    if obtained_days_ago is not None:
        rest = re.sub(r'token_obtained_at = \S+', 'token_obtained_at = ' + (now - timedelta(days=obtained_days_ago)).strftime(stamp), rest, count=1)
    if expires_in is not None:
        rest = re.sub(r'token_expires_at = \S+', 'token_expires_at = ' + (now + expires_in).strftime(stamp), rest, count=1)
    host.path.write_text(head + sep + rest)


def test_soon_expiring_token_renewed_by_id(gitlab, host):
    admin, project = setup_project(gitlab)
    gitlab.settings(project_runner_token_expiration_interval=3 * 86400)
    params = two_runners(gitlab, admin, project, token_renewal_days=7)
    params['runners'] = params['runners'][:1]
    host.run(params)
    [entry] = host.config()['runners']
    assert entry['token_expires_at'] > datetime.now(timezone.utc) + timedelta(days=2)
    assert not host.run(params).changed, 'a fresh short-lived token is not renewed on every run'
    old_token = entry['token']
    age_token(host, 'r1', obtained_days_ago=40)
    result = host.run(params)
    assert not result.failed and result.actions() == {'r1': 'updated'}, result.task
    [renewed] = host.config()['runners']
    assert renewed['token'] != old_token and renewed['id'] == entry['id']
    assert sha(renewed['token']) == gitlab.runner_by_id(entry['id'])['token_sha256']
    assert gitlab.count_requests('POST', r'^/api/v4/runners/\d+/reset_authentication_token$') == 1
    assert not host.run(params).changed


def test_expired_token_renewed_with_api_token_and_fails_with_fix_without(gitlab, host, make_host):
    admin, project = setup_project(gitlab)
    params = two_runners(gitlab, admin, project)
    params['runners'] = params['runners'][:1]
    host.run(params)
    runner_id = host.config()['runners'][0]['id']
    gitlab.expire_runner_token(runner_id)
    age_token(host, 'r1', expires_in=timedelta(hours=-1))
    result = host.run(params)
    assert not result.failed and result.actions() == {'r1': 'updated'}, result.task
    assert sha(host.config()['runners'][0]['token']) == gitlab.runner_by_id(runner_id)['token_sha256']

    # Without an API token (registration token), an expired token cannot be renewed: fail with the fix.
    other = make_host('legacy')
    reg = gitlab.registration_token('instance')
    legacy = {'api_url': gitlab.url, 'runners': [{'name': 'legacy', 'registration_token': reg, 'run_untagged': True}]}
    other.run(legacy)
    legacy_id = other.config()['runners'][0]['id']
    age_token(other, 'legacy', expires_in=timedelta(hours=-1))
    before = other.raw()
    failed = other.run(legacy)
    assert failed.failed
    assert failed.msg.startswith("The token of runner 'legacy' (id {0}) expired at ".format(legacy_id)), failed.msg
    assert 'Set api_token (scope manage_runner) so the module resets it by id' in failed.msg
    assert other.raw() == before


def test_expired_fixed_token_fails_with_fix(gitlab, host):
    admin, project = setup_project(gitlab)
    status, _h, data = gitlab.api('POST', '/user/runners', token=admin,
                                  body={'runner_type': 'project_type', 'project_id': project, 'run_untagged': True})
    assert status == 201
    params = {'api_url': gitlab.url, 'runners': [{'name': 'fixed', 'token': data['token']}]}
    host.run(params)
    age_token(host, 'fixed', obtained_days_ago=40, expires_in=timedelta(days=2))
    soon = host.run(params)
    assert not soon.failed
    assert any("The token of runner 'fixed'" in w and 'expires at' in w for w in soon.task.get('warnings', [])), soon.task
    age_token(host, 'fixed', expires_in=timedelta(hours=-1))
    before = host.raw()
    failed = host.run(params)
    assert failed.failed and 'put the new token in token' in failed.msg, failed.msg
    assert data['token'] not in failed.output
    assert host.raw() == before
