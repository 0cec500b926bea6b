# Copyright (c) dood.gitlab_runner contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The host half and the controller's store, wired together in one process: reads change nothing, the first write
takes the lease only when nobody wrote since the read, and a second run waits for the first."""

from __future__ import annotations

import base64
import os
import socket
import stat

import pytest

from ansible_collections.dood.gitlab_runner.plugins.module_utils._runner_config import controller, host
from ansible_collections.dood.gitlab_runner.plugins.module_utils._runner_config.files import HostFiles, write_file


class FakeModule:
    """What host.read/write/prepare use of AnsibleModule."""

    def __init__(self, params, check_mode=False):
        self.params = dict(dict((k, v.get('default')) for k, v in host.ARGUMENT_SPEC.items()), **params)
        self.check_mode = check_mode

    @staticmethod
    def backup_local(path):
        copy = path + '.bak'
        with open(path, 'rb') as src, open(copy, 'wb') as dst:
            dst.write(src.read())
        return copy


def call_for(path, check_mode=False):
    """runner_config_host as the controller's store calls it, run in this process."""
    calls = []

    def call(args):
        calls.append(args['op'])
        module = FakeModule(dict(args, path=path), check_mode)
        files = HostFiles(path, check_mode)
        files.lock()
        try:
            return {'read': host.read, 'prepare': host.prepare, 'release': lambda m, f: f.release_lease(m.params['owner']) or {}}.get(
                args['op'], host.write)(module, files)
        finally:
            files.unlock()
    call.calls = calls
    return call


@pytest.fixture
def path(tmp_path):
    directory = tmp_path / 'gitlab-runner'
    directory.mkdir(mode=0o755)
    config = directory / 'config.toml'
    config.write_text('concurrent = 1\n')
    config.chmod(0o644)
    return str(config)


def store_for(path, call, check_mode=False):
    return controller.RemoteStore(call, path, check_mode, lambda value: value, (), backup=False)


def test_read_changes_nothing_and_prepare_tidies(path):
    directory = os.path.dirname(path)
    before = sorted(os.listdir(directory)), stat.S_IMODE(os.stat(directory).st_mode)
    result = host.read(FakeModule({'path': path, 'op': 'read'}), HostFiles(path))
    assert (sorted(os.listdir(directory)), stat.S_IMODE(os.stat(directory).st_mode)) == before
    assert base64.b64decode(result['config']) == b'concurrent = 1\n' and result['files_changed'] and result['system_id_created']
    prepared = host.prepare(FakeModule({'path': path, 'op': 'prepare', 'system_id': result['system_id']}), HostFiles(path))
    assert prepared['system_id'] == result['system_id']
    assert stat.S_IMODE(os.stat(directory).st_mode) == 0o700 and stat.S_IMODE(os.stat(path).st_mode) == 0o600


def test_one_read_for_a_run_that_writes_nothing(path):
    call = call_for(path)
    store = store_for(path, call)
    store.open(deadline=0)
    store.save(None, final=True)
    store.finish()
    store.release()
    assert call.calls == ['read', 'write'], 'modes fixed and the first journal written in one call, no lease left'
    assert HostFiles(path).lease() is None
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    call2 = call_for(path)
    store2 = store_for(path, call2)
    store2.open(deadline=0)
    store2.save(None, final=True)
    store2.finish()
    store2.release()
    assert call2.calls == ['read']


def test_first_write_takes_the_lease_and_a_racing_run_starts_over(path):
    first, second = store_for(path, call_for(path)), store_for(path, call_for(path))
    first.open(deadline=0)
    second.open(deadline=0)
    first.remember('r1', 1, True)
    first.save({'concurrent': 2})                      # takes the lease
    assert HostFiles(path).lease()['owner'] == first.owner
    second.remember('r2', 2, True)
    with pytest.raises(controller.Conflict):
        second.claim()                                 # held by a live run of this controller
    first.save(None)
    first.release()
    assert HostFiles(path).lease() is None
    with pytest.raises(controller.Conflict):
        second.save({'concurrent': 3})                 # free again, but the files changed since second read them
    third = store_for(path, call_for(path))
    _raw, parsed, _changed = third.open(deadline=0)
    assert parsed == {'concurrent': 2} and third.record('r1')['id'] == 1 and third.record('r2') == {}


def test_a_lease_of_a_dead_run_on_this_controller_is_broken(path):
    files = HostFiles(path)
    files.take_lease('dead-owner', {'controller': socket.gethostname(), 'pid': 2 ** 22 + 7, 'started': '1'}, ttl=600)
    store = store_for(path, call_for(path))
    store.open(deadline=0)
    store.claim()
    assert HostFiles(path).lease()['owner'] == store.owner


def test_a_live_lease_from_elsewhere_makes_the_run_wait_then_fail_with_the_fix(path, monkeypatch):
    HostFiles(path).take_lease('other', {'controller': 'another-controller', 'pid': 1}, ttl=600)
    monkeypatch.setattr(controller, 'POLL', 0.01)
    store = store_for(path, call_for(path))
    with pytest.raises(controller.RunnerConfigError, match='Another run of runner_config has been working on'):
        store.open(deadline=0)


def test_check_mode_reads_without_writing(path):
    write_file(os.path.join(os.path.dirname(path), '.runner_system_id'), b'r_abcdefABCDEF')
    call = call_for(path, check_mode=True)
    store = store_for(path, call, check_mode=True)
    store.open(deadline=0)
    store.remember('r', 1, True)
    store.claim()
    store.save({'concurrent': 9})
    assert call.calls == ['read'] and open(path).read() == 'concurrent = 1\n'
