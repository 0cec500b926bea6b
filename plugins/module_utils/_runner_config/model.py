# -*- coding: utf-8 -*-
# Copyright (c) dood.gitlab_runner contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The declared runners and the rules their values follow. Pure: no file, no network, no Ansible module.

Every message names the runner and the fix; none carries a secret value.
"""

from __future__ import annotations

import copy
import difflib
import hashlib
from datetime import datetime, timezone
from urllib.parse import urlsplit

from ansible.module_utils.common.text.converters import to_bytes

from ansible_collections.dood.gitlab_runner.plugins.module_utils import config_toml
from ansible_collections.dood.gitlab_runner.plugins.module_utils._runner_config import merge
from ansible_collections.dood.gitlab_runner.plugins.module_utils._runner_config.files import RunnerConfigError  # noqa: F401
from ansible_collections.dood.gitlab_runner.plugins.module_utils._runner_config.options import (
    BOUNDED_OPTIONS, CONNECTION_OPTIONS, CREDENTIAL_OPTIONS, LOCAL_SETTINGS, GLOBAL_SETTINGS, RUNNER_SECRET_OPTIONS,
    SERVER_SETTINGS,
)

MASK = config_toml.MASK
RUNNER_OWNED = config_toml.RUNNER_OWNED_KEYS
# [runners.docker], a docker service, [runners.cache] and its backends: keys of gitlab-runner's structs
# (docs/gitlab-runner-config.md §2.3, §2.4), from the codec's schema, the only copy of it.
DOCKER_KEYS = config_toml.table_keys('runners', 'docker')
DOCKER_SERVICE_KEYS = config_toml.table_keys('runners', 'docker', 'services')
CACHE_KEYS = {
    None: config_toml.table_keys('runners', 'cache'),
    's3': config_toml.table_keys('runners', 'cache', 's3'),
    'gcs': config_toml.table_keys('runners', 'cache', 'gcs'),
    'azure': config_toml.table_keys('runners', 'cache', 'azure'),
}
# Keys an entry may hold in ``extra``: the [[runners]] keys that are neither options nor owned by gitlab-runner.
EXTRA_KEYS = config_toml.table_keys('runners') - set(k for _o, k in LOCAL_SETTINGS) - set(RUNNER_OWNED) - {'name', 'url'}


def fingerprint(secret):
    """A one-way fingerprint of a declared token, to notice when the user changes it (never the token itself)."""
    return hashlib.sha256(b'dood.gitlab_runner\0' + to_bytes(secret)).hexdigest()[:32]


def closest(word, choices):
    match = difflib.get_close_matches(word, sorted(choices), n=1)
    return ' (did you mean {0!r}?)'.format(match[0]) if match else ''


def iso(value):
    if value is None or value == config_toml.ZERO_TIME:
        return None
    return value.strftime('%Y-%m-%dT%H:%M:%SZ')


def epoch(value):
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


def parse_time(value):
    """GitLab's ISO 8601 timestamp (or null) as the datetime gitlab-runner writes; zero time for none."""
    if not value:
        return config_toml.ZERO_TIME
    try:
        parsed = config_toml.parse('t = {0}'.format(str(value).replace(' ', 'T')))['t']
        return parsed.replace(microsecond=0)
    except (config_toml.ConfigTomlError, KeyError, AttributeError):
        raise RunnerConfigError('GitLab sent token_expires_at {0!r}, which is not an ISO 8601 time; is the URL a GitLab '
                                'instance?'.format(str(value)[:40]))


def owned_fields(runner_id, token, expires_at):
    """The fields gitlab-runner owns in an entry, for a token GitLab just issued (docs/gitlab-runner-config.md §2.5)."""
    return {'id': int(runner_id or 0), 'token': token, 'token_obtained_at': config_toml.utc_now_seconds(),
            'token_expires_at': parse_time(expires_at)}


