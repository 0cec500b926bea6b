# Copyright (c) dood.gitlab_runner contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The declared runners and their rules, without files or network."""

from __future__ import annotations

import datetime
import secrets

import pytest

from ansible_collections.dood.gitlab_runner.plugins.module_utils import config_toml
from ansible_collections.dood.gitlab_runner.plugins.module_utils._runner_config import model, options


def top(**values):
    """Top-level parameters as AnsibleModule hands them over (every option present, defaults applied)."""
    params = dict((o.name, o.default) for o in options.OPTIONS)
    params['api_url'] = 'https://gitlab.example.com'
    params.update(values)
    runners = []
    for runner in params['runners']:
        full = dict((o.name, o.default) for o in options.RUNNER_OPTIONS)
        full.update(runner)
        runners.append(full)
    params['runners'] = runners
    return params


def validate(params):
    found = []
    validator = model.Validator(params, found.append, lambda name, **where: None, '18.10.1')
    validator.register_secrets()
    return validator.runners(), found


def test_url_problem_names_each_fault():
    assert model.url_problem('https://gitlab.example.com', False) is None
    assert 'is not a valid GitLab URL' in model.url_problem('gitlab.example.com', False)
    assert 'ends with /api/v4' in model.url_problem('https://g.example/api/v4/', False)
    assert 'legacy /ci suffix' in model.url_problem('https://g.example/ci', False)
    assert model.url_problem('https://g.example/ci', False, legacy_ci=False) is None
    assert 'sends the API token in clear text' in model.url_problem('http://g.example', False, sends='the API token')
    assert model.url_problem('http://g.example', True) is None


def test_validator_registers_secrets_and_refuses_duplicates():
    token = 'glrt-' + secrets.token_urlsafe(20)
    key = secrets.token_hex(8)
    runners, found = validate(top(runners=[{'name': 'a', 'token': token, 'cache': {'s3': {'SecretKey': key}}}]))
    assert [r.name for r in runners] == ['a']
    assert token in found and key in found
    with pytest.raises(model.RunnerConfigError, match="Runner 'a' is declared twice"):
        validate(top(runners=[{'name': 'a', 'token': token}, {'name': 'a', 'token': token}]))


@pytest.mark.parametrize('runner, message', [
    ({'name': 'r', 'token': 't', 'docker': {'imagee': 'x'}}, "docker.imagee is not a key .* \\(did you mean 'image'\\?\\)"),
    ({'name': 'r', 'token': 't', 'cache': {'type': 's3'}}, "cache.type is not a key .* \\(did you mean 'Type'\\?\\)"),
    ({'name': 'r', 'token': 't', 'extra': {'executor': 'shell'}}, 'extra.executor repeats a key the module manages'),
    ({'name': 'r', 'token': 't', 'tag_list': ['a,b']}, 'tag_list holds an empty tag or a tag with a comma'),
    ({'name': 'r', 'token': 't', 'maximum_timeout': 60}, "maximum_timeout 60 is below GitLab's minimum"),
    ({'name': 'r', 'token': 't', 'environment': ['NOVALUE']}, "environment entry 'NOVALUE' is not KEY=value"),
    ({'name': 'r', 'runner_type': 'group_type'}, 'runner_type needs an api_token'),
])
def test_validator_messages(runner, message):
    with pytest.raises(model.RunnerConfigError, match=message):
        validate(top(runners=[runner]))


def test_top_level_bounds():
    with pytest.raises(model.RunnerConfigError, match='retries must be between 0 and 10, not 11'):
        model.Validator(top(retries=11), None, None).top_level()
    with pytest.raises(model.RunnerConfigError, match='concurrent must be at least 1'):
        model.Validator(top(concurrent=0), None, None).top_level()
    with pytest.raises(model.RunnerConfigError, match='connection_max_age: invalid duration'):
        model.Validator(top(connection_max_age='1h30min'), None, None).top_level()


def test_runner_connection_overrides_and_drift():
    params = top(api_token='glpat-x', runners=[{'name': 'r', 'token': 't', 'tag_list': ['b', 'a'], 'paused': False,
                                                'timeout': 5, 'ca_content': 'PEM'}])
    params['ca_path'] = '/top/ca.pem'
    runner = model.Runner(params['runners'][0], params)
    assert (runner.timeout, runner.api_token, runner.ca_path, runner.ca_content) == (5, 'glpat-x', None, 'PEM')
    assert runner.drift({'tag_list': ['a', 'b'], 'paused': False}) == {}
    assert runner.drift({'tag_list': ['a'], 'paused': True}) == {'tag_list': ['b', 'a'], 'paused': False}
    assert runner.creation_settings()['description'] == 'r'


