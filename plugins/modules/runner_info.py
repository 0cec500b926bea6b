#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright (c) dood.gitlab_runner contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r'''
---
module: runner_info
short_description: Report a host's gitlab-runner runners, and what GitLab knows about them
version_added: 0.1.0
description:
  - Reads C(config.toml) and C(.runner_system_id) and reports each C([[runners]]) entry (name, id, url, executor and
    when its token expires) and the host's C(system_id). Never writes anything and never reports a token.
  - With O(api_token), also reads each runner from GitLab with C(GET /api/v4/runners/:id), one request per runner,
    for its status, last contact and server-side settings.
  - With O(gitlab_runners), also lists the runners GitLab holds (all of them, a group's or a project's), filtered by tags
    or description, so a fleet audit can find runners no host declares.
  - "Requirements on the managed host: Python 3.9 or newer and nothing else."
author:
  - dood.gitlab_runner maintainers (@dood)
extends_documentation_fragment:
  - dood.gitlab_runner.gitlab
attributes:
  check_mode:
    support: full
    description: The module only reads; it runs the same way in check mode.
  diff_mode:
    support: none
    description: Nothing changes, so there is nothing to show.
  idempotent:
    support: full
    description: Never changes anything; C(changed) is always false.
options:
  # api_url and api_token override the shared fragment: this module only reads, and only from api_url.
  api_url:
    description:
      - Base URL of the GitLab instance, without C(/api/v4), for example C(https://gitlab.example.com).
      - Only runners whose C(url) in C(config.toml) is this URL are read from GitLab.
      - If not set, the environment variable E(GITLAB_URL) is used.
    type: str
  api_token:
    description:
      - A personal, group or project access token, sent as C(PRIVATE-TOKEN) and only to O(api_url).
      - C(read_api) (or C(manage_runner) for reading single runners) is enough; the module never writes.
      - Without it the module reads the files only and sends no request.
      - If not set, the environment variable E(GITLAB_API_TOKEN) is used.
    type: str
  path:
    description:
      - Path of C(config.toml). A missing file is reported as O(path) with no runners, not as an error.
    type: path
    default: /etc/gitlab-runner/config.toml
  read_files:
    description:
      - Read O(path) and C(.runner_system_id). Set to V(false) to only list runners with O(gitlab_runners), for example
        from the controller.
    type: bool
    default: true
  managers:
    description:
      - Also read each runner's managers with C(GET /api/v4/runners/:id/managers) (one more request per runner) and
        report whether this host's C(system_id) is among them.
    type: bool
    default: false
  gitlab_runners:
    description:
      - List runners held by GitLab. Needs O(api_url) and O(api_token).
      - The listing entity carries no tags, so O(gitlab_runners.tag_list) is applied by GitLab and
        O(gitlab_runners.description) here.
    type: dict
    suboptions:
      scope:
        description:
          - V(all) lists every runner of the instance (C(GET /api/v4/runners/all), administrators only).
          - V(owned) lists the group and project runners the token's user administers (C(GET /api/v4/runners)).
          - V(group) and V(project) list the runners available to one group or project.
        type: str
        choices: [all, owned, group, project]
        default: all
      group_id:
        description: Numeric id or full path of the group, for V(group).
        type: str
      project_id:
        description: Numeric id or full path of the project, for V(project).
        type: str
      type:
        description: Only runners of this type.
        type: str
        choices: [instance_type, group_type, project_type]
      tag_list:
        description: Only runners carrying all these tags.
        type: list
        elements: str
      status:
        description: Only runners with this status.
        type: str
        choices: [online, offline, stale, never_contacted]
      description:
        description: Only runners whose description matches this regular expression (Python C(re.search)).
        type: str
notes:
  - The O(api_token) is sent only to O(api_url). A runner whose C(url) in C(config.toml) names another GitLab is
    reported from the file alone, with RV(runners[].server_error) saying why.
  - Runner tokens found in C(config.toml) are added to the values Ansible hides in every output.
seealso:
  - module: dood.gitlab_runner.runner_config
  - name: GitLab runner API
    description: The REST endpoints this module reads.
    link: https://docs.gitlab.com/api/runners/
'''

EXAMPLES = r'''
- name: What is configured on this host (no request to GitLab)
  dood.gitlab_runner.runner_info:
    path: /srv/gitlab-runner/config/config.toml
  register: runner_report

- name: Also ask GitLab for each runner's status and settings
  dood.gitlab_runner.runner_info:
    path: /srv/gitlab-runner/config/config.toml
    api_url: https://gitlab.example.com
    api_token: "{{ vault_gitlab_read_token }}"
  register: runner_report

- name: Fail early when a token expires within two weeks
  ansible.builtin.assert:
    that: runner_report.runners | selectattr('token_expires_in_days', 'number') | selectattr('token_expires_in_days', 'lt', 14) | list | length == 0

- name: List the project's runners tagged docker-dood, from the controller
  dood.gitlab_runner.runner_info:
    read_files: false
    api_url: https://gitlab.example.com
    api_token: "{{ vault_gitlab_read_token }}"
    gitlab_runners:
      scope: project
      project_id: "42"
      tag_list: [docker-dood]
  delegate_to: localhost
  run_once: true
  register: server_side
'''

RETURN = r'''
path:
  description: Path of C(config.toml).
  returned: always
  type: str
  sample: /srv/gitlab-runner/config/config.toml
exists:
  description: Whether C(config.toml) exists (false with O(read_files=false)).
  returned: always
  type: bool
  sample: true
system_id:
  description: This host's C(system_id) from C(.runner_system_id) beside C(config.toml), null when there is none.
  returned: always
  type: str
  sample: s_0123456789ab
concurrent:
  description: The global C(concurrent) of C(config.toml), null when unset.
  returned: always
  type: int
  sample: 4
runners:
  description: One item per C([[runners]]) entry, in file order. Never holds a token.
  returned: always
  type: list
  elements: dict
  contains:
    name:
      description: The entry's C(name).
      type: str
      sample: build-01
    id:
      description: GitLab's runner id from the file, 0 when unknown.
      type: int
      sample: 9171
    url:
      description: The GitLab URL the runner talks to.
      type: str
      sample: https://gitlab.example.com
    executor:
      description: The executor.
      type: str
      sample: docker
    has_token:
      description: Whether the entry holds a token (the token itself is never returned).
      type: bool
      sample: true
    token_obtained_at:
      description: When the token was obtained (ISO 8601, UTC), null when unknown.
      type: str
      sample: '2026-11-28T17:00:00Z'
    token_expires_at:
      description: When the token expires (ISO 8601, UTC), null when it does not.
      type: str
      sample: '2027-01-01T00:00:00Z'
    token_expires_in_days:
      description: Days until the token expires (negative once expired), null when it does not expire.
      type: float
      sample: 33.5
    server:
      description:
        - What GitLab holds for the runner, null without O(api_token) or when it could not be read.
        - C(managers) and C(manager_on_this_host) only with O(managers=true).
      type: dict
      sample:
        status: online
        contacted_at: '2026-11-28T17:00:00.000Z'
        description: build-01
        tag_list: [docker-dood]
        run_untagged: false
        locked: true
        paused: false
        access_level: not_protected
        maximum_timeout: 3600
        maintenance_note: null
        runner_type: project_type
        version: 18.10.1
    docker_volumes:
      description:
        - The entry's C([runners.docker]) C(volumes), as the docker executor mounts them into every job (empty when
          there are none). Lets a play check that jobs see the host's Docker socket.
      type: list
      elements: str
      sample: ['/var/run/docker.sock:/var/run/docker.sock', /cache]
    job_docker_host:
      description:
        - The C(DOCKER_HOST) the entry's C(environment) sets for its jobs, null when it sets none. The other variables
          of C(environment) are not returned (they may hold secrets).
      type: str
      sample: unix:///run/docker.sock
    server_error:
      description: Why RV(runners[].server) is null although O(api_token) was given (not found, refused, other URL).
      type: str
      sample: GitLab answered 404 (404 Not found) for GET /api/v4/runners/9171