class Runner:
    """One declared runner with its effective connection settings and the defaults for its entry."""

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
        self.defaults = dict((k, v) for k, v in (top.get('runner_defaults') or {}).items() if v is not None)
        # What the entry's settings come to, declared over defaults: what is checked against the schema.
        self.effective = merge.overlay(self.defaults, dict((k, v) for k, v in params.items() if v is not None))

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

    def made_with(self):
        """What a runner the module creates is created with, for the diff: its settings and how (type and scope)."""
        settings = self.creation_settings()
        for option in ('runner_type', 'group_id', 'project_id'):
            if self.params.get(option) is not None:
                settings[option] = self.params[option]
        if self.source == 'registration_token':
            settings['registered_with'] = 'a registration token'
        return settings

    def drift(self, current):
        """Server-side settings that differ from the declaration, as a PUT body (docs/gitlab-api.md §1.6)."""
        changes = {}
        for key, wanted in self.server_settings().items():
            have = current.get(key)
            if key == 'tag_list':
                if sorted(have or []) != sorted(wanted):
                    changes[key] = wanted
            elif have != wanted:
                changes[key] = wanted
        return changes

    def entry(self, current, owned_from, applied, authoritative=False):
        """(the [[runners]] entry, digests of what the module wrote, paths removed): the declaration merged into the
        entry the file holds (merge.merge), with the runner-owned fields of ``owned_from``."""
        declared = local_table(self.params)
        defaults = merge.overlay({'executor': DEFAULT_EXECUTOR}, local_table(self.defaults))
        entry, written, removed = merge.merge(current, declared, defaults, applied, authoritative, ENTRY_KEEP)
        entry['name'] = self.name
        entry['url'] = self.url
        for field in RUNNER_OWNED:
            value = owned_from.get(field) if owned_from else None
            if value is None:
                value = {'id': 0, 'token': '', 'token_obtained_at': config_toml.ZERO_TIME,
                         'token_expires_at': config_toml.ZERO_TIME}[field]
            entry[field] = value
        return config_toml.normalize({'runners': [entry]})['runners'][0], written, removed


# The executor of an entry the module creates when neither the runner nor runner_defaults names one.
DEFAULT_EXECUTOR = 'docker'
# Keys of an entry the merge leaves to the identity and token logic.
ENTRY_KEEP = ('name', 'url') + tuple(RUNNER_OWNED)


def local_table(params):
    """The config.toml keys a declaration (or runner_defaults) sets: its local options and ``extra``, integer
    durations written as seconds."""
    table = {}
    for option, key in LOCAL_SETTINGS:
        value = params.get(option)
        if value is None or value == {} or value == []:
            continue
        table[key] = copy.deepcopy(value)
    for key, value in (params.get('extra') or {}).items():
        table[key] = copy.deepcopy(value)
    return config_toml.declared_durations(table, ('runners', 0))


def global_table(params):
    """The top-level config.toml keys a declaration (or global_defaults) sets."""
    table = {}
    for key in GLOBAL_SETTINGS:
        value = params.get(key)
        if key == 'session_server' and value:
            value = dict((k, v) for k, v in value.items() if v is not None) or None
        if value is None or value == {}:
            continue
        table[key] = copy.deepcopy(value)
    if 'connection_max_age' in table:
        raw = table['connection_max_age']
        table['connection_max_age'] = config_toml.go_duration(int(raw) if str(raw).isdigit() else raw)
    return table


def merge_globals(existing, params, applied, authoritative=False):
    """(top-level settings, digests of what the module wrote, paths removed) for the file: declared globals and
    global_defaults merged into what the file holds (everything but the runners)."""
    current = dict((k, v) for k, v in (existing or {}).items() if k != 'runners')
    declared = global_table(params)
    defaults = global_table(dict((k, v) for k, v in (params.get('global_defaults') or {}).items()))
    return merge.merge(current, declared, defaults, applied, authoritative)


