# -*- coding: utf-8 -*-
# Copyright (c) dood.gitlab_runner contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""What runner_config keeps on the runner host, behind one class whose files may be near or far.

``Store`` holds the parsed config.toml and the journal (``.dood_gitlab_runner.json``): each runner's id, whether the
module created it, digests of the values it wrote, and the creations that were sent to GitLab but whose answer is
not in config.toml yet. It never holds a token. Its I/O is left to a subclass: ``LocalStore`` works on this host's
files under an flock (the module on the host), the controller's store calls the runner_config_host module.
"""

from __future__ import annotations

import json
import re
import time

from ansible.module_utils.common.text.converters import to_bytes, to_native

from ansible_collections.dood.gitlab_runner.plugins.module_utils import config_toml
from ansible_collections.dood.gitlab_runner.plugins.module_utils._runner_config.files import HostFiles, RunnerConfigError


def parse_config(path, raw, secret):
    """Parse config.toml bytes, registering every token in it as a secret before any message can show one."""
    try:
        parsed = config_toml.parse(raw)
    except config_toml.ConfigTomlError as exc:
        # The parser may quote the offending line, which can hold a token: mask what the file says is secret.
        for match in re.finditer(rb'(?m)^\s*token\s*=\s*"([^"\n]*)"', raw):
            secret(match.group(1).decode('utf-8', 'replace'))
        raise RunnerConfigError('Cannot use {0}: {1}. Fix or move the file away; it was left unchanged.'.format(
            path, to_native(exc)))
    runners = parsed.get('runners', [])
    if not isinstance(runners, list) or not all(isinstance(r, dict) for r in runners):
        raise RunnerConfigError('{0}: runners must be an array of tables ([[runners]]); fix the file.'.format(path))
    for entry in runners:
        token = entry.get('token')
        secret(token if isinstance(token, str) else None)
    return parsed


class Store:
    """config.toml and the journal of one host. ``secret`` registers a value to be masked everywhere.

    Subclasses provide the I/O: ``claim()`` (before GitLab is asked for something that cannot be undone) and
    ``_put(config bytes or None, journal bytes or None, backup)``. In check mode nothing is written.
    """

    def __init__(self, path, check_mode=False, secret=None, secret_names=()):
        self.path = path
        self.check_mode = check_mode
        self.secret = secret or (lambda value: value)
        self.secret_names = secret_names
        self.state = {'version': 1, 'runners': {}, 'pending': {}}
        self.saved_state = None
        self.backup_file = None
        self.writes = 0
        self.system_id_value = None
        # Names whose pending record this run wrote ahead with journal_creations and whose request is not sent yet.
        self.journaled = set()

    # -- loading -------------------------------------------------------------------------------------------------------
    def load_config(self, raw):
        """(raw, parsed) of config.toml's bytes (None: no file), every credential in it registered as a secret."""
        if raw is None:
            return None, {}
        parsed = parse_config(self.path, raw, self.secret)
        # Credentials the file holds beyond tokens (cache keys, secret environment variables): masked in every message.
        for value in config_toml.secret_values(parsed, self.secret_names):
            if len(value) >= 4:
                self.secret(value)
        names = [r.get('name') for r in parsed.get('runners', [])]
        dupes = sorted(set(n for n in names if names.count(n) > 1 and n is not None), key=str)
        if dupes:
            raise RunnerConfigError('{0} holds several [[runners]] entries named {1}; remove the duplicates by hand (keep the '
                                    'one gitlab-runner uses) and run again.'.format(self.path, ', '.join(repr(d) for d in dupes)))
        return raw, parsed

    def load_state(self, raw):
        """The journal's bytes (None: no journal yet); a journal written by any earlier version is read as it is."""
        try:
            data = json.loads(raw.decode('utf-8')) if raw else None
            if isinstance(data, dict) and isinstance(data.get('runners'), dict):
                self.state = data
                self.saved_state = raw
        except ValueError:
            pass
        if not isinstance(self.state.get('pending'), dict):
            self.state['pending'] = {}

    # -- the journal -------------------------------------------------------------------------------------------------
    def record(self, name):
        return self.state['runners'].get(name, {})

    def known_ids(self):
        return set(int(r.get('id') or 0) for r in self.state['runners'].values())

    def pending(self, name):
        """The creation of ``name`` an earlier run sent without keeping the answer (not one this run wrote ahead)."""
        if name in self.journaled:
            return None
        return self.state['pending'].get(name)

    def remember(self, name, runner_id, created, source=None):
        record = {'id': int(runner_id or 0), 'created': bool(created)}
        if source:
            record['source'] = source
        if self.record(name).get('applied'):
            record['applied'] = self.record(name)['applied']
        self.state['runners'][name] = record

    def applied(self, name):
        """Digests of the values the module wrote into the entry ``name`` last time (merge.merge)."""
        return dict(self.record(name).get('applied') or {})

    def set_applied(self, name, written):
        record = self.state['runners'].setdefault(name, {'id': 0, 'created': False})
        if written:
            record['applied'] = written
        else:
            record.pop('applied', None)

    def global_applied(self):
        return dict(self.state.get('applied') or {})

    def set_global_applied(self, written):
        if written:
            self.state['applied'] = written
        else:
            self.state.pop('applied', None)

    def forget(self, name):
        self.state['runners'].pop(name, None)

    def clear_pending(self, name):
        self.state['pending'].pop(name, None)

    @staticmethod
    def _pending_record(description, runner_type, scope):
        return {
            'at': int(time.time()),
            'time': time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime()),
            'description': description,
            'runner_type': runner_type,
            'scope': scope,
        }

    def journal_creations(self, creations):
        """Record several creations as pending in one write, before any of their requests: ``creations`` is a list of
        (name, description, runner_type, scope). Only for creations an API token can find again when their answer is
        lost (tokens.Tokens.recover_pending): a record whose request was never sent then costs one listing, no orphan."""
        for name, description, runner_type, scope in creations:
            self.state['pending'][name] = self._pending_record(description, runner_type, scope)
            self.journaled.add(name)
        self.save()

    def journaled_create(self, name, description, runner_type, scope, send):
        """Send a creation request with the pending-creation record written before it.

        GitLab has no idempotency key for creations (docs/gitlab-api.md §1.2, §1.3): the record on disk before the
        request lets the next run find a runner whose creation answer was lost (killed run, timeout, dropped
        connection). The record is dropped again only when GitLab certainly created nothing. A record that
        ``journal_creations`` wrote in this run is on disk already.
        """
        if name not in self.journaled:
            self.state['pending'][name] = self._pending_record(description, runner_type, scope)
            self.save()
        self.journaled.discard(name)
        try:
            return send()
        except Exception as exc:
            if getattr(exc, 'unknown_outcome', True) is False:
                self.clear_pending(name)
                self.save()
            raise

    def drop_unsent(self):
        """Pending records of this run whose request was never sent (the run stopped before): GitLab made nothing."""
        for name in list(self.journaled):
            self.clear_pending(name)
        self.journaled.clear()

    # -- writing -------------------------------------------------------------------------------------------------------
    def state_bytes(self):
        state = dict(self.state)
        if not state.get('pending'):
            state.pop('pending', None)
        return to_bytes(json.dumps(state, indent=2, sort_keys=True) + '\n')

    def save(self, config=None, backup=False, final=False):
        """Write ``config`` (a dict, or None to leave config.toml as it is), then the journal when it changed: in one
        step, config.toml first, so a token GitLab issued is on disk before the journal forgets its creation.
        ``final``: the run's last write (a store that holds a lease gives it back with it)."""
        if self.check_mode:
            return
        data = config_toml.render(config).encode('utf-8') if config is not None else None
        state = self.state_bytes()
        if state == self.saved_state:
            state = None
        if data is None and state is None:
            return
        self._put(data, state, backup, final)
        if data is not None:
            self.writes += 1
        if state is not None:
            self.saved_state = state

    def claim(self):
        raise NotImplementedError

    def _put(self, config, state, backup, final=False):
        raise NotImplementedError


