# Copyright (c) dood.gitlab_runner contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The host's files: atomic writes, modes, the system id and the journal's order."""

from __future__ import annotations

import json
import os
import secrets
import stat

import pytest

from ansible_collections.dood.gitlab_runner.plugins.module_utils._runner_config import files as files_mod
from ansible_collections.dood.gitlab_runner.plugins.module_utils._runner_config import store as store_mod
from ansible_collections.dood.gitlab_runner.plugins.module_utils._runner_config.model import RunnerConfigError


class Outcome(Exception):
    def __init__(self, unknown_outcome):
        super().__init__('failed')
        self.unknown_outcome = unknown_outcome


@pytest.fixture
def store(tmp_path):
    directory = tmp_path / 'gitlab-runner'
    directory.mkdir(mode=0o755)
    return store_mod.LocalStore(str(directory / 'config.toml'))


def journal(store):
    with open(store.files.state_path) as handle:
        return json.load(handle)


def test_journal_is_on_disk_before_the_create_request(store):
    store.read_state()
    seen = {}

    def send():
        seen['pending'] = journal(store)['pending']['r1']
        return {'id': 1}

    assert store.journaled_create('r1', 'desc', 'project_type', '/projects/1/runners', send) == {'id': 1}
    assert seen['pending']['description'] == 'desc' and seen['pending']['scope'] == '/projects/1/runners'
    assert store.pending('r1') is not None, 'a creation that succeeded stays pending until config.toml holds it'


def test_journal_forgets_a_creation_gitlab_certainly_refused(store):
    store.read_state()

    def refused():
        raise Outcome(unknown_outcome=False)

    with pytest.raises(Outcome):
        store.journaled_create('r1', 'desc', None, None, refused)
    assert store.pending('r1') is None
    assert 'pending' not in journal(store)


def test_journal_keeps_a_creation_with_unknown_outcome(store):
    store.read_state()

    def lost():
        raise Outcome(unknown_outcome=True)

    with pytest.raises(Outcome):
        store.journaled_create('r1', 'desc', None, None, lost)
    assert journal(store)['pending']['r1']['description'] == 'desc'


def test_write_file_is_private_and_leaves_no_temporary_file(store):
    files_mod.write_file(store.path, b'concurrent = 1\n')
    assert stat.S_IMODE(os.stat(store.path).st_mode) == 0o600
    assert os.listdir(store.dir) == ['config.toml']


def test_open_secures_files_and_removes_stale_temporaries(store):
    with open(store.path, 'w') as handle:
        handle.write('concurrent = 2\n')
    os.chmod(store.path, 0o644)
    stale = os.path.join(store.dir, '.config.toml.abcd1234')
    with open(stale, 'w') as handle:
        handle.write('token = "x"\n')
    raw, parsed, changed = store.open()
    assert raw == b'concurrent = 2\n' and parsed == {'concurrent': 2} and changed
    assert stat.S_IMODE(os.stat(store.dir).st_mode) == 0o700
    assert stat.S_IMODE(os.stat(store.path).st_mode) == 0o600
    assert not os.path.exists(stale)


def test_check_mode_writes_nothing(tmp_path):
    directory = tmp_path / 'd'
    directory.mkdir(mode=0o755)
    dry = store_mod.LocalStore(str(directory / 'config.toml'), check_mode=True)
    raw, parsed, changed = dry.open()
    assert (raw, parsed, changed) == (None, {}, True), 'mode 0755 would change'
    assert files_mod.SYSTEM_ID_RE.match(dry.system_id_value)
    dry.remember('r', 3, True)
    dry.save({'concurrent': 1})
    assert os.listdir(str(directory)) == [] and stat.S_IMODE(os.stat(str(directory)).st_mode) == 0o755


def test_system_id_is_kept_and_tokens_in_the_file_are_secrets(store):
    files_mod.write_file(os.path.join(store.dir, '.runner_system_id'), b'r_abcdefABCDEF')
    assert store.files.system_id() == ('r_abcdefABCDEF', False)
    token = 'glrt-' + secrets.token_urlsafe(20)
    found = []
    store.secret = found.append
    files_mod.write_file(store.path, '[[runners]]\n  name = "a"\n  token = "{0}"\n'.format(token).encode())
    store.read_config()
    assert set(found) == {token}


def test_read_config_refuses_duplicates_and_broken_files(store):
    files_mod.write_file(store.path, b'[[runners]]\nname = "a"\n[[runners]]\nname = "a"\n')
    with pytest.raises(RunnerConfigError, match="several \\[\\[runners\\]\\] entries named 'a'"):
        store.read_config()
    token = 'glrt-' + secrets.token_urlsafe(20)
    found = []
    store.secret = found.append
    files_mod.write_file(store.path, '[[runners]]\n  token = "{0}"\n  bad = \n'.format(token).encode())
    with pytest.raises(RunnerConfigError, match='is not valid TOML'):
        store.read_config()
    assert token in found, 'a token in a broken file is masked too'
