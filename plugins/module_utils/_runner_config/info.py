# -*- coding: utf-8 -*-
# Copyright (c) dood.gitlab_runner contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""What the runner_info module needs: read config.toml and the system id like runner_config does, ask GitLab."""

from __future__ import annotations

import datetime
import errno
import os
import re

from urllib.parse import urlsplit

from ansible.module_utils.basic import AnsibleModule, env_fallback
from ansible.module_utils.common.text.converters import to_native

from ansible_collections.dood.gitlab_runner.plugins.module_utils import config_toml
from ansible_collections.dood.gitlab_runner.plugins.module_utils.gitlab_api import GitLabClient, GitLabError, scope_path_for
from ansible_collections.dood.gitlab_runner.plugins.module_utils._runner_config.model import RunnerConfigError, url_problem
from ansible_collections.dood.gitlab_runner.plugins.module_utils._runner_config.files import read_system_id
from ansible_collections.dood.gitlab_runner.plugins.module_utils._runner_config.store import parse_config

# Server-side fields reported per runner (docs/gitlab-api.md §1.6 RunnerDetails); anything else GitLab sends is left out.
SERVER_FIELDS = ('status', 'contacted_at', 'online', 'description', 'tag_list', 'run_untagged', 'locked', 'paused',
                 'access_level', 'maximum_timeout', 'maintenance_note', 'runner_type', 'version', 'created_at')
LIST_FIELDS = ('id', 'description', 'runner_type', 'status', 'paused', 'created_at')
MANAGER_FIELDS = ('system_id', 'status', 'contacted_at', 'version', 'created_at')


class RunnerInfoError(Exception):
    """A problem with a sentence that names it and the fix."""


def _iso(value):
    if not isinstance(value, datetime.datetime) or value == config_toml.ZERO_TIME:
        return None
    if value.tzinfo is not None:
        value = value.astimezone(datetime.timezone.utc)
    return value.strftime('%Y-%m-%dT%H:%M:%SZ')


def _days_left(value, now):
    if not isinstance(value, datetime.datetime) or value == config_toml.ZERO_TIME:
        return None
    if value.tzinfo is None:
        value = value.replace(tzinfo=datetime.timezone.utc)
    return round((value - now).total_seconds() / 86400.0, 2)


def _docker_volumes(entry):
    docker = entry.get('docker')
    volumes = docker.get('volumes') if isinstance(docker, dict) else None
    return [volume for volume in volumes if isinstance(volume, str)] if isinstance(volumes, list) else []


def _job_docker_host(entry):
    """DOCKER_HOST from the entry's environment (the last definition wins, as in a shell); nothing else is read."""
    environment = entry.get('environment')
    found = None
    for item in environment if isinstance(environment, list) else []:
        if isinstance(item, str) and item.startswith('DOCKER_HOST='):
            found = item[len('DOCKER_HOST='):]
    return found


def _same_gitlab(url_a, url_b):
    """True when two base URLs name the same GitLab (scheme, host, port and path; case and a trailing slash aside)."""
    a, b = urlsplit(url_a or ''), urlsplit(url_b or '')
    return (a.scheme.lower(), (a.hostname or ''), a.port, a.path.rstrip('/')) == \
        (b.scheme.lower(), (b.hostname or ''), b.port, b.path.rstrip('/'))


