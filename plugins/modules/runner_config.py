#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright (c) dood.gitlab_runner contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r'''
---
module: runner_config
short_description: Reconcile a host's gitlab-runner C(config.toml) with GitLab
version_added: 0.1.0
description:
  - Registers each declared runner with GitLab exactly once, keeps its identity (the runner C(id)) in its
    C([[runners]]) entry as gitlab-runner itself does, repairs server-side settings that drifted, and writes the
    whole C(config.toml) from the declared state.
  - The file is written only when it would mean something else to gitlab-runner, atomically (temporary file and rename),
    mode C(0600). What gitlab-runner's own encoder adds or drops when it saves the file itself (after rotating a token,
    for example) counts as no difference.
  - The fields gitlab-runner owns (C(id), C(token), C(token_obtained_at), C(token_expires_at)) are kept from the file,
    so a token the runner rotated itself is never overwritten by an older one.
  - Runners that are removed (O(runners[].state=absent), or not declared with O(prune=true)) are unregistered from GitLab
    before their entry leaves the file.
  - gitlab-runner reloads C(config.toml) by itself within seconds of a change; the module never restarts anything.
  - "Requirements on the managed host: Python 3.9 or newer and nothing else: no pip package, no gitlab-runner binary.
    On Python 3.9 and 3.10 a copy of the C(tomli) parser shipped in the collection replaces the standard C(tomllib)."
author:
  - dood.gitlab_runner maintainers (@dood)
extends_documentation_fragment:
  - dood.gitlab_runner.gitlab
attributes:
  action:
    support: full
    description: The GitLab side runs on the controller as an action plugin (see O(gitlab_side)).
  check_mode:
    support: full
    description: Nothing is sent to GitLab that changes anything and no file is written; C(changed) is exact.
  diff_mode:
    support: full
    description: Before and after of C(config.toml), every token and secret replaced by C(********).
  idempotent:
    support: full
    description: A second run with the same input reports no change and sends no write request to GitLab.
