# -*- coding: utf-8 -*-
# Copyright (c) dood.gitlab_runner contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The files of one runner host's configuration directory, as bytes: what the host half needs and nothing more.

No TOML, no GitLab: the host module that reads and writes for the controller imports only this file.

* ``config.toml``, written like core ``copy``: a private temporary file in the same directory, fsync, rename.
* ``.runner_system_id``, read or created the way gitlab-runner does (docs/gitlab-runner-config.md §2.6).
* ``.dood_gitlab_runner.json``, the journal (written by the store, which knows its format).
* ``.dood_gitlab_runner.lease``, which run of the module owns the directory while it works across several host
  calls (the GitLab side on the controller); a run on the host itself holds an flock instead.
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
import socket
import stat
import string
import tempfile
import time

from ansible.module_utils.common.text.converters import to_bytes

SYSTEM_ID_RE = re.compile(r'^[sr]_[0-9a-zA-Z]{12}$')
STATE_FILE = '.dood_gitlab_runner.json'
SYSTEM_ID_FILE = '.runner_system_id'
LEASE_FILE = '.dood_gitlab_runner.lease'
# Names tempfile.mkstemp gives the temporary files (write_file, check_writable): '.' + file name + '.' + 8 characters.
STALE_TEMP_RE = r'^\.({0}|\.dood_gitlab_runner\.json|\.runner_system_id)\.(probe\.)?[a-z0-9_]{{8}}$'


class RunnerConfigError(Exception):
    """A problem with a sentence that names it and the fix."""


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


def generation(config, state):
    """A digest of what config.toml and the journal hold, to notice that someone wrote between two host calls."""
    digest = hashlib.sha256()
    for data in (config, state):
        digest.update(b'\1' + data if data is not None else b'\0')
    return digest.hexdigest()[:32]


class HostFiles:
    """The configuration directory of ``path`` (config.toml) on this host. In check mode nothing is written."""

    def __init__(self, path, check_mode=False):
        self.path = path
        self.dir = os.path.dirname(os.path.abspath(path))
        self.check_mode = check_mode
        self.state_path = os.path.join(self.dir, STATE_FILE)
        self.lease_path = os.path.join(self.dir, LEASE_FILE)
        self._lock_fd = None

    # -- reading ---------------------------------------------------------------------------------------------------
    def read_config(self):
        """config.toml's bytes, or None when there is none."""
        if os.path.isdir(self.path):
            raise RunnerConfigError('{0} is a directory; path must name the config.toml file inside it, '
                                    'for example {1}.'.format(self.path, os.path.join(self.path, 'config.toml')))
        if not os.path.isdir(self.dir):
            raise RunnerConfigError('The directory {0} of config.toml does not exist; create it (mode 0700) first, or let the '
                                    'runner role do it.'.format(self.dir))
        try:
            with open(self.path, 'rb') as handle:
                return handle.read()
        except IOError as exc:
            if exc.errno == errno.ENOENT:
                return None
            raise RunnerConfigError('Cannot read {0}: {1}.'.format(self.path, exc.strerror))

    def read_state(self):
        try:
            with open(self.state_path, 'rb') as handle:
                return handle.read()
        except IOError:
            return None

    def system_id(self, new=None):
        """(system id, created now): the id gitlab-runner keeps in .runner_system_id, created the same way when missing
        (``new``: the value to create)."""
        value = read_system_id(self.dir)
        if value:
            return value, False
        value = new if new and SYSTEM_ID_RE.match(new) else new_system_id()
        if not self.check_mode:
            write_file(os.path.join(self.dir, SYSTEM_ID_FILE), to_bytes(value))
        return value, True

    # -- writing -----------------------------------------------------------------------------------------------------
    def write_config(self, data, backup_local=None):
        """Write config.toml; with ``backup_local`` (Ansible's), keep a copy of the previous file first. Returns the
        backup's path or None."""
        backup = None
        if backup_local is not None and os.path.exists(self.path):
            backup = backup_local(self.path)
            os.chmod(backup, 0o600)
        write_file(self.path, data)
        return backup

    def write_state(self, data):
        write_file(self.state_path, data)

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

    def stale_temp_files(self):
        """Temporary files of a run that was killed while writing (they may hold a token)."""
        pattern = re.compile(STALE_TEMP_RE.format(re.escape(os.path.basename(self.path))))
        return [name for name in os.listdir(self.dir) if pattern.match(name)]

    def remove_stale_temp_files(self):
        for name in self.stale_temp_files():
            try:
                os.unlink(os.path.join(self.dir, name))
            except OSError:
                pass

    def prepare(self):
        """Before a run: check the file can be written, tidy up, secure the files. Returns whether modes changed."""
        if not self.check_mode:
            self.check_writable()
            self.remove_stale_temp_files()
        return self.secure_files(dry=self.check_mode)

    # -- the lock (one process) ----------------------------------------------------------------------------------------
    def lock(self):
        """Take the directory's exclusive lock (released by unlock or when the process ends)."""
        self._lock_fd = os.open(self.dir, os.O_RDONLY)
        fcntl.flock(self._lock_fd, fcntl.LOCK_EX)

    def unlock(self):
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None

    # -- the lease (one run across several processes) -----------------------------------------------------------------
    def lease(self):
        """The lease in the directory as a dict, or None when there is none or it has expired."""
        try:
            with open(self.lease_path) as handle:
                lease = json.load(handle)
        except (IOError, ValueError):
            return None
        if not isinstance(lease, dict) or float(lease.get('expires') or 0) < time.time():
            return None
        return lease

    def take_lease(self, owner, holder, ttl):
        write_file(self.lease_path, to_bytes(json.dumps({'owner': owner, 'holder': holder, 'expires': time.time() + ttl,
                                                         'host': socket.gethostname()})))

    def release_lease(self, owner):
        lease = self.lease()
        if lease is not None and lease.get('owner') == owner:
            os.unlink(self.lease_path)
