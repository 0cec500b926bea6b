# -*- coding: utf-8 -*-
# Copyright (c) dood.gitlab_runner contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Every option of runner_config, declared once.

The argument spec, the groups the code works with (server-side settings, local settings and their config.toml
keys, connection overrides, credential sources, secrets) and the range checks are all derived from the rows below,
so the copies cannot drift. A unit test checks the derived spec against the module's DOCUMENTATION.
"""

from __future__ import annotations

from ansible.module_utils.basic import env_fallback

# Kinds of runner options:
#   identity    name, state, url
#   credential  the one way a runner gets its token
#   scope       group_id / project_id of a runner the module creates
#   server      a setting kept by GitLab (POST/PUT /runners), compared with GET /runners/:id
#   local       a key of the [[runners]] entry in config.toml (key = its TOML name)
#   connection  overrides of the top-level connection options for one runner
# Kinds of top-level options: file, connection, behaviour, global (a top-level key of config.toml), runners.

EXECUTORS = ('shell', 'custom', 'instance', 'docker', 'docker-windows', 'docker-autoscaler', 'docker+machine', 'kubernetes',
             'ssh', 'parallels', 'virtualbox')
LOG_LEVELS = ('debug', 'info', 'warn', 'warning', 'error', 'fatal', 'panic')
LOG_FORMATS = ('runner', 'text', 'json')


class Option:
    """One row of the table: the Ansible type information, what the option is for, and its config.toml key."""

    __slots__ = ('name', 'type', 'kind', 'key', 'default', 'choices', 'elements', 'no_log', 'required', 'fallback',
                 'bounds', 'options')

    def __init__(self, name, type_, kind, key=None, default=None, choices=None, elements=None, no_log=None,
                 required=False, fallback=None, bounds=None, options=None):
        self.name = name
        self.type = type_
        self.kind = kind
        self.key = key
        self.default = default
        self.choices = choices
        self.elements = elements
        self.no_log = no_log
        self.required = required
        self.fallback = fallback
        self.bounds = bounds
        self.options = options

    def spec(self):
        """This option's entry of the AnsibleModule argument spec."""
        spec = {'type': self.type}
        if self.default is not None:
            spec['default'] = self.default
        if self.choices is not None:
            spec['choices'] = list(self.choices)
        if self.elements is not None:
            spec['elements'] = self.elements
        if self.no_log is not None:
            spec['no_log'] = self.no_log
        if self.required:
            spec['required'] = True
        if self.fallback is not None:
            spec['fallback'] = (env_fallback, [self.fallback])
        if self.options is not None:
            spec['options'] = dict((o.name, o.spec()) for o in self.options)
        return spec


def _runner_option(name, type_, kind, key=None, **kwargs):
    return Option(name, type_, kind, key=key, **kwargs)


# Local settings are listed in the order gitlab-runner's RunnerConfig/RunnerSettings declare them
# (docs/gitlab-runner-config.md §2.2), so entries keep gitlab-runner's key order.
RUNNER_OPTIONS = (
    _runner_option('name', 'str', 'identity', required=True),
    _runner_option('state', 'str', 'identity', default='present', choices=('present', 'absent')),
    _runner_option('url', 'str', 'identity'),
    _runner_option('token', 'str', 'credential', no_log=True),
    _runner_option('registration_token', 'str', 'credential', no_log=True),
    _runner_option('runner_type', 'str', 'credential', choices=('instance_type', 'group_type', 'project_type')),
    _runner_option('group_id', 'int', 'scope'),
    _runner_option('project_id', 'int', 'scope'),
    _runner_option('description', 'str', 'server'),
    _runner_option('tag_list', 'list', 'server', elements='str'),
    _runner_option('run_untagged', 'bool', 'server'),
    _runner_option('locked', 'bool', 'server'),
    _runner_option('paused', 'bool', 'server'),
    _runner_option('access_level', 'str', 'server', choices=('not_protected', 'ref_protected')),
    _runner_option('maximum_timeout', 'int', 'server'),
    _runner_option('maintenance_note', 'str', 'server'),
    _runner_option('limit', 'int', 'local', 'limit'),
    _runner_option('output_limit', 'int', 'local', 'output_limit'),
    _runner_option('request_concurrency', 'int', 'local', 'request_concurrency'),
    _runner_option('tls_ca_file', 'path', 'local', 'tls-ca-file'),
    _runner_option('tls_cert_file', 'path', 'local', 'tls-cert-file'),
    _runner_option('tls_key_file', 'path', 'local', 'tls-key-file'),
    _runner_option('executor', 'str', 'local', 'executor', choices=EXECUTORS),
    _runner_option('builds_dir', 'str', 'local', 'builds_dir'),
    _runner_option('cache_dir', 'str', 'local', 'cache_dir'),
    _runner_option('clone_url', 'str', 'local', 'clone_url'),
    _runner_option('environment', 'list', 'local', 'environment', elements='str'),
    _runner_option('pre_get_sources_script', 'str', 'local', 'pre_get_sources_script'),
    _runner_option('post_get_sources_script', 'str', 'local', 'post_get_sources_script'),
    _runner_option('pre_build_script', 'str', 'local', 'pre_build_script'),
    _runner_option('post_build_script', 'str', 'local', 'post_build_script'),
    _runner_option('shell', 'str', 'local', 'shell'),
    _runner_option('cache', 'dict', 'local', 'cache'),
    _runner_option('feature_flags', 'dict', 'local', 'feature_flags'),
    _runner_option('docker', 'dict', 'local', 'docker'),
    _runner_option('extra', 'dict', 'extra'),
    _runner_option('api_token', 'str', 'connection', no_log=True),
    _runner_option('validate_certs', 'bool', 'connection'),
    _runner_option('ca_path', 'path', 'connection'),
    _runner_option('ca_content', 'str', 'connection'),
    _runner_option('timeout', 'int', 'connection'),
)