class LocalStore(Store):
    """The store on this host: the module runs where config.toml is, under the directory's flock for the whole run.

    ``backup_local`` makes a backup copy of a file (Ansible's).
    """

    def __init__(self, path, check_mode=False, secret=None, backup_local=None, secret_names=()):
        super().__init__(path, check_mode, secret, secret_names)
        self.files = HostFiles(path, check_mode)
        self.dir = self.files.dir
        self.backup_local = backup_local

    def read_config(self):
        return self.load_config(self.files.read_config())

    def read_state(self):
        self.load_state(self.files.read_state())

    def claim(self):
        """The flock taken for the whole run already excludes every other run."""

    def _put(self, config, state, backup, final=False):
        if config is not None:
            backup_file = self.files.write_config(config, self.backup_local if backup and self.backup_file is None else None)
            self.backup_file = self.backup_file or backup_file
        if state is not None:
            self.files.write_state(state)

    def lock(self):
        self.files.lock()

    def unlock(self):
        self.files.unlock()

    def open(self):
        """Prepare for a run under the lock: re-read the file, check it can be written, tidy up, secure the files, read
        the journal and the system id (created when missing). Returns (raw, parsed, files_changed)."""
        raw, parsed = self.read_config()
        changed = self.files.prepare()
        self.read_state()
        self.system_id_value = self.files.system_id()[0]
        return raw, parsed, changed
