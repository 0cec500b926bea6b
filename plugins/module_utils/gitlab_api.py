# -*- coding: utf-8 -*-
# Copyright (c) dood.gitlab_runner contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""A small client for GitLab's runner REST API.

Built on ``ansible.module_utils.urls`` so managed hosts need no SDK. Endpoint semantics, status codes and
bodies follow docs/gitlab-api.md; its section is cited where a behaviour depends on it.
Tokens never appear in an exception message or in a returned value other than the creation result.
"""

from __future__ import annotations

import http.client
import json
import socket
import ssl
import time

from urllib.error import HTTPError, URLError
from urllib.parse import quote, urlencode, urlsplit

from ansible.module_utils.urls import ConnectionError as UrlsConnectionError
from ansible.module_utils.urls import SSLValidationError, open_url

API_PREFIX = '/api/v4'

# Requests that change nothing on the server, or whose repetition lands in the same state, are retried
# (docs/gitlab-api.md §1.0: 429 + Retry-After while GitLab migrates). A creation POST is retried only when the server
# answered before doing anything (429 is raised by check_if_backoff_required! before the handler runs, and a
# refused connection never reached GitLab), never after a timeout or a reset, so no second runner can appear.
RETRY_STATUSES = frozenset((429, 500, 502, 503, 504))
# Statuses after which a creation POST certainly created nothing: the request was refused before any work.
NOT_CREATED_STATUSES = frozenset((400, 401, 403, 404, 405, 409, 410, 413, 415, 422, 429))
DEFAULT_RETRIES = 3
DEFAULT_BACKOFF = 1.0
MAX_BACKOFF = 60.0


class GitLabError(Exception):
    """An API call failed. ``status`` is the HTTP status, or None for a transport failure.

    ``unknown_outcome`` is true when a request that is not safe to repeat may have been carried out by GitLab
    (a creation that timed out, a reset connection, a 5xx after the request was accepted).
    """

    def __init__(self, method, path, status=None, reason='', retry_hint='', attempts=1, retry_after=None,
                 unknown_outcome=False, kind=''):
        self.method = method
        self.path = path
        self.status = status
        self.reason = reason
        self.retry_hint = retry_hint
        self.attempts = attempts
        self.retry_after = retry_after
        self.unknown_outcome = unknown_outcome
        # 'tls', 'refused', 'timeout', 'dropped', 'dns', 'non_json', 'connection' or '' for an HTTP status.
        self.kind = kind
        super().__init__(self.describe())

    @property
    def endpoint(self):
        return '{0} {1}{2}'.format(self.method, API_PREFIX, self.path)

    def describe(self):
        if self.status is None:
            what = 'the request failed ({0})'.format(self.reason)
        else:
            what = 'GitLab answered {0}'.format(self.status)
            if self.reason:
                what += ' ({0})'.format(self.reason)
        text = '{0} for {1}'.format(what, self.endpoint)
        if self.attempts > 1:
            text += ' (after {0} attempts)'.format(self.attempts)
        return text


def _message_of(body):
    """GitLab's error text from a JSON body: {"message": ...} or Grape's {"error": ...} (docs/gitlab-api.md §1.0)."""
    try:
        data = json.loads(body.decode('utf-8')) if body else None
    except (ValueError, UnicodeDecodeError):
        text = body[:120].decode('utf-8', 'replace').strip() if body else ''
        return 'not JSON: {0}'.format(text) if text else ''
    if isinstance(data, dict):
        msg = data.get('message', data.get('error', ''))
        if isinstance(msg, dict):
            return '; '.join('{0} {1}'.format(k, ', '.join(v) if isinstance(v, list) else v) for k, v in sorted(msg.items()))
        return str(msg)
    return ''


def _retry_after(headers):
    value = headers.get('Retry-After') if headers is not None else None
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        return None


class GitLabClient:
    """One GitLab instance, reached with the given TLS settings.

    ``retries`` extra attempts are made for a call that may be repeated, waiting ``backoff`` seconds, doubled at
    each attempt, or what GitLab asks for in ``Retry-After``; no wait exceeds ``max_backoff``. When GitLab asks
    for a longer wait than that, the call fails at once with the wait in the message.
    """

    def __init__(self, url, validate_certs=True, ca_path=None, timeout=30, retries=DEFAULT_RETRIES,
                 backoff=DEFAULT_BACKOFF, sleep=time.sleep, user_agent='dood.gitlab_runner', max_backoff=MAX_BACKOFF):
        parts = urlsplit(url)
        self.base = '{0}://{1}{2}'.format(parts.scheme, parts.netloc, parts.path.rstrip('/'))
        self.validate_certs = validate_certs
        self.ca_path = ca_path
        self.timeout = timeout
        self.retries = retries
        self.backoff = backoff
        self.max_backoff = max_backoff
        self.sleep = sleep
        self.user_agent = user_agent
        self.request_count = 0

    # -- transport -------------------------------------------------------------------------------------------
    def request(self, method, path, api_token=None, body=None, query=None, expect=(200,), idempotent=True):
        """Send one call; return ``(status, data)`` for an expected status, raise GitLabError otherwise.

        ``idempotent=False`` marks a call whose repetition could do the work twice (creating a runner): it is
        repeated only when GitLab certainly did nothing (a refused connection, a 429 from the migration backoff,
        which GitLab sends before running the handler, docs/gitlab-api.md §1.0).
        """
        url = self.base + API_PREFIX + path
        if query:
            url += '?' + urlencode(query, doseq=True)
        headers = {'Accept': 'application/json'}
        data = None
        if body is not None:
            data = json.dumps(body).encode('utf-8')
            headers['Content-Type'] = 'application/json'
        if api_token:
            headers['PRIVATE-TOKEN'] = api_token
        attempt = 0
        while True:
            attempt += 1
            status, payload, headers_in, failure, safe = self._send(method, url, data, headers)
            if failure is None and status in expect:
                try:
                    return status, self._json(payload, status)
                except ValueError:
                    raise GitLabError(method, path, status, 'the body is not JSON', attempts=attempt,
                                      unknown_outcome=not idempotent, kind='non_json')
            if failure is not None:
                kind, reason = failure
                retryable = safe == 'always' or (safe == 'idempotent' and idempotent)
            else:
                kind, reason = '', _message_of(payload)
                if reason.startswith('not JSON'):
                    kind = 'non_json'
                retryable = status in RETRY_STATUSES and (idempotent or status == 429)
            retry_after = _retry_after(headers_in) if failure is None else None
            if retryable and attempt <= self.retries and (retry_after is None or retry_after <= self.max_backoff):
                delay = retry_after if retry_after is not None else self.backoff * (2 ** (attempt - 1))
                self.sleep(min(delay, self.max_backoff))
                continue
            hint = ''
            if retry_after is not None and retry_after > self.max_backoff:
                hint = 'GitLab asked to retry after {0:g}s, longer than retry_max_delay ({1:g}s)'.format(retry_after, self.max_backoff)
            if idempotent:
                unknown = False
            elif failure is not None:
                unknown = safe != 'always' and kind != 'tls' and kind != 'dns'
            else:
                unknown = status not in NOT_CREATED_STATUSES
            if unknown:
                hint = (hint + '; ' if hint else '') + 'the outcome on the server is unknown'
            raise GitLabError(method, path, status, reason, hint, attempts=attempt, retry_after=retry_after,
                              unknown_outcome=unknown, kind=kind)

    def _send(self, method, url, data, headers):
        """Return (status, body, headers, failure, repeat).

        ``failure`` is None or (kind, text). ``repeat`` says which failures may be sent again: 'always' (the
        request never reached GitLab), 'idempotent' (it may have been processed), 'never' (repeating cannot help,
        e.g. a bad certificate).
        """
        self.request_count += 1
        try:
            resp = open_url(url, data=data, headers=headers, method=method, validate_certs=self.validate_certs,
                            ca_path=self.ca_path, timeout=self.timeout, http_agent=self.user_agent,
                            follow_redirects='none', use_proxy=True, use_netrc=False)
            try:
                return resp.getcode(), resp.read(), resp.headers, None, 'never'
            finally:
                resp.close()
        except HTTPError as exc:
            try:
                payload = exc.read()
            except (OSError, http.client.HTTPException):
                payload = b''
            return exc.code, payload, exc.headers, None, 'never'
        except SSLValidationError as exc:
            return None, b'', None, ('tls', 'TLS certificate could not be verified: {0}'.format(_short(exc))), 'never'
        except UrlsConnectionError as exc:
            return None, b'', None, ('connection', 'connection failed: {0}'.format(_short(exc))), 'idempotent'
        except URLError as exc:
            return (None, b'', None) + _transport_failure(exc.reason, self.timeout)
        except (http.client.HTTPException, OSError) as exc:
            return (None, b'', None) + _transport_failure(exc, self.timeout)

    @staticmethod
    def _json(payload, status):
        if status == 204 or not payload:
            return None
        return json.loads(payload.decode('utf-8'))

    # -- endpoints ----------------------------------------------------------------------------------------------
    def register_legacy(self, registration_token, settings):
        """``POST /runners`` with a registration token (docs/gitlab-api.md §1.2). Returns {id, token, token_expires_at}."""
        body = dict(settings)
        body['token'] = registration_token
        return self.request('POST', '/runners', body=body, expect=(201,), idempotent=False)[1]

    def create_user_runner(self, api_token, settings):
        """``POST /user/runners`` with a personal/group/project access token (docs/gitlab-api.md §1.3)."""
        return self.request('POST', '/user/runners', api_token=api_token, body=settings, expect=(201,), idempotent=False)[1]

    def verify(self, token, system_id=None):
        """``POST /runners/verify`` (docs/gitlab-api.md §1.4). Returns the body on 200, None when GitLab rejects the token (403).

        Verifying twice is harmless (it heartbeats and upserts this host's runner manager), so it is retried.
        """
        body = {'token': token}
        if system_id:
            body['system_id'] = system_id
        try:
            status, data = self.request('POST', '/runners/verify', body=body, expect=(200,))
        except GitLabError as exc:
            if exc.status == 403:
                return None
            raise
        # Older GitLab answered 200 with a plain-text body (docs/gitlab-api.md §1.4); treat it as valid without details.
        return data if isinstance(data, dict) else {}

    def get_runner(self, api_token, runner_id):
        """``GET /runners/:id`` (docs/gitlab-api.md §1.6). Returns None on 404."""
        try:
            return self.request('GET', '/runners/{0}'.format(int(runner_id)), api_token=api_token)[1]
        except GitLabError as exc:
            if exc.status == 404:
                return None
            raise

    def update_runner(self, api_token, runner_id, changes):
        """``PUT /runners/:id`` with only the settings that differ (docs/gitlab-api.md §1.6)."""
        return self.request('PUT', '/runners/{0}'.format(int(runner_id)), api_token=api_token, body=changes)[1]

    def delete_runner(self, api_token, runner_id):
        """``DELETE /runners/:id`` (docs/gitlab-api.md §1.5). A runner already gone counts as deleted."""
        self.request('DELETE', '/runners/{0}'.format(int(runner_id)), api_token=api_token, expect=(204, 404))

    def delete_by_token(self, token):
        """``DELETE /runners`` with the runner's own token: deletes the whole runner (docs/gitlab-api.md §1.5).

        A 403 means the token no longer exists, so there is nothing left to delete.
        """
        self.request('DELETE', '/runners', body={'token': token}, expect=(204, 403))

    def delete_manager(self, token, system_id):
        """``DELETE /runners/managers``: removes only this host's runner manager (docs/gitlab-api.md §1.5)."""
        self.request('DELETE', '/runners/managers', body={'token': token, 'system_id': system_id}, expect=(204, 403, 404))

    def reset_token_by_id(self, api_token, runner_id):
        """``POST /runners/:id/reset_authentication_token`` (docs/gitlab-api.md §1.7).

        Repeating it only rotates again and the last answer holds the live token, so it is retried.
        """
        return self.request('POST', '/runners/{0}/reset_authentication_token'.format(int(runner_id)),
                            api_token=api_token, expect=(201,))[1]

    def list_runners(self, api_token, scope_path='/runners/all', query=None, limit_pages=50):
        """Walk an offset-paginated runner listing (docs/gitlab-api.md §1.0, §1.8)."""
        query = dict(query or {})
        query.setdefault('per_page', 100)
        page = 1
        found = []
        while page and page <= limit_pages:
            query['page'] = page
            data = self.request('GET', scope_path, api_token=api_token, query=query)[1] or []
            if not isinstance(data, list):
                raise GitLabError('GET', scope_path, 200, 'expected a list of runners', kind='non_json')
            found.extend(data)
            if len(data) < query['per_page']:
                break
            page += 1
        return found


def scope_path_for(runner_type, group_id=None, project_id=None):
    """The listing endpoint that holds runners of one type (docs/gitlab-api.md §1.8)."""
    if runner_type == 'group_type':
        return '/groups/{0}/runners'.format(quote(str(group_id), safe=''))
    if runner_type == 'project_type':
        return '/projects/{0}/runners'.format(quote(str(project_id), safe=''))
    return '/runners/all'


def _transport_failure(reason, timeout):
    """Classify a failure below HTTP as ((kind, text), repeat)."""
    if isinstance(reason, ssl.SSLCertVerificationError):
        return ('tls', 'TLS certificate could not be verified: {0}'.format(_short(reason))), 'never'
    if isinstance(reason, ssl.SSLError):
        return ('tls', 'TLS handshake failed: {0}'.format(_short(reason))), 'never'
    if isinstance(reason, ConnectionRefusedError):
        return ('refused', 'connection refused'), 'always'
    if isinstance(reason, (socket.timeout, TimeoutError)):
        return ('timeout', 'no answer within the timeout of {0}s'.format(timeout)), 'idempotent'
    if isinstance(reason, socket.gaierror):
        return ('dns', 'host name could not be resolved'), 'never'
    if isinstance(reason, (http.client.HTTPException, ConnectionError)):
        return ('dropped', 'connection dropped before the answer was complete: {0}'.format(type(reason).__name__)), 'idempotent'
    return ('connection', 'connection failed: {0}'.format(_short(reason))), 'idempotent'


def _short(exc):
    text = str(exc)
    return text if len(text) <= 200 else text[:197] + '...'
