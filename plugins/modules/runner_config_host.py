#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright (c) dood.gitlab_runner contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r'''
---
module: runner_config_host
short_description: The host half of runner_config (used by it; not for playbooks)
version_added: 0.2.0
description:
  - M(dood.gitlab_runner.runner_config) runs its GitLab side on the controller and reaches the runner host only
    through this module, so that the GitLab API token never reaches the host. It reads and writes the configuration
    directory of C(config.toml) and knows nothing of GitLab or of TOML.
  - O(op=read) returns C(config.toml) and the journal C(.dood_gitlab_runner.json) (base64), the system id from
    C(.runner_system_id) (a new one when missing, not written), whether file modes or left-over temporary files need
    tidying, and a digest of both files. It changes nothing.
  - O(op=prepare) fixes the modes, removes left-over temporary files and writes the system id O(system_id) when the
    directory has none.
  - O(op=write) writes C(config.toml) (atomically, mode C(0600), optionally with a backup) and then the journal. The
    first write of a run, or O(op=claim), takes the directory's lease, only when nobody wrote since the run's read
    (O(expect)) and no other run holds it; otherwise it answers C(conflict) and writes nothing.
  - O(op=release) gives the lease back.
author:
  - dood.gitlab_runner maintainers (@dood)
attributes:
  check_mode:
    support: full
    description: O(op=read) fixes no file mode and creates no system id in check mode; other operations are refused.
  diff_mode:
    support: none
    description: runner_config shows the diff.
  idempotent:
    support: full
    description: Reading changes nothing; a write writes what it is given.
options:
  path:
    description: Path of C(config.toml).
    type: path
    required: true
  op:
    description: What to do.
    type: str
    required: true
    choices: [read, prepare, write, claim, release]
  owner:
    description: The run's lease identifier.
    type: str
  holder:
    description: Who holds the lease (controller host name and process), for a later run to tell a dead holder.
    type: dict
  ttl:
    description: Seconds the lease lasts after each call of its holder.
    type: int
    default: 600
  expect:
    description: The digest the run read; its first write is refused when the files changed since.
    type: str
  config:
    description: The new C(config.toml), base64. It holds runner tokens, so it is never logged.
    type: str
  state:
    description: The new journal, base64 (it holds no token).
    type: str
  backup:
    description: Keep a copy of the previous C(config.toml) before writing it.
    type: bool
    default: false
  release:
    description: Give the lease back after this write.
    type: bool
    default: false
  break_owner:
    description: With O(op=read), remove the lease of this owner first (its holder is known to be dead).
    type: str
  system_id:
    description: With O(op=prepare) or O(prepare=true), the system id to write when C(.runner_system_id) is missing.
    type: str
  prepare:
    description: With a write or a claim, do what O(op=prepare) does first.
    type: bool
    default: false
seealso:
  - module: dood.gitlab_runner.runner_config
'''

EXAMPLES = r'''
# runner_config calls this module itself; a playbook never needs to.
- name: Read the configuration directory
  dood.gitlab_runner.runner_config_host:
    path: /srv/gitlab-runner/config/config.toml
    op: read
'''

RETURN = r'''
config:
  description: C(config.toml), base64; absent when there is no file.
  returned: op=read
  type: str
state:
  description: The journal, base64; absent when there is none.
  returned: op=read
  type: str
generation:
  description: A digest of C(config.toml) and the journal.
  returned: op=read and after a write
  type: str
system_id:
  description: This host's system id.
  returned: op=read and op=prepare
  type: str
system_id_created:
  description: Whether the system id was missing (O(op=prepare) writes it).
  returned: op=read
  type: bool
files_changed:
  description: Whether file or directory modes need fixing (O(op=prepare) fixes them).
  returned: op=read
  type: bool
stale_files:
  description: Whether temporary files of a killed run are left (O(op=prepare) removes them).
  returned: op=read
  type: bool
held:
  description: The holder of another run's lease, when one holds the directory; nothing else is read then.
  returned: op=read, when another run holds the lease
  type: dict
conflict:
  description: Why a write was refused (C(held) or C(written)); nothing was written.
  returned: when refused
  type: str
backup_file:
  description: Path of the backup of C(config.toml).
  returned: when O(backup=true) and the file existed
  type: str
'''

from ansible_collections.dood.gitlab_runner.plugins.module_utils._runner_config.host import run_host_module


def main():
    run_host_module()


if __name__ == '__main__':
    main()
