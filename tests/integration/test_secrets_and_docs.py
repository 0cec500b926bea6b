# Copyright (c) dood.gitlab_runner contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""No token in any output, even at -vvvv in check and diff mode; the module's documentation renders."""

from __future__ import annotations

import subprocess
from pathlib import Path

from test_runner_config import create_runner, project_setup


def leaked(text, secrets):
    return [s[:6] + '...' for s in secrets if s and s in text]


def test_no_token_in_any_output_at_vvvv(gitlab, make_host):
    admin, _group, project = project_setup(gitlab)
    _id, fixed = create_runner(gitlab, admin, project)
    registration = gitlab.registration_token('instance')
    host = make_host('secret-host')
    params = {
        'api_url': gitlab.url, 'api_token': admin, 'sentry_dsn': 'https://publickey@sentry.example.com/1',
        'runners': [
            {'name': 'fixed', 'token': fixed, 'environment': ['SECRET_FROM_VAULT=' + fixed]},
            {'name': 'legacy', 'registration_token': registration, 'run_untagged': True},
            {'name': 'api', 'runner_type': 'project_type', 'project_id': project, 'run_untagged': True,
             'cache': {'Type': 's3', 's3': {'AccessKey': 'AKIA-TEST-ACCESS', 'SecretKey': 'cache-secret-key-value'}}},
        ]}
    known = [admin, fixed, registration, 'cache-secret-key-value', 'publickey@sentry']
    outputs = []
    # First run and re-run, each in check+diff mode and then applied with diff, at the highest verbosity.
    for _round in range(2):
        for check in (True, False):
            result = host.run(params, check=check, diff=True, verbosity=4, json_output=False)
            assert result.rc == 0, result.output[-3000:]
            outputs.append(result.output)
    # Tokens GitLab issued at run time are secrets too.
    issued = [entry['token'] for entry in host.config()['runners']]
    assert len(issued) == 3 and all(issued)
    everything = '\n'.join(outputs)
    assert '********' in everything, 'the diff must show masked secrets'
    assert 'config.toml' in everything
    assert leaked(everything, known + issued) == []
    # Nothing written beside config.toml holds a token either, and config.toml is private.
    for path in host.dir.iterdir():
        if path.name != 'config.toml' and path.is_file():
            assert leaked(path.read_text(errors='replace'), known + issued) == [], path
    assert host.mode() == 0o600
    assert (host.dir / '.runner_system_id').stat().st_mode & 0o777 == 0o600
    # Nor does the fake GitLab's request log, as a failing test would print it.
    assert leaked(repr(gitlab.requests()), known + issued) == []


def test_ansible_doc_renders_every_token_flow(ansible_env):
    ansible_doc = Path(__import__('sys').executable).with_name('ansible-doc')
    proc = subprocess.run([str(ansible_doc), 'dood.gitlab_runner.runner_config'], env=ansible_env, capture_output=True,
                          text=True, timeout=120, check=False)
    assert proc.returncode == 0, proc.stderr
    text = proc.stdout
    for needle in ('registration_token', 'runner_type', 'token', 'server_check', 'EXAMPLES', 'RETURN VALUES',
                   'project_type', 'vault_runner_token', 'vault_registration_token', 'vault_gitlab_api_token',
                   'check_mode', 'diff_mode'):
        assert needle in text, needle


def test_ansible_doc_renders_every_role_variable(ansible_env):
    import yaml  # pylint: disable=import-outside-toplevel
    ansible_doc = Path(__import__('sys').executable).with_name('ansible-doc')
    root = Path(__file__).resolve().parents[2]
    for role in ('docker', 'runner'):
        specs = yaml.safe_load((root / 'roles' / role / 'meta' / 'argument_specs.yml').read_text())
        options = specs['argument_specs']['main']['options']
        proc = subprocess.run([str(ansible_doc), '-t', 'role', 'dood.gitlab_runner.' + role], env=ansible_env,
                              capture_output=True, text=True, timeout=120, check=False)
        assert proc.returncode == 0, proc.stderr
        missing = [name for name in options if name not in proc.stdout]
        assert options and missing == [], (role, missing)
