# Copyright (c) dood.gitlab_runner contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Values gitlab-runner could not load, table-driven: each case fails with its exact message, leaves every file
byte-identical and sends nothing to GitLab. The deployed gitlab-runner is v18.10.1 (the runner role's default).

One ansible-playbook run holds every case as a task (ignore_errors), like test_bad_input.py.
"""

from __future__ import annotations

import secrets

from test_bad_input import prepare, run_playbook, snapshot

WRONG = '; gitlab-runner refuses to load a file with a value of the wrong type.'
LABEL = '; gitlab-runner refuses a file that breaks them.'
KEY_RULE = ' breaks gitlab-runner\'s label rules (3 to 65 letters, digits, "_", "." or "-", not starting with "." or "-")'
VALUE_RULE = ' breaks gitlab-runner\'s label rules (1 to 256 letters, digits, "_", "." or "-")'
DURATION = ' is not a Go duration; use one such as "90s", "15m" or "1h30m" (units ns, us, ms, s, m, h), or a number of seconds.'


def runner(**values):
    return dict({'name': 'r1', 'runner_type': 'project_type', 'project_id': 1}, **values)


def newer(path):
    return ("Runner 'r1': {0} came with gitlab-runner 19.3.0; the deployed gitlab-runner 18.10.1 would ignore it. Remove "
            "it, or deploy gitlab-runner 19.3.0 or later (runner_version).".format(path))


def wrong(path, expected, given, where="Runner 'r1': "):
    return '{0}{1} must be {2}, not {3}{4}'.format(where, path, expected, given, WRONG)


def cases():
    key = secrets.token_hex(12)
    many = dict(('label{0:02d}'.format(i), 'v') for i in range(33))
    docker = [
        ('docker_cpus_int', {'cpus': 2}, wrong('docker.cpus', 'a string', 'an integer (2)')),
        ('docker_memory_int', {'memory': 2147483648}, wrong('docker.memory', 'a string', 'an integer (2147483648)')),
        ('docker_shm_size_str', {'shm_size': '64m'}, wrong('docker.shm_size', 'an integer', "a string ('64m')")),
        ('docker_sysctls_int', {'sysctls': {'net.ipv4.ip_forward': 1}},
         wrong('docker.sysctls.net.ipv4.ip_forward', 'a string', 'an integer (1)')),
        ('docker_ulimit_int', {'ulimit': {'nofile': 65536}}, wrong('docker.ulimit.nofile', 'a string', 'an integer (65536)')),
        ('docker_volumes_str', {'volumes': '/cache'}, wrong('docker.volumes', 'a list of strings', "a string ('/cache')")),
        ('docker_devices_str', {'devices': '/dev/fuse'}, wrong('docker.devices', 'a list of strings', "a string ('/dev/fuse')")),
        ('docker_allowed_pull_policies_str', {'allowed_pull_policies': 'always'},
         wrong('docker.allowed_pull_policies', 'a list of strings', "a string ('always')")),
        ('docker_privileged_str', {'privileged': 'true'}, wrong('docker.privileged', 'true or false', "a string ('true')")),
        ('docker_dns_int_item', {'dns': ['192.0.2.53', 53]}, wrong('docker.dns[1]', 'a string', 'an integer (53)')),
        ('docker_pull_policy_int', {'pull_policy': 5}, wrong('docker.pull_policy', 'a string or a list of strings', 'an integer (5)')),
        ('docker_tmpfs_list', {'tmpfs': ['/tmp']}, wrong('docker.tmpfs', 'a table of strings', 'a list of strings')),
        ('docker_services_devices_str', {'services_devices': {'docker:*': '/dev/fuse'}},
         wrong('docker.services_devices.docker:*', 'a list of strings', "a string ('/dev/fuse')")),
        ('docker_cpu_shares_str', {'cpu_shares': '512'}, wrong('docker.cpu_shares', 'an integer', "a string ('512')")),
        ('docker_wait_for_services_timeout_str', {'wait_for_services_timeout': '30s'},
         wrong('docker.wait_for_services_timeout', 'an integer', "a string ('30s')")),
        ('docker_pid_mode_newer', {'pid_mode': 'host'}, newer('docker.pid_mode')),
        ('service_command_str', {'services': [{'name': 'postgres:16', 'command': 'run'}]},
         wrong('docker.services[0].command', 'a list of strings', "a string ('run')")),
        ('service_environment_dict', {'services': [{'name': 'postgres:16', 'environment': {'A': 'b'}}]},
         wrong('docker.services[0].environment', 'a list of strings', 'a table')),
        ('service_alias_int', {'services': [{'name': 'redis:7'}, {'name': 'postgres:16', 'alias': 5}]},
         wrong('docker.services[1].alias', 'a string', 'an integer (5)')),
        ('service_suspend_data_path_unreleased', {'services': [{'name': 'postgres:16', 'suspend_data_path': '/data'}]},
         "Runner 'r1': docker.services[0].suspend_data_path is only in gitlab-runner's unreleased main branch, not in any "
         "release; gitlab-runner 18.10.1 would ignore it. Remove it."),
    ]
    cache = [
        ('cache_shared_str', {'Type': 's3', 'Shared': 'true'}, wrong('cache.Shared', 'true or false', "a string ('true')")),
        ('cache_max_archive_str', {'MaxUploadedArchiveSize': '1G'},
         wrong('cache.MaxUploadedArchiveSize', 'an integer', "a string ('1G')")),
        ('cache_s3_insecure_str', {'s3': {'Insecure': 'no'}}, wrong('cache.s3.Insecure', 'true or false', "a string ('no')")),
        ('cache_s3_assume_role_newer', {'s3': {'AssumeRoleMaxConcurrency': 2}}, newer('cache.s3.AssumeRoleMaxConcurrency')),
        ('cache_s3_disable_caching_newer', {'s3': {'DisableAssumeRoleCredentialsCaching': True}},
         newer('cache.s3.DisableAssumeRoleCredentialsCaching')),
        ('cache_s3_secret_int_not_shown', {'s3': {'AccessKey': key, 'SecretKey': 12345678}},
         wrong('cache.s3.SecretKey', 'a string', 'an integer')),
        ('cache_gcs_bucket_list', {'gcs': {'BucketName': ['a']}}, wrong('cache.gcs.BucketName', 'a string', 'a list of strings')),
    ]
    extra = [
        ('extra_custom_build_dir_bool', {'custom_build_dir': True}, wrong('extra.custom_build_dir', 'a table', 'a boolean (True)')),
        ('extra_labels_int', {'labels': {'tier': 1}}, wrong('extra.labels.tier', 'a string', 'an integer (1)')),
        ('extra_label_key_short', {'labels': {'os': 'linux'}}, "Runner 'r1': label key 'os'" + KEY_RULE + LABEL),
        ('extra_label_value_space', {'labels': {'team': 'platform ci'}}, "Runner 'r1': the value of label 'team'" + VALUE_RULE + LABEL),
        ('extra_prepare_timeout_newer', {'prepare_timeout': '5m'}, newer('extra.prepare_timeout')),
        ('extra_get_sources_timeout_newer', {'get_sources_timeout': 300}, newer('extra.get_sources_timeout')),
        ('extra_boot_verify_newer', {'experimental': {'boot_verify': {'enabled': True}}}, newer('extra.experimental')),
        ('extra_duration_min', {'unhealthy_interval': '1h30min'}, "Runner 'r1': extra.unhealthy_interval '1h30min'" + DURATION),
        ('extra_duration_space', {'unhealthy_interval': '3600 s'}, "Runner 'r1': extra.unhealthy_interval '3600 s'" + DURATION),
        ('extra_artifact_duration', {'artifact': {'upload_timeout': 'soon'}},
         "Runner 'r1': extra.artifact.upload_timeout 'soon'" + DURATION),
        ('extra_duration_bool', {'unhealthy_interval': True},
         wrong('extra.unhealthy_interval', 'a Go duration such as "90s", "15m" or "1h30m" (or a number of seconds)',
               'a boolean (True)')),
        ('extra_kubernetes_namespace_int', {'kubernetes': {'namespace': 5}},
         wrong('extra.kubernetes.namespace', 'a string', 'an integer (5)')),
        ('extra_kubernetes_unknown', {'kubernetes': {'namespcae': 'ci'}},
         "Runner 'r1': extra.kubernetes.namespcae is not a key of gitlab-runner's [runners.kubernetes] table (did you mean "
         "'namespace'?); gitlab-runner would ignore it. Fix or remove it."),
        ('extra_ssh_port_int', {'ssh': {'port': 22}}, wrong('extra.ssh.port', 'a string', 'an integer (22)')),
        ('extra_ssh_password_int_not_shown', {'ssh': {'password': 12345678}}, wrong('extra.ssh.password', 'a string', 'an integer')),
        ('extra_unhealthy_requests_limit_str', {'unhealthy_requests_limit': '3'},
         wrong('extra.unhealthy_requests_limit', 'an integer', "a string ('3')")),
        ('extra_debug_trace_disabled_str', {'debug_trace_disabled': 'yes'},
         wrong('extra.debug_trace_disabled', 'true or false', "a string ('yes')")),
        ('extra_too_many_labels', {'labels': many},
         "Runner 'r1' has 33 labels (the global labels and its own); gitlab-runner allows at most 32."),
    ]
    table = []
    for case_id, value, msg in docker:
        table.append((case_id, {'runners': [runner(docker=value)]}, msg))
    for case_id, value, msg in cache:
        table.append((case_id, {'runners': [runner(cache=value)]}, msg))
    for case_id, value, msg in extra:
        table.append((case_id, {'runners': [runner(extra=value)]}, msg))
    table += [
        ('global_labels_int', {'labels': {'tier': 1}, 'runners': [runner()]}, wrong('labels.tier', 'a string', 'an integer (1)', '')),
        ('global_label_key_short', {'labels': {'os': 'linux'}, 'runners': [runner()]}, "Label key 'os'" + KEY_RULE + LABEL),
        ('global_defaults_labels_int', {'global_defaults': {'labels': {'tier': 1}}, 'runners': [runner()]},
         wrong('global_defaults.labels.tier', 'a string', 'an integer (1)', '')),
        ('runner_defaults_cpus_int', {'runner_defaults': {'docker': {'cpus': 2}}, 'runners': [runner()]},
         wrong('docker.cpus', 'a string', 'an integer (2)')),
        ('runner_defaults_unknown_docker_key', {'runner_defaults': {'docker': {'imagee': 'alpine'}}, 'runners': [runner()]},
         "Runner 'r1': docker.imagee is not a key of gitlab-runner's [runners.docker] table (did you mean 'image'?); fix "
         "the key or remove it."),
    ]
    return table, [key]


def test_values_gitlab_runner_cannot_load_are_refused(gitlab, tmp_path, ansible_env):
    pat = gitlab.new_user(admin=True)
    token = 'glrt-' + secrets.token_urlsafe(20)
    table, hidden = cases()
    assert len(table) >= 40
    assert len(set(c[0] for c in table)) == len(table)
    tasks = []
    for case_id, params, _msg in table:
        directory = tmp_path / 'cases' / case_id / 'gitlab-runner'
        prepare(directory, None, gitlab.url, token)
        args = dict({'path': str(directory / 'config.toml'), 'api_url': gitlab.url, 'api_token': pat, 'allow_http': True,
                     'runner_version': 'v18.10.1'}, **params)
        tasks.append({'name': case_id, 'dood.gitlab_runner.runner_config': args, 'ignore_errors': True})
    before = snapshot(tmp_path / 'cases')
    results, proc = run_playbook(ansible_env, tmp_path, tasks)
    assert snapshot(tmp_path / 'cases') == before, 'a bad value must leave every file as it was'
    assert [r for r in gitlab.requests() if r['path'].startswith('/api/v4')] == [], 'nothing may be sent to GitLab'
    wrong_ones = []
    for case_id, _params, msg in table:
        result = results[case_id]
        if not (result.get('failed') and result.get('msg') == msg):
            wrong_ones.append((case_id, result.get('msg'), msg))
    print('bad-value table: {0} cases tried, {1} passing'.format(len(table), len(table) - len(wrong_ones)))
    assert wrong_ones == []
    for secret in [pat, token] + hidden + ['12345678']:
        assert secret not in proc.stdout + proc.stderr


def test_a_version_without_key_tables_is_checked_against_a_known_release_with_a_note(gitlab, tmp_path, ansible_env):
    """runner_version the collection has no key tables for: a version between two releases is checked against the one
    before it (a key that came later is refused), a newer one or a tag that is no version number against the newest;
    each run says which release it used."""
    pat = gitlab.new_user(admin=True)
    cases = {
        'between_releases': ('v18.11.0', "gitlab-runner 18.11.0 is not a version the collection has key tables for; "
                                         "values were checked against 18.10.1, the nearest known release before it."),
        'newer_than_all': ('alpine-v20.1.0', "gitlab-runner 20.1.0 is not a version the collection has key tables for; "
                                             "values were checked against 19.3.0, the nearest known release before it."),
        'not_a_number': ('latest', "gitlab-runner version 'latest' is not a release number; values were checked against "
                                   "19.3.0, the newest release the collection knows."),
        'known_release': ('v19.3.0', None),
    }
    tasks = []
    for case_id, (version, _note) in cases.items():
        directory = tmp_path / case_id
        directory.mkdir(mode=0o700)
        args = {'path': str(directory / 'config.toml'), 'api_url': gitlab.url, 'api_token': pat, 'allow_http': True,
                'runner_version': version, 'runners': [runner(docker={'pid_mode': 'host'})]}
        tasks.append({'name': case_id, 'dood.gitlab_runner.runner_config': args, 'ignore_errors': True,
                      'check_mode': True})
    results, _proc = run_playbook(ansible_env, tmp_path, tasks)
    for case_id, (_version, note) in cases.items():
        result = results[case_id]
        warnings = result.get('warnings', [])
        if note is None:
            assert not any('key tables' in w or 'release number' in w for w in warnings), warnings
        else:
            assert note in warnings, (case_id, warnings)
    # pid_mode came with 19.3.0: refused for a version checked against 18.10.1, accepted against 19.3.0.
    assert results['between_releases'].get('failed') and results['between_releases']['msg'] == newer('docker.pid_mode')
    for case_id in ('newer_than_all', 'not_a_number', 'known_release'):
        assert not results[case_id].get('failed'), (case_id, results[case_id].get('msg'))
        assert results[case_id]['runners'][0]['action'] == 'created'
    assert [r for r in gitlab.requests() if r['method'] != 'GET' and r['path'].startswith('/api/v4')] == []
