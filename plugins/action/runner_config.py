# -*- coding: utf-8 -*-
# Copyright (c) dood.gitlab_runner contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""runner_config runs its GitLab side here, on the controller, so the API token never reaches the runner host.

The logic is in module_utils/_runner_config/controller.py; the host is reached through runner_config_host.
"""

from __future__ import annotations

from ansible.plugins.action import ActionBase

from ansible_collections.dood.gitlab_runner.plugins.module_utils._runner_config import controller


class ActionModule(ActionBase):

    TRANSFERS_FILES = False
    _requires_connection = True

    def run(self, tmp=None, task_vars=None):
        result = super().run(tmp, task_vars)
        del tmp  # unused since Ansible 2.x
        result.update(controller.run(self, task_vars or {}, dict(self._task.args), self._play_context.check_mode,
                                     self._task.diff))
        return result

    @property
    def task_action(self):
        return self._task.action

    def execute_host_module(self, name, args, task_vars):
        return self._execute_module(module_name=name, module_args=args, task_vars=task_vars)