# The options runner_defaults may hold: what an entry's settings are.
DEFAULTABLE = tuple(Option(o.name, o.type, 'default', o.key, choices=o.choices, elements=o.elements)
                    for o in RUNNER_OPTIONS if o.kind in ('local', 'extra'))

SESSION_SERVER = (
    Option('listen_address', 'str', 'global'),
    Option('advertise_address', 'str', 'global'),
    Option('session_timeout', 'int', 'global'),
)

# Global settings in the order of gitlab-runner's Config struct (docs/gitlab-runner-config.md §2.2).
GLOBAL_OPTIONS = (
    Option('listen_address', 'str', 'global', 'listen_address'),
    Option('session_server', 'dict', 'global', 'session_server', options=SESSION_SERVER),
    Option('labels', 'dict', 'global', 'labels'),
    Option('concurrent', 'int', 'global', 'concurrent'),
    Option('check_interval', 'int', 'global', 'check_interval'),
    Option('log_level', 'str', 'global', 'log_level', choices=LOG_LEVELS),
    Option('log_format', 'str', 'global', 'log_format', choices=LOG_FORMATS),
    Option('sentry_dsn', 'str', 'global', 'sentry_dsn', no_log=True),
    Option('connection_max_age', 'str', 'global', 'connection_max_age'),
    Option('shutdown_timeout', 'int', 'global', 'shutdown_timeout'),
)

OPTIONS = (
    Option('path', 'path', 'file', default='/etc/gitlab-runner/config.toml'),
    Option('api_url', 'str', 'connection', fallback='GITLAB_URL'),
    Option('api_token', 'str', 'connection', no_log=True, fallback='GITLAB_API_TOKEN'),
    Option('validate_certs', 'bool', 'connection', default=True),
    Option('ca_path', 'path', 'connection'),
    Option('ca_content', 'str', 'connection'),
    Option('timeout', 'int', 'connection', default=30),
    Option('retries', 'int', 'behaviour', default=3, bounds=(0, 10)),
    Option('retry_delay', 'float', 'behaviour', default=1.0, bounds=(0, 300)),
    Option('retry_max_delay', 'float', 'behaviour', default=60.0, bounds=(0, 3600)),
    Option('token_renewal_days', 'int', 'behaviour', default=7, no_log=False, bounds=(0, 3650)),
    Option('allow_http', 'bool', 'connection', default=False),
    Option('server_check', 'str', 'behaviour', default='auto', choices=('auto', 'verify', 'never')),
    Option('prune', 'bool', 'behaviour', default=False),
    Option('backup', 'bool', 'behaviour', default=False),
    Option('authoritative', 'bool', 'behaviour', default=False),
    Option('gitlab_side', 'str', 'behaviour', default='controller', choices=('controller', 'host')),
    Option('runner_version', 'str', 'behaviour'),
    Option('secret_names', 'list', 'behaviour', elements='str', default=[], no_log=False),
) + GLOBAL_OPTIONS + (
    Option('global_defaults', 'dict', 'defaults', options=tuple(
        Option(o.name, o.type, 'default', o.key, choices=o.choices, options=o.options, no_log=o.no_log)
        for o in GLOBAL_OPTIONS)),
    Option('runner_defaults', 'dict', 'defaults', options=DEFAULTABLE),
    Option('runners', 'list', 'runners', default=[], elements='dict', options=RUNNER_OPTIONS),
)


def _names(rows, kind):
    return tuple(o.name for o in rows if o.kind == kind)


SERVER_SETTINGS = _names(RUNNER_OPTIONS, 'server')
CONNECTION_OPTIONS = _names(RUNNER_OPTIONS, 'connection')
CREDENTIAL_OPTIONS = _names(RUNNER_OPTIONS, 'credential')
# (option, config.toml key) of the [[runners]] keys that options set.
LOCAL_SETTINGS = tuple((o.name, o.key) for o in RUNNER_OPTIONS if o.kind == 'local')
GLOBAL_SETTINGS = tuple(o.key for o in OPTIONS if o.kind == 'global')
# Options whose value is a credential (Ansible hides them; the module also masks them everywhere).
RUNNER_SECRET_OPTIONS = tuple(o.name for o in RUNNER_OPTIONS if o.no_log)
BOUNDED_OPTIONS = tuple((o.name, o.bounds[0], o.bounds[1]) for o in OPTIONS if o.bounds)


def argument_spec():
    """The AnsibleModule argument spec of runner_config."""
    return dict((o.name, o.spec()) for o in OPTIONS)


MUTUALLY_EXCLUSIVE = [('ca_path', 'ca_content')]
