# Copyright (c) dood.gitlab_runner contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Count task results per host, split by where they ran, and write them as JSON when the playbook ends.

Used by benchmarks/bench.py and benchmarks/role_noop.py.
"""

from __future__ import annotations

import json
import os

from ansible.plugins.callback import CallbackBase

DOCUMENTATION = '''
name: dood_bench_tasks
type: aggregate
short_description: Per-host task counts for the benchmark harness
description:
  - Counts, per host, the tasks that ran (ok, changed, failed, unreachable) and were skipped, and writes them as JSON
    to the file named by the environment variable E(DOOD_BENCH_TASKS_FILE) when the playbook ends.
  - A task counts once per host, whatever its loop; an include counts as the task it is.
  - Each task that ran is also counted as C(host) (a module ran on the managed host, fact gathering included) or
    C(controller) (an action that never leaves the controller, such as argument validation, C(assert), C(debug),
    C(set_fact), C(include_vars), includes, or a task delegated to localhost).
requirements:
  - enable in configuration
'''

# Actions whose work stays on the controller: no module is sent to the managed host.
CONTROLLER_ACTIONS = frozenset((
    'add_host', 'assert', 'debug', 'fail', 'group_by', 'import_playbook', 'import_role', 'import_tasks',
    'include_role', 'include_tasks', 'include_vars', 'meta', 'pause', 'set_fact', 'set_stats',
    'validate_argument_spec',
))
LOCAL_NAMES = frozenset(('localhost', '127.0.0.1', '::1'))


def runs_on_controller(task):
    """True when the task's action never runs a module on the managed host."""
    action = task.action.rsplit('.', 1)[-1] if task.action.startswith(('ansible.builtin.', 'ansible.legacy.')) else task.action
    if action in CONTROLLER_ACTIONS:
        return True
    return task.delegate_to in LOCAL_NAMES or task.connection == 'local'


class CallbackModule(CallbackBase):
    CALLBACK_VERSION = 2.0
    CALLBACK_TYPE = 'aggregate'
    CALLBACK_NAME = 'dood_bench_tasks'
    CALLBACK_NEEDS_ENABLED = True

    def __init__(self):
        super().__init__()
        self.hosts = {}

    def _count(self, result, kind):
        host = result._host.get_name()  # pylint: disable=protected-access
        counts = self.hosts.setdefault(host, {
            'executed': 0, 'changed': 0, 'skipped': 0, 'failed': 0, 'tasks': [],
            'host': 0, 'controller': 0, 'host_tasks': [], 'controller_tasks': [],
        })
        task = result._task  # pylint: disable=protected-access
        name = task.get_name()
        if kind == 'skipped':
            counts['skipped'] += 1
            return
        counts['executed'] += 1
        counts['tasks'].append(name)
        where = 'controller' if runs_on_controller(task) else 'host'
        counts[where] += 1
        counts[where + '_tasks'].append(name)
        if kind == 'failed':
            counts['failed'] += 1
        elif result._result.get('changed', False):  # pylint: disable=protected-access
            counts['changed'] += 1

    def v2_runner_on_ok(self, result):
        self._count(result, 'ok')

    def v2_runner_on_failed(self, result, ignore_errors=False):
        self._count(result, 'failed')

    def v2_runner_on_unreachable(self, result):
        self._count(result, 'failed')

    def v2_runner_on_skipped(self, result):
        self._count(result, 'skipped')

    def v2_playbook_on_stats(self, stats):
        path = os.environ.get('DOOD_BENCH_TASKS_FILE')
        if path:
            with open(path, 'w', encoding='utf-8') as handle:
                json.dump(self.hosts, handle)
