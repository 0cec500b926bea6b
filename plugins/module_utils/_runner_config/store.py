# -*- coding: utf-8 -*-
# Copyright (c) dood.gitlab_runner contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The files runner_config keeps on the runner host, behind one class.

* ``config.toml``, written like core ``copy``: a private temporary file in the same directory, fsync, rename.
* ``.runner_system_id``, read or created the way gitlab-runner does (docs/gitlab-runner-config.md §2.6).
* ``.dood_gitlab_runner.json``, the journal: each runner's id and whether the module created it, and the creations
  that were sent to GitLab but whose answer is not in config.toml yet. It never holds a token.
* An exclusive lock on the directory while a run works, so two runs on one host never interleave.
"""

from __future__ import annotations

import errno
import fcntl
import hashlib
import hmac
import json
import os
import re
import secrets
import stat
import string
import tempfile
import time

from ansible.module_utils.common.text.converters import to_bytes, to_native

from ansible_collections.dood.gitlab_runner.plugins.module_utils import config_toml
from ansible_collections.dood.gitlab_runner.plugins.module_utils._runner_config.model import RunnerConfigError

SYSTEM_ID_RE = re.compile(r'^[sr]_[0-9a-zA-Z]{12}$')
STATE_FILE = '.dood_gitlab_runner.json'
SYSTEM_ID_FILE = '.runner_system_id'
# Names tempfile.mkstemp gives the store's temporary files (write_file, check_writable): '.' + file name + '.' + 8.
STALE_TEMP_RE = r'^\.({0}|\.dood_gitlab_runner\.json|\.runner_system_id)\.(probe\.)?[a-z0-9_]{{8}}$'


def read_system_id(directory):
    """The valid system id in ``directory``/.runner_system_id, or None (docs/gitlab-runner-config.md §2.6)."""
    try:
        with open(os.path.join(directory, SYSTEM_ID_FILE)) as handle:
            value = handle.read().strip()
    except IOError:
        return None
    return value if SYSTEM_ID_RE.match(value) else None


def new_system_id():
    """A system id made the way gitlab-runner makes one: from the machine id, else random."""
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
        return 's_' + hmac.new(to_bytes(machine_id), b'gitlab-runner', hashlib.sha256).hexdigest()[:12]
    alphabet = string.ascii_letters + string.digits
    return 'r_' + ''.join(secrets.choice(alphabet) for _i in range(12))


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
    """config.toml, the system id and the journal of one host, in the directory of ``path``.

    ``secret`` registers a value to be masked everywhere; ``backup_local`` makes a backup copy of a file (Ansible's).
    In check mode nothing is written.
    """

    def __init__(self, path, check_mode=False, secret=None, backup_local=None, secret_names=()):
        self.path = path
        self.dir = os.path.dirname(os.path.abspath(path))
        self.check_mode = check_mode
        self.secret = secret or (lambda value: value)
        self.backup_local = backup_local
        self.secret_names = secret_names
        self.state_path = os.path.join(self.dir, STATE_FILE)
        self.state = {'version': 1, 'runners': {}, 'pending': {}}
        self.saved_state = None
        self.backup_file = None
        self.writes = 0
        self._lock_fd = None

    # -- reading ---------------------------------------------------------------------------------------------------
    def read_config(self):
        """(raw bytes or None when there is no file, parsed dict)."""
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

    def read_state(self):
        """The journal beside config.toml: runner ids and pending creations (never a token)."""
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
        """(system id, created now): the id gitlab-runner keeps in .runner_system_id, created the same way when missing."""
        value = read_system_id(self.dir)
        if value:
            return value, False
        value = new_system_id()
        if not self.check_mode:
            self.write_file(os.path.join(self.dir, SYSTEM_ID_FILE), to_bytes(value))
        return value, True

    # -- the journal -------------------------------------------------------------------------------------------------
    def record(self, name):
        return self.state['runners'].get(name, {})

    def known_ids(self):
        return set(int(r.get('id') or 0) for r in self.state['runners'].values())

    def pending(self, name):
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

    def journaled_create(self, name, description, runner_type, scope, send):
        """Send a creation request with the pending-creation record written before it.

        GitLab has no idempotency key for creations (docs/gitlab-api.md §1.2, §1.3): the record on disk before the
        request lets the next run find a runner whose creation answer was lost (killed run, timeout, dropped
        connection). The record is dropped again only when GitLab certainly created nothing.
        """
        self.state['pending'][name] = {
            'at': int(time.time()),
            'time': time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime()),
            'description': description,
            'runner_type': runner_type,
            'scope': scope,
        }
        self.save_state()
        try:
            return send()
        except Exception as exc:
            if getattr(exc, 'unknown_outcome', True) is False:
                self.clear_pending(name)
                self.save_state()
            raise

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

    # -- writing -----------------------------------------------------------------------------------------------------
    @staticmethod
    def write_file(path, data):
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

    def save_config(self, config, backup=False):
        """Persist the config right away (after each creation too), so a token GitLab issued is never lost."""
        if backup and self.backup_file is None and os.path.exists(self.path):
            self.backup_file = self.backup_local(self.path)
            os.chmod(self.backup_file, 0o600)
        self.write_file(self.path, to_bytes(config_toml.render(config)))
        self.writes += 1

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
        for path in (self.path, self.state_path, os.path.join(self.dir, SYSTEM_ID_FILE)):
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

    # -- the lock ----------------------------------------------------------------------------------------------------
    def lock(self):
        """Take the directory's exclusive lock (released by unlock or when the process ends)."""
        self._lock_fd = os.open(self.dir, os.O_RDONLY)
        fcntl.flock(self._lock_fd, fcntl.LOCK_EX)

    def unlock(self):
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None

    def open(self):
        """Prepare for a run under the lock: re-read the file, check it can be written, tidy up, secure the files.

        Returns (raw, parsed, files_changed).
        """
        raw, parsed = self.read_config()
        if not self.check_mode:
            self.check_writable()
            self.remove_stale_temp_files()
        changed = self.secure_files(dry=self.check_mode)
        return raw, parsed, changed