gitlab_runners:
  description: The runners GitLab listed for O(gitlab_runners), after the description filter.
  returned: when O(gitlab_runners) is set
  type: list
  elements: dict
  sample:
    - id: 12
      description: build-01
      runner_type: project_type
      status: never_contacted
      paused: false
      created_at: '2026-11-28T17:00:00.000Z'
api_requests:
  description: Number of HTTP requests sent to GitLab, retries included.
  returned: always
  type: int
  sample: 2
'''

import datetime
import errno
import os
import re

from urllib.parse import urlsplit

from ansible.module_utils.basic import AnsibleModule, env_fallback
from ansible.module_utils.common.text.converters import to_native

from ansible_collections.dood.gitlab_runner.plugins.module_utils import config_toml
from ansible_collections.dood.gitlab_runner.plugins.module_utils.gitlab_api import GitLabClient, GitLabError, scope_path_for

SYSTEM_ID_RE = re.compile(r'^[sr]_[0-9a-zA-Z]{12}$')
# Server-side fields reported per runner (facts §1.6 RunnerDetails); anything else GitLab sends is left out.
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
            parts = urlsplit(url)
            if parts.scheme not in ('https', 'http') or not parts.hostname or parts.query or parts.fragment:
                raise RunnerInfoError('{0!r} is not a valid GitLab URL; use the base URL such as https://gitlab.example.com.'.format(url))
            if parts.path.rstrip('/').endswith('/api/v4'):
                raise RunnerInfoError('The URL {0!r} ends with /api/v4; give the base URL of GitLab without it.'.format(url))
            if parts.scheme == 'http' and not self.params['allow_http'] and token:
                raise RunnerInfoError('{0!r} uses plain http, which sends the API token in clear text; use https, or set '
                                      'allow_http: true for a trusted network.'.format(url))
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
            parsed = config_toml.parse(raw)
        except config_toml.ConfigTomlError as exc:
            # The parser may quote the offending line, which can hold a token: mask what the file says is secret.
            for match in re.finditer(rb'(?m)^\s*token\s*=\s*"([^"\n]*)"', raw):
                self.secret(match.group(1).decode('utf-8', 'replace'))
            raise RunnerInfoError('{0} is not valid TOML: {1}.'.format(self.path, config_toml.mask_text(to_native(exc), self.secrets)))
        runners = parsed.get('runners', [])
        if not isinstance(runners, list) or not all(isinstance(r, dict) for r in runners):
            raise RunnerInfoError('{0}: runners must be an array of tables ([[runners]]).'.format(self.path))
        for entry in runners:
            token = entry.get('token')
            self.secret(token if isinstance(token, str) else None)
        return parsed

    def system_id(self):
        """The id gitlab-runner keeps in .runner_system_id (facts §2.6); never created here."""
        try:
            with open(os.path.join(self.dir, '.runner_system_id')) as handle:
                value = handle.read().strip()
        except IOError:
            return None
        return value if SYSTEM_ID_RE.match(value) else None

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


def main():
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


if __name__ == '__main__':
    main()