options:
  path:
    description:
      - Path of C(config.toml). Its directory must exist; C(.runner_system_id) is kept beside it.
    type: path
    default: /etc/gitlab-runner/config.toml
  server_check:
    description:
      - How each existing runner is checked against GitLab on every run.
      - V(auto) reads the runner with C(GET /api/v4/runners/:id) when an API token is at hand (one read request per
        runner, which also detects a runner deleted on the server and drifted settings) and sends nothing otherwise.
      - V(verify) also calls C(POST /api/v4/runners/verify) with the runner's own token, which detects a token GitLab no
        longer accepts even without an API token, at the cost of one POST per runner and run.
      - V(never) trusts the file.
    type: str
    choices: [auto, verify, never]
    default: auto
  prune:
    description:
      - Unregister and remove C([[runners]]) entries whose name is not declared in O(runners).
      - When false, undeclared entries are left exactly as they are.
    type: bool
    default: false
  backup:
    description:
      - Keep a timestamped copy of the previous C(config.toml) (mode C(0600)) when the file changes.
    type: bool
    default: false
  authoritative:
    description:
      - When false, keys nobody declared stay as they are (see the description).
      - When true, the declaration with its defaults is the whole file. Every global setting and every key of a
        declared runner's entry that is not declared (or a default) is removed; each key removed is named in a
        warning and shown in the diff. Entries of runners that are not declared are removed only with O(prune=true).
      - Run with C(--check --diff) first to see what would go.
    type: bool
    default: false
  gitlab_side:
    description:
      - Where the calls to GitLab are made, and so where the API token goes.
      - V(controller) (the default) makes every GitLab call from the Ansible controller; the runner host gets no GitLab
        credential at all. The host is reached through M(dood.gitlab_runner.runner_config_host), once for a run that
        changes nothing (plus a few more calls when something is written). A job on the runner host is root through
        the Docker socket, so an API token sent there could be read by any job running at that time.
      - V(host) runs the whole module on the runner host, with the API token in its arguments, for networks where
        only the runner hosts can reach GitLab. Prefer a token with the smallest scope then (see the README's threat
        model), or fixed runner tokens with no API token at all.
      - A CA given with O(ca_path) is read where the GitLab side runs; O(ca_content) works for both.
    type: str
    choices: [controller, host]
    default: controller
  runner_version:
    description:
      - The version of the deployed gitlab-runner (V(18.10.1), or an image tag such as V(v18.10.1) or
        V(alpine-v18.10.1)). Values are checked against the keys and types that version knows; a key it does not
        have is refused, naming the first release that has it.
      - A version the collection has no key tables for is checked against the nearest known release, with a warning;
        unset means the newest known release (19.3.0).
    type: str
  secret_names:
    description:
      - More names (or shell patterns such as V(*_CREDS)) of keys and environment variables whose values are
        credentials, compared without regard to case.
      - Values of keys and of C(KEY=value) environment entries (in O(runners[].environment), services' environments,
        O(runners[].extra) and the cache tables) whose name contains V(password), V(passwd), V(token), V(secret),
        V(credential), V(auth_config), V(apikey), V(api_key), V(private_key) or V(sentry_dsn), or ends with V(_key),
        V(-key) or V(Key), are always treated as secrets (for example C(DOCKER_AUTH_CONFIG), C(NPM_TOKEN), a
        kubernetes C(bearer_token), an ssh C(password)). They are masked in the diff, and values of four characters
        or more are also hidden from every message and Ansible's own output.
    type: list
    elements: str
    default: []
  retries:
    description:
      - How many more times a failed call to GitLab is sent again when repeating it is safe.
      - Reads, updates, deletions and C(POST /api/v4/runners/verify) are repeated after a 429, 500, 502, 503 or 504
        answer, a timeout, a refused or a dropped connection.
      - A call that creates a runner is repeated only when GitLab certainly did nothing (a refused connection, or a 429
        that GitLab sends while migrating its database before it handles the request), so a retry never creates a second
        runner. When its outcome is unknown (timeout, dropped connection, 5xx), the next run finds the runner that may
        have been created through the API and adopts it (see O(api_token)).
      - Certificate errors and other 4xx answers are not repeated at all.
    type: int
    default: 3
  retry_delay:
    description:
      - Seconds to wait before the first repetition; the wait doubles at each further one.
      - A C(Retry-After) header from GitLab replaces this wait.
    type: float
    default: 1.0
  retry_max_delay:
    description:
      - The longest wait between two attempts, in seconds.
      - When GitLab asks (with C(Retry-After)) for a longer wait than this, the module fails at once and says how long
        GitLab asked to wait, instead of waiting.
    type: float
    default: 60.0
  ca_content:
    description:
      - The PEM text of the CA certificate(s) that signed GitLab's certificate, for a private CA, as an alternative to
        O(ca_path). Mutually exclusive with O(ca_path).
    type: str
  token_renewal_days:
    description:
      - A runner token that expires (C(token_expires_at) in C(config.toml)) within this many days is renewed with
        C(POST /api/v4/runners/:id/reset_authentication_token) when an API token is at hand. Without one, a token that
        has not expired yet only gives a warning (gitlab-runner renews it by itself while it runs), and an expired token
        fails the run with the fix in the message.
      - When the token lifetime is shorter than this, a token is renewed in the last quarter of its lifetime instead,
        so that each run does not renew it again.
      - A token given with O(runners[].token) is never rotated by the module, since it may be shared with other hosts;
        when it expires soon the module warns, and when it has expired the run fails with the fix.
      - V(0) only renews tokens that have expired.
    type: int
    default: 7
  concurrent:
    description: Global C(concurrent) (limit of jobs across all runners). GitLab-runner's default is 1.
    type: int
  check_interval:
    description: Global C(check_interval) in seconds (0 means gitlab-runner's default of 3).
    type: int
  log_level:
    description: Global C(log_level).
    type: str
    choices: [debug, info, warn, warning, error, fatal, panic]
  log_format:
    description: Global C(log_format).
    type: str
    choices: [runner, text, json]
  listen_address:
    description:
      - Address of the Prometheus metrics and debug server, for example C(:9252). Changing it needs a container restart.
    type: str
  shutdown_timeout:
    description: Global C(shutdown_timeout) in seconds for the forceful shutdown phase.
    type: int
  connection_max_age:
    description:
      - Global C(connection_max_age), a Go duration (V(15m), V(1h30m)) or a number of seconds.
    type: str
  sentry_dsn:
    description: Global C(sentry_dsn). Treated as a secret.
    type: str
  labels:
    description: Global C(labels) added to every runner's jobs (gitlab-runner 18.5 and newer).
    type: dict
  session_server:
    description: The C([session_server]) table for interactive web terminals.
    type: dict
    suboptions:
      listen_address:
        description: Address the session server listens on, for example C([::]:8093).
        type: str
      advertise_address:
        description: Address GitLab uses to reach the session server.
        type: str
      session_timeout:
        description: Seconds a terminal session may stay open.
        type: int
  global_defaults:
    description:
      - Global settings (the same keys as the top-level options C(concurrent), C(log_level), ...) used where the file
        has none, or where it still holds what the module wrote from this option before. A value set by hand is kept;
        a top-level option declares a value that is always written.
    type: dict
    suboptions:
      listen_address:
        description: See O(listen_address).
        type: str
      session_server:
        description: See O(session_server).
        type: dict
        suboptions:
          listen_address:
            description: See O(session_server.listen_address).
            type: str
          advertise_address:
            description: See O(session_server.advertise_address).
            type: str
          session_timeout:
            description: See O(session_server.session_timeout).
            type: int
      labels:
        description: See O(labels).
        type: dict
      concurrent:
        description: See O(concurrent).
        type: int
      check_interval:
        description: See O(check_interval).
        type: int
      log_level:
        description: See O(log_level).
        type: str
        choices: [debug, info, warn, warning, error, fatal, panic]
      log_format:
        description: See O(log_format).
        type: str
        choices: [runner, text, json]
      sentry_dsn:
        description: See O(sentry_dsn).
        type: str
      connection_max_age:
        description: See O(connection_max_age).
        type: str
      shutdown_timeout:
        description: See O(shutdown_timeout).
        type: int
  runner_defaults:
    description:
      - Settings of every runner's entry (the local settings of O(runners), with the same names), used where the
        entry has none, or where it still holds what the module wrote from this option before. A setting of an
        existing entry that someone set by hand is kept; declare it in the runner to change it.
    type: dict
    suboptions:
      executor:
        description: See O(runners[].executor).
        type: str
        choices: [shell, custom, instance, docker, docker-windows, docker-autoscaler, docker+machine, kubernetes, ssh, parallels, virtualbox]
      limit:
        description: See O(runners[].limit).
        type: int
      output_limit:
        description: See O(runners[].output_limit).
        type: int
      request_concurrency:
        description: See O(runners[].request_concurrency).
        type: int
      tls_ca_file:
        description: See O(runners[].tls_ca_file).
        type: path
      tls_cert_file:
        description: See O(runners[].tls_cert_file).
        type: path
      tls_key_file:
        description: See O(runners[].tls_key_file).
        type: path
      builds_dir:
        description: See O(runners[].builds_dir).
        type: str
      cache_dir:
        description: See O(runners[].cache_dir).
        type: str
      clone_url:
        description: See O(runners[].clone_url).
        type: str
      environment:
        description: See O(runners[].environment).
        type: list
        elements: str
      pre_get_sources_script:
        description: See O(runners[].pre_get_sources_script).
        type: str
      post_get_sources_script:
        description: See O(runners[].post_get_sources_script).
        type: str
      pre_build_script:
        description: See O(runners[].pre_build_script).
        type: str
      post_build_script:
        description: See O(runners[].post_build_script).
        type: str
      shell:
        description: See O(runners[].shell).
        type: str
      cache:
        description: See O(runners[].cache).
        type: dict
      feature_flags:
        description: See O(runners[].feature_flags).
        type: dict
      docker:
        description: See O(runners[].docker).
        type: dict
      extra:
        description: See O(runners[].extra).
        type: dict
  runners:
    description:
      - The runners of this host. Each is tied to its C([[runners]]) entry by O(runners[].name).
    type: list
    elements: dict
    default: []
    suboptions:
      name:
        description: Name of the runner, unique in the file (C(name) in C(config.toml)).
        type: str
        required: true
      state:
        description:
          - V(absent) unregisters the runner and removes its entry. A runner whose token was given with
            O(runners[].token) may be shared by other hosts, so only this host's runner manager is removed from GitLab;
            runners the module created are deleted.
        type: str
        choices: [present, absent]
        default: present
      url:
        description: GitLab URL of this runner. Defaults to O(api_url).
        type: str
      token:
        description:
          - An existing runner authentication token (C(glrt-...)), created in GitLab's UI or API, possibly shared by many
            hosts. The runner's C(id) is read with C(POST /api/v4/runners/verify) when the entry is first written.
          - One of O(runners[].token), O(runners[].registration_token) and O(runners[].runner_type) is required for
            V(present).
        type: str
      registration_token:
        description:
          - A legacy registration token. The runner is created with C(POST /api/v4/runners). GitLab disabled these
            tokens by default in 17.0 and plans to remove them in 20.0; prefer O(runners[].runner_type).
        type: str
      runner_type:
        description:
          - Create the runner with C(POST /api/v4/user/runners) using the API token. V(instance_type) needs an
            administrator; V(group_type) needs O(runners[].group_id) and the group's Owner role; V(project_type) needs
            O(runners[].project_id) and the project's Owner role.
        type: str
        choices: [instance_type, group_type, project_type]
      group_id:
        description: Numeric id of the group, for V(group_type).
        type: int
      project_id:
        description: Numeric id of the project, for V(project_type).
        type: int
      description:
        description: Server-side description. Defaults to the runner's name when the module creates the runner.
        type: str
      tag_list:
        description: Server-side tags. At most 50; may be empty only when O(runners[].run_untagged) is true.
        type: list
        elements: str
      run_untagged:
        description: Server-side; pick up jobs without tags.
        type: bool
      locked:
        description: Server-side; lock a project runner to its current projects.
        type: bool
      paused:
        description: Server-side; a paused runner receives no jobs.
        type: bool
      access_level:
        description: Server-side; V(ref_protected) runs only jobs of protected branches and tags.
        type: str
        choices: [not_protected, ref_protected]
      maximum_timeout:
        description: Server-side maximum job timeout in seconds, at least 600.
        type: int
      maintenance_note:
        description: Server-side free-form maintenance note, at most 1024 characters.
        type: str
      executor:
        description:
          - The executor. An entry the module creates gets V(docker) when neither this nor O(runner_defaults.executor)
            is set; an existing entry keeps its own unless this is set.
        type: str
        choices: [shell, custom, instance, docker, docker-windows, docker-autoscaler, docker+machine, kubernetes, ssh, parallels, virtualbox]
      limit:
        description: Maximum concurrent jobs of this runner (0 is unlimited).
        type: int
      request_concurrency:
        description: Concurrent requests for new jobs.
        type: int
      output_limit:
        description: Maximum job log size in kilobytes.
        type: int
      environment:
        description: Environment of every job, as C(KEY=value) strings.
        type: list
        elements: str
      builds_dir:
        description: C(builds_dir).
        type: str
      cache_dir:
        description: C(cache_dir).
        type: str
      clone_url:
        description: C(clone_url), overriding the URL jobs clone from.
        type: str
      shell:
        description: C(shell).
        type: str
      pre_get_sources_script:
        description: C(pre_get_sources_script).
        type: str
      post_get_sources_script:
        description: C(post_get_sources_script).
        type: str
      pre_build_script:
        description: C(pre_build_script).
        type: str
      post_build_script:
        description: C(post_build_script).
        type: str
      tls_ca_file:
        description: C(tls-ca-file), CA file the runner uses to verify GitLab.
        type: path
      tls_cert_file:
        description: C(tls-cert-file), client certificate for GitLab.
        type: path
      tls_key_file:
        description: C(tls-key-file), client key for GitLab.
        type: path
      feature_flags:
        description: The C([runners.feature_flags]) table, flag name to boolean.
        type: dict
      docker:
        description:
          - The C([runners.docker]) table, keys exactly as gitlab-runner names them (C(image), C(volumes),
            C(pull_policy), C(allowed_images), C(services) as a list of dicts, ...). An unknown key is refused.
          - Each declared key is written; the keys of the entry's table that are not declared stay. A list (such as
            C(volumes)) is written whole.
          - Values must have the type gitlab-runner reads (C(cpus) and C(memory) are strings such as V("2") and
            V("2g"), C(shm_size) an integer number of bytes, C(volumes) a list).
        type: dict
      cache:
        description:
          - The C([runners.cache]) table, keys exactly as gitlab-runner names them (CamelCase C(Type), C(Shared),
            C(s3) with C(ServerAddress), ...). Credentials in it are masked in every output.
        type: dict
      extra:
        description:
          - Any other key of a C([[runners]]) entry, written as given (for example C(unhealthy_interval),
            C(kubernetes), C(custom_build_dir)). It may not repeat an option above or a field gitlab-runner owns.
          - A duration (C(unhealthy_interval), C(prepare_timeout), ...) is a Go duration string (V(90s), V(1h30m)) or an
            integer number of seconds, which the module writes as a Go duration (gitlab-runner itself would read a bare
            integer as nanoseconds). V(1h30min) is not a Go duration and is refused.
        type: dict
      api_token:
        description: Overrides O(api_token) for this runner.
        type: str
      validate_certs:
        description: Overrides O(validate_certs) for this runner.
        type: bool
      ca_path:
        description: Overrides O(ca_path) for this runner.
        type: path
      ca_content:
        description: Overrides O(ca_content) for this runner.
        type: str
      timeout:
        description: Overrides O(timeout) for this runner.
        type: int
