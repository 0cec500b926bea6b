# -*- coding: utf-8 -*-
# Copyright (c) dood.gitlab_runner contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The pieces of the runner_config module (private to this collection; no stable API).

* ``options``: every option declared once; the argument spec and the option groups derive from it.
* ``model``: the declared runners and the rules their values follow (pure, no I/O).
* ``store``: the files on the runner host: directory, lock, atomic writes, system id and the journal.
* ``reconcile``: the per-runner state machine, the only place that calls GitLab or gates on check mode.
* ``module``: the Ansible glue: arguments, secrets, result and diff.
* ``info``: what the runner_info module needs.
"""
