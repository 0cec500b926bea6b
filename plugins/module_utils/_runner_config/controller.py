# -*- coding: utf-8 -*-
# Copyright (c) dood.gitlab_runner contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""runner_config's GitLab side on the controller: the action plugin's logic.

The API token never leaves the controller. Everything that talks to GitLab runs here; the runner host is reached
only through the small runner_config_host module, which reads and writes the configuration directory and gets no
GitLab credential (docs/gitlab-api.md). A run that changes nothing costs one host call.

Two runs on one host: the first one that has to write (or to ask GitLab for something that cannot be undone) takes the
directory's lease on the host; a run that finds the lease taken, or the files changed since it read them, starts over
from a fresh read once the lease is free, before it has sent anything irreversible. A lease whose holder died on this
controller is broken at once; one held from elsewhere lapses after ``lease_ttl`` seconds without a host call.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import socket
import tempfile
import time
import uuid

from ansible.module_utils.common.arg_spec import ArgumentSpecValidator
from ansible.module_utils.common.parameters import remove_values
from ansible.module_utils.common.text.converters import to_native

from ansible_collections.dood.gitlab_runner.plugins.module_utils import config_toml
from ansible_collections.dood.gitlab_runner.plugins.module_utils._runner_config import options
from ansible_collections.dood.gitlab_runner.plugins.module_utils._runner_config.model import RunnerConfigError, Validator
from ansible_collections.dood.gitlab_runner.plugins.module_utils._runner_config.module import Context, diff_of
from ansible_collections.dood.gitlab_runner.plugins.module_utils._runner_config.reconcile import Reconciler, RunFailed, check_ca
from ansible_collections.dood.gitlab_runner.plugins.module_utils._runner_config.store import Store

HOST_MODULE = 'dood.gitlab_runner.runner_config_host'
HOST_RUN_MODULE = 'dood.gitlab_runner.runner_config'
LEASE_TTL = 600
ATTEMPTS = 4
POLL = 1.0


class Conflict(Exception):
    """Another run wrote or holds the lease: start over from a fresh read."""


class ActionContext(Context):
    """The action plugin: warnings and deprecations collected into the task result (masked there as a whole)."""

    def __init__(self, check_mode, diff, secret_names):
        super().__init__(check_mode, diff, tempfile.mkdtemp(prefix='dood-runner-config-'), secret_names)
        self.warnings = []
        self.deprecations = []

    def warn(self, msg):
        self.warnings.append(self.mask(msg))

    def deprecate(self, msg, version):
        self.deprecations.append({'msg': self.mask(msg), 'version': version, 'collection_name': self.collection})

    def close(self):
        shutil.rmtree(self.tmpdir, ignore_errors=True)


class RemoteStore(Store):
    """The host's configuration directory, reached through runner_config_host (see module docstring)."""

    def __init__(self, call, path, check_mode, secret, secret_names, backup):
        super().__init__(path, check_mode, secret, secret_names)
        self.call = call
        self.owner = uuid.uuid4().hex
        self.holder = {'controller': socket.gethostname(), 'pid': os.getpid(), 'started': _start_time(os.getpid())}
        self.generation = None
        self.claimed = False
        self.needs_prepare = False
        self.backup = backup
        self.dir = os.path.dirname(path)

    def open(self, deadline):
        """Read the directory (waiting while another run holds it). Returns (raw, parsed, files_changed)."""
        broken = None
        while True:
            result = self.call({'op': 'read', 'owner': self.owner, 'break_owner': broken})
            held = result.get('held')
            if not held:
                break
            if _dead_here(held.get('holder') or {}):
                broken = held.get('owner')
                continue
            if time.time() > deadline:
                raise RunnerConfigError('Another run of runner_config has been working on {0} since before this one started '
                                        '(lease of {1}); wait for it to finish, or remove {2}/.dood_gitlab_runner.lease if '
                                        'that run is gone.'.format(self.path, (held.get('holder') or {}).get('controller'),
                                                                   self.dir))
            time.sleep(POLL)
        self.generation = result['generation']
        self.system_id_value = result['system_id']
        self.load_state(_unb64(result.get('state')))
        raw, parsed = self.load_config(_unb64(result.get('config')))
        # The file is usable: the directory is tidied and the system id kept with the run's first write (the read changed
        # nothing), or at its end when it writes nothing else.
        self.needs_prepare = not self.check_mode and bool(
            result.get('files_changed') or result.get('system_id_created') or result.get('stale_files'))
        return raw, parsed, bool(result.get('files_changed'))

    def claim(self):
        if self.check_mode or self.claimed:
            return
        self._write({'op': 'claim'})

    def _put(self, config, state, backup, final=False):
        args = {'op': 'write', 'backup': bool(backup and self.backup_file is None), 'release': final}
        if config is not None:
            args['config'] = base64.b64encode(config).decode('ascii')
        if state is not None:
            args['state'] = base64.b64encode(state).decode('ascii')
        result = self._write(args)
        self.backup_file = self.backup_file or result.get('backup_file')

    def _write(self, args):
        args.update({'owner': self.owner, 'holder': self.holder, 'expect': self.generation, 'ttl': LEASE_TTL,
                     'release': bool(args.get('release'))})
        if self.needs_prepare:
            args.update({'prepare': True, 'system_id': self.system_id_value})
        result = self.call(args)
        if result.get('conflict'):
            raise Conflict(result['conflict'])
        self.needs_prepare = False
        self.claimed = not args['release']
        self.generation = result['generation']
        return result

    def finish(self):
        """The run's last word: the final write already gave the lease back; tidy up when nothing was written."""
        if self.needs_prepare:
            self._write({'op': 'claim', 'release': True})

    def release(self):
        if self.claimed:
            try:
                self.call({'op': 'release', 'owner': self.owner})
            except (RunnerConfigError, OSError):
                pass  # it lapses by itself; a run on this controller breaks it at once
            self.claimed = False