def whole_file(settings, runners):
    """The whole file: the top-level settings, then the runners (no ``runners = []`` for a file without any)."""
    desired = copy.deepcopy(settings)
    if runners:
        desired['runners'] = runners
    return desired


# Values too common to hide everywhere in Ansible's output (they are still masked by name in the diff).
_NOT_WORTH_HIDING = frozenset(('true', 'false', 'yes', 'no', 'none', 'null'))


def declared_secrets(params, extra_names=()):
    """Every credential in the declaration: tokens, and values whose key or environment variable name says they are
    one (config_toml.secret_name), so they are masked before any check can fail and print the arguments."""
    found = []
    for option in RUNNER_SECRET_OPTIONS:
        found.append(params.get(option))
    for option in ('cache', 'docker', 'extra', 'environment'):
        found.extend(config_toml.secret_values({option: params.get(option)}, extra_names))
    return [v for v in found if isinstance(v, str) and len(v) >= 4 and v.lower() not in _NOT_WORTH_HIDING]


def message_path(path):
    """A key path inside a runner entry for a message: ``docker.services[0].command``."""
    out = ''
    for part in path:
        out += '[{0}]'.format(part) if isinstance(part, int) else ('.' if out else '') + str(part)
    return out


def schema_message(where, path, problem, detail, version):
    """One sentence for a problem config_toml.check_values found; ``where`` is "Runner 'x'", or None for a global."""
    text = _schema_sentence(path, problem, detail, version)
    if where:
        return '{0}: {1}'.format(where, text)
    # A sentence about a label starts with words; one about a key starts with the key, spelled as it is.
    return text[0].upper() + text[1:] if problem == 'label' else text


def _schema_sentence(path, problem, detail, version):
    shown = message_path(path)
    if problem == 'unknown':
        inside = path[1:-1] if path[0] == 'extra' else path[:-1]
        table = 'runners.' + message_path(tuple(p for p in inside if not isinstance(p, int)))
        return ('{0} is not a key of gitlab-runner\'s [{1}] table{2}; gitlab-runner would ignore it. Fix or remove '
                'it.'.format(shown, table, closest(str(path[-1]), detail)))
    if problem == 'version':
        if detail is None:
            return ('{0} is only in gitlab-runner\'s unreleased main branch, not in any release; gitlab-runner {1} '
                    'would ignore it. Remove it.'.format(shown, version))
        return ('{0} came with gitlab-runner {1}; the deployed gitlab-runner {2} would ignore it. Remove it, or '
                'deploy gitlab-runner {1} or later (runner_version).'.format(shown, detail, version))
    if problem == 'type':
        return ('{0} must be {1}, not {2}; gitlab-runner refuses to load a file with a value of the wrong '
                'type.'.format(shown, detail[0], detail[1]))
    if problem == 'duration':
        return ('{0} {1!r} is not a Go duration; use one such as "90s", "15m" or "1h30m" (units ns, us, ms, s, m, '
                'h), or a number of seconds.'.format(shown, detail))
    return '{0}; gitlab-runner refuses a file that breaks them.'.format(detail)


def url_problem(url, allow_http, sends='tokens', legacy_ci=True):
    """What is wrong with a GitLab base URL, as a sentence starting in lower case, or None."""
    parts = urlsplit(url)
    if parts.scheme not in ('https', 'http') or not parts.hostname or parts.query or parts.fragment:
        return '{0!r} is not a valid GitLab URL; use the base URL such as https://gitlab.example.com.'.format(url)
    if parts.path.rstrip('/').endswith('/api/v4'):
        return 'the URL {0!r} ends with /api/v4; give the base URL of GitLab without it.'.format(url)
    if legacy_ci and parts.path.rstrip('/').endswith('/ci'):
        return ('the URL {0!r} ends with the legacy /ci suffix, which breaks submodule authentication; remove the '
                'suffix.'.format(url))
    if parts.scheme == 'http' and not allow_http:
        return ('{0!r} uses plain http, which sends {1} in clear text; use https, or set allow_http: true for a trusted '
                'network.'.format(url, sends))
    return None