def test_new_entry_keeps_owned_fields_and_declared_options():
    params = top(runners=[{'name': 'r', 'token': 't', 'limit': 2, 'docker': {'image': 'alpine'},
                           'extra': {'unhealthy_interval': '90m', 'prepare_timeout': 300}}])
    runner = model.Runner(params['runners'][0], params)
    now = config_toml.utc_now_seconds()
    entry, written, removed = runner.entry(None, {'id': 7, 'token': 'tok', 'token_obtained_at': now}, {})
    assert entry['id'] == 7 and entry['token'] == 'tok' and entry['token_expires_at'] == config_toml.ZERO_TIME
    assert entry['limit'] == 2 and entry['docker'] == {'image': 'alpine'} and entry['executor'] == 'docker'
    assert entry['unhealthy_interval'] == '1h30m0s'
    assert entry['prepare_timeout'] == '5m0s', 'an integer duration is seconds, written as a Go duration'
    assert removed == [] and '["executor"]' in written and 'tok' not in str(written)


def test_existing_entry_keeps_what_is_not_declared():
    params = top(runners=[{'name': 'r', 'token': 't', 'docker': {'image': 'docker:27-cli'}}])
    params['runner_defaults'] = {'executor': 'docker', 'environment': ['DOCKER_BUILDKIT=1'],
                                 'docker': {'privileged': False, 'volumes': ['/var/run/docker.sock:/var/run/docker.sock']}}
    runner = model.Runner(params['runners'][0], params)
    existing = {'name': 'r', 'url': 'https://gitlab.example.com', 'id': 3, 'token': 'tok', 'executor': 'shell',
                'limit': 4, 'docker': {'image': 'alpine', 'privileged': True, 'volumes': ['/cache']}}
    entry, written, removed = runner.entry(existing, existing, {})
    assert entry['executor'] == 'shell' and entry['limit'] == 4, 'a default never replaces what the entry has'
    assert entry['docker'] == {'image': 'docker:27-cli', 'privileged': True, 'volumes': ['/cache']}
    assert entry['environment'] == ['DOCKER_BUILDKIT=1'], 'a default fills what the entry lacks'
    # A default the module wrote itself follows the default when it changes.
    params['runner_defaults']['environment'] = ['DOCKER_BUILDKIT=0']
    again, written2, _removed = model.Runner(params['runners'][0], params).entry(entry, entry, written)
    assert again['environment'] == ['DOCKER_BUILDKIT=0']
    # A declared value that is no longer declared leaves, unless someone changed it since.
    params['runners'][0]['docker'] = None
    later, _written, _removed = model.Runner(params['runners'][0], params).entry(again, again, written2)
    assert later['docker'] == {'privileged': True, 'volumes': ['/cache']}
    # Authoritative: the declaration is the whole entry, and what leaves is named.
    params['runners'][0]['docker'] = {'image': 'docker:27-cli'}
    owned, _w, removed = model.Runner(params['runners'][0], params).entry(existing, existing, {}, authoritative=True)
    assert owned['executor'] == 'docker' and 'limit' not in owned and owned['docker']['privileged'] is False
    assert ('limit',) in removed and owned['id'] == 3 and owned['token'] == 'tok'


def test_globals_and_times():
    params = top(concurrent=3, connection_max_age='90', session_server={'listen_address': None})
    params['global_defaults'] = {'log_level': 'info', 'concurrent': 4}
    settings, written, removed = model.merge_globals({'concurrent': 10, 'log_level': 'debug', 'listen_address': ':9252'},
                                                     params, {})
    assert settings == {'concurrent': 3, 'connection_max_age': '1m30s', 'log_level': 'debug', 'listen_address': ':9252'}
    assert model.whole_file(settings, []) == settings
    assert model.parse_time(None) == config_toml.ZERO_TIME
    assert model.parse_time('2026-01-02T03:04:05.678Z') == datetime.datetime(2026, 1, 2, 3, 4, 5, tzinfo=datetime.timezone.utc)
    with pytest.raises(model.RunnerConfigError, match='is not an ISO 8601 time'):
        model.parse_time('yesterday')
    assert model.epoch('2026-01-02T03:04:05.5Z') == pytest.approx(1767323045.5)
    assert model.epoch('garbage') == 0
    token = 'glrt-' + secrets.token_urlsafe(20)
    assert model.fingerprint(token) != model.fingerprint(token + 'x') and token[5:15] not in model.fingerprint(token)