notes:
  - Two runs against one host never interleave. The first one that has to write takes the directory's lease (on the
    host itself, an flock for the whole run); the other waits, reads again and finds what the first one did. A lease
    whose holder died on the same controller is broken at once, one held from another controller lapses after ten
    minutes without a call.
  - C(config.toml), its backups, C(.runner_system_id) and the state file C(.dood_gitlab_runner.json) are written with
    mode C(0600) by the user running the module (root), and their directory is kept at mode C(0700).
  - "Crash safety: before it asks GitLab to create a runner, the module records the pending creation in
    C(.dood_gitlab_runner.json) beside C(config.toml). If the run dies or loses the answer before C(config.toml) holds
    the new token, the next run lists the runners of that scope with the API token, adopts the runner created at that
    time with that description (and a new token from the reset endpoint) and deletes any other such runner, so GitLab
    ends up with exactly the declared runners. Runners created with O(runners[].runner_type) and O(api_token) are all
    recorded in one write before the first request and their tokens saved with the run's next write (two writes
    however many runners); a runner created with a registration token is recorded just before its request and saved
    right after it, since without an API token a lost answer cannot be found again (the module warns with the manual
    fix). When the token of a runner just created cannot be written to C(config.toml), the runner is deleted again."
  - "The state file also keeps each runner's id, so a lost C(config.toml) does not create a duplicate: with an API
    token the runner gets a new token through the reset endpoint by id."
  - Secrets (tokens, cache credentials, C(sentry_dsn)) never appear in the result, a warning, an error or the diff.
