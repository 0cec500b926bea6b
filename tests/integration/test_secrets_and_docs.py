# Copyright (c) dood.gitlab_runner contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""No token in any output, even at -vvvv in check and diff mode; the module's documentation renders."""

from __future__ import annotations

import json
import secrets
import subprocess
import sys
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


def test_cache_credentials_hidden_when_a_looped_declaration_fails_early(gitlab, tmp_path, ansible_env):
    """A duplicate name and a /ci URL fail before any request; the cache credentials of those declarations must not
    appear at -vvvv, in the failed items nor in a registered loop result printed afterwards."""
    admin = gitlab.new_user(admin=True)
    access, secret = 'AKIA' + secrets.token_hex(8).upper(), secrets.token_urlsafe(24)
    cache = {'Type': 's3', 's3': {'ServerAddress': 'minio.example.com', 'AccessKey': access, 'SecretKey': secret}}
    base = {'path': str(tmp_path / 'gitlab-runner' / 'config.toml'), 'api_url': gitlab.url, 'api_token': admin,
            'allow_http': True}
    (tmp_path / 'gitlab-runner').mkdir(mode=0o700)
    declarations = {
        'duplicate': [{'name': 'a', 'runner_type': 'instance_type', 'cache': cache}, {'name': 'a', 'runner_type': 'instance_type'}],
        'legacy-url': [{'name': 'b', 'url': gitlab.url + '/ci', 'runner_type': 'instance_type', 'cache': cache}],
        'wrong-type': [{'name': 'c', 'runner_type': 'instance_type', 'cache': cache, 'docker': {'cpus': 2}}],
    }
    # Ansible itself prints each loop item, so the loop runs over names (README, "Secrets in loops"); what the
    # module prints and returns (its invocation, message and result) is what is checked here.
    play = [{'hosts': 'localhost', 'gather_facts': False, 'vars': {'declarations': declarations}, 'tasks': [
        {'name': 'Reconcile', 'dood.gitlab_runner.runner_config': dict(base, runners='{{ declarations[item] }}'),
         'loop': sorted(declarations), 'register': 'outcome', 'ignore_errors': True},
        {'name': 'Show the registered loop', 'ansible.builtin.debug': {'var': 'outcome'}},
    ]}]
    path = tmp_path / 'loop-play.yml'
    path.write_text(json.dumps(play))
    cmd = [str(Path(sys.executable).with_name('ansible-playbook')), '-i', 'localhost,', '-c', 'local', '-vvvv', str(path)]
    proc = subprocess.run(cmd, env=ansible_env, capture_output=True, text=True, timeout=300, check=False)
    output = proc.stdout + proc.stderr
    assert 'is declared twice' in output and 'legacy /ci suffix' in output and 'docker.cpus must be a string' in output
    assert leaked(output, [access, secret, admin]) == []
    assert [r for r in gitlab.requests() if r['path'].startswith('/api/v4')] == []


def test_credentials_in_values_are_masked_everywhere(gitlab, make_host):
    """DOCKER_AUTH_CONFIG in environment, a kubernetes bearer_token in extra, a password in a service's environment and a
    name the user adds: in the file, but in no output, diff or result."""
    admin, _group, project = project_setup(gitlab)
    host = make_host('values-host')
    auth = '{"auths":{"registry.example.com":{"auth":"' + secrets.token_urlsafe(18) + '"}}}'
    bearer, db_password, custom = secrets.token_urlsafe(20), secrets.token_urlsafe(16), secrets.token_urlsafe(16)
    params = {'api_url': gitlab.url, 'api_token': admin, 'secret_names': ['*_CREDS'], 'runners': [{
        'name': 'values', 'runner_type': 'project_type', 'project_id': project, 'run_untagged': True,
        'environment': ['DOCKER_AUTH_CONFIG=' + auth, 'DEPLOY_CREDS=' + custom, 'PLAIN=visible-value'],
        'docker': {'image': 'docker:27-cli', 'services': [
            {'name': 'postgres:16', 'environment': ['POSTGRES_PASSWORD=' + db_password, 'POSTGRES_DB=ci']}]},
        'extra': {'kubernetes': {'bearer_token': bearer, 'namespace': 'ci'}}}]}
    outputs = []
    for check in (True, False, False):
        result = host.run(params, check=check, diff=True, verbosity=4, json_output=False)
        assert result.rc == 0, result.output[-3000:]
        outputs.append(result.output)
    everything = '\n'.join(outputs)
    entry = host.config()['runners'][0]
    assert 'DOCKER_AUTH_CONFIG=' + auth in entry['environment'] and entry['kubernetes']['bearer_token'] == bearer
    assert 'DOCKER_AUTH_CONFIG=********' in everything and 'POSTGRES_PASSWORD=********' in everything
    assert 'bearer_token = "********"' in everything and 'DEPLOY_CREDS=********' in everything
    assert 'PLAIN=visible-value' in everything and 'POSTGRES_DB=ci' in everything, 'only credentials are masked'
    assert leaked(everything, [auth, bearer, db_password, custom, admin, entry['token']]) == []
