#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright (c) dood.gitlab_runner contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r'''
---
module: runner_config
short_description: Reconcile a host's gitlab-runner C(config.toml) with GitLab
version_added: 0.1.0
description:
  - Registers each declared runner with GitLab exactly once, keeps its identity (the runner C(id)) in its
    C([[runners]]) entry as gitlab-runner itself does, repairs server-side settings that drifted, and writes the
    whole C(config.toml) from the declared state.
  - The file is written only when its parsed content differs, atomically (temporary file and rename), mode C(0600).
  - The fields gitlab-runner owns (C(id), C(token), C(token_obtained_at), C(token_expires_at)) are kept from the file,
    so a token the runner rotated itself is never overwritten by an older one.
  - Runners that are removed (O(runners[].state=absent), or not declared with O(prune=true)) are unregistered from GitLab
    before their entry leaves the file.
  - gitlab-runner reloads C(config.toml) by itself within seconds of a change; the module never restarts anything.
  - "Requirements on the managed host: Python 3.9 or newer and nothing else: no pip package, no gitlab-runner binary.
    On Python 3.9 and 3.10 a copy of the C(tomli) parser shipped in the collection replaces the standard C(tomllib)."
author:
  - dood.gitlab_runner maintainers (@dood)
extends_documentation_fragment:
  - dood.gitlab_runner.gitlab
attributes:
  check_mode:
    support: full
    description: Nothing is sent to GitLab that changes anything and no file is written; C(changed) is exact.
  diff_mode:
    support: full
    description: Before and after of C(config.toml), every token and secret replaced by C(********).
  idempotent:
    support: full
    description: A second run with the same input reports no change and sends no write request to GitLab.