class Validator:
    """Refuse bad input before anything is read from GitLab or written, with the fix in the message.

    ``secret`` is called with every credential met, so it is masked before any later message could show it;
    ``check_ca`` loads a CA (file or PEM text) where the GitLab side runs, raising RunnerConfigError.
    """

    def __init__(self, params, secret, check_ca, version=None):
        self.params = params
        self.secret = secret
        self.check_ca = check_ca
        self.version = version or config_toml.resolve_version(None)[0]
        self.secret_names = tuple(params.get('secret_names') or ())

    def register_secrets(self):
        """Mask every credential of the declaration before the first check can fail and print the arguments."""
        for params in self.params['runners']:
            for value in declared_secrets(params, self.secret_names):
                self.secret(value)
        for value in declared_secrets(self.params.get('runner_defaults') or {}, self.secret_names):
            self.secret(value)
        self.secret(self.params.get('sentry_dsn'))

    def top_level(self):
        """The checks of single top-level options, in the order the module always made them."""
        params = self.params
        for option, low, high in BOUNDED_OPTIONS:
            value = params[option]
            if not low <= value <= high:
                raise RunnerConfigError('{0} must be between {1} and {2}, not {3}.'.format(option, low, high, value))
        if params['concurrent'] is not None and params['concurrent'] < 1:
            raise RunnerConfigError('concurrent must be at least 1: gitlab-runner refuses to start with 0.')
        if params['connection_max_age'] is not None:
            raw = params['connection_max_age']
            try:
                config_toml.go_duration(int(raw) if raw.isdigit() else raw)
            except config_toml.ConfigTomlError as exc:
                raise RunnerConfigError('connection_max_age: {0}. Use a Go duration such as 15m or 1h30m, or '
                                        'seconds.'.format(exc))
        for shown, source in ((('global_defaults',), params.get('global_defaults') or {}), ((), params)):
            labels = {'labels': source.get('labels') or {}}
            for path, problem, detail in config_toml.check_values(labels, (), self.version):
                raise RunnerConfigError(schema_message(None, shown + path, problem, detail, self.version))

    def runners(self):
        """Every declared runner as a Runner, checked."""
        seen = set()
        runners = []
        for params in self.params['runners']:
            runner = Runner(params, self.params)
            runners.append(runner)
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
            self.url(runner)
            self.connection(runner)
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
                self.creation(runner)
            elif params.get('group_id') is not None or params.get('project_id') is not None:
                raise RunnerConfigError('Runner {0!r}: group_id and project_id are only used with runner_type; '
                                        'remove them or set runner_type.'.format(name))
            self.server_settings(runner)
            self.local_settings(runner)
        return runners

    def url(self, runner):
        if not runner.url:
            raise RunnerConfigError('Runner {0!r} has no GitLab URL: set api_url (or the GITLAB_URL environment variable) '
                                    'or the runner\'s url.'.format(runner.name))
        problem = url_problem(runner.url, self.params['allow_http'])
        if problem:
            raise RunnerConfigError('Runner {0!r}: {1}'.format(runner.name, problem))

    def connection(self, runner):
        name = runner.name
        if runner.timeout is not None and runner.timeout < 1:
            raise RunnerConfigError('Runner {0!r}: timeout must be at least 1 second.'.format(name))
        if runner.params.get('ca_path') and runner.params.get('ca_content'):
            raise RunnerConfigError('Runner {0!r}: set ca_path or ca_content, not both.'.format(name))
        if runner.ca_path:
            self.check_ca(name, ca_path=runner.ca_path)
        if runner.ca_content:
            if '-----BEGIN CERTIFICATE-----' not in runner.ca_content:
                raise RunnerConfigError('Runner {0!r}: ca_content holds no PEM certificate (-----BEGIN CERTIFICATE-----); '
                                        'give the text of the CA certificate.'.format(name))
            self.check_ca(name, ca_content=runner.ca_content)

    @staticmethod
    def creation(runner):
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

    @staticmethod
    def server_settings(runner):
        """The Ci::Runner model validations (docs/gitlab-api.md §1.9), so GitLab never has to refuse a half-done run."""
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

    def local_settings(self, runner):
        params = runner.effective
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
                                        'fix the key or remove it.'.format(name, key, closest(key, DOCKER_KEYS)))
        services = docker.get('services')
        if services is not None:
            if not isinstance(services, list) or not all(isinstance(s, dict) and s.get('name') for s in services):
                raise RunnerConfigError('Runner {0!r}: docker.services must be a list of tables, each with a name '
                                        '(for example [{{name: "postgres:16"}}]).'.format(name))
            for service in services:
                for key in service:
                    if key not in DOCKER_SERVICE_KEYS:
                        raise RunnerConfigError('Runner {0!r}: docker.services[].{1} is not a key of a docker service{2}.'.format(
                            name, key, closest(key, DOCKER_SERVICE_KEYS)))
        self.cache(runner, params.get('cache') or {}, None)
        extra = params.get('extra') or {}
        taken = set(k for _o, k in LOCAL_SETTINGS) | set(RUNNER_OWNED) | {'name', 'url'}
        for key in extra:
            if key in taken:
                raise RunnerConfigError('Runner {0!r}: extra.{1} repeats a key the module manages; set it with its own option '
                                        '(or leave it to gitlab-runner) instead.'.format(name, key))
            if key not in EXTRA_KEYS:
                raise RunnerConfigError('Runner {0!r}: extra.{1} is not a key of gitlab-runner\'s [[runners]] table{2}; '
                                        'gitlab-runner would ignore it. Fix or remove it.'.format(name, key, closest(key, EXTRA_KEYS)))
        self.typed(runner)

    def typed(self, runner):
        """Every value of docker, cache and extra against the schema of the deployed gitlab-runner, and the labels."""
        params = runner.effective
        where = 'Runner {0!r}'.format(runner.name)
        entry = ('runners', 0)
        tables = [((), params.get('extra') or {}, ('extra',))]
        for option in ('docker', 'cache'):
            tables.insert(0, ((option,), params.get(option) or {}, (option,)))
        for inside, table, shown in tables:
            problems = config_toml.check_values(table, entry + inside, self.version, self.secret_names)
            for path, problem, detail in problems:
                rest = path[len(entry) + len(inside):]
                raise RunnerConfigError(schema_message(where, shown + rest, problem, detail, self.version))
        labels = dict((self.params.get('global_defaults') or {}).get('labels') or {})
        labels.update(self.params.get('labels') or {})
        labels.update((params.get('extra') or {}).get('labels') or {})
        if len(labels) > config_toml.MAX_LABELS:
            raise RunnerConfigError('{0} has {1} labels (the global labels and its own); gitlab-runner allows at most {2}.'.format(
                where, len(labels), config_toml.MAX_LABELS))

    def cache(self, runner, table, section):
        allowed = CACHE_KEYS[section]
        for key, value in table.items():
            if key not in allowed:
                where = 'cache' if section is None else 'cache.' + section
                raise RunnerConfigError('Runner {0!r}: {1}.{2} is not a key of gitlab-runner\'s [runners.{1}] table{3} '
                                        '(cache keys are CamelCase).'.format(runner.name, where, key, closest(key, allowed)))
            if section is None and key in ('s3', 'gcs', 'azure'):
                if not isinstance(value, dict):
                    raise RunnerConfigError('Runner {0!r}: cache.{1} must be a table.'.format(runner.name, key))
                self.cache(runner, value, key)
