# -*- coding: utf-8 -*-
# Copyright (c) dood.gitlab_runner contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The per-runner state machine: the only place that calls GitLab and the only place gated by check mode.

For each declared runner: find its entry in config.toml and its record in the journal, get a token when there is
none (by the runner's one credential source), keep the token gitlab-runner owns, renew one that expires, check the
runner against GitLab, repair drifted server-side settings, or unregister a runner that is removed.
"""

from __future__ import annotations

import copy
import json
import os
import re
import ssl

from ansible.module_utils.common.text.converters import to_native

from ansible_collections.dood.gitlab_runner.plugins.module_utils import config_toml
from ansible_collections.dood.gitlab_runner.plugins.module_utils.gitlab_api import GitLabError
from ansible_collections.dood.gitlab_runner.plugins.module_utils._runner_config.merge import removed_names
from ansible_collections.dood.gitlab_runner.plugins.module_utils._runner_config.model import (
    Runner, RunnerConfigError, fingerprint, iso, merge_globals, owned_fields, whole_file,
)
from ansible_collections.dood.gitlab_runner.plugins.module_utils._runner_config.tokens import RunFailed, Tokens  # noqa: F401


def doing(exc):
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


def check_ca(name, ca_path=None, ca_content=None):
    """Load a CA certificate where the GitLab side runs; a RunnerConfigError that names the fix when it cannot be used."""
    if ca_path is not None:
        if not os.path.isfile(ca_path):
            raise RunnerConfigError('Runner {0!r}: ca_path {1} is not a file; give the PEM file of the CA that signed '
                                    'GitLab\'s certificate.'.format(name, ca_path))
        what, where = 'ca_path {0}'.format(ca_path), {'cafile': ca_path}
    else:
        what, where = 'ca_content', {'cadata': ca_content}
    try:
        ssl.create_default_context().load_verify_locations(**where)
    except (ssl.SSLError, IOError, ValueError):
        raise RunnerConfigError('Runner {0!r}: {1} could not be loaded as a PEM CA certificate; give the CA '
                                'certificate that signed GitLab\'s certificate.'.format(name, what))


class ServerChanges:
    """What changed (or, in check mode, would change) in GitLab, per runner, for the diff."""

    def __init__(self):
        self.changes = []

    def add(self, name, runner_id, before, after):
        label = 'runner {0!r} (id {1})'.format(name, runner_id or 'new')
        self.changes.append((label, before, after))

    def diff(self, url, secrets):
        """Each runner that changed in GitLab, before and after, masked; None when none did."""
        if not self.changes:
            return None
        before, after = [], []
        for label, old, new in self.changes:
            for lines, values in ((before, old), (after, new)):
                lines.append(label + ':' if values else label + ': (none)')
                for key in sorted(values):
                    lines.append('  {0}: {1}'.format(key, json.dumps(values[key], sort_keys=True)))
        header = 'GitLab runners at {0}'.format(url or 'GitLab')
        return {'before': config_toml.mask_text('\n'.join(before) + '\n', secrets),
                'after': config_toml.mask_text('\n'.join(after) + '\n', secrets),
                'before_header': header, 'after_header': header}


class Reconciler:
    """Compare the declared runners with config.toml and GitLab, then act.

    ``ctx`` is the Ansible side: ``check_mode``, ``secret(value)``, ``warn(msg)``, ``deprecate(msg, version)`` and
    ``tmpdir``. ``store`` holds the files (see store.Store).
    """

    def __init__(self, ctx, params, runners, store):
        self.ctx = ctx
        self.params = params
        self.runners = runners
        self.store = store
        self.check_mode = ctx.check_mode
        self.results = []
        self.tokens = Tokens(ctx, params, store, self.results)
        self.system_id = None
        self.changed = False
        self.server = ServerChanges()
        # (runner, owned) of the runners created in this run whose token config.toml does not hold yet.
        self.unwritten = []

    # -- one runner --------------------------------------------------------------------------------------------------
    def converge_runner(self, runner, entry, record):
        """Return (action, runner-owned fields or None to keep the entry's)."""
        source = runner.source
        api = self.tokens.client(runner)
        has_token = entry is not None and entry.get('token')
        print_ = fingerprint(runner.params['token']) if source == 'token' else record.get('source')
        pending = self.store.pending(runner.name)
        if has_token and pending:
            # The run that created it died after saving config.toml and before the journal: it completed.
            self.store.clear_pending(runner.name)
        if not has_token and pending and source != 'token':
            if self.check_mode:
                return 'created', None
            adopted = self.tokens.recover_pending(runner, pending)
            self.store.clear_pending(runner.name)
            if adopted is not None:
                self.store.remember(runner.name, adopted['id'], True, print_)
                return 'adopted', adopted
        if not has_token:
            # Lost config.toml, but the runner is known and an API token can get a new token for it: no duplicate.
            known_id = int(record.get('id') or 0)
            if source != 'token' and runner.api_token and known_id > 0:
                current = api.get_runner(runner.api_token, known_id)
                if current is not None:
                    if self.check_mode:
                        return 'updated', None
                    self.store.claim()
                    owned = self.tokens.owned(known_id, api.reset_token_by_id(runner.api_token, known_id))
                    self.store.remember(runner.name, known_id, record.get('created', True), print_)
                    return 'updated', owned
            # A given token creates nothing in GitLab: it is verified and its runner's id read.
            made = 'verified' if source == 'token' else 'created'
            if self.check_mode:
                return made, None
            owned = self.tokens.obtain(runner)
            self.store.remember(runner.name, owned['id'], source != 'token', print_)
            return made, owned

        owned = None
        action = 'unchanged'
        if source == 'token' and entry.get('token') != runner.params['token'] and record.get('source') != print_:
            # The declared token differs from the file's. Either the user handed in a new token, or gitlab-runner
            # rotated the old one (docs/gitlab-runner-config.md §2.8) and this host has no record of it yet. A
            # rotated-away token is dead at once (docs/gitlab-api.md §1.7), so asking GitLab about the declared token
            # tells the two apart.
            if self.check_mode:
                return 'updated', None
            data = api.verify(runner.params['token'], self.system_id)
            if data is not None:
                owned = owned_fields(data.get('id') or entry.get('id'), runner.params['token'], data.get('token_expires_at'))
                action = 'updated'
            elif api.verify(entry['token'], self.system_id) is None:
                raise RunnerConfigError(
                    'GitLab rejected both the declared token and the token in config.toml for runner {0!r} (403 for POST '
                    '/api/v4/runners/verify). Create a new runner authentication token in GitLab and put it in '
                    'token.'.format(runner.name))
        renewed = self.tokens.renewal(runner, owned or entry)
        if renewed is not None:
            if self.check_mode:
                return 'updated', None
            owned = renewed
            action = 'updated'
        current_fields = owned or entry
        self.store.remember(runner.name, current_fields.get('id'), record.get('created', source != 'token'), print_)

        runner_id = int(current_fields.get('id') or 0)
        check = self.params['server_check']
        if check == 'verify' and owned is None and not self.check_mode:
            if api.verify(entry['token'], self.system_id) is None:
                return self.replace(runner, entry, record, 'its token is rejected (403 for POST /api/v4/runners/verify)')
        if check != 'never' and runner.api_token and runner_id > 0:
            current = api.get_runner(runner.api_token, runner_id)
            if current is None:
                return self.replace(runner, entry, record,
                                    'it no longer exists in GitLab (404 for GET /api/v4/runners/{0})'.format(runner_id))
            changes = runner.drift(current)
            if changes:
                if not self.check_mode:
                    api.update_runner(runner.api_token, runner_id, changes)
                self.server_change(runner.name, runner_id, dict((k, current.get(k)) for k in changes), changes)
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
        owned = self.tokens.obtain(runner)
        self.store.remember(runner.name, owned['id'], True, record.get('source'))
        return 'recreated', owned

    def unregister(self, runner, entry, created_here):
        """Remove a runner from GitLab: by id with an API token, else with its own token (docs/gitlab-api.md §1.5).

        ``created_here`` is None for an entry this module has no record of (written by ``gitlab-runner register``,
        say): then gitlab-runner's own unregister rule applies, a ``glrt-`` token loses only this host's manager and
        any other token deletes the runner (docs/gitlab-runner-config.md §3.3), so pruning such an entry leaves no
        orphan behind.
        """
        token = entry.get('token')
        runner_id = int(entry.get('id') or 0)
        api = self.tokens.client(runner)
        self.store.claim()
        if created_here is None:
            created_here = not (token or '').startswith('glrt-')
        if not created_here and token:
            # A token handed in from outside may serve other hosts too: remove only this host's manager.
            api.delete_manager(token, self.system_id)
        elif runner.api_token and runner_id > 0:
            api.delete_runner(runner.api_token, runner_id)
        elif token:
            api.delete_by_token(token)

    # -- messages ----------------------------------------------------------------------------------------------------
    def server_change(self, name, runner_id, before, after):
        self.server.add(name, runner_id, before, after)

    def server_diff(self, secrets, secret_names=()):
        return self.server.diff(self.runners[0].url if self.runners else '', secrets)

    def report(self, name, entry, action, config):
        self.results.append({'name': name, 'id': int(entry.get('id') or 0) if entry else 0, 'action': action,
                             'config': config, 'token_expires_at': iso(entry.get('token_expires_at')) if entry else None})

    # -- the run -----------------------------------------------------------------------------------------------------
    def run(self, raw, existing):
        """Reconcile every declared runner; return the desired config."""
        store = self.store
        self.system_id = self.tokens.system_id = store.system_id_value
        authoritative = self.params.get('authoritative')
        settings, written, removed = merge_globals(existing, self.params, store.global_applied(), authoritative)
        store.set_global_applied(written)
        if removed:
            self.ctx.warn('authoritative: the global settings {0} are not declared, so they leave config.toml.'.format(
                removed_names(removed)))
        config = copy.deepcopy(existing)
        config.setdefault('runners', [])
        entries = config['runners']
        by_name = dict((e.get('name'), e) for e in entries)
        declared = set(r.name for r in self.runners)

        # Created with an API token and journaled ahead: their tokens wait for the run's next write (see persist).
        ahead = self.tokens.journal_creations([(r, by_name.get(r.name), store.record(r.name)) for r in self.runners])

        def persist():
            for created, _owned in self.unwritten:
                store.clear_pending(created.name)
            store.save(whole_file(settings, config['runners']), self.params['backup'])
            del self.unwritten[:]

        for runner in self.runners:
            entry = by_name.get(runner.name)
            record = store.record(runner.name)
            try:
                if runner.state == 'absent':
                    self.remove(runner, entry, record, entries, persist)
                    continue
                action, owned = self.converge_runner(runner, entry, record)
            except (GitLabError, RunnerConfigError, IOError, OSError) as exc:
                self.settle(persist)
                raise RunFailed(describe_failure(runner, exc, self.store), self.results)
            new_entry, written, removed = runner.entry(entry, owned if owned is not None else entry,
                                                       store.applied(runner.name), authoritative)
            store.set_applied(runner.name, written)
            if removed:
                self.ctx.warn('Runner {0!r}: authoritative: {1} are not declared, so they leave its entry in '
                              'config.toml.'.format(runner.name, removed_names(removed)))
            if entry is None:
                entries.append(new_entry)
                file_side = 'added'
            else:
                entries[entries.index(entry)] = new_entry
                same = config_toml.semantic_equal({'runners': [entry]}, {'runners': [new_entry]})
                file_side = 'unchanged' if same else 'updated'
            by_name[runner.name] = new_entry
            new_token = owned is not None and entry is not None and owned.get('token') != entry.get('token')
            if action == 'created' and runner.name in ahead:
                # Its pending record is on disk and the API token finds the runner again if the run dies before the
                # next write, so its token goes with that write: one host call for all of them, not one each.
                self.unwritten.append((runner, owned))
            elif action in ('created', 'recreated', 'adopted', 'verified') or new_token:
                store.clear_pending(runner.name)
                try:
                    persist()
                except (IOError, OSError) as exc:
                    if action in ('created', 'recreated') and runner.source != 'token':
                        self.tokens.undo_creations(self.unwritten + [(runner, owned)], exc)
                    raise RunFailed('Runner {0!r} (id {1}) got a new token from GitLab, but the module could not write {2} '
                                    '({3}). Make {4} writable and run again; with api_token the next run resets the token by '
                                    'id once more.'.format(runner.name, new_entry.get('id'), store.path, exc.strerror or exc,
                                                           store.dir), self.results)
            self.report(runner.name, new_entry, action, file_side)
            old_id = int((entry or {}).get('id') or 0)
            if action in ('created', 'adopted'):
                self.server_change(runner.name, new_entry.get('id'), {}, dict(runner.made_with(), status=action))
            elif action == 'recreated':
                self.server_change(runner.name, new_entry.get('id'), {'id': old_id, 'status': 'gone or rejected'},
                                   dict(runner.made_with(), status='recreated'))
            elif new_token and owned.get('token_expires_at') != (entry or {}).get('token_expires_at'):
                self.server_change(runner.name, old_id, {'token_expires_at': iso((entry or {}).get('token_expires_at'))},
                                   {'token': 'renewed', 'token_expires_at': iso(owned.get('token_expires_at'))})

        if self.params['prune']:
            self.prune(entries, declared, persist)

        desired = whole_file(settings, config['runners'])
        file_changed = raw is None or not config_toml.semantic_equal(existing, desired)
        self.changed = self.changed or file_changed or any(r['action'] != 'unchanged' for r in self.results)
        for created, _owned in self.unwritten:
            store.clear_pending(created.name)
        try:
            store.save(desired if file_changed else None, self.params['backup'], final=True)
        except (IOError, OSError) as exc:
            if self.unwritten:
                self.tokens.undo_creations(self.unwritten, exc)
            raise
        return desired

    def settle(self, persist):
        """The run stops early: runners created ahead of the failure get their tokens written (or are deleted again
        when that fails), and pending records whose request was never sent are dropped."""
        self.store.drop_unsent()
        try:
            if self.unwritten:
                persist()
            else:
                self.store.save()
        except (IOError, OSError) as exc:
            if self.unwritten:
                self.tokens.undo_creations(self.unwritten, exc)

    def remove(self, runner, entry, record, entries, persist):
        """A runner declared absent: delete what a lost creation made, unregister it, drop its entry."""
        pending = self.store.pending(runner.name)
        if pending and not self.check_mode and runner.source != 'token':
            # A creation whose answer was lost, for a runner now declared absent: delete what it made.
            self.tokens.recover_pending(runner, pending, adopt=False)
            self.store.clear_pending(runner.name)
        if entry is None:
            # Already gone: nothing to do, but one result per declared runner all the same.
            self.store.forget(runner.name)
            self.report(runner.name, None, 'unchanged', 'unchanged')
            return
        if not self.check_mode:
            self.unregister(runner, entry, record.get('created'))
        entries.remove(entry)
        self.store.forget(runner.name)
        persist()
        self.report(runner.name, entry, 'removed', 'removed')
        self.server_change(runner.name, entry.get('id'), {'id': int(entry.get('id') or 0)}, {})

    def prune(self, entries, declared, persist):
        """Unregister and drop every entry whose name is not declared."""
        for entry in list(entries):
            if entry.get('name') in declared:
                continue
            ghost = Runner({'name': entry.get('name') or '', 'state': 'absent', 'url': entry.get('url')}, self.params)
            ghost.url = entry.get('url') or ghost.url
            try:
                if not self.check_mode:
                    self.unregister(ghost, entry, self.store.record(ghost.name).get('created'))
            except GitLabError as exc:
                self.settle(persist)
                raise RunFailed(describe_error(ghost, exc, self.store.writes), self.results)
            entries.remove(entry)
            self.store.forget(ghost.name)
            persist()
            self.report(ghost.name, entry, 'removed', 'removed')
            self.server_change(ghost.name, entry.get('id'), {'id': int(entry.get('id') or 0)}, {})


def describe_failure(runner, exc, store):
    """The message of a run stopped at ``runner`` by ``exc``."""
    if isinstance(exc, GitLabError):
        return describe_error(runner, exc, store.writes)
    if isinstance(exc, RunnerConfigError):
        return to_native(exc)
    return 'Runner {0!r}: could not write in {1} ({2}). Fix the directory, then run again.'.format(
        runner.name, store.dir, exc.strerror or exc)


def describe_error(runner, exc, writes):
    """One sentence for a failed GitLab call: what, which runner, the answer, and what to do."""
    msg = 'Could not {0} runner {1!r}: {2}.'.format(doing(exc), runner.name, exc.describe())
    msg += _ERROR_HINTS.get(exc.kind, '').format(url=runner.url) if exc.kind in _ERROR_HINTS else _status_hint(exc)
    if writes:
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


# What to do about a transport failure, by GitLabError.kind.
_ERROR_HINTS = {
    'tls': (' GitLab\'s TLS certificate is not trusted: give the CA that signed it with ca_path or ca_content '
            '(validate_certs: false only for a throwaway test instance).'),
    'refused': ' Nothing accepts connections at {url}: check that GitLab runs and that the URL and port are right.',
    'dns': ' Check the host name in the URL {url}.',
    'timeout': ' GitLab did not answer in time: check its health and load, or raise timeout (and retries), then run again.',
    'dropped': ' The connection broke: check GitLab and any proxy or load balancer in front of it, then run again.',
    'connection': ' The connection broke: check GitLab and any proxy or load balancer in front of it, then run again.',
    'non_json': (' The answer is not GitLab\'s JSON: check that the URL points at GitLab itself, not at a proxy, a '
                 'maintenance or a login page.'),
}


def _status_hint(exc):
    """What to do about an HTTP status GitLab answered (docs/gitlab-api.md §1.0)."""
    if exc.status == 410:
        return (' GitLab no longer accepts registration tokens (disabled by default since 17.0): create the runner with '
                'runner_type and api_token, or with a glrt- token from the UI in token.')
    if exc.status == 401:
        return ' The api_token is missing, wrong or expired; create a new access token.'
    if exc.status == 403:
        return (' The token lacks a scope or role: creating needs create_runner, reading/updating/deleting needs '
                'manage_runner (or api), and the owner role of the group or project.')
    if exc.status == 404:
        return ' The runner, group or project does not exist, or the token cannot see it; check the ids and the token.'
    if exc.status == 429:
        if exc.retry_after is not None:
            return (' GitLab asked to retry after {0:g} seconds (it is migrating its database or rate limiting): run '
                    'again after that, or raise retry_max_delay and retries.'.format(exc.retry_after))
        return ' GitLab asked to retry later: run again in a few minutes.'
    if exc.status is not None and exc.status >= 500:
        return ' GitLab failed on its side: check its health (logs, /-/readiness), then run again.'
    return ''
