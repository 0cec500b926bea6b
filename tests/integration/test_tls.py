# Copyright (c) dood.gitlab_runner contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""TLS and file secrecy: certificates are verified by default, a private CA works as a file or as PEM text, and
config.toml, its backups and the module's files are private (0600 root:root in a 0700 directory).

The CA and the server certificate are generated at test time (cryptography); the fake GitLab serves HTTPS.
"""

from __future__ import annotations

import os
import stat

import pytest

from conftest import FakeGitLabProcess


@pytest.fixture()
def tls_gitlab(tls_material):
    with FakeGitLabProcess(tls_cert=tls_material['cert'], tls_key=tls_material['key'], tls_ca=tls_material['ca']) as server:
        yield server


def created_runner_params(gitlab, **top):
    admin = gitlab.new_user(admin=True)
    group = gitlab.new_group(admin)
    project = gitlab.new_project(admin, group_id=group)
    return dict({'api_url': gitlab.url, 'api_token': admin, 'allow_http': False, 'runners': [
        {'name': 'tls-01', 'runner_type': 'project_type', 'project_id': project, 'run_untagged': True}]}, **top)


def test_tls_verified_by_default(tls_gitlab, host):
    params = created_runner_params(tls_gitlab)
    result = host.run(params)
    assert result.failed
    assert result.msg.startswith("Could not create runner 'tls-01': the request failed (TLS certificate could not be verified"), result.msg
    assert 'POST /api/v4/user/runners' in result.msg and 'ca_path or ca_content' in result.msg
    assert not host.path.exists()
    assert tls_gitlab.runners() == []
    assert tls_gitlab.count_requests() == 0, 'nothing may reach an unverified server'


@pytest.mark.parametrize('form', ['ca_path', 'ca_content'])
def test_private_ca_works(tls_gitlab, tls_material, host, form):
    value = tls_material['ca'] if form == 'ca_path' else tls_material['ca_pem']
    params = created_runner_params(tls_gitlab, **{form: value})
    result = host.run(params)
    assert not result.failed, result.msg
    [runner] = tls_gitlab.runners()
    [entry] = host.config()['runners']
    assert entry['id'] == runner['id'] and entry['url'] == tls_gitlab.url
    again = host.run(params)
    assert not again.failed and not again.changed
    assert tls_gitlab.count_requests('GET', r'^/api/v4/runners/\d+$') == 1, 'the second run read the runner over TLS'


def test_runner_level_ca_overrides_top_level(tls_gitlab, tls_material, host):
    params = created_runner_params(tls_gitlab, ca_path='/etc/ssl/certs/ca-certificates.crt')
    params['runners'][0]['ca_content'] = tls_material['ca_pem']
    result = host.run(params)
    assert not result.failed, result.msg
    assert len(tls_gitlab.runners()) == 1


def mode(path):
    return stat.S_IMODE(os.lstat(path).st_mode)


def owner(path):
    info = os.lstat(path)
    return info.st_uid, info.st_gid


def test_files_private_and_directory_closed(gitlab, host):
    assert os.geteuid() == 0, 'the module runs as root on runner hosts; this test checks root:root'
    admin = gitlab.new_user(admin=True)
    params = {'api_url': gitlab.url, 'api_token': admin, 'backup': True, 'concurrent': 1,
              'runners': [{'name': 'r1', 'runner_type': 'instance_type', 'run_untagged': True}]}
    host.dir.chmod(0o755)
    host.path.touch(mode=0o644)
    host.path.write_text('concurrent = 1\n')
    os.chmod(host.path, 0o644)
    os.chown(host.path, 65534, 65534)
    result = host.run(params)
    assert not result.failed, result.msg
    backup = result.task['backup_file']
    assert mode(host.dir) == 0o700
    for path in (host.path, backup, host.dir / '.runner_system_id', host.dir / '.dood_gitlab_runner.json'):
        assert mode(path) == 0o600, path
        assert owner(path) == (0, 0), path
    # A file that only lost its mode is repaired on the next run, and that is a change.
    os.chmod(host.path, 0o644)
    host.dir.chmod(0o750)
    fixed = host.run(params)
    assert fixed.changed and mode(host.path) == 0o600 and mode(host.dir) == 0o700
    check = host.run(params, check=True)
    assert not check.changed
    # The state file beside config.toml holds ids and fingerprints, never a token.
    token = host.config()['runners'][0]['token']
    for path in host.dir.iterdir():
        if path.is_file() and path != host.path and not path.name.startswith('config.toml.'):
            assert token not in path.read_text(errors='replace'), path
