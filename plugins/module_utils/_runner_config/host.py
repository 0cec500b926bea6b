# -*- coding: utf-8 -*-
# Copyright (c) dood.gitlab_runner contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The host half of runner_config when its GitLab side runs on the controller: the runner_config_host module.

Three operations, each under the directory's flock:

* ``read``: config.toml and the journal as bytes, the system id (a new one when missing, not written yet), whether
  file modes or left-over temporary files need tidying, and a generation digest of both files. It changes nothing, so
  a bad file fails the run with every file as it was, and a run that changes nothing costs this one call.
* ``prepare`` (an operation, or a flag of the run's first write): once the controller found the file usable, tidy up
  (modes, left-over temporary files) and write the system id when it was missing.
* ``write``: the first write of a run takes the lease, but only when nobody wrote since that run's read (the
  generation still matches) and no other live run holds it; later writes need the lease. config.toml is written
  before the journal. ``claim`` takes the lease without writing, before GitLab is asked to do something that cannot
  be undone (docs/gitlab-api.md §1.3, §1.7).
* ``release``: give the lease back.

A run that loses the race learns it from a ``conflict`` answer before it has sent anything irreversible to GitLab,
and starts over from a fresh read.
"""

from __future__ import annotations

import base64
import os

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.dood.gitlab_runner.plugins.module_utils._runner_config.files import (
    HostFiles, RunnerConfigError, generation,
)

ARGUMENT_SPEC = dict(
    path=dict(type='path', required=True),
    op=dict(type='str', required=True, choices=['read', 'prepare', 'write', 'claim', 'release']),
    system_id=dict(type='str'),
    prepare=dict(type='bool', default=False),
    owner=dict(type='str'),
    holder=dict(type='dict'),
    ttl=dict(type='int', default=600),
    expect=dict(type='str'),
    config=dict(type='str', no_log=True),
    state=dict(type='str', no_log=False),
    backup=dict(type='bool', default=False),
    release=dict(type='bool', default=False),
    break_owner=dict(type='str'),
)


def _b64(data):
    return None if data is None else base64.b64encode(data).decode('ascii')


def read(module, files):
    params = module.params
    lease = files.lease()
    if lease is not None and params['break_owner'] and lease.get('owner') == params['break_owner']:
        if not module.check_mode:
            files.release_lease(params['break_owner'])
        lease = None
    if lease is not None and lease.get('owner') != params['owner']:
        return {'held': {'holder': lease.get('holder'), 'owner': lease.get('owner'), 'host': lease.get('host')}}
    raw = files.read_config()
    if not module.check_mode:
        files.check_writable()
    dry = HostFiles(files.path, check_mode=True)
    system_id, created = dry.system_id()
    state = files.read_state()
    return {'config': _b64(raw), 'state': _b64(state), 'generation': generation(raw, state), 'system_id': system_id,
            'system_id_created': created, 'files_changed': files.secure_files(dry=True),
            'stale_files': files.stale_temp_files() != []}


def prepare(module, files):
    files.check_writable()
    files.remove_stale_temp_files()
    files.secure_files()
    system_id, _created = files.system_id(module.params['system_id'])
    return {'system_id': system_id}


def write(module, files):
    params = module.params
    lease = files.lease()
    if lease is not None and lease.get('owner') != params['owner']:
        return {'conflict': 'held', 'holder': lease.get('holder')}
    if lease is None and params['expect'] != generation(files.read_config(), files.read_state()):
        return {'conflict': 'written'}
    result = {}
    if params['prepare']:
        result.update(prepare(module, files))
    if params['op'] == 'write':
        if params['config'] is not None:
            backup = files.write_config(base64.b64decode(params['config']), module.backup_local if params['backup'] else None)
            if backup:
                result['backup_file'] = backup
        if params['state'] is not None:
            files.write_state(base64.b64decode(params['state']))
    if params['release']:
        files.release_lease(params['owner'])
    else:
        files.take_lease(params['owner'], params['holder'], params['ttl'])
    result['generation'] = generation(files.read_config(), files.read_state())
    return result


def run_host_module():
    module = AnsibleModule(argument_spec=ARGUMENT_SPEC, supports_check_mode=True)
    params = module.params
    files = HostFiles(params['path'], module.check_mode)
    if params['op'] != 'read' and module.check_mode:
        module.fail_json(msg='runner_config_host writes nothing in check mode; runner_config never asks it to.')
    try:
        if not os.path.isdir(files.dir):
            files.read_config()  # names the missing directory
        files.lock()
        try:
            if params['op'] == 'read':
                result = read(module, files)
            elif params['op'] == 'prepare':
                result = prepare(module, files)
            elif params['op'] == 'release':
                files.release_lease(params['owner'])
                result = {}
            else:
                result = write(module, files)
        finally:
            files.unlock()
    except RunnerConfigError as exc:
        module.fail_json(msg=str(exc))
    except (IOError, OSError) as exc:
        module.fail_json(msg='{0}: {1}'.format(exc.filename or files.dir, exc.strerror or exc), errno=exc.errno,
                         strerror=exc.strerror or str(exc))
    module.exit_json(changed=False, **result)
