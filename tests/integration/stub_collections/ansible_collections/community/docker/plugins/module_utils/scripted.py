# Copyright (c) dood.gitlab_runner contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Test stand-in for the community.docker modules of the runner role: answers from a script, records each call.

DOOD_DOCKER_SCRIPT names a JSON file {module: {key: result}}; the key is the container's name (docker_container,
docker_container_info, docker_container_exec) or "host" (docker_host_info), and the result is returned as the
module's result. DOOD_DOCKER_CALLS names a file that gets one JSON line per call: the module and its parameters.
Nothing here talks to a Docker daemon.
"""

from __future__ import annotations

import json
import os

from ansible.module_utils.basic import AnsibleModule, _load_params


def run(kind):
    # Whatever the role passes is accepted as it comes (no argument spec of the real module is copied here).
    names = [name for name in _load_params() if not name.startswith('_ansible')]
    module = AnsibleModule(argument_spec=dict((name, dict(type='raw')) for name in names), supports_check_mode=True)
    params = dict((name, module.params[name]) for name in names)
    with open(os.environ['DOOD_DOCKER_CALLS'], 'a', encoding='utf-8') as handle:
        handle.write(json.dumps({'module': kind, 'params': params}) + '\n')
    with open(os.environ['DOOD_DOCKER_SCRIPT'], encoding='utf-8') as handle:
        script = json.load(handle)
    key = params.get('name') or params.get('container') or 'host'
    result = dict(script.get(kind, {}).get(key) or {})
    if result.pop('failed', False):
        module.fail_json(**result)
    result.setdefault('changed', False)
    module.exit_json(**result)
