# Copyright (c) dood.gitlab_runner contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Integration fixtures: the real module, run by ansible-playbook, against the bundled fake GitLab."""

from __future__ import annotations

import json
import os
import secrets
import string
import subprocess
import sys
import sysconfig
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / 'tools' / 'fake_gitlab'))

from harness import FakeGitLab  # noqa: E402  pylint: disable=wrong-import-position


def collections_path(tmp_root):
    """A collections tree where dood.gitlab_runner resolves to this checkout, plus the bundled collections."""
    tree = tmp_root / 'collections'
    link = tree / 'ansible_collections' / 'dood' / 'gitlab_runner'
    if not link.exists():
        link.parent.mkdir(parents=True, exist_ok=True)
        link.symlink_to(ROOT)
    return '{0}:{1}'.format(tree, sysconfig.get_paths()['purelib'])


@pytest.fixture(scope='session')
def ansible_env(tmp_path_factory):
    root = tmp_path_factory.mktemp('ansible')
    env = dict(os.environ)
    env.update({
        'ANSIBLE_COLLECTIONS_PATH': collections_path(root),
        'ANSIBLE_LOCAL_TEMP': str(root / 'tmp'),
        'ANSIBLE_HOME': str(root / 'home'),
        'ANSIBLE_NOCOLOR': '1',
        'ANSIBLE_FORCE_COLOR': '0',
        'ANSIBLE_DEPRECATION_WARNINGS': '1',
        'ANSIBLE_RETRY_FILES_ENABLED': '0',
        'ANSIBLE_PYTHON_INTERPRETER': sys.executable,
    })
    for var in ('GITLAB_URL', 'GITLAB_API_TOKEN'):
        env.pop(var, None)
    return env


@pytest.fixture()
def gitlab():
    with FakeGitLab() as server:
        yield server


class Result:
    def __init__(self, proc, data):
        self.proc = proc
        self.rc = proc.returncode
        self.stdout = proc.stdout
        self.stderr = proc.stderr
        self.data = data
        self.task = None
        if data is not None:
            plays = data.get('plays') or []
            tasks = plays[0]['tasks'] if plays else []
            for task in tasks:
                hosts = task.get('hosts') or {}
                if hosts:
                    self.task = next(iter(hosts.values()))
        self.output = proc.stdout + proc.stderr

    @property
    def changed(self):
        return bool(self.task.get('changed'))

    @property
    def failed(self):
        return bool(self.task.get('failed'))

    @property
    def msg(self):
        return self.task.get('msg', '')

    def actions(self):
        return dict((r['name'], r['action']) for r in self.task.get('runners', []))

    def __repr__(self):
        return 'Result(rc={0}, task={1!r})'.format(self.rc, self.task)


class Host:
    """One simulated host: its own config directory, the module run against it through ansible-playbook."""

    def __init__(self, root, env, name='host', system_id=None):
        self.root = root
        self.env = env
        self.name = name
        self.dir = root / name / 'gitlab-runner'
        self.dir.mkdir(parents=True, mode=0o700)
        self.path = self.dir / 'config.toml'
        if system_id:
            # Distinct machines have distinct system ids; hosts simulated on one machine get their own here.
            (self.dir / '.runner_system_id').write_text(system_id)
            (self.dir / '.runner_system_id').chmod(0o600)

    def playbook(self, params):
        # JSON is YAML: the module's arguments go into the generated playbook as they are, so the test
        # states exactly what a user would write (the file lives in the test's temporary directory only).
        args = dict({'path': str(self.path), 'allow_http': True}, **params)
        play = [{'hosts': 'localhost', 'gather_facts': False, 'tasks': [
            {'name': 'Reconcile config.toml', 'dood.gitlab_runner.runner_config': args},
        ]}]
        path = self.root / '{0}-play.yml'.format(self.name)
        path.write_text(json.dumps(play, indent=2))
        return path

    def run(self, params, check=False, diff=False, verbosity=0, json_output=True, extra_env=None):
        play = self.playbook(params)
        cmd = [str(Path(sys.executable).with_name('ansible-playbook')), '-i', 'localhost,', '-c', 'local', str(play)]
        if check:
            cmd.append('--check')
        if diff:
            cmd.append('--diff')
        if verbosity:
            cmd.append('-' + 'v' * verbosity)
        env = dict(self.env)
        if json_output:
            env['ANSIBLE_STDOUT_CALLBACK'] = 'ansible.posix.json'
        env.update(extra_env or {})
        proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300, check=False)
        data = None
        if json_output:
            try:
                data = json.loads(proc.stdout)
            except ValueError:
                raise AssertionError('ansible-playbook printed no JSON:\n' + proc.stdout[-3000:] + proc.stderr[-3000:])
        return Result(proc, data)

    def config(self):
        return tomllib.loads(self.path.read_text())

    def mode(self):
        return self.path.stat().st_mode & 0o7777

    def raw(self):
        return self.path.read_bytes() if self.path.exists() else None


@pytest.fixture()
def host(tmp_path, ansible_env):
    return Host(tmp_path, ansible_env)


@pytest.fixture()
def make_host(tmp_path, ansible_env):
    def make(name):
        alphabet = string.ascii_letters + string.digits
        return Host(tmp_path, ansible_env, name, system_id='r_' + ''.join(secrets.choice(alphabet) for _i in range(12)))
    return make


def ladder(run, params, first_action=None):
    """Check mode, apply, apply again, check again: the changed flags every behaviour must show."""
    check1 = run(params, check=True)
    assert not check1.failed, check1.msg
    assert check1.changed, 'check mode must predict the change'
    apply1 = run(params)
    assert not apply1.failed, apply1.msg
    assert apply1.changed
    apply2 = run(params)
    assert not apply2.failed, apply2.msg
    assert not apply2.changed, 'second apply must be idempotent: {0!r}'.format(apply2.task)
    check2 = run(params, check=True)
    assert not check2.failed, check2.msg
    assert not check2.changed
    if first_action:
        for name, action in apply1.actions().items():
            assert action == first_action, (name, action)
    return check1, apply1, apply2, check2