seealso:
  - name: GitLab runner API
    description: The REST endpoints this module calls.
    link: https://docs.gitlab.com/api/runners/
  - name: gitlab-runner advanced configuration
    description: Every key of C(config.toml).
    link: https://docs.gitlab.com/runner/configuration/advanced-configuration/
'''

EXAMPLES = r'''
- name: Runner created in GitLab's UI, token kept in a vault
  dood.gitlab_runner.runner_config:
    path: /srv/gitlab-runner/config/config.toml
    api_url: https://gitlab.example.com
    concurrent: 4
    runners:
      - name: build-01
        token: "{{ vault_runner_token }}"
        docker:
          image: docker:27-cli
          pull_policy: if-not-present
          volumes:
            - /var/run/docker.sock:/var/run/docker.sock
            - /cache
        environment:
          - DOCKER_BUILDKIT=1

- name: Let the module create a project runner with an access token (manage_runner + create_runner scopes)
  dood.gitlab_runner.runner_config:
    path: /srv/gitlab-runner/config/config.toml
    api_url: https://gitlab.example.com
    api_token: "{{ vault_gitlab_api_token }}"
    runners:
      - name: "{{ inventory_hostname }}-docker"
        runner_type: project_type
        project_id: 42
        tag_list: [docker-dood]
        run_untagged: false
        maximum_timeout: 3600
        docker:
          image: docker:27-cli
          volumes: [/var/run/docker.sock:/var/run/docker.sock, /cache]