def _unb64(text):
    return None if text is None else base64.b64decode(text)


def _start_time(pid):
    try:
        with open('/proc/{0}/stat'.format(pid)) as handle:
            return handle.read().rsplit(')', 1)[1].split()[19]
    except (IOError, IndexError):
        return None


def _dead_here(holder):
    """True when the lease holder was a process of this controller that no longer runs."""
    if holder.get('controller') != socket.gethostname() or not holder.get('pid'):
        return False
    started = _start_time(int(holder['pid']))
    return started is None or (holder.get('started') is not None and started != holder['started'])


class HostCall:
    """One call of runner_config_host through the action plugin; a failure becomes the exception it stands for."""

    def __init__(self, action, task_vars, path, check_mode):
        self.action = action
        self.task_vars = task_vars
        self.path = path
        self.check_mode = check_mode
        self.count = 0

    def __call__(self, args):
        self.count += 1
        args = dict((k, v) for k, v in args.items() if v is not None)
        args['path'] = self.path
        result = self.action.execute_host_module(HOST_MODULE, args, self.task_vars)
        if result.get('failed') or result.get('unreachable'):
            if result.get('errno'):
                raise OSError(result['errno'], result.get('strerror') or result.get('msg'))
            raise RunnerConfigError(result.get('msg') or 'runner_config_host failed on the host: {0}'.format(
                to_native(result.get('module_stderr') or result)[-500:]))
        return result


def validate_arguments(args, name):
    """AnsibleModule's own argument checks, on the controller: (params, no-log values) or raise with its message."""
    validator = ArgumentSpecValidator(options.argument_spec(), mutually_exclusive=options.MUTUALLY_EXCLUSIVE)
    result = validator.validate(args)
    if result.error_messages:
        msg = result.errors.msg
        if type(result.errors[0]).__name__ == 'UnsupportedError':
            msg = 'Unsupported parameters for ({0}) module: {1}'.format(name, msg)
        return None, result._no_log_values, msg
    return result.validated_parameters, result._no_log_values, None


def plain(value):
    """The task's arguments as a module gets them: JSON types only (the controller's are tagged subclasses of str and
    dict, which the strict comparisons of config.toml values would take for different types)."""
    return json.loads(json.dumps(value))


def run(action, task_vars, args, check_mode, diff):
    """The whole task on the controller; returns the task result."""
    name = action.task_action
    args = plain(args)
    params, no_log_values, error = validate_arguments(args, name)
    if error:
        return {'failed': True, 'msg': error}
    if params['gitlab_side'] == 'host':
        return action.execute_host_module(HOST_RUN_MODULE, args, task_vars)
    ctx = ActionContext(check_mode, diff, params['secret_names'])
    for value in no_log_values:
        ctx.secret(value)
    try:
        return _reconcile(action, task_vars, params, ctx)
    finally:
        ctx.close()


def _reconcile(action, task_vars, params, ctx):
    version, note = config_toml.resolve_version(params['runner_version'])
    validator = Validator(params, ctx.secret, check_ca, version)
    validator.register_secrets()
    if note:
        ctx.warn(note)
    call = HostCall(action, task_vars, params['path'], ctx.check_mode)
    deadline = time.time() + LEASE_TTL
    try:
        validator.top_level()
        runners = validator.runners()
        for attempt in range(1, ATTEMPTS + 1):
            store = RemoteStore(call, params['path'], ctx.check_mode, ctx.secret, ctx.secret_names, params['backup'])
            try:
                raw, existing, files_changed = store.open(deadline)
                reconciler = Reconciler(ctx, params, runners, store)
                reconciler.changed = files_changed
                desired = reconciler.run(raw, existing)
                store.finish()
                break
            except Conflict:
                if attempt == ATTEMPTS:
                    raise RunnerConfigError('Another run kept changing {0} while this one worked on it; run again.'.format(
                        params['path']))
            finally:
                store.release()
    except RunnerConfigError as exc:
        return _failed(ctx, to_native(exc))
    except RunFailed as exc:
        return _failed(ctx, exc.msg, runners=exc.runners)
    result = {'changed': reconciler.changed, 'runners': reconciler.results, 'system_id': reconciler.system_id,
              'path': params['path'], 'runner_version': version, 'host_calls': call.count}
    if ctx.diff:
        result['diff'] = diff_of(params['path'], raw, existing, desired, ctx.secrets, ctx.secret_names)
        server = reconciler.server_diff(ctx.secrets, ctx.secret_names)
        if server:
            result['diff'] = [result['diff'], server]
    if store.backup_file:
        result['backup_file'] = store.backup_file
    return _finish(ctx, result)


def _failed(ctx, msg, **extra):
    return _finish(ctx, dict({'failed': True, 'msg': ctx.mask(msg)}, **extra))


def _finish(ctx, result):
    if ctx.warnings:
        result['warnings'] = ctx.warnings
    if ctx.deprecations:
        result['deprecations'] = ctx.deprecations
    return remove_values(result, ctx.secrets)
