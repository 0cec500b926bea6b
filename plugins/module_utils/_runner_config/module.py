# -*- coding: utf-8 -*-
# Copyright (c) dood.gitlab_runner contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The Ansible glue of runner_config: arguments, secrets, the result and the diff."""

from __future__ import annotations

from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.common.text.converters import to_native

from ansible_collections.dood.gitlab_runner.plugins.module_utils import config_toml
from ansible_collections.dood.gitlab_runner.plugins.module_utils._runner_config import options
from ansible_collections.dood.gitlab_runner.plugins.module_utils._runner_config.model import RunnerConfigError, Validator
from ansible_collections.dood.gitlab_runner.plugins.module_utils._runner_config.reconcile import Reconciler, RunFailed, check_ca
from ansible_collections.dood.gitlab_runner.plugins.module_utils._runner_config.store import LocalStore


class Context:
    """What the reconciler needs from Ansible: check and diff mode, a private temporary directory, and the secrets,
    masked in every message before it leaves. Subclasses say where warnings and deprecations go."""

    collection = 'dood.gitlab_runner'

    def __init__(self, check_mode, diff, tmpdir, secret_names):
        self.check_mode = check_mode
        self.diff = diff
        self.tmpdir = tmpdir
        self.secrets = set()
        self.secret_names = tuple(secret_names or ())

    def secret(self, value):
        """Remember a secret so it is masked everywhere; returns it."""
        if value:
            self.secrets.add(value)
            self.hide(value)
        return value

    def hide(self, value):
        """Also hide ``value`` from Ansible's own output (the module's no-log values)."""

    def mask(self, text):
        return config_toml.mask_text(text, self.secrets)


class ModuleContext(Context):
    """The module on the host: Ansible's own warnings, deprecations and failure, and its no-log values."""

    def __init__(self, module):
        super().__init__(module.check_mode, module._diff, module.tmpdir, module.params.get('secret_names'))
        self.module = module

    def hide(self, value):
        self.module.no_log_values.add(value)

    def warn(self, msg):
        self.module.warn(self.mask(msg))

    def deprecate(self, msg, version):
        self.module.deprecate(self.mask(msg), version=version, collection_name=self.collection)

    def fail(self, msg, **kwargs):
        self.module.fail_json(msg=self.mask(msg), **kwargs)


def diff_of(path, raw, existing, desired, secrets, secret_names=()):
    """Before and after of config.toml, every secret masked."""
    before = config_toml.render(config_toml.mask(existing, secrets, secret_names)) if raw is not None else ''
    after = config_toml.render(config_toml.mask(desired, secrets, secret_names))
    return {'before': before, 'after': after, 'before_header': path, 'after_header': path}


def run_module():
    module = AnsibleModule(argument_spec=options.argument_spec(), supports_check_mode=True,
                           mutually_exclusive=options.MUTUALLY_EXCLUSIVE)
    ctx = ModuleContext(module)
    params = module.params
    store = LocalStore(params['path'], module.check_mode, ctx.secret, module.backup_local, ctx.secret_names)
    version, note = config_toml.resolve_version(params['runner_version'])
    validator = Validator(params, ctx.secret, check_ca, version)
    validator.register_secrets()
    if note:
        ctx.warn(note)
    try:
        validator.top_level()
        runners = validator.runners()
        store.read_config()
    except RunnerConfigError as exc:
        ctx.fail(to_native(exc))
    store.lock()
    try:
        try:
            # Re-read under the lock: another run may have written while this one waited.
            raw, existing, files_changed = store.open()
        except RunnerConfigError as exc:
            ctx.fail(to_native(exc))
        reconciler = Reconciler(ctx, params, runners, store)
        reconciler.changed = files_changed
        try:
            desired = reconciler.run(raw, existing)
        except RunFailed as exc:
            ctx.fail(exc.msg, runners=exc.runners)
    finally:
        store.unlock()
    result = {}
    if ctx.diff:
        result['diff'] = diff_of(store.path, raw, existing, desired, ctx.secrets, ctx.secret_names)
        server = reconciler.server_diff(ctx.secrets, ctx.secret_names)
        if server:
            result['diff'] = [result['diff'], server]
    if store.backup_file:
        result['backup_file'] = store.backup_file
    module.exit_json(changed=reconciler.changed, runners=reconciler.results, system_id=reconciler.system_id,
                     path=store.path, runner_version=version, **result)