- name: Legacy registration token (GitLab before 17.0, or re-enabled by an administrator)
  dood.gitlab_runner.runner_config:
    api_url: https://gitlab.example.com
    runners:
      - name: legacy-01
        registration_token: "{{ vault_registration_token }}"
        tag_list: [docker-dood]
        docker:
          image: docker:27-cli

- name: GitLab behind a private CA (PEM text from a file on the controller), failing fast when GitLab is down
  dood.gitlab_runner.runner_config:
    api_url: https://gitlab.internal.example.com
    api_token: "{{ vault_gitlab_api_token }}"
    ca_content: "{{ lookup('ansible.builtin.file', 'files/internal-ca.pem') }}"
    timeout: 10
    retries: 1
    retry_max_delay: 10
    runners:
      - name: "{{ inventory_hostname }}-docker"
        runner_type: group_type
        group_id: 7
        tag_list: [docker-dood]

- name: Remove one runner and every entry that is not declared
  dood.gitlab_runner.runner_config:
    api_url: https://gitlab.example.com
    api_token: "{{ vault_gitlab_api_token }}"
    prune: true
    runners:
      - name: old-runner
        state: absent
'''

RETURN = r'''
runners:
  description: One item per declared runner, and per pruned entry, in that order.
  returned: always
  type: list
  elements: dict
  contains:
    name:
      description: The runner's name.
      type: str
      sample: build-01
    id:
      description: GitLab's runner id, 0 when unknown.
      type: int
      sample: 9171
    action:
      description:
        - What the module did in GitLab. V(verified) is a given O(runners[].token) checked and first written (nothing
          is created in GitLab); V(adopted) is a runner whose creation answer a crashed run lost, found and kept.
      type: str
      sample: created
      choices: [created, verified, adopted, recreated, updated, unchanged, removed]
    config:
      description: What the module did to the runner's entry in C(config.toml).
      type: str
      sample: unchanged
      choices: [added, updated, unchanged, removed]
    token_expires_at:
      description: When the runner's token expires (ISO 8601, UTC), or null when it does not.
      type: str
      sample: '2027-01-01T00:00:00Z'
system_id:
  description: This host's C(system_id) from C(.runner_system_id), which identifies its runner manager.
  returned: always
  type: str
  sample: s_0123456789ab
runner_version:
  description: The gitlab-runner version whose key tables the values were checked against.
  returned: always
  type: str
  sample: 18.10.1
path:
  description: Path of C(config.toml).
  returned: always
  type: str
  sample: /srv/gitlab-runner/config/config.toml
backup_file:
  description: Path of the backup, when O(backup=true) and the file changed.
  returned: changed and O(backup=true)
  type: str
  sample: /srv/gitlab-runner/config/config.toml.12345.2026-11-28@17:00:00~
'''

from ansible_collections.dood.gitlab_runner.plugins.module_utils._runner_config.module import run_module


def main():
    run_module()


if __name__ == '__main__':
    main()