class RunnerInfo:
    """Read the file, then (optionally) GitLab; report without changing anything."""

    def __init__(self, module):
        self.module = module
        self.params = module.params
        self.path = self.params['path']
        self.dir = os.path.dirname(os.path.abspath(self.path))
        self.secrets = set()
        self.api = None
        if self.params['api_url']:
            self.api = GitLabClient(self.params['api_url'], validate_certs=self.params['validate_certs'],
                                    ca_path=self.params['ca_path'], timeout=self.params['timeout'],
                                    user_agent='dood.gitlab_runner runner_info')

    def secret(self, value):
        if value:
            self.secrets.add(value)
            self.module.no_log_values.add(value)
        return value

    def validate(self):
        url = self.params['api_url']
        token = self.params['api_token']
        if (token or self.params['gitlab_runners']) and not url:
            raise RunnerInfoError('api_token and gitlab_runners need api_url (or the GITLAB_URL environment variable): the '
                                  'API token is only ever sent to that GitLab.')
        if self.params['gitlab_runners'] and not token:
            raise RunnerInfoError('gitlab_runners needs api_token (read_api scope) to list runners.')
        if url:
            # The API token is the only thing this module sends: plain http matters only with one.
            problem = url_problem(url, self.params['allow_http'] or not token, sends='the API token', legacy_ci=False)
            if problem:
                raise RunnerInfoError(problem[0].upper() + problem[1:])
        search = self.params['gitlab_runners'] or {}
        if search.get('scope') == 'group' and not search.get('group_id'):
            raise RunnerInfoError('gitlab_runners scope group needs group_id.')
        if search.get('scope') == 'project' and not search.get('project_id'):
            raise RunnerInfoError('gitlab_runners scope project needs project_id.')
        if search.get('description'):
            try:
                re.compile(search['description'])
            except re.error as exc:
                raise RunnerInfoError('gitlab_runners description is not a valid regular expression: {0}.'.format(exc))

    def read_config(self):
        if os.path.isdir(self.path):
            raise RunnerInfoError('{0} is a directory; path must name the config.toml file inside it.'.format(self.path))
        try:
            with open(self.path, 'rb') as handle:
                raw = handle.read()
        except IOError as exc:
            if exc.errno == errno.ENOENT:
                return None
            raise RunnerInfoError('Cannot read {0}: {1}.'.format(self.path, exc.strerror))
        try:
            return parse_config(self.path, raw, self.secret)
        except RunnerConfigError as exc:
            raise RunnerInfoError(to_native(exc))

    def system_id(self):
        """The id gitlab-runner keeps in .runner_system_id (docs/gitlab-runner-config.md §2.6); never created here."""
        return read_system_id(self.dir)

    def server_view(self, runner_id, system_id):
        """(server dict, error sentence) for one runner id."""
        token = self.params['api_token']
        try:
            data = self.api.get_runner(token, runner_id)
            if data is None:
                return None, 'GitLab has no runner {0} (404 for GET /api/v4/runners/{0}): it was deleted on the server'.format(runner_id)
            view = dict((key, data.get(key)) for key in SERVER_FIELDS)
            if self.params['managers']:
                managers = self.api.request('GET', '/runners/{0}/managers'.format(int(runner_id)), api_token=token)[1] or []
                view['managers'] = [dict((k, m.get(k)) for k in MANAGER_FIELDS) for m in managers if isinstance(m, dict)]
                view['manager_on_this_host'] = bool(system_id) and any(m.get('system_id') == system_id for m in view['managers'])
            return view, None
        except GitLabError as exc:
            return None, config_toml.mask_text(exc.describe(), self.secrets)

    def runner_report(self, entry, system_id, now):
        runner_id = entry.get('id')
        runner_id = runner_id if isinstance(runner_id, int) and not isinstance(runner_id, bool) else 0
        url = entry.get('url') if isinstance(entry.get('url'), str) else None
        expires = entry.get('token_expires_at')
        item = {
            'name': entry.get('name'),
            'id': runner_id,
            'url': config_toml.mask_text(url, self.secrets) if url else url,
            'executor': entry.get('executor'),
            'has_token': bool(entry.get('token')),
            'token_obtained_at': _iso(entry.get('token_obtained_at')),
            'token_expires_at': _iso(expires),
            'token_expires_in_days': _days_left(expires, now),
            'docker_volumes': _docker_volumes(entry),
            'job_docker_host': _job_docker_host(entry),
            'server': None,
            'server_error': None,
        }
        if not self.params['api_token']:
            return item
        if runner_id <= 0:
            item['server_error'] = 'the entry has no runner id, so GitLab cannot be asked about it'
        elif not _same_gitlab(url, self.params['api_url']):
            item['server_error'] = 'not asked: the runner talks to {0}, not to api_url, and the API token goes only to api_url'.format(item['url'])
        else:
            item['server'], item['server_error'] = self.server_view(runner_id, system_id)
        return item

    def list_gitlab_runners(self):
        search = self.params['gitlab_runners']
        scope = search['scope']
        if scope == 'group':
            path = scope_path_for('group_type', group_id=search['group_id'])
        elif scope == 'project':
            path = scope_path_for('project_type', project_id=search['project_id'])
        elif scope == 'owned':
            path = '/runners'
        else:
            path = '/runners/all'
        query = {}
        for key in ('type', 'status'):
            if search.get(key):
                query[key] = search[key]
        if search.get('tag_list'):
            query['tag_list'] = ','.join(search['tag_list'])
        try:
            found = self.api.list_runners(self.params['api_token'], path, query=query)
        except GitLabError as exc:
            hint = ''
            if exc.status in (401, 403):
                hint = (' Listing needs the read_api scope; scope all needs an administrator, group an Owner and project a '
                        'Maintainer.')
            raise RunnerInfoError('Could not list runners: {0}.{1}'.format(exc.describe(), hint))
        pattern = re.compile(search['description']) if search.get('description') else None
        result = []
        for runner in found:
            if not isinstance(runner, dict):
                continue
            if pattern is not None and not pattern.search(runner.get('description') or ''):
                continue
            result.append(dict((key, runner.get(key)) for key in LIST_FIELDS))
        return result

    def run(self):
        try:
            self.validate()
            config = self.read_config() if self.params['read_files'] else None
        except RunnerInfoError as exc:
            self.module.fail_json(msg=config_toml.mask_text(to_native(exc), self.secrets))
        system_id = self.system_id() if self.params['read_files'] else None
        now = datetime.datetime.now(datetime.timezone.utc)
        entries = (config or {}).get('runners', [])
        runners = [self.runner_report(entry, system_id, now) for entry in entries]
        concurrent = (config or {}).get('concurrent')
        result = {
            'changed': False,
            'path': self.path,
            'exists': config is not None,
            'system_id': system_id,
            'concurrent': concurrent if isinstance(concurrent, int) and not isinstance(concurrent, bool) else None,
            'runners': runners,
        }
        if self.params['gitlab_runners']:
            try:
                result['gitlab_runners'] = self.list_gitlab_runners()
            except RunnerInfoError as exc:
                self.module.fail_json(msg=config_toml.mask_text(to_native(exc), self.secrets))
        result['api_requests'] = self.api.request_count if self.api else 0
        self.module.exit_json(**result)


def run_info_module():
    argument_spec = dict(
        path=dict(type='path', default='/etc/gitlab-runner/config.toml'),
        api_url=dict(type='str', fallback=(env_fallback, ['GITLAB_URL'])),
        api_token=dict(type='str', no_log=True, fallback=(env_fallback, ['GITLAB_API_TOKEN'])),
        validate_certs=dict(type='bool', default=True),
        ca_path=dict(type='path'),
        timeout=dict(type='int', default=30),
        allow_http=dict(type='bool', default=False),
        read_files=dict(type='bool', default=True),
        managers=dict(type='bool', default=False),
        gitlab_runners=dict(type='dict', options=dict(
            scope=dict(type='str', default='all', choices=['all', 'owned', 'group', 'project']),
            group_id=dict(type='str'),
            project_id=dict(type='str'),
            type=dict(type='str', choices=['instance_type', 'group_type', 'project_type']),
            tag_list=dict(type='list', elements='str'),
            status=dict(type='str', choices=['online', 'offline', 'stale', 'never_contacted']),
            description=dict(type='str'),
        )),
    )
    module = AnsibleModule(argument_spec=argument_spec, supports_check_mode=True)
    RunnerInfo(module).run()