options:
  path:
    description:
      - Path of C(config.toml). Its directory must exist; C(.runner_system_id) is kept beside it.
    type: path
    default: /etc/gitlab-runner/config.toml
  server_check:
    description:
      - How each existing runner is checked against GitLab on every run.
      - V(auto) reads the runner with C(GET /api/v4/runners/:id) when an API token is at hand (one read request per
        runner, which also detects a runner deleted on the server and drifted settings) and sends nothing otherwise.
      - V(verify) also calls C(POST /api/v4/runners/verify) with the runner's own token, which detects a token GitLab no
        longer accepts even without an API token, at the cost of one POST per runner and run.
      - V(never) trusts the file.
    type: str
    choices: [auto, verify, never]
    default: auto
  prune:
    description:
      - Unregister and remove C([[runners]]) entries whose name is not declared in O(runners).
      - When false, undeclared entries are left exactly as they are.
    type: bool
    default: false
  backup:
    description:
      - Keep a timestamped copy of the previous C(config.toml) (mode C(0600)) when the file changes.
    type: bool
    default: false
  retries:
    description:
      - How many more times a failed call to GitLab is sent again when repeating it is safe.
      - Reads, updates, deletions and C(POST /api/v4/runners/verify) are repeated after a 429, 500, 502, 503 or 504
        answer, a timeout, a refused or a dropped connection.
      - A call that creates a runner is repeated only when GitLab certainly did nothing (a refused connection, or a 429
        that GitLab sends while migrating its database before it handles the request), so a retry never creates a second
        runner. When its outcome is unknown (timeout, dropped connection, 5xx), the next run finds the runner that may
        have been created through the API and adopts it (see O(api_token)).
      - Certificate errors and other 4xx answers are not repeated at all.
    type: int
    default: 3
  retry_delay:
    description:
      - Seconds to wait before the first repetition; the wait doubles at each further one.
      - A C(Retry-After) header from GitLab replaces this wait.
    type: float
    default: 1.0
  retry_max_delay:
    description:
      - The longest wait between two attempts, in seconds.
      - When GitLab asks (with C(Retry-After)) for a longer wait than this, the module fails at once and says how long
        GitLab asked to wait, instead of waiting.
    type: float
    default: 60.0
  ca_content:
    description:
      - The PEM text of the CA certificate(s) that signed GitLab's certificate, for a private CA, as an alternative to
        O(ca_path). Mutually exclusive with O(ca_path).
    type: str
  token_renewal_days:
    description:
      - A runner token that expires (C(token_expires_at) in C(config.toml)) within this many days is renewed with
        C(POST /api/v4/runners/:id/reset_authentication_token) when an API token is at hand. Without one, a token that
        has not expired yet only gives a warning (gitlab-runner renews it by itself while it runs), and an expired token
        fails the run with the fix in the message.
      - When the token lifetime is shorter than this, a token is renewed in the last quarter of its lifetime instead,
        so that each run does not renew it again.
      - A token given with O(runners[].token) is never rotated by the module, since it may be shared with other hosts;
        when it expires soon the module warns, and when it has expired the run fails with the fix.
      - V(0) only renews tokens that have expired.
    type: int
    default: 7
  concurrent:
    description: Global C(concurrent) (limit of jobs across all runners). GitLab-runner's default is 1.
    type: int
  check_interval:
    description: Global C(check_interval) in seconds (0 means gitlab-runner's default of 3).
    type: int
  log_level:
    description: Global C(log_level).
    type: str
    choices: [debug, info, warn, warning, error, fatal, panic]
  log_format:
    description: Global C(log_format).
    type: str
    choices: [runner, text, json]
  listen_address:
    description:
      - Address of the Prometheus metrics and debug server, for example C(:9252). Changing it needs a container restart.
    type: str
  shutdown_timeout:
    description: Global C(shutdown_timeout) in seconds for the forceful shutdown phase.
    type: int
  connection_max_age:
    description:
      - Global C(connection_max_age), a Go duration (V(15m), V(1h30m)) or a number of seconds.
    type: str
  sentry_dsn:
    description: Global C(sentry_dsn). Treated as a secret.
    type: str
  labels:
    description: Global C(labels) added to every runner's jobs (gitlab-runner 18.5 and newer).
    type: dict
  session_server:
    description: The C([session_server]) table for interactive web terminals.
    type: dict
    suboptions:
      listen_address:
        description: Address the session server listens on, for example C([::]:8093).
        type: str
      advertise_address:
        description: Address GitLab uses to reach the session server.
        type: str
      session_timeout:
        description: Seconds a terminal session may stay open.
        type: int
  runners:
    description:
      - The runners of this host. Each is tied to its C([[runners]]) entry by O(runners[].name).
    type: list
    elements: dict
    default: []
    suboptions:
      name:
        description: Name of the runner, unique in the file (C(name) in C(config.toml)).
        type: str
        required: true
      state:
        description:
          - V(absent) unregisters the runner and removes its entry. A runner whose token was given with
            O(runners[].token) may be shared by other hosts, so only this host's runner manager is removed from GitLab;
            runners the module created are deleted.
        type: str
        choices: [present, absent]
        default: present
      url:
        description: GitLab URL of this runner. Defaults to O(api_url).
        type: str
      token:
        description:
          - An existing runner authentication token (C(glrt-...)), created in GitLab's UI or API, possibly shared by many
            hosts. The runner's C(id) is read with C(POST /api/v4/runners/verify) when the entry is first written.
          - One of O(runners[].token), O(runners[].registration_token) and O(runners[].runner_type) is required for
            V(present).
        type: str
      registration_token:
        description:
          - A legacy registration token. The runner is created with C(POST /api/v4/runners). GitLab disabled these
            tokens by default in 17.0 and plans to remove them in 20.0; prefer O(runners[].runner_type).
        type: str
      runner_type:
        description:
          - Create the runner with C(POST /api/v4/user/runners) using the API token. V(instance_type) needs an
            administrator; V(group_type) needs O(runners[].group_id) and the group's Owner role; V(project_type) needs
            O(runners[].project_id) and the project's Owner role.
        type: str
        choices: [instance_type, group_type, project_type]
      group_id:
        description: Numeric id of the group, for V(group_type).
        type: int
      project_id:
        description: Numeric id of the project, for V(project_type).
        type: int
      description:
        description: Server-side description. Defaults to the runner's name when the module creates the runner.
        type: str
      tag_list:
        description: Server-side tags. At most 50; may be empty only when O(runners[].run_untagged) is true.
        type: list
        elements: str
      run_untagged:
        description: Server-side; pick up jobs without tags.
        type: bool
      locked:
        description: Server-side; lock a project runner to its current projects.
        type: bool
      paused:
        description: Server-side; a paused runner receives no jobs.
        type: bool
      access_level:
        description: Server-side; V(ref_protected) runs only jobs of protected branches and tags.
        type: str
        choices: [not_protected, ref_protected]
      maximum_timeout:
        description: Server-side maximum job timeout in seconds, at least 600.
        type: int
      maintenance_note:
        description: Server-side free-form maintenance note, at most 1024 characters.
        type: str
      executor:
        description: The executor.
        type: str
        default: docker
        choices: [shell, custom, instance, docker, docker-windows, docker-autoscaler, docker+machine, kubernetes, ssh, parallels, virtualbox]
      limit:
        description: Maximum concurrent jobs of this runner (0 is unlimited).
        type: int
      request_concurrency:
        description: Concurrent requests for new jobs.
        type: int
      output_limit:
        description: Maximum job log size in kilobytes.
        type: int
      environment:
        description: Environment of every job, as C(KEY=value) strings.
        type: list
        elements: str
      builds_dir:
        description: C(builds_dir).
        type: str
      cache_dir:
        description: C(cache_dir).
        type: str
      clone_url:
        description: C(clone_url), overriding the URL jobs clone from.
        type: str
      shell:
        description: C(shell).
        type: str
      pre_get_sources_script:
        description: C(pre_get_sources_script).
        type: str
      post_get_sources_script:
        description: C(post_get_sources_script).
        type: str
      pre_build_script:
        description: C(pre_build_script).
        type: str
      post_build_script:
        description: C(post_build_script).
        type: str
      tls_ca_file:
        description: C(tls-ca-file), CA file the runner uses to verify GitLab.
        type: path
      tls_cert_file:
        description: C(tls-cert-file), client certificate for GitLab.
        type: path
      tls_key_file:
        description: C(tls-key-file), client key for GitLab.
        type: path
      feature_flags:
        description: The C([runners.feature_flags]) table, flag name to boolean.
        type: dict
      docker:
        description:
          - The C([runners.docker]) table, keys exactly as gitlab-runner names them (C(image), C(volumes),
            C(pull_policy), C(allowed_images), C(services) as a list of dicts, ...). An unknown key is refused.
        type: dict
      cache:
        description:
          - The C([runners.cache]) table, keys exactly as gitlab-runner names them (CamelCase C(Type), C(Shared),
            C(s3) with C(ServerAddress), ...). Credentials in it are masked in every output.
        type: dict
      extra:
        description:
          - Any other key of a C([[runners]]) entry, written as given (for example C(unhealthy_interval),
            C(kubernetes), C(custom_build_dir)). It may not repeat an option above or a field gitlab-runner owns.
        type: dict
      api_token:
        description: Overrides O(api_token) for this runner.
        type: str
      validate_certs:
        description: Overrides O(validate_certs) for this runner.
        type: bool
      ca_path:
        description: Overrides O(ca_path) for this runner.
        type: path
      ca_content:
        description: Overrides O(ca_content) for this runner.
        type: str
      timeout:
        description: Overrides O(timeout) for this runner.
        type: int
notes:
  - The file is locked while the module works, so two runs against one host never interleave.
  - C(config.toml), its backups, C(.runner_system_id) and the state file C(.dood_gitlab_runner.json) are written with
    mode C(0600) by the user running the module (root), and their directory is kept at mode C(0700).
  - "Crash safety: before it asks GitLab to create a runner, the module records the pending creation in
    C(.dood_gitlab_runner.json) beside C(config.toml), and it saves C(config.toml) right after each creation. If the run
    dies or loses the answer in between, the next run lists the runners of that scope with the API token, adopts the
    runner created at that time with that description (and a new token from the reset endpoint) and deletes any other
    such runner, so GitLab ends up with exactly the declared runners. Without an API token it warns with the manual
    fix. When the token of a runner just created cannot be written to C(config.toml), the runner is deleted again."
  - "The state file also keeps each runner's id, so a lost C(config.toml) does not create a duplicate: with an API
    token the runner gets a new token through the reset endpoint by id."
  - Secrets (tokens, cache credentials, C(sentry_dsn)) never appear in the result, a warning, an error or the diff.
seealso:
  - name: GitLab runner API
    description: The REST endpoints this module calls.
    link: https://docs.gitlab.com/api/runners/
  - name: gitlab-runner advanced configuration
    description: Every key of C(config.toml).
    link: https://docs.gitlab.com/runner/configuration/advanced-configuration/
'''

EXAMPLES = r'''
- name: Runner created in GitLab's UI, token kept in a vault
  dood.gitlab_runner.runner_config:
    path: /srv/gitlab-runner/config/config.toml
    api_url: https://gitlab.example.com
    concurrent: 4
    runners:
      - name: build-01
        token: "{{ vault_runner_token }}"
        docker:
          image: docker:27-cli
          pull_policy: if-not-present
          volumes:
            - /var/run/docker.sock:/var/run/docker.sock
            - /cache
        environment:
          - DOCKER_BUILDKIT=1

- name: Let the module create a project runner with an access token (manage_runner + create_runner scopes)
  dood.gitlab_runner.runner_config:
    path: /srv/gitlab-runner/config/config.toml
    api_url: https://gitlab.example.com
    api_token: "{{ vault_gitlab_api_token }}"
    runners:
      - name: "{{ inventory_hostname }}-docker"
        runner_type: project_type
        project_id: 42
        tag_list: [docker-dood]
        run_untagged: false
        maximum_timeout: 3600
        docker:
          image: docker:27-cli
          volumes: [/var/run/docker.sock:/var/run/docker.sock, /cache]

- name: Legacy registration token (GitLab before 17.0, or re-enabled by an administrator)
  dood.gitlab_runner.runner_config:
    api_url: https://gitlab.example.com
    runners:
      - name: legacy-01
        registration_token: "{{ vault_registration_token }}"
        tag_list: [docker-dood]
        docker:
          image: docker:27-cli

- name: GitLab behind a private CA (PEM text from a file on the controller), failing fast when GitLab is down
  dood.gitlab_runner.runner_config:
    api_url: https://gitlab.internal.example.com
    api_token: "{{ vault_gitlab_api_token }}"
    ca_content: "{{ lookup('ansible.builtin.file', 'files/internal-ca.pem') }}"
    timeout: 10
    retries: 1
    retry_max_delay: 10
    runners:
      - name: "{{ inventory_hostname }}-docker"
        runner_type: group_type
        group_id: 7
        tag_list: [docker-dood]

- name: Remove one runner and every entry that is not declared
  dood.gitlab_runner.runner_config:
    api_url: https://gitlab.example.com
    api_token: "{{ vault_gitlab_api_token }}"
    prune: true
    runners:
      - name: old-runner
        state: absent
'''

RETURN = r'''
runners:
  description: One item per declared runner, and per pruned entry, in that order.
  returned: always
  type: list
  elements: dict
  contains:
    name:
      description: The runner's name.
      type: str
      sample: build-01
    id:
      description: GitLab's runner id, 0 when unknown.
      type: int
      sample: 9171
    action:
      description: What the module did.
      type: str
      sample: created
      choices: [created, adopted, recreated, updated, unchanged, removed]
    token_expires_at:
      description: When the runner's token expires (ISO 8601, UTC), or null when it does not.
      type: str
      sample: '2027-01-01T00:00:00Z'
system_id:
  description: This host's C(system_id) from C(.runner_system_id), which identifies its runner manager.
  returned: always
  type: str
  sample: s_0123456789ab
path:
  description: Path of C(config.toml).
  returned: always
  type: str
  sample: /srv/gitlab-runner/config/config.toml
backup_file:
  description: Path of the backup, when O(backup=true) and the file changed.
  returned: changed and O(backup=true)
  type: str
  sample: /srv/gitlab-runner/config/config.toml.12345.2026-11-28@17:00:00~
'''

import copy
import difflib
import errno
import fcntl
import hashlib
import hmac
import json
import os
import re
import secrets
import ssl
import string
import stat
import tempfile
import time

from datetime import datetime, timedelta, timezone
from urllib.parse import urlsplit

from ansible.module_utils.basic import AnsibleModule, env_fallback
from ansible.module_utils.common.text.converters import to_bytes, to_native

from ansible_collections.dood.gitlab_runner.plugins.module_utils import config_toml
from ansible_collections.dood.gitlab_runner.plugins.module_utils.gitlab_api import GitLabClient, GitLabError, scope_path_for

MASK = '********'
RUNNER_OWNED = ('id', 'token', 'token_obtained_at', 'token_expires_at')
SERVER_SETTINGS = ('description', 'tag_list', 'run_untagged', 'locked', 'paused', 'access_level', 'maximum_timeout', 'maintenance_note')
CONNECTION_OPTIONS = ('api_token', 'validate_certs', 'ca_path', 'ca_content', 'timeout')
CREDENTIAL_OPTIONS = ('token', 'registration_token', 'runner_type')
# Option name -> config.toml key, in the order gitlab-runner's RunnerConfig/RunnerSettings declare them (facts §2.2).
LOCAL_SETTINGS = (
    ('limit', 'limit'), ('output_limit', 'output_limit'), ('request_concurrency', 'request_concurrency'),
    ('tls_ca_file', 'tls-ca-file'), ('tls_cert_file', 'tls-cert-file'), ('tls_key_file', 'tls-key-file'),
    ('executor', 'executor'), ('builds_dir', 'builds_dir'), ('cache_dir', 'cache_dir'), ('clone_url', 'clone_url'),
    ('environment', 'environment'), ('pre_get_sources_script', 'pre_get_sources_script'),
    ('post_get_sources_script', 'post_get_sources_script'), ('pre_build_script', 'pre_build_script'),
    ('post_build_script', 'post_build_script'), ('shell', 'shell'), ('cache', 'cache'),
    ('feature_flags', 'feature_flags'), ('docker', 'docker'),
)
GLOBAL_SETTINGS = ('listen_address', 'session_server', 'labels', 'concurrent', 'check_interval', 'log_level', 'log_format',
                   'sentry_dsn', 'connection_max_age', 'shutdown_timeout')
# [runners.docker] keys of gitlab-runner's DockerConfig and its embedded Credentials (facts §2.3).
DOCKER_KEYS = frozenset((
    'host', 'tls_cert_path', 'tls_verify', 'hostname', 'image', 'runtime', 'memory', 'memory_swap', 'memory_reservation',
    'cgroup_parent', 'cpuset_cpus', 'cpuset_mems', 'cpus', 'cpu_shares', 'dns', 'dns_search', 'privileged',
    'services_privileged', 'disable_entrypoint_overwrite', 'user', 'allowed_users', 'group_add', 'userns_mode', 'cap_add',
    'cap_drop', 'oom_kill_disable', 'oom_score_adjust', 'security_opt', 'services_security_opt', 'devices',
    'device_cgroup_rules', 'gpus', 'services_devices', 'disable_cache', 'volumes', 'volume_keep', 'volume_driver',
    'volume_driver_ops', 'cache_dir', 'extra_hosts', 'volumes_from', 'network_mode', 'pid_mode', 'ipcmode', 'mac_address',
    'links', 'services', 'services_limit', 'service_memory', 'service_memory_swap', 'service_memory_reservation',
    'service_cgroup_parent', 'service_slot_cgroup_template', 'service_cpuset_cpus', 'service_cpus', 'service_cpu_shares',
    'service_gpus', 'wait_for_services_timeout', 'allowed_images', 'allowed_privileged_images', 'allowed_privileged_services',
    'allowed_pull_policies', 'allowed_services', 'pull_policy', 'isolation', 'shm_size', 'tmpfs', 'services_tmpfs', 'sysctls',
    'helper_image', 'helper_image_flavor', 'container_labels', 'enable_ipv6', 'ulimit', 'network_mtu', 'log_options',
))
DOCKER_SERVICE_KEYS = frozenset(('name', 'alias', 'command', 'entrypoint', 'environment', 'suspend_data_path'))
CACHE_KEYS = {
    None: frozenset(('Type', 'Path', 'Shared', 'MaxUploadedArchiveSize', 's3', 'gcs', 'azure')),
    's3': frozenset(('ServerAddress', 'AccessKey', 'SecretKey', 'SessionToken', 'BucketName', 'BucketLocation', 'Insecure',
                     'AuthenticationType', 'ServerSideEncryption', 'ServerSideEncryptionKeyID', 'DualStack', 'PathStyle',
                     'Accelerate', 'RoleARN', 'UploadRoleARN', 'AssumeRoleMaxConcurrency', 'DisableAssumeRoleCredentialsCaching')),
    'gcs': frozenset(('AccessID', 'PrivateKey', 'CredentialsFile', 'BucketName', 'UniverseDomain')),
    'azure': frozenset(('AccountName', 'AccountKey', 'ContainerName', 'StorageDomain')),
}
# Keys a [[runners]] entry may hold that are neither options above nor runner-owned (facts §2.2 RunnerConfig/Settings).
EXTRA_KEYS = frozenset((
    'strict_check_interval', 'unhealthy_requests_limit', 'unhealthy_interval', 'job_status_final_update_retry_limit',
    'experimental', 'labels', 'proxy_exec', 'prepare_timeout', 'get_sources_timeout', 'debug_trace_disabled',
    'safe_directory_checkout', 'clean_git_config', 'custom_build_dir', 'referees', 'artifact', 'monitoring',
    'use_slot_cgroups', 'slot_cgroup_template', 'instance', 'ssh', 'parallels', 'virtualbox', 'machine', 'kubernetes',
    'custom', 'autoscaler', 'step_runner_image',
))
EXECUTORS = ['shell', 'custom', 'instance', 'docker', 'docker-windows', 'docker-autoscaler', 'docker+machine', 'kubernetes', 'ssh',
             'parallels', 'virtualbox']
SYSTEM_ID_RE = re.compile(r'^[sr]_[0-9a-zA-Z]{12}$')
# Names tempfile.mkstemp gives the module's temporary files (write_file, check_writable): '.' + file name + '.' + 8.
STALE_TEMP_RE = r'^\.({0}|\.dood_gitlab_runner\.json|\.runner_system_id)\.(probe\.)?[a-z0-9_]{{8}}$'
# A creation recorded as pending this long before GitLab's created_at still matches (clocks of host and GitLab differ).
CLOCK_SKEW = 300


class RunnerConfigError(Exception):
    """A problem with a sentence that names it and the fix."""


def fingerprint(secret):
    """A one-way fingerprint of a declared token, to notice when the user changes it (never the token itself)."""
    return hashlib.sha256(b'dood.gitlab_runner\0' + to_bytes(secret)).hexdigest()[:32]


def _closest(word, choices):
    match = difflib.get_close_matches(word, sorted(choices), n=1)
    return ' (did you mean {0!r}?)'.format(match[0]) if match else ''


def _iso(value):
    if value is None or value == config_toml.ZERO_TIME:
        return None
    return value.strftime('%Y-%m-%dT%H:%M:%SZ')


def _epoch(value):
    """Seconds since the epoch of GitLab's ISO 8601 time (``2026-01-02T03:04:05.678Z``); 0 when unreadable."""
    try:
        text = str(value).replace('Z', '+00:00')
        if '.' in text:
            head, tail = text.split('.', 1)
            digits = ''.join(c for c in tail if c.isdigit())
            text = head + '.' + digits[:6].ljust(6, '0') + tail[len(digits):]
        parsed = datetime.fromisoformat(text)
        if parsed.tzinfo is None:
            parsed = parsed.replace(tzinfo=timezone.utc)
        return parsed.timestamp()
    except (TypeError, ValueError):
        return 0


def _doing(exc):
    """The verb of an API call, for messages: 'Could not <verb> runner ...'."""
    path = exc.path
    if exc.method == 'POST' and path in ('/user/runners', '/runners'):
        return 'create'
    if path == '/runners/verify':
        return 'verify the token of'
    if path.endswith('/reset_authentication_token'):
        return 'renew the token of'
    if path == '/runners/managers':
        return 'remove this host from'
    if exc.method == 'DELETE':
        return 'delete'
    if exc.method == 'PUT':
        return 'update'
    if exc.method == 'GET' and re.match(r'^/runners/\d+$', path):
        return 'read'
    return 'look up'


def _parse_time(value):
    """GitLab's ISO 8601 timestamp (or null) as the datetime gitlab-runner writes; zero time for none."""
    if not value:
        return config_toml.ZERO_TIME
    try:
        parsed = config_toml.parse('t = {0}'.format(str(value).replace(' ', 'T')))['t']
        return parsed.replace(microsecond=0)
    except (config_toml.ConfigTomlError, KeyError, AttributeError):
        raise RunnerConfigError('GitLab sent token_expires_at {0!r}, which is not an ISO 8601 time; is the URL a GitLab '
                                'instance?'.format(str(value)[:40]))


class Runner:
    """One declared runner with its effective connection settings."""

    def __init__(self, params, top):
        self.params = params
        self.name = params['name']
        self.state = params['state']
        self.url = (params.get('url') or top['api_url'] or '').strip()
        for option in CONNECTION_OPTIONS:
            value = params.get(option)
            setattr(self, option, top[option] if value is None else value)
        if params.get('ca_path') or params.get('ca_content'):
            # A runner's own CA replaces the top-level one, whichever of the two forms each uses.
            self.ca_path, self.ca_content = params.get('ca_path'), params.get('ca_content')

    @property
    def source(self):
        for option in CREDENTIAL_OPTIONS:
            if self.params.get(option):
                return option
        return None

    def server_settings(self):
        return dict((k, self.params[k]) for k in SERVER_SETTINGS if self.params.get(k) is not None)

    def creation_settings(self):
        settings = self.server_settings()
        settings.setdefault('description', self.name)
        return settings


class RunnerConfigManager:
    """Read the file and GitLab, compare with what is declared, then act."""

    def __init__(self, module):
        self.module = module
        self.params = module.params
        self.check_mode = module.check_mode
        self.path = self.params['path']
        self.dir = os.path.dirname(os.path.abspath(self.path))
        self.results = []
        self.changed = False
        self.secrets = set()
        self.clients = {}
        self.state_path = os.path.join(self.dir, '.dood_gitlab_runner.json')
        self.state = {'version': 1, 'runners': {}}
        self.runners = []
        self.system_id_value = None
        self.backup_file = None
        self.ca_files = {}
        self.saved_state = None
        self.config_written = []

    # -- helpers ---------------------------------------------------------------------------------------------------
    def secret(self, value):
        """Remember a secret so it is masked everywhere, including Ansible's own output."""
        if value:
            self.secrets.add(value)
            self.module.no_log_values.add(value)
        return value

    def fail(self, msg, **kwargs):
        self.module.fail_json(msg=config_toml.mask_text(msg, self.secrets), **kwargs)

    def warn(self, msg):
        self.module.warn(config_toml.mask_text(msg, self.secrets))

    def ca_file(self, runner):
        """The CA bundle file for a runner: ca_path, or ca_content written to a private file of this run."""
        if not runner.ca_content:
            return runner.ca_path
        if runner.ca_content not in self.ca_files:
            fd, path = tempfile.mkstemp(prefix='gitlab-ca-', suffix='.pem', dir=self.module.tmpdir)
            with os.fdopen(fd, 'wb') as handle:
                handle.write(to_bytes(runner.ca_content))
            self.ca_files[runner.ca_content] = path
        return self.ca_files[runner.ca_content]

    def client(self, runner):
        ca_path = self.ca_file(runner)
        key = (runner.url, runner.validate_certs, ca_path, runner.timeout)
        if key not in self.clients:
            self.clients[key] = GitLabClient(runner.url, validate_certs=runner.validate_certs, ca_path=ca_path,
                                             timeout=runner.timeout, retries=self.params['retries'],
                                             backoff=self.params['retry_delay'], max_backoff=self.params['retry_max_delay'])
        return self.clients[key]

    # -- validation --------------------------------------------------------------------------------------------------
    def validate(self):
        """Refuse bad input before anything is read from GitLab or written, with the fix in the message."""
        seen = set()
        for params in self.params['runners']:
            runner = Runner(params, self.params)
            self.runners.append(runner)
            name = runner.name
            if not name or not name.strip():
                raise RunnerConfigError('A runner has an empty name: give every runner a unique, non-empty name.')
            if len(name) > 256:
                raise RunnerConfigError('Runner {0!r}: the name is longer than 256 characters; shorten it.'.format(name[:40] + '...'))
            if any(ord(c) < 32 for c in name):
                raise RunnerConfigError('Runner {0!r}: the name contains a control character (newline, tab, ...); '
                                        'use a single line of printable text.'.format(name))
            if name in seen:
                raise RunnerConfigError('Runner {0!r} is declared twice: runner names must be unique in config.toml; '
                                        'rename or remove one of them.'.format(name))
            seen.add(name)
            for option in ('token', 'registration_token', 'api_token'):
                self.secret(params.get(option))
            self.validate_url(runner)
            self.validate_connection(runner)
            if runner.state == 'absent':
                continue
            sources = [o for o in CREDENTIAL_OPTIONS if params.get(o)]
            if len(sources) > 1:
                raise RunnerConfigError('Runner {0!r} has more than one way to get its token ({1}): keep exactly one of token, '
                                        'registration_token or runner_type (with api_token).'.format(name, ', '.join(sources)))
            if not sources:
                raise RunnerConfigError('Runner {0!r} has no way to get a token: set token (an existing glrt- token), '
                                        'runner_type with api_token (to create it), or registration_token.'.format(name))
            if params.get('runner_type'):
                self.validate_creation(runner)
            elif params.get('group_id') is not None or params.get('project_id') is not None:
                raise RunnerConfigError('Runner {0!r}: group_id and project_id are only used with runner_type; '
                                        'remove them or set runner_type.'.format(name))
            self.validate_server_settings(runner)
            self.validate_local_settings(runner)
        self.secret(self.params.get('sentry_dsn'))
        for params in self.params['runners']:
            self.secret_values(params.get('cache'))

    def secret_values(self, value, key=None):
        """Cache credentials are secrets though their options cannot be no_log: hide them from every output."""
        if isinstance(value, dict):
            for sub_key, sub_value in value.items():
                self.secret_values(sub_value, sub_key)
        elif key in config_toml.SECRET_KEYS and isinstance(value, str):
            self.secret(value)

    def validate_url(self, runner):
        if not runner.url:
            raise RunnerConfigError('Runner {0!r} has no GitLab URL: set api_url (or the GITLAB_URL environment variable) '
                                    'or the runner\'s url.'.format(runner.name))
        parts = urlsplit(runner.url)
        if parts.scheme not in ('https', 'http') or not parts.hostname or parts.query or parts.fragment:
            raise RunnerConfigError('Runner {0!r}: {1!r} is not a valid GitLab URL; use the base URL such as '
                                    'https://gitlab.example.com.'.format(runner.name, runner.url))
        if parts.path.rstrip('/').endswith('/api/v4'):
            raise RunnerConfigError('Runner {0!r}: the URL {1!r} ends with /api/v4; give the base URL of GitLab without '
                                    'it.'.format(runner.name, runner.url))
        if parts.path.rstrip('/').endswith('/ci'):
            raise RunnerConfigError('Runner {0!r}: the URL {1!r} ends with the legacy /ci suffix, which breaks submodule '
                                    'authentication; remove the suffix.'.format(runner.name, runner.url))
        if parts.scheme == 'http' and not self.params['allow_http']:
            raise RunnerConfigError('Runner {0!r}: {1!r} uses plain http, which sends tokens in clear text; use https, or set '
                                    'allow_http: true for a trusted network.'.format(runner.name, runner.url))

    def validate_connection(self, runner):
        name = runner.name
        if runner.timeout is not None and runner.timeout < 1:
            raise RunnerConfigError('Runner {0!r}: timeout must be at least 1 second.'.format(name))
        if runner.params.get('ca_path') and runner.params.get('ca_content'):
            raise RunnerConfigError('Runner {0!r}: set ca_path or ca_content, not both.'.format(name))
        if runner.ca_path:
            if not os.path.isfile(runner.ca_path):
                raise RunnerConfigError('Runner {0!r}: ca_path {1} is not a file; give the PEM file of the CA that signed '
                                        'GitLab\'s certificate.'.format(name, runner.ca_path))
            self._check_ca(name, 'ca_path {0}'.format(runner.ca_path), cafile=runner.ca_path)
        if runner.ca_content:
            if '-----BEGIN CERTIFICATE-----' not in runner.ca_content:
                raise RunnerConfigError('Runner {0!r}: ca_content holds no PEM certificate (-----BEGIN CERTIFICATE-----); '
                                        'give the text of the CA certificate.'.format(name))
            self._check_ca(name, 'ca_content', cadata=runner.ca_content)

    @staticmethod
    def _check_ca(name, what, **where):
        try:
            ssl.create_default_context().load_verify_locations(**where)
        except (ssl.SSLError, IOError, ValueError):
            raise RunnerConfigError('Runner {0!r}: {1} could not be loaded as a PEM CA certificate; give the CA '
                                    'certificate that signed GitLab\'s certificate.'.format(name, what))

    def validate_creation(self, runner):
        params = runner.params
        if not runner.api_token:
            raise RunnerConfigError('Runner {0!r}: runner_type needs an api_token (a personal, group or project access token '
                                    'with the create_runner and manage_runner scopes).'.format(runner.name))
        kind = params['runner_type']
        if kind == 'group_type' and params.get('group_id') is None:
            raise RunnerConfigError('Runner {0!r}: runner_type group_type needs group_id, the numeric id of the group.'.format(runner.name))
        if kind == 'project_type' and params.get('project_id') is None:
            raise RunnerConfigError('Runner {0!r}: runner_type project_type needs project_id, the numeric id of the '
                                    'project.'.format(runner.name))
        if kind != 'group_type' and params.get('group_id') is not None:
            raise RunnerConfigError('Runner {0!r}: group_id is only used with runner_type group_type.'.format(runner.name))
        if kind != 'project_type' and params.get('project_id') is not None:
            raise RunnerConfigError('Runner {0!r}: project_id is only used with runner_type project_type.'.format(runner.name))

    def validate_server_settings(self, runner):
        """The Ci::Runner model validations (facts §1.9), so GitLab never has to refuse a half-done run."""
        params = runner.params
        tags = params.get('tag_list')
        if tags is not None:
            if any(not t or not t.strip() or ',' in t for t in tags):
                raise RunnerConfigError('Runner {0!r}: tag_list holds an empty tag or a tag with a comma; give each tag as '
                                        'its own list item.'.format(runner.name))
            if len(tags) > 50:
                raise RunnerConfigError('Runner {0!r}: tag_list has {1} tags; GitLab allows at most 50.'.format(runner.name, len(tags)))
        if params.get('run_untagged') is False and not tags:
            raise RunnerConfigError('Runner {0!r}: tag_list is empty while run_untagged is false, so the runner could never '
                                    'pick a job (GitLab refuses it); add tags or set run_untagged: true.'.format(runner.name))
        timeout = params.get('maximum_timeout')
        if timeout is not None and timeout < 600:
            raise RunnerConfigError('Runner {0!r}: maximum_timeout {1} is below GitLab\'s minimum of 600 seconds '
                                    '(10 minutes); raise it or leave it unset.'.format(runner.name, timeout))
        for option in ('description', 'maintenance_note'):
            value = params.get(option)
            if value is not None and len(value) > 1024:
                raise RunnerConfigError('Runner {0!r}: {1} is {2} characters long; GitLab allows at most 1024.'.format(
                    runner.name, option, len(value)))

    def validate_local_settings(self, runner):
        params = runner.params
        name = runner.name
        for option in ('limit', 'request_concurrency', 'output_limit'):
            if params.get(option) is not None and params[option] < 0:
                raise RunnerConfigError('Runner {0!r}: {1} must be 0 or more.'.format(name, option))
        for item in params.get('environment') or ():
            if '=' not in item or item.startswith('='):
                raise RunnerConfigError('Runner {0!r}: environment entry {1!r} is not KEY=value.'.format(name, item))
        for flag, value in (params.get('feature_flags') or {}).items():
            if not isinstance(value, bool):
                raise RunnerConfigError('Runner {0!r}: feature flag {1!r} must be true or false, not {2!r}.'.format(name, flag, value))
        docker = params.get('docker') or {}
        for key in docker:
            if key not in DOCKER_KEYS:
                raise RunnerConfigError('Runner {0!r}: docker.{1} is not a key of gitlab-runner\'s [runners.docker] table{2}; '
                                        'fix the key or remove it.'.format(name, key, _closest(key, DOCKER_KEYS)))
        services = docker.get('services')
        if services is not None:
            if not isinstance(services, list) or not all(isinstance(s, dict) and s.get('name') for s in services):
                raise RunnerConfigError('Runner {0!r}: docker.services must be a list of tables, each with a name '
                                        '(for example [{{name: "postgres:16"}}]).'.format(name))
            for service in services:
                for key in service:
                    if key not in DOCKER_SERVICE_KEYS:
                        raise RunnerConfigError('Runner {0!r}: docker.services[].{1} is not a key of a docker service{2}.'.format(
                            name, key, _closest(key, DOCKER_SERVICE_KEYS)))
        self.validate_cache(runner, params.get('cache') or {}, None)
        extra = params.get('extra') or {}
        taken = set(k for _o, k in LOCAL_SETTINGS) | set(RUNNER_OWNED) | {'name', 'url'}
        for key in extra:
            if key in taken:
                raise RunnerConfigError('Runner {0!r}: extra.{1} repeats a key the module manages; set it with its own option '
                                        '(or leave it to gitlab-runner) instead.'.format(name, key))
            if key not in EXTRA_KEYS:
                raise RunnerConfigError('Runner {0!r}: extra.{1} is not a key of gitlab-runner\'s [[runners]] table{2}; '
                                        'gitlab-runner would ignore it. Fix or remove it.'.format(name, key, _closest(key, EXTRA_KEYS)))

    def validate_cache(self, runner, table, section):
        allowed = CACHE_KEYS[section]
        for key, value in table.items():
            if key not in allowed:
                where = 'cache' if section is None else 'cache.' + section
                raise RunnerConfigError('Runner {0!r}: {1}.{2} is not a key of gitlab-runner\'s [runners.{1}] table{3} '
                                        '(cache keys are CamelCase).'.format(runner.name, where, key, _closest(key, allowed)))
            if section is None and key in ('s3', 'gcs', 'azure'):
                if not isinstance(value, dict):
                    raise RunnerConfigError('Runner {0!r}: cache.{1} must be a table.'.format(runner.name, key))
                self.validate_cache(runner, value, key)

    # -- files -------------------------------------------------------------------------------------------------------
    def read_config(self):
        if os.path.isdir(self.path):
            raise RunnerConfigError('{0} is a directory; path must name the config.toml file inside it, '
                                    'for example {1}.'.format(self.path, os.path.join(self.path, 'config.toml')))
        if not os.path.isdir(self.dir):
            raise RunnerConfigError('The directory {0} of config.toml does not exist; create it (mode 0700) first, or let the '
                                    'runner role do it.'.format(self.dir))
        try:
            with open(self.path, 'rb') as handle:
                raw = handle.read()
        except IOError as exc:
            if exc.errno == errno.ENOENT:
                return None, {}
            raise RunnerConfigError('Cannot read {0}: {1}.'.format(self.path, exc.strerror))
        try:
            parsed = config_toml.parse(raw)
        except config_toml.ConfigTomlError as exc:
            raise RunnerConfigError('Cannot use {0}: {1}. Fix or move the file away; it was left unchanged.'.format(
                self.path, config_toml.mask_text(to_native(exc), self.secrets)))
        runners = parsed.get('runners', [])
        if not isinstance(runners, list) or not all(isinstance(r, dict) for r in runners):
            raise RunnerConfigError('{0}: runners must be an array of tables ([[runners]]); fix the file.'.format(self.path))
        names = [r.get('name') for r in runners]
        for entry in runners:
            self.secret(entry.get('token'))
        dupes = sorted(set(n for n in names if names.count(n) > 1 and n is not None), key=str)
        if dupes:
            raise RunnerConfigError('{0} holds several [[runners]] entries named {1}; remove the duplicates by hand (keep the '
                                    'one gitlab-runner uses) and run again.'.format(self.path, ', '.join(repr(d) for d in dupes)))
        return raw, parsed

    def read_state(self):
        """The module's own records beside config.toml: runner ids and pending creations (never a token)."""
        try:
            with open(self.state_path, 'rb') as handle:
                raw = handle.read()
            data = json.loads(raw.decode('utf-8'))
            if isinstance(data, dict) and isinstance(data.get('runners'), dict):
                self.state = data
                self.saved_state = raw
        except (IOError, ValueError):
            pass
        if not isinstance(self.state.get('pending'), dict):
            self.state['pending'] = {}

    def system_id(self):
        """The id gitlab-runner keeps in .runner_system_id (facts §2.6), created the same way when missing."""
        path = os.path.join(self.dir, '.runner_system_id')
        try:
            with open(path) as handle:
                value = handle.read().strip()
            if SYSTEM_ID_RE.match(value):
                return value, False
        except IOError:
            pass
        machine_id = None
        for candidate in ('/var/lib/dbus/machine-id', '/etc/machine-id'):
            try:
                with open(candidate) as handle:
                    machine_id = handle.read().strip() or None
                if machine_id:
                    break
            except IOError:
                continue
        if machine_id:
            value = 's_' + hmac.new(to_bytes(machine_id), b'gitlab-runner', hashlib.sha256).hexdigest()[:12]
        else:
            alphabet = string.ascii_letters + string.digits
            value = 'r_' + ''.join(secrets.choice(alphabet) for _i in range(12))
        if not self.check_mode:
            self.write_file(path, to_bytes(value))
        return value, True

    def write_file(self, path, data):
        """Write like core copy: a private temp file in the same directory, fsync, then rename over the target."""
        fd, tmp = tempfile.mkstemp(prefix='.' + os.path.basename(path) + '.', dir=os.path.dirname(path))
        try:
            os.fchmod(fd, 0o600)
            with os.fdopen(fd, 'wb') as handle:
                handle.write(data)
                handle.flush()
                os.fsync(handle.fileno())
            os.rename(tmp, path)
        except BaseException:
            try:
                os.unlink(tmp)
            except OSError:
                pass
            raise
        dir_fd = os.open(os.path.dirname(path), os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)

    def save_state(self):
        if self.check_mode:
            return
        state = dict(self.state)
        if not state.get('pending'):
            state.pop('pending', None)
        data = to_bytes(json.dumps(state, indent=2, sort_keys=True) + '\n')
        if data != self.saved_state:
            self.write_file(self.state_path, data)
            self.saved_state = data

    def save_config(self, config):
        """Persist the config right away (after each creation too), so a token GitLab issued is never lost."""
        if self.params['backup'] and self.backup_file is None and os.path.exists(self.path):
            self.backup_file = self.module.backup_local(self.path)
            os.chmod(self.backup_file, 0o600)
        self.write_file(self.path, to_bytes(config_toml.render(config)))
        self.config_written.append(True)

    def check_writable(self):
        """Fail before anything is sent to GitLab when config.toml could not be written afterwards."""
        try:
            fd, probe = tempfile.mkstemp(prefix='.' + os.path.basename(self.path) + '.probe.', dir=self.dir)
            os.close(fd)
            os.unlink(probe)
        except OSError as exc:
            raise RunnerConfigError('Cannot write in {0} ({1}): the module writes config.toml there through a temporary '
                                    'file. Make the directory writable for the user running the module (read-only mount? '
                                    'immutable attribute?); nothing was sent to GitLab and no file was changed.'.format(
                                        self.dir, exc.strerror or exc))
        if os.path.exists(self.path) and not os.access(self.path, os.W_OK):
            raise RunnerConfigError('Cannot write {0}: it is not writable (immutable attribute?). Fix it; nothing was '
                                    'sent to GitLab and no file was changed.'.format(self.path))

    def secure_files(self, dry=False):
        """The directory 0700, config.toml and the module's files 0600 and owned by the user running the module."""
        changed = False
        info = os.stat(self.dir)
        if stat.S_IMODE(info.st_mode) != 0o700:
            if dry:
                return True
            os.chmod(self.dir, 0o700)
            changed = True
        for path in (self.path, self.state_path, os.path.join(self.dir, '.runner_system_id')):
            try:
                info = os.lstat(path)
            except OSError:
                continue
            if not stat.S_ISREG(info.st_mode):
                continue
            wrong_owner = os.geteuid() == 0 and (info.st_uid, info.st_gid) != (0, 0)
            if dry and (wrong_owner or stat.S_IMODE(info.st_mode) != 0o600):
                return True
            if stat.S_IMODE(info.st_mode) != 0o600:
                os.chmod(path, 0o600)
                changed = True
            if wrong_owner:
                os.chown(path, 0, 0)
                changed = True
        return changed

    def remove_stale_temp_files(self):
        """Temporary files of a run that was killed while writing (they may hold a token): remove them."""
        pattern = re.compile(STALE_TEMP_RE.format(re.escape(os.path.basename(self.path))))
        for name in os.listdir(self.dir):
            if pattern.match(name):
                try:
                    os.unlink(os.path.join(self.dir, name))
                except OSError:
                    pass

    # -- GitLab ----------------------------------------------------------------------------------------------------
    def obtain(self, runner, system_id):
        """Get a token for a runner that has none, by its one credential source. Returns the runner-owned fields."""
        api = self.client(runner)
        source = runner.source
        if source == 'token':
            data = api.verify(runner.params['token'], system_id)
            if data is None:
                raise RunnerConfigError(
                    'GitLab rejected the token of runner {0!r} (403 for POST /api/v4/runners/verify): the runner was deleted, '
                    'or its token was reset or expired. Create a new runner authentication token in GitLab (Settings > CI/CD > '
                    'Runners) and put it in token, or let the module create the runner with runner_type and '
                    'api_token.'.format(runner.name))
            token = runner.params['token']
        elif source == 'registration_token':
            self.module.deprecate('Runner {0!r} uses a registration token. GitLab disabled registration tokens by default in 17.0 '
                                  'and plans to remove them in 20.0; create runners with runner_type and api_token '
                                  'instead.'.format(runner.name), version='2.0.0', collection_name='dood.gitlab_runner')
            settings = runner.creation_settings()
            data = self.create(runner, settings, lambda: api.register_legacy(runner.params['registration_token'], settings))
            token = self.secret(data.get('token'))
        else:
            settings = runner.creation_settings()
            settings['runner_type'] = runner.params['runner_type']
            if runner.params.get('group_id') is not None:
                settings['group_id'] = runner.params['group_id']
            if runner.params.get('project_id') is not None:
                settings['project_id'] = runner.params['project_id']
            data = self.create(runner, settings, lambda: api.create_user_runner(runner.api_token, settings))
            token = self.secret(data.get('token'))
        if not token:
            raise RunnerConfigError('GitLab created runner {0!r} but returned no token; check that the URL points to '
                                    'GitLab.'.format(runner.name))
        return {
            'id': int(data.get('id') or 0),
            'token': token,
            'token_obtained_at': config_toml.utc_now_seconds(),
            'token_expires_at': _parse_time(data.get('token_expires_at')),
        }

    def create(self, runner, settings, send):
        """Send a creation request with the pending-creation journal around it.

        GitLab has no idempotency key for creations (facts §1.2, §1.3): the record written before the request lets
        the next run find a runner whose creation answer was lost (killed run, timeout, dropped connection).
        """
        self.state['pending'][runner.name] = {
            'at': int(time.time()),
            'time': time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime()),
            'description': settings.get('description'),
            'runner_type': settings.get('runner_type'),
            'scope': scope_path_for(settings['runner_type'], settings.get('group_id'), settings.get('project_id'))
            if settings.get('runner_type') else None,
        }
        self.save_state()
        try:
            return send()
        except GitLabError as exc:
            if not exc.unknown_outcome:
                # GitLab certainly created nothing: forget the pending record.
                self.state['pending'].pop(runner.name, None)
                self.save_state()
            raise

    def recover_pending(self, runner, pending, adopt=True):
        """A creation whose answer was lost: adopt the runner GitLab made then, delete extra ones (facts §1.8).

        Returns the runner-owned fields of the adopted runner, or None when there is none (then a new one is made).
        """
        name = runner.name
        if not runner.api_token:
            self.warn('Runner {0!r}: a run at {1} asked GitLab to create it but never got the answer, and without api_token '
                      'the module cannot look for that runner. If GitLab lists a runner with description {2!r} created then '
                      'that never contacted GitLab, delete it (Admin > CI/CD > Runners, or the group or project runners '
                      'page).'.format(name, pending.get('time'), pending.get('description')))
            return None
        api = self.client(runner)
        query = {'type': pending['runner_type']} if pending.get('runner_type') else {}
        scopes = [pending['scope']] if pending.get('scope') else ['/runners/all', '/runners']
        listed = failure = None
        for scope in scopes:
            try:
                listed = api.list_runners(runner.api_token, scope, query)
                break
            except GitLabError as exc:
                if exc.status not in (401, 403, 404):
                    raise
                failure = exc
        if listed is None:
            self.warn('Runner {0!r}: a run at {1} asked GitLab to create it but never got the answer, and the api_token '
                      'cannot list the runners to find it ({2}). If GitLab lists a runner with description {3!r} created '
                      'then that never contacted GitLab, delete it.'.format(name, pending.get('time'), failure.describe(),
                                                                            pending.get('description')))
            return None
        known = set(int(r.get('id') or 0) for r in self.state['runners'].values())
        since = int(pending.get('at') or 0) - CLOCK_SKEW
        found = []
        for item in listed:
            if not isinstance(item, dict) or item.get('description') != pending.get('description'):
                continue
            if item.get('status') != 'never_contacted' or int(item.get('id') or 0) in known:
                continue
            if _epoch(item.get('created_at')) < since:
                continue
            found.append(item)
        found.sort(key=lambda item: int(item['id']))
        keep = found[0] if found and adopt else None
        for extra in found:
            if extra is not keep:
                api.delete_runner(runner.api_token, int(extra['id']))
        if keep is None:
            return None
        data = api.reset_token_by_id(runner.api_token, int(keep['id']))
        return {'id': int(keep['id']), 'token': self.secret((data or {}).get('token')), 'token_obtained_at': config_toml.utc_now_seconds(),
                'token_expires_at': _parse_time((data or {}).get('token_expires_at'))}

    def undo_creation(self, runner, owned, exc):
        """config.toml could not take the token of a runner just created: delete the runner again (facts §1.5)."""
        api = self.client(runner)
        why = 'could not write {0} ({1})'.format(self.path, exc.strerror or exc)
        try:
            api.delete_by_token(owned['token'])
        except GitLabError as err:
            self.fail('Runner {0!r} was created in GitLab (id {1}) but the module {2}, and deleting it again failed too: {3}. '
                      'The next run with api_token finds and adopts it; otherwise delete runner {1} in GitLab. Make {4} '
                      'writable, then run again.'.format(runner.name, owned.get('id'), why, err.describe(), self.dir),
                      runners=self.results)
        self.state['pending'].pop(runner.name, None)
        try:
            self.save_state()
        except (IOError, OSError):
            pass
        self.fail('Runner {0!r}: the module {1} after GitLab created the runner (id {2}), so it deleted that runner again '
                  '(DELETE /api/v4/runners) and GitLab holds no runner this host does not know. Make {3} writable, then run '
                  'again.'.format(runner.name, why, owned.get('id'), self.dir), runners=self.results)

    def renewal(self, runner, entry):
        """New runner-owned fields when the token in config.toml expires soon (facts §1.7, §2.8), else None."""
        expires = entry.get('token_expires_at')
        if not isinstance(expires, datetime) or expires == config_toml.ZERO_TIME:
            return None
        now = datetime.now(timezone.utc)
        window = timedelta(days=self.params['token_renewal_days'])
        obtained = entry.get('token_obtained_at')
        if isinstance(obtained, datetime) and obtained != config_toml.ZERO_TIME and expires > obtained:
            if window >= expires - obtained:
                # A short-lived token: renew in the last quarter of its life like gitlab-runner, not on every run.
                window = (expires - obtained) / 4
        if expires - now > window:
            return None
        expired = expires <= now
        when = _iso(expires)
        runner_id = int(entry.get('id') or 0)
        if runner.source == 'token':
            if expired:
                raise RunnerConfigError('The token of runner {0!r} (id {1}) expired at {2}, so gitlab-runner cannot use it. '
                                        'Reset it in GitLab (the runner\'s page, or POST /api/v4/runners/{1}/'
                                        'reset_authentication_token) and put the new token in token.'.format(runner.name, runner_id, when))
            self.warn('The token of runner {0!r} (id {1}) expires at {2}. It was given with token and may be shared with '
                      'other hosts, so the module does not rotate it: reset it in GitLab and put the new token in token '
                      'for every host.'.format(runner.name, runner_id, when))
            return None
        if not (runner.api_token and runner_id > 0):
            if expired:
                raise RunnerConfigError('The token of runner {0!r} (id {1}) expired at {2} and there is no api_token to renew '
                                        'it. Set api_token (scope manage_runner) so the module resets it by id, or run '
                                        '"gitlab-runner reset-token --id {1} --pat ..." on this host.'.format(runner.name, runner_id, when))
            # gitlab-runner renews it itself while it runs (facts §2.8). The module does not use the runner's own token
            # for that: a lost answer would leave a dead token and no way to get a new one without an API token.
            self.warn('The token of runner {0!r} (id {1}) expires at {2}. gitlab-runner renews it by itself while it runs; '
                      'if the runner is stopped until then, set api_token so the module can renew it by id.'.format(
                          runner.name, runner_id, when))
            return None
        if self.check_mode:
            return dict(entry)
        data = self.client(runner).reset_token_by_id(runner.api_token, runner_id)
        return {'id': runner_id, 'token': self.secret((data or {}).get('token')), 'token_obtained_at': config_toml.utc_now_seconds(),
                'token_expires_at': _parse_time((data or {}).get('token_expires_at'))}

    def describe_error(self, runner, exc):
        msg = 'Could not {0} runner {1!r}: {2}.'.format(_doing(exc), runner.name, exc.describe())
        if exc.kind == 'tls':
            msg += (' GitLab\'s TLS certificate is not trusted: give the CA that signed it with ca_path or ca_content '
                    '(validate_certs: false only for a throwaway test instance).')
        elif exc.kind == 'refused':
            msg += ' Nothing accepts connections at {0}: check that GitLab runs and that the URL and port are right.'.format(runner.url)
        elif exc.kind == 'dns':
            msg += ' Check the host name in the URL {0}.'.format(runner.url)
        elif exc.kind == 'timeout':
            msg += ' GitLab did not answer in time: check its health and load, or raise timeout (and retries), then run again.'
        elif exc.kind in ('dropped', 'connection'):
            msg += ' The connection broke: check GitLab and any proxy or load balancer in front of it, then run again.'
        elif exc.kind == 'non_json':
            msg += (' The answer is not GitLab\'s JSON: check that the URL points at GitLab itself, not at a proxy, a '
                    'maintenance or a login page.')
        elif exc.status == 410:
            msg += (' GitLab no longer accepts registration tokens (disabled by default since 17.0): create the runner with '
                    'runner_type and api_token, or with a glrt- token from the UI in token.')
        elif exc.status == 401:
            msg += ' The api_token is missing, wrong or expired; create a new access token.'
        elif exc.status == 403:
            msg += (' The token lacks a scope or role: creating needs create_runner, reading/updating/deleting needs '
                    'manage_runner (or api), and the owner role of the group or project.')
        elif exc.status == 404:
            msg += ' The runner, group or project does not exist, or the token cannot see it; check the ids and the token.'
        elif exc.status == 429:
            if exc.retry_after is not None:
                msg += (' GitLab asked to retry after {0:g} seconds (it is migrating its database or rate limiting): run '
                        'again after that, or raise retry_max_delay and retries.'.format(exc.retry_after))
            else:
                msg += ' GitLab asked to retry later: run again in a few minutes.'
        elif exc.status is not None and exc.status >= 500:
            msg += ' GitLab failed on its side: check its health (logs, /-/readiness), then run again.'
        if self.config_written:
            msg += ' config.toml keeps what this run did before the failure; the next run continues from there.'
        else:
            msg += ' config.toml was left unchanged.'
        if exc.unknown_outcome:
            msg += ' GitLab may have created the runner anyway: '
            if runner.api_token:
                msg += 'the next run finds it through the API and adopts it instead of creating another.'
            else:
                msg += ('without api_token the next run cannot look for it, so check GitLab for a runner with description {0!r} '
                        'that never contacted GitLab and delete it.'.format(runner.creation_settings().get('description')))
        return msg

    def drift(self, runner, current):
        """Server-side settings that differ from the declaration, as a PUT body (facts §1.6)."""
        changes = {}
        for key, wanted in runner.server_settings().items():
            have = current.get(key)
            if key == 'tag_list':
                if sorted(have or []) != sorted(wanted):
                    changes[key] = wanted
            elif have != wanted:
                changes[key] = wanted
        return changes

    def unregister(self, runner, entry, created_here):
        """Remove a runner from GitLab: by id with an API token, else with its own token (facts §1.5).

        ``created_here`` is None for an entry this module has no record of (written by ``gitlab-runner register``,
        say): then gitlab-runner's own unregister rule applies, a ``glrt-`` token loses only this host's manager and
        any other token deletes the runner (facts §3.3), so pruning such an entry leaves no orphan behind.
        """
        token = entry.get('token')
        runner_id = int(entry.get('id') or 0)
        api = self.client(runner)
        if created_here is None:
            created_here = not (token or '').startswith('glrt-')
        if not created_here and token:
            # A token handed in from outside may serve other hosts too: remove only this host's manager.
            api.delete_manager(token, self.system_id_value)
        elif runner.api_token and runner_id > 0:
            api.delete_runner(runner.api_token, runner_id)
        elif token:
            api.delete_by_token(token)

    # -- main ------------------------------------------------------------------------------------------------------
    def run(self):
        try:
            self.validate()
            raw, existing = self.read_config()
        except RunnerConfigError as exc:
            self.fail(to_native(exc))
        lock_fd = os.open(self.dir, os.O_RDONLY)
        try:
            fcntl.flock(lock_fd, fcntl.LOCK_EX)
            # Re-read under the lock: another run may have written while this one waited.
            try:
                raw, existing = self.read_config()
                if not self.check_mode:
                    self.check_writable()
                    self.remove_stale_temp_files()
                self.changed = self.secure_files(dry=self.check_mode)
            except RunnerConfigError as exc:
                self.fail(to_native(exc))
            self.reconcile(raw, existing)
        finally:
            os.close(lock_fd)

    def reconcile(self, raw, existing):
        self.read_state()
        self.system_id_value, system_id_new = self.system_id()
        config = copy.deepcopy(existing)
        config.setdefault('runners', [])
        entries = config['runners']
        by_name = dict((e.get('name'), e) for e in entries)
        declared = set(r.name for r in self.runners)

        def persist():
            if not self.check_mode:
                self.save_config(self.with_globals(config))
                self.save_state()

        for runner in self.runners:
            entry = by_name.get(runner.name)
            record = self.state['runners'].get(runner.name, {})
            try:
                if runner.state == 'absent':
                    pending = self.state['pending'].get(runner.name)
                    if pending and not self.check_mode and runner.source != 'token':
                        # A creation whose answer was lost, for a runner now declared absent: delete what it made.
                        self.recover_pending(runner, pending, adopt=False)
                        self.state['pending'].pop(runner.name, None)
                    if entry is not None:
                        if not self.check_mode:
                            self.unregister(runner, entry, record.get('created'))
                        entries.remove(entry)
                        self.state['runners'].pop(runner.name, None)
                        persist()
                        self.report(runner.name, entry, 'removed')
                    continue
                action, owned = self.converge_runner(runner, entry, record)
            except GitLabError as exc:
                self.fail(self.describe_error(runner, exc), runners=self.results)
            except RunnerConfigError as exc:
                self.fail(to_native(exc), runners=self.results)
            except (IOError, OSError) as exc:
                self.fail('Runner {0!r}: could not write in {1} ({2}). Fix the directory, then run again.'.format(
                    runner.name, self.dir, exc.strerror or exc), runners=self.results)
            new_entry = self.render_entry(runner, owned if owned is not None else entry)
            if entry is None:
                entries.append(new_entry)
            else:
                entries[entries.index(entry)] = new_entry
            by_name[runner.name] = new_entry
            if action in ('created', 'recreated', 'adopted') or (owned is not None and entry is not None and owned.get('token') != entry.get('token')):
                self.state['pending'].pop(runner.name, None)
                try:
                    persist()
                except (IOError, OSError) as exc:
                    if action in ('created', 'recreated') and runner.source != 'token':
                        self.undo_creation(runner, owned, exc)
                    self.fail('Runner {0!r} (id {1}) got a new token from GitLab, but the module could not write {2} ({3}). '
                              'Make {4} writable and run again; with api_token the next run resets the token by id once '
                              'more.'.format(runner.name, new_entry.get('id'), self.path, exc.strerror or exc, self.dir),
                              runners=self.results)
            self.report(runner.name, new_entry, action)

        if self.params['prune']:
            for entry in list(entries):
                if entry.get('name') in declared:
                    continue
                ghost = Runner({'name': entry.get('name') or '', 'state': 'absent', 'url': entry.get('url')}, self.params)
                ghost.url = entry.get('url') or ghost.url
                try:
                    if not self.check_mode:
                        self.unregister(ghost, entry, self.state['runners'].get(ghost.name, {}).get('created'))
                except GitLabError as exc:
                    self.fail(self.describe_error(ghost, exc), runners=self.results)
                entries.remove(entry)
                self.state['runners'].pop(ghost.name, None)
                persist()
                self.report(ghost.name, entry, 'removed')

        desired = self.with_globals(config)
        file_changed = raw is None or not config_toml.semantic_equal(existing, desired)
        self.changed = self.changed or file_changed or any(r['action'] != 'unchanged' for r in self.results)
        result = {}
        if file_changed and not self.check_mode:
            self.save_config(desired)
        if not self.check_mode:
            self.save_state()
        if self.module._diff:
            before = config_toml.render(config_toml.mask(existing, self.secrets)) if raw is not None else ''
            after = config_toml.render(config_toml.mask(desired, self.secrets))
            result['diff'] = {'before': before, 'after': after, 'before_header': self.path, 'after_header': self.path}
        if self.backup_file:
            result['backup_file'] = self.backup_file
        self.module.exit_json(changed=self.changed, runners=self.results, system_id=self.system_id_value, path=self.path, **result)

    def converge_runner(self, runner, entry, record):
        """Return (action, runner-owned fields or None to keep the entry's)."""
        source = runner.source
        api = self.client(runner)
        has_token = entry is not None and entry.get('token')
        if source == 'token':
            print_ = fingerprint(runner.params['token'])
        else:
            print_ = record.get('source')
        pending = self.state['pending'].get(runner.name)
        if has_token and pending:
            # The run that created it died after saving config.toml and before the state file: it completed.
            self.state['pending'].pop(runner.name, None)
        if not has_token and pending and source != 'token':
            if self.check_mode:
                return 'created', None
            adopted = self.recover_pending(runner, pending)
            self.state['pending'].pop(runner.name, None)
            if adopted is not None:
                self.remember(runner, adopted, print_, created=True)
                return 'adopted', adopted
        if not has_token:
            # Lost config.toml, but the runner is known and an API token can get a new token for it: no duplicate.
            known_id = int(record.get('id') or 0)
            if source != 'token' and runner.api_token and known_id > 0:
                current = api.get_runner(runner.api_token, known_id)
                if current is not None:
                    if self.check_mode:
                        return 'updated', None
                    data = api.reset_token_by_id(runner.api_token, known_id)
                    owned = {'id': known_id, 'token': self.secret(data.get('token')), 'token_obtained_at': config_toml.utc_now_seconds(),
                             'token_expires_at': _parse_time(data.get('token_expires_at'))}
                    self.remember(runner, owned, print_, created=record.get('created', True))
                    return 'updated', owned
            if self.check_mode:
                return 'created', None
            owned = self.obtain(runner, self.system_id_value)
            self.remember(runner, owned, print_, created=source != 'token')
            return 'created', owned

        owned = None
        action = 'unchanged'
        if source == 'token' and entry.get('token') != runner.params['token'] and record.get('source') != print_:
            # The declared token differs from the file's. Either the user handed in a new token, or gitlab-runner
            # rotated the old one (facts §2.8) and this host has no record of it yet. A rotated-away token is dead
            # at once (facts §1.7), so asking GitLab about the declared token tells the two apart.
            if self.check_mode:
                return 'updated', None
            data = api.verify(runner.params['token'], self.system_id_value)
            if data is not None:
                owned = {'id': int(data.get('id') or entry.get('id') or 0), 'token': runner.params['token'],
                         'token_obtained_at': config_toml.utc_now_seconds(),
                         'token_expires_at': _parse_time(data.get('token_expires_at'))}
                action = 'updated'
            elif api.verify(entry['token'], self.system_id_value) is None:
                raise RunnerConfigError(
                    'GitLab rejected both the declared token and the token in config.toml for runner {0!r} (403 for POST '
                    '/api/v4/runners/verify). Create a new runner authentication token in GitLab and put it in '
                    'token.'.format(runner.name))
        renewed = self.renewal(runner, owned or entry)
        if renewed is not None:
            if self.check_mode:
                return 'updated', None
            owned = renewed
            action = 'updated'
        self.remember(runner, owned or entry, print_, created=record.get('created', source != 'token'))

        runner_id = int((owned or entry).get('id') or 0)
        check = self.params['server_check']
        if check == 'verify' and owned is None:
            if self.check_mode:
                pass
            elif api.verify(entry['token'], self.system_id_value) is None:
                return self.replace(runner, entry, record, 'its token is rejected (403 for POST /api/v4/runners/verify)')
        if check != 'never' and runner.api_token and runner_id > 0:
            current = api.get_runner(runner.api_token, runner_id)
            if current is None:
                return self.replace(runner, entry, record, 'it no longer exists in GitLab (404 for GET /api/v4/runners/{0})'.format(runner_id))
            changes = self.drift(runner, current)
            if changes:
                if not self.check_mode:
                    api.update_runner(runner.api_token, runner_id, changes)
                action = 'updated'
        return action, owned

    def replace(self, runner, entry, record, why):
        """The stored runner is gone or its token is dead: create it again when the module holds the means."""
        if runner.source == 'token':
            raise RunnerConfigError(
                'Runner {0!r} (id {1}) cannot work: {2}. Its token was given with token, so the module cannot create it '
                'again: create a new runner in GitLab and put its token in token, or use runner_type with '
                'api_token.'.format(runner.name, entry.get('id', 0), why))
        if self.check_mode:
            return 'recreated', None
        owned = self.obtain(runner, self.system_id_value)
        self.remember(runner, owned, record.get('source'), created=True)
        return 'recreated', owned

    def remember(self, runner, owned, print_, created=False):
        record = {'id': int(owned.get('id') or 0), 'created': bool(created)}
        if print_:
            record['source'] = print_
        self.state['runners'][runner.name] = record

    def render_entry(self, runner, owned_from):
        """The whole [[runners]] entry from the declaration plus the runner-owned fields."""
        entry = {'name': runner.name, 'url': runner.url}
        for field in RUNNER_OWNED:
            value = owned_from.get(field) if owned_from else None
            if value is None:
                value = {'id': 0, 'token': '', 'token_obtained_at': config_toml.ZERO_TIME,
                         'token_expires_at': config_toml.ZERO_TIME}[field]
            entry[field] = value
        params = runner.params
        for option, key in LOCAL_SETTINGS:
            value = params.get(option)
            if value is None or value == {} or value == []:
                continue
            entry[key] = copy.deepcopy(value)
        for key, value in (params.get('extra') or {}).items():
            entry[key] = copy.deepcopy(value)
        return config_toml.normalize({'runners': [entry]})['runners'][0]

    def with_globals(self, config):
        """The whole file: the declared global settings and the runners."""
        desired = {}
        for key in GLOBAL_SETTINGS:
            value = self.params.get(key)
            if key == 'session_server' and value:
                value = dict((k, v) for k, v in value.items() if v is not None) or None
            if value is None or value == {}:
                continue
            desired[key] = copy.deepcopy(value)
        if 'connection_max_age' in desired:
            raw = desired['connection_max_age']
            desired['connection_max_age'] = config_toml.go_duration(int(raw) if str(raw).isdigit() else raw)
        desired['runners'] = config['runners']
        return desired

    def report(self, name, entry, action):
        self.results.append({'name': name, 'id': int(entry.get('id') or 0) if entry else 0, 'action': action,
                             'token_expires_at': _iso(entry.get('token_expires_at')) if entry else None})


def runner_spec():
    text = dict(type='str')
    return dict(
        name=dict(type='str', required=True),
        state=dict(type='str', default='present', choices=['present', 'absent']),
        url=text,
        token=dict(type='str', no_log=True),
        registration_token=dict(type='str', no_log=True),
        runner_type=dict(type='str', choices=['instance_type', 'group_type', 'project_type']),
        group_id=dict(type='int'),
        project_id=dict(type='int'),
        description=text,
        tag_list=dict(type='list', elements='str'),
        run_untagged=dict(type='bool'),
        locked=dict(type='bool'),
        paused=dict(type='bool'),
        access_level=dict(type='str', choices=['not_protected', 'ref_protected']),
        maximum_timeout=dict(type='int'),
        maintenance_note=text,
        executor=dict(type='str', default='docker', choices=EXECUTORS),
        limit=dict(type='int'),
        request_concurrency=dict(type='int'),
        output_limit=dict(type='int'),
        environment=dict(type='list', elements='str'),
        builds_dir=text,
        cache_dir=text,
        clone_url=text,
        shell=text,
        pre_get_sources_script=text,
        post_get_sources_script=text,
        pre_build_script=text,
        post_build_script=text,
        tls_ca_file=dict(type='path'),
        tls_cert_file=dict(type='path'),
        tls_key_file=dict(type='path'),
        feature_flags=dict(type='dict'),
        docker=dict(type='dict'),
        cache=dict(type='dict'),
        extra=dict(type='dict'),
        api_token=dict(type='str', no_log=True),
        validate_certs=dict(type='bool'),
        ca_path=dict(type='path'),
        ca_content=dict(type='str'),
        timeout=dict(type='int'),
    )


def main():
    argument_spec = dict(
        path=dict(type='path', default='/etc/gitlab-runner/config.toml'),
        api_url=dict(type='str', fallback=(env_fallback, ['GITLAB_URL'])),
        api_token=dict(type='str', no_log=True, fallback=(env_fallback, ['GITLAB_API_TOKEN'])),
        validate_certs=dict(type='bool', default=True),
        ca_path=dict(type='path'),
        ca_content=dict(type='str'),
        timeout=dict(type='int', default=30),
        retries=dict(type='int', default=3),
        retry_delay=dict(type='float', default=1.0),
        retry_max_delay=dict(type='float', default=60.0),
        token_renewal_days=dict(type='int', default=7, no_log=False),
        allow_http=dict(type='bool', default=False),
        server_check=dict(type='str', default='auto', choices=['auto', 'verify', 'never']),
        prune=dict(type='bool', default=False),
        backup=dict(type='bool', default=False),
        concurrent=dict(type='int'),
        check_interval=dict(type='int'),
        log_level=dict(type='str', choices=['debug', 'info', 'warn', 'warning', 'error', 'fatal', 'panic']),
        log_format=dict(type='str', choices=['runner', 'text', 'json']),
        listen_address=dict(type='str'),
        shutdown_timeout=dict(type='int'),
        connection_max_age=dict(type='str'),
        sentry_dsn=dict(type='str', no_log=True),
        labels=dict(type='dict'),
        session_server=dict(type='dict', options=dict(
            listen_address=dict(type='str'),
            advertise_address=dict(type='str'),
            session_timeout=dict(type='int'),
        )),
        runners=dict(type='list', elements='dict', default=[], options=runner_spec()),
    )
    module = AnsibleModule(argument_spec=argument_spec, supports_check_mode=True, mutually_exclusive=[('ca_path', 'ca_content')])
    for option, low, high in (('retries', 0, 10), ('retry_delay', 0, 300), ('retry_max_delay', 0, 3600), ('token_renewal_days', 0, 3650)):
        value = module.params[option]
        if not low <= value <= high:
            module.fail_json(msg='{0} must be between {1} and {2}, not {3}.'.format(option, low, high, value))
    if module.params['concurrent'] is not None and module.params['concurrent'] < 1:
        module.fail_json(msg='concurrent must be at least 1: gitlab-runner refuses to start with 0.')
    if module.params['connection_max_age'] is not None:
        raw = module.params['connection_max_age']
        try:
            config_toml.go_duration(int(raw) if raw.isdigit() else raw)
        except config_toml.ConfigTomlError as exc:
            module.fail_json(msg='connection_max_age: {0}. Use a Go duration such as 15m or 1h30m, or seconds.'.format(to_native(exc)))
    RunnerConfigManager(module).run()


if __name__ == '__main__':
    main()
