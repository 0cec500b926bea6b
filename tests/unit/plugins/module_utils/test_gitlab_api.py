# -*- coding: utf-8 -*-
# Copyright: dood.gitlab_runner contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Unit tests for plugins/module_utils/gitlab_api.py: retry policy, error classification, endpoints.

The seam is GitLabClient._send (one HTTP exchange); the sleeps are recorded instead of slept.
"""

from __future__ import annotations

import http.client
import json
import socket
import ssl

import pytest

from ansible_collections.dood.gitlab_runner.plugins.module_utils import gitlab_api
from ansible_collections.dood.gitlab_runner.plugins.module_utils.gitlab_api import GitLabClient, GitLabError


def ok(status=200, body=None, headers=None):
    payload = json.dumps(body).encode() if body is not None else b''
    return status, payload, headers or {}, None, 'never'


def http_error(status, message='boom', headers=None):
    return status, json.dumps({'message': message}).encode(), headers or {}, None, 'never'


def transport(exc):
    failure, repeat = gitlab_api._transport_failure(exc, 5)  # pylint: disable=protected-access
    return None, b'', None, failure, repeat


class Scripted(GitLabClient):
    """A client whose exchanges come from a script; records what was sent and how long it waited."""

    def __init__(self, answers, **kwargs):
        self.slept = []
        kwargs.setdefault('retries', 3)
        super().__init__('https://gitlab.example.com', sleep=self.slept.append, **kwargs)
        self.answers = list(answers)
        self.sent = []

    def _send(self, method, url, data, headers):
        self.request_count += 1
        self.sent.append((method, url, json.loads(data) if data else None))
        return self.answers.pop(0)


@pytest.mark.parametrize('status', [429, 500, 502, 503, 504])
def test_idempotent_call_retried_with_doubling_backoff(status):
    client = Scripted([http_error(status), http_error(status), ok(body={'id': 7})], backoff=1.0)
    assert client.get_runner('glpat-x', 7) == {'id': 7}
    assert len(client.sent) == 3
    assert client.slept == [1.0, 2.0]


def test_retries_are_bounded_and_error_names_endpoint_status_and_attempts():
    client = Scripted([http_error(503, 'down')] * 4, backoff=0.5, retries=3)
    with pytest.raises(GitLabError) as info:
        client.update_runner('glpat-x', 12, {'paused': True})
    err = info.value
    assert len(client.sent) == 4
    assert client.slept == [0.5, 1.0, 2.0]
    assert err.status == 503 and err.attempts == 4 and not err.unknown_outcome
    assert str(err) == 'GitLab answered 503 (down) for PUT /api/v4/runners/12 (after 4 attempts)'


def test_backoff_capped_by_max_backoff():
    client = Scripted([http_error(500)] * 5, backoff=10.0, retries=4, max_backoff=15.0)
    with pytest.raises(GitLabError):
        client.get_runner('glpat-x', 1)
    assert client.slept == [10.0, 15.0, 15.0, 15.0]


def test_retry_after_is_honoured():
    client = Scripted([http_error(429, headers={'Retry-After': '7'}), ok(body={'id': 1})], backoff=1.0)
    client.get_runner('glpat-x', 1)
    assert client.slept == [7.0]


def test_retry_after_longer_than_cap_fails_at_once_and_says_so():
    client = Scripted([http_error(429, headers={'Retry-After': '60'})], max_backoff=30.0)
    with pytest.raises(GitLabError) as info:
        client.get_runner('glpat-x', 1)
    assert client.slept == [] and len(client.sent) == 1
    assert info.value.retry_after == 60.0
    assert 'asked to retry after 60s' in info.value.retry_hint


@pytest.mark.parametrize('answer', [http_error(500), http_error(502), http_error(503), http_error(504)])
def test_creation_not_retried_after_5xx_and_outcome_unknown(answer):
    client = Scripted([answer, ok(201, {'id': 1, 'token': 'glrt-x'})])
    with pytest.raises(GitLabError) as info:
        client.create_user_runner('glpat-x', {'runner_type': 'instance_type'})
    assert len(client.sent) == 1, 'a creation must never be sent again after GitLab may have run it'
    assert info.value.unknown_outcome
    assert 'outcome on the server is unknown' in info.value.retry_hint


@pytest.mark.parametrize('exc', [socket.timeout('timed out'), ConnectionResetError(), http.client.IncompleteRead(b'{')])
def test_creation_not_retried_after_timeout_or_reset(exc):
    client = Scripted([transport(exc), ok(201, {'id': 1, 'token': 'glrt-x'})])
    with pytest.raises(GitLabError) as info:
        client.register_legacy('GR1348941x', {'description': 'd'})
    assert len(client.sent) == 1
    assert info.value.unknown_outcome and info.value.status is None


def test_creation_retried_after_429_and_refused_connection():
    client = Scripted([http_error(429, headers={'Retry-After': '2'}), transport(ConnectionRefusedError()),
                       ok(201, {'id': 3, 'token': 'glrt-x'})])
    data = client.create_user_runner('glpat-x', {'runner_type': 'instance_type'})
    assert data['id'] == 3
    assert len(client.sent) == 3
    assert client.slept == [2.0, 2.0]


@pytest.mark.parametrize('status', [400, 401, 403, 410])
def test_creation_refused_by_gitlab_is_certain(status):
    client = Scripted([http_error(status)])
    with pytest.raises(GitLabError) as info:
        client.create_user_runner('glpat-x', {'runner_type': 'instance_type'})
    assert len(client.sent) == 1
    assert not info.value.unknown_outcome


def test_timeouts_and_resets_retried_for_idempotent_calls():
    client = Scripted([transport(socket.timeout()), transport(http.client.RemoteDisconnected('x')), ok(body={'id': 1})])
    assert client.verify('glrt-x', 's_0123456789ab') == {'id': 1}
    assert len(client.sent) == 3


def test_tls_failure_never_retried():
    err = ssl.SSLCertVerificationError(1, 'certificate verify failed: unable to get local issuer certificate')
    client = Scripted([transport(err)])
    with pytest.raises(GitLabError) as info:
        client.get_runner('glpat-x', 1)
    assert len(client.sent) == 1
    assert info.value.kind == 'tls'
    assert 'TLS certificate could not be verified' in str(info.value)


@pytest.mark.parametrize('exc, kind, repeat', [
    (ConnectionRefusedError(), 'refused', 'always'),
    (socket.timeout(), 'timeout', 'idempotent'),
    (TimeoutError(), 'timeout', 'idempotent'),
    (http.client.RemoteDisconnected('closed'), 'dropped', 'idempotent'),
    (http.client.IncompleteRead(b'x', 10), 'dropped', 'idempotent'),
    (ConnectionResetError(), 'dropped', 'idempotent'),
    (socket.gaierror(-2, 'Name or service not known'), 'dns', 'never'),
    (ssl.SSLCertVerificationError(1, 'bad'), 'tls', 'never'),
    (ssl.SSLError(1, 'wrong version number'), 'tls', 'never'),
    (OSError(113, 'No route to host'), 'connection', 'idempotent'),
])
def test_transport_failure_classification(exc, kind, repeat):
    failure, got_repeat = gitlab_api._transport_failure(exc, 5)  # pylint: disable=protected-access
    assert failure[0] == kind
    assert got_repeat == repeat


def test_non_json_body_on_success_status():
    client = Scripted([(200, b'<html>login</html>', {}, None, 'never')] * 4, retries=3)
    with pytest.raises(GitLabError) as info:
        client.get_runner('glpat-x', 1)
    assert info.value.kind == 'non_json' and info.value.status == 200
    assert len(client.sent) == 1, 'a body that is not JSON does not get better by asking again'


def test_non_json_error_page_is_classified():
    client = Scripted([(502, b'<html>Bad Gateway</html>', {}, None, 'never')], retries=0)
    with pytest.raises(GitLabError) as info:
        client.get_runner('glpat-x', 1)
    assert info.value.kind == 'non_json'
    assert 'not JSON' in str(info.value)


def test_verify_403_means_rejected_and_delete_accepts_gone():
    client = Scripted([http_error(403), ok(404), ok(403)])
    assert client.verify('glrt-x') is None
    client.delete_runner('glpat-x', 5)
    client.delete_by_token('glrt-x')
    assert [s[0] for s in client.sent] == ['POST', 'DELETE', 'DELETE']


def test_list_runners_walks_pages():
    page1 = [{'id': i} for i in range(1, 101)]
    page2 = [{'id': 101}]
    client = Scripted([ok(body=page1), ok(body=page2)])
    found = client.list_runners('glpat-x', '/projects/4/runners', {'type': 'project_type'})
    assert [r['id'] for r in found] == list(range(1, 102))
    assert 'page=2' in client.sent[1][1] and 'type=project_type' in client.sent[1][1]


def test_list_runners_refuses_a_non_list():
    client = Scripted([ok(body={'message': 'odd'})])
    with pytest.raises(GitLabError):
        client.list_runners('glpat-x')


def test_tokens_never_in_error_text():
    token = 'glrt-' + 'A' * 20
    client = Scripted([http_error(500, 'internal')] * 4)
    with pytest.raises(GitLabError) as info:
        client.verify(token)
    assert token not in str(info.value)


def test_scope_path_for():
    assert gitlab_api.scope_path_for('group_type', group_id=3) == '/groups/3/runners'
    assert gitlab_api.scope_path_for('project_type', project_id=9) == '/projects/9/runners'
    assert gitlab_api.scope_path_for('instance_type') == '/runners/all'
