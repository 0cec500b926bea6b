#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright (c) dood.gitlab_runner contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r'''
---
module: runner_info
short_description: Report a host's gitlab-runner runners, and what GitLab knows about them
version_added: 0.1.0
description:
  - Reads C(config.toml) and C(.runner_system_id) and reports each C([[runners]]) entry (name, id, url, executor and
    when its token expires) and the host's C(system_id). Never writes anything and never reports a token.
  - With O(api_token), also reads each runner from GitLab with C(GET /api/v4/runners/:id), one request per runner,
    for its status, last contact and server-side settings.
  - With O(gitlab_runners), also lists the runners GitLab holds (all of them, a group's or a project's), filtered by tags
    or description, so a fleet audit can find runners no host declares.
  - "Requirements on the managed host: Python 3.9 or newer and nothing else."
author:
  - dood.gitlab_runner maintainers (@dood)
extends_documentation_fragment:
  - dood.gitlab_runner.gitlab
attributes:
  check_mode:
    support: full
    description: The module only reads; it runs the same way in check mode.
  diff_mode:
    support: none
    description: Nothing changes, so there is nothing to show.
  idempotent:
    support: full
    description: Never changes anything; C(changed) is always false.
options:
  # api_url and api_token override the shared fragment: this module only reads, and only from api_url.
  api_url:
    description:
      - Base URL of the GitLab instance, without C(/api/v4), for example C(https://gitlab.example.com).
      - Only runners whose C(url) in C(config.toml) is this URL are read from GitLab.
      - If not set, the environment variable E(GITLAB_URL) is used.
    type: str
  api_token:
    description:
      - A personal, group or project access token, sent as C(PRIVATE-TOKEN) and only to O(api_url).
      - C(read_api) (or C(manage_runner) for reading single runners) is enough; the module never writes.
      - Without it the module reads the files only and sends no request.
      - If not set, the environment variable E(GITLAB_API_TOKEN) is used.
    type: str
  path:
    description:
      - Path of C(config.toml). A missing file is reported as O(path) with no runners, not as an error.
    type: path
    default: /etc/gitlab-runner/config.toml
  read_files:
    description:
      - Read O(path) and C(.runner_system_id). Set to V(false) to only list runners with O(gitlab_runners), for example
        from the controller.
    type: bool
    default: true
  managers:
    description:
      - Also read each runner's managers with C(GET /api/v4/runners/:id/managers) (one more request per runner) and
        report whether this host's C(system_id) is among them.
    type: bool
    default: false
  gitlab_runners:
    description:
      - List runners held by GitLab. Needs O(api_url) and O(api_token).
      - The listing entity carries no tags, so O(gitlab_runners.tag_list) is applied by GitLab and
        O(gitlab_runners.description) here.
    type: dict
    suboptions:
      scope:
        description:
          - V(all) lists every runner of the instance (C(GET /api/v4/runners/all), administrators only).
          - V(owned) lists the group and project runners the token's user administers (C(GET /api/v4/runners)).
          - V(group) and V(project) list the runners available to one group or project.
        type: str
        choices: [all, owned, group, project]
        default: all
      group_id:
        description: Numeric id or full path of the group, for V(group).
        type: str
      project_id:
        description: Numeric id or full path of the project, for V(project).
        type: str
      type:
        description: Only runners of this type.
        type: str
        choices: [instance_type, group_type, project_type]
      tag_list:
        description: Only runners carrying all these tags.
        type: list
        elements: str
      status:
        description: Only runners with this status.
        type: str
        choices: [online, offline, stale, never_contacted]
      description:
        description: Only runners whose description matches this regular expression (Python C(re.search)).
        type: str
notes:
  - The O(api_token) is sent only to O(api_url). A runner whose C(url) in C(config.toml) names another GitLab is
    reported from the file alone, with RV(runners[].server_error) saying why.
  - Runner tokens found in C(config.toml) are added to the values Ansible hides in every output.
seealso:
  - module: dood.gitlab_runner.runner_config
  - name: GitLab runner API
    description: The REST endpoints this module reads.
    link: https://docs.gitlab.com/api/runners/
'''

EXAMPLES = r'''
- name: What is configured on this host (no request to GitLab)
  dood.gitlab_runner.runner_info:
    path: /srv/gitlab-runner/config/config.toml
  register: runner_report

- name: Also ask GitLab for each runner's status and settings
  dood.gitlab_runner.runner_info:
    path: /srv/gitlab-runner/config/config.toml
    api_url: https://gitlab.example.com
    api_token: "{{ vault_gitlab_read_token }}"
  register: runner_report

- name: Fail early when a token expires within two weeks
  ansible.builtin.assert:
    that: runner_report.runners | selectattr('token_expires_in_days', 'number') | selectattr('token_expires_in_days', 'lt', 14) | list | length == 0

- name: List the project's runners tagged docker-dood, from the controller
  dood.gitlab_runner.runner_info:
    read_files: false
    api_url: https://gitlab.example.com
    api_token: "{{ vault_gitlab_read_token }}"
    gitlab_runners:
      scope: project
      project_id: "42"
      tag_list: [docker-dood]
  delegate_to: localhost
  run_once: true
  register: server_side
'''

RETURN = r'''
path:
  description: Path of C(config.toml).
  returned: always
  type: str
  sample: /srv/gitlab-runner/config/config.toml
exists:
  description: Whether C(config.toml) exists (false with O(read_files=false)).
  returned: always
  type: bool
  sample: true
system_id:
  description: This host's C(system_id) from C(.runner_system_id) beside C(config.toml), null when there is none.
  returned: always
  type: str
  sample: s_0123456789ab
concurrent:
  description: The global C(concurrent) of C(config.toml), null when unset.
  returned: always
  type: int
  sample: 4
runners:
  description: One item per C([[runners]]) entry, in file order. Never holds a token.
  returned: always
  type: list
  elements: dict
  contains:
    name:
      description: The entry's C(name).
      type: str
      sample: build-01
    id:
      description: GitLab's runner id from the file, 0 when unknown.
      type: int
      sample: 9171
    url:
      description: The GitLab URL the runner talks to.
      type: str
      sample: https://gitlab.example.com
    executor:
      description: The executor.
      type: str
      sample: docker
    has_token:
      description: Whether the entry holds a token (the token itself is never returned).
      type: bool
      sample: true
    token_obtained_at:
      description: When the token was obtained (ISO 8601, UTC), null when unknown.
      type: str
      sample: '2026-11-28T17:00:00Z'
    token_expires_at:
      description: When the token expires (ISO 8601, UTC), null when it does not.
      type: str
      sample: '2027-01-01T00:00:00Z'
    token_expires_in_days:
      description: Days until the token expires (negative once expired), null when it does not expire.
      type: float
      sample: 33.5
    server:
      description:
        - What GitLab holds for the runner, null without O(api_token) or when it could not be read.
        - C(managers) and C(manager_on_this_host) only with O(managers=true).
      type: dict
      sample:
        status: online
        contacted_at: '2026-11-28T17:00:00.000Z'
        description: build-01
        tag_list: [docker-dood]
        run_untagged: false
        locked: true
        paused: false
        access_level: not_protected
        maximum_timeout: 3600
        maintenance_note: null
        runner_type: project_type
        version: 18.10.1
    docker_volumes:
      description:
        - The entry's C([runners.docker]) C(volumes), as the docker executor mounts them into every job (empty when
          there are none). Lets a play check that jobs see the host's Docker socket.
      type: list
      elements: str
      sample: ['/var/run/docker.sock:/var/run/docker.sock', /cache]
    job_docker_host:
      description:
        - The C(DOCKER_HOST) the entry's C(environment) sets for its jobs, null when it sets none. The other variables
          of C(environment) are not returned (they may hold secrets).
      type: str
      sample: unix:///run/docker.sock
    server_error:
      description: Why RV(runners[].server) is null although O(api_token) was given (not found, refused, other URL).
      type: str
      sample: GitLab answered 404 (404 Not found) for GET /api/v4/runners/9171
gitlab_runners:
  description: The runners GitLab listed for O(gitlab_runners), after the description filter.
  returned: when O(gitlab_runners) is set
  type: list
  elements: dict
  sample:
    - id: 12
      description: build-01
      runner_type: project_type
      status: never_contacted
      paused: false
      created_at: '2026-11-28T17:00:00.000Z'
api_requests:
  description: Number of HTTP requests sent to GitLab, retries included.
  returned: always
  type: int
  sample: 2
'''

from ansible_collections.dood.gitlab_runner.plugins.module_utils._runner_config.info import run_info_module


def main():
    run_info_module()


if __name__ == '__main__':
    main()
