# Copyright (c) dood.gitlab_runner contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Bad input, table-driven: every case fails with its exact message, changes no file and sends nothing to GitLab.

All cases run as the tasks of one playbook (ignore_errors), each against its own directory holding a valid
config.toml (or the broken thing the case is about), so the table costs one ansible-playbook run. A second test
shows that names, descriptions and environment values full of quotes and TOML syntax go in verbatim, without
injecting anything into config.toml.
"""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys
from pathlib import Path

import tomllib

from conftest import Host

EXECUTORS = 'shell, custom, instance, docker, docker-windows, docker-autoscaler, docker+machine, kubernetes, ssh, parallels, virtualbox'


def valid_toml(url, token):
    return ('concurrent = 1\ncheck_interval = 0\n\n[[runners]]\n  name = "existing"\n  url = "{0}"\n  id = 5\n'
            '  token = "{1}"\n  executor = "docker"\n').format(url, token)


def runner(**values):
    return dict({'name': 'r1', 'runner_type': 'project_type', 'project_id': 1}, **values)


def cases(url, pat, token):
    """(id, top-level params, file setup, expected message). ``{path}`` and ``{dir}`` are the case's own."""
    nl_name = 'r1"\n[[runners]]\nname = "x'
    long_name = 'n' * 257
    return [
        ('invalid_url', {'api_url': 'gitlab.example.com', 'runners': [runner()]}, None,
         "Runner 'r1': 'gitlab.example.com' is not a valid GitLab URL; use the base URL such as https://gitlab.example.com."),
        ('url_with_query', {'runners': [runner(url='https://gitlab.example.com/?a=1')]}, None,
         "Runner 'r1': 'https://gitlab.example.com/?a=1' is not a valid GitLab URL; use the base URL such as https://gitlab.example.com."),
        ('url_api_suffix', {'runners': [runner(url='https://gitlab.example.com/api/v4')]}, None,
         "Runner 'r1': the URL 'https://gitlab.example.com/api/v4' ends with /api/v4; give the base URL of GitLab without it."),
        ('url_ci_suffix', {'runners': [runner(url='https://gitlab.example.com/ci')]}, None,
         "Runner 'r1': the URL 'https://gitlab.example.com/ci' ends with the legacy /ci suffix, which breaks submodule "
         "authentication; remove the suffix."),
        ('plain_http', {'allow_http': False, 'runners': [runner()]}, None,
         "Runner 'r1': '{0}' uses plain http, which sends tokens in clear text; use https, or set allow_http: true for a "
         "trusted network.".format(url)),
        ('no_url', {'api_url': None, 'runners': [runner()]}, None,
         "Runner 'r1' has no GitLab URL: set api_url (or the GITLAB_URL environment variable) or the runner's url."),
        ('duplicate_names', {'runners': [runner(), runner()]}, None,
         "Runner 'r1' is declared twice: runner names must be unique in config.toml; rename or remove one of them."),
        ('empty_name', {'runners': [runner(name=' ')]}, None,
         'A runner has an empty name: give every runner a unique, non-empty name.'),
        ('name_with_newline', {'runners': [runner(name=nl_name)]}, None,
         'Runner {0!r}: the name contains a control character (newline, tab, ...); use a single line of printable '
         'text.'.format(nl_name)),
        ('name_too_long', {'runners': [runner(name=long_name)]}, None,
         "Runner '{0}...': the name is longer than 256 characters; shorten it.".format('n' * 40)),
        ('two_token_kinds', {'runners': [{'name': 'r1', 'token': token, 'registration_token': 'GR1348941' + secrets.token_hex(10)}]},
         None, "Runner 'r1' has more than one way to get its token (token, registration_token): keep exactly one of token, "
         "registration_token or runner_type (with api_token)."),
        ('no_credential', {'runners': [{'name': 'r1'}]}, None,
         "Runner 'r1' has no way to get a token: set token (an existing glrt- token), runner_type with api_token (to create "
         "it), or registration_token."),
        ('runner_type_without_api_token', {'api_token': None, 'runners': [runner()]}, None,
         "Runner 'r1': runner_type needs an api_token (a personal, group or project access token with the create_runner and "
         "manage_runner scopes)."),
        ('group_type_without_group_id', {'runners': [runner(runner_type='group_type', project_id=None)]}, None,
         "Runner 'r1': runner_type group_type needs group_id, the numeric id of the group."),
        ('project_type_without_project_id', {'runners': [runner(project_id=None)]}, None,
         "Runner 'r1': runner_type project_type needs project_id, the numeric id of the project."),
        ('group_id_with_project_type', {'runners': [runner(group_id=3)]}, None,
         "Runner 'r1': group_id is only used with runner_type group_type."),
        ('ids_without_runner_type', {'runners': [{'name': 'r1', 'token': token, 'project_id': 1}]}, None,
         "Runner 'r1': group_id and project_id are only used with runner_type; remove them or set runner_type."),
        ('empty_tags_not_untagged', {'runners': [runner(tag_list=[], run_untagged=False)]}, None,
         "Runner 'r1': tag_list is empty while run_untagged is false, so the runner could never pick a job (GitLab refuses "
         "it); add tags or set run_untagged: true."),
        ('tag_with_comma', {'runners': [runner(tag_list=['a,b'])]}, None,
         "Runner 'r1': tag_list holds an empty tag or a tag with a comma; give each tag as its own list item."),
        ('too_many_tags', {'runners': [runner(tag_list=['t{0}'.format(i) for i in range(51)])]}, None,
         "Runner 'r1': tag_list has 51 tags; GitLab allows at most 50."),
        ('maximum_timeout_below_600', {'runners': [runner(maximum_timeout=599)]}, None,
         "Runner 'r1': maximum_timeout 599 is below GitLab's minimum of 600 seconds (10 minutes); raise it or leave it unset."),
        ('description_too_long', {'runners': [runner(description='d' * 1025)]}, None,
         "Runner 'r1': description is 1025 characters long; GitLab allows at most 1024."),
        ('unknown_executor', {'runners': [runner(executor='dockr')]}, None,
         'value of executor must be one of: {0}, got: dockr found in runners'.format(EXECUTORS)),
        ('unknown_docker_key', {'runners': [runner(docker={'imagee': 'docker:27-cli'})]}, None,
         "Runner 'r1': docker.imagee is not a key of gitlab-runner's [runners.docker] table (did you mean 'image'?); fix the "
         "key or remove it."),
        ('unknown_extra_key', {'runners': [runner(extra={'unhealthy_intervall': '1h'})]}, None,
         "Runner 'r1': extra.unhealthy_intervall is not a key of gitlab-runner's [[runners]] table (did you mean "
         "'unhealthy_interval'?); gitlab-runner would ignore it. Fix or remove it."),
        ('extra_repeats_owned_key', {'runners': [runner(extra={'token': 'x'})]}, None,
         "Runner 'r1': extra.token repeats a key the module manages; set it with its own option (or leave it to "
         "gitlab-runner) instead."),
        ('unknown_cache_key', {'runners': [runner(cache={'type': 's3'})]}, None,
         "Runner 'r1': cache.type is not a key of gitlab-runner's [runners.cache] table (did you mean 'Type'?) (cache keys "
         "are CamelCase)."),
        ('docker_services_not_tables', {'runners': [runner(docker={'services': ['postgres:16']})]}, None,
         "Runner 'r1': docker.services must be a list of tables, each with a name (for example [{name: \"postgres:16\"}])."),
        ('environment_not_key_value', {'runners': [runner(environment=['DOCKER_BUILDKIT'])]}, None,
         "Runner 'r1': environment entry 'DOCKER_BUILDKIT' is not KEY=value."),
        ('feature_flag_not_bool', {'runners': [runner(feature_flags={'FF_USE_FASTZIP': 'yes'})]}, None,
         "Runner 'r1': feature flag 'FF_USE_FASTZIP' must be true or false, not 'yes'."),
        ('negative_limit', {'runners': [runner(limit=-1)]}, None, "Runner 'r1': limit must be 0 or more."),
        ('concurrent_zero', {'concurrent': 0, 'runners': [runner()]}, None,
         'concurrent must be at least 1: gitlab-runner refuses to start with 0.'),
        ('bad_connection_max_age', {'connection_max_age': 'forever', 'runners': [runner()]}, None,
         'connection_max_age: invalid duration \'forever\': expected a Go duration such as "90s", "15m" or "1h30m" (units '
         'ns, us, ms, s, m, h) or a number of seconds. Use a Go duration such as 15m or 1h30m, or seconds.'),
        ('timeout_zero', {'timeout': 0, 'runners': [runner()]}, None, "Runner 'r1': timeout must be at least 1 second."),
        ('retries_out_of_range', {'retries': 11, 'runners': [runner()]}, None, 'retries must be between 0 and 10, not 11.'),
        ('ca_path_and_ca_content', {'ca_path': '/etc/hostname', 'ca_content': 'x', 'runners': [runner()]}, None,
         'parameters are mutually exclusive: ca_path|ca_content'),
        ('ca_path_missing', {'ca_path': '/nonexistent/ca.pem', 'runners': [runner()]}, None,
         "Runner 'r1': ca_path /nonexistent/ca.pem is not a file; give the PEM file of the CA that signed GitLab's certificate."),
        ('ca_path_not_pem', {'ca_path': '/etc/hostname', 'runners': [runner()]}, None,
         "Runner 'r1': ca_path /etc/hostname could not be loaded as a PEM CA certificate; give the CA certificate that "
         "signed GitLab's certificate."),
        ('ca_content_not_pem', {'runners': [runner(ca_content='not a certificate')]}, None,
         "Runner 'r1': ca_content holds no PEM certificate (-----BEGIN CERTIFICATE-----); give the text of the CA certificate."),
        ('config_not_toml', {'runners': [runner()]}, 'not_toml',
         'Cannot use {path}: config.toml is not valid TOML: Invalid value (at line 1, column 14). Fix or move the file '
         'away; it was left unchanged.'),
        ('config_not_utf8', {'runners': [runner()]}, 'not_utf8',
         'Cannot use {path}: config.toml is not valid UTF-8: byte 0xe9 at line 2, column 6 cannot be decoded. Fix or move '
         'the file away; it was left unchanged.'),
        ('config_runners_not_tables', {'runners': [runner()]}, 'runners_scalar',
         '{path}: runners must be an array of tables ([[runners]]); fix the file.'),
        ('config_duplicate_entries', {'runners': [runner()]}, 'duplicate_entries',
         "{path} holds several [[runners]] entries named 'existing'; remove the duplicates by hand (keep the one "
         "gitlab-runner uses) and run again."),
        ('path_is_directory', {'runners': [runner()]}, 'directory',
         '{path} is a directory; path must name the config.toml file inside it, for example {path}/config.toml.'),
        ('directory_missing', {'runners': [runner()]}, 'no_directory',
         'The directory {dir} of config.toml does not exist; create it (mode 0700) first, or let the runner role do it.'),
        ('directory_unwritable', {'runners': [runner()]}, 'immutable',
         'Cannot write in {dir} (Operation not permitted): the module writes config.toml there through a temporary file. '
         'Make the directory writable for the user running the module (read-only mount? immutable attribute?); nothing '
         'was sent to GitLab and no file was changed.'),
    ]


def prepare(directory, setup, url, token):
    config = directory / 'config.toml'
    if setup == 'no_directory':
        return
    directory.mkdir(parents=True, mode=0o700)
    if setup == 'directory':
        config.mkdir(mode=0o700)
        return
    text = {
        'not_toml': 'concurrent = = 1\n',
        'runners_scalar': 'concurrent = 1\nrunners = 5\n',
        'duplicate_entries': valid_toml(url, token) + '\n[[runners]]\n  name = "existing"\n  url = "{0}"\n'.format(url),
    }.get(setup, valid_toml(url, token))
    data = text.encode()
    if setup == 'not_utf8':
        data = b'concurrent = 1\n# caf\xe9\n' + data[len('concurrent = 1\n'):]
    config.touch(mode=0o600)
    config.write_bytes(data)
    (directory / '.runner_system_id').write_text('r_' + secrets.token_hex(6))


def snapshot(root):
    """Every file and directory under root with its content and mode."""
    found = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            path = Path(dirpath) / name
            info = path.lstat()
            found[str(path)] = (info.st_mode, None if path.is_dir() else path.read_bytes())
    return found


def run_playbook(env, root, tasks):
    play = [{'hosts': 'localhost', 'gather_facts': False, 'tasks': tasks}]
    path = root / 'bad-input-play.yml'
    path.write_text(json.dumps(play, indent=2))
    cmd = [str(Path(sys.executable).with_name('ansible-playbook')), '-i', 'localhost,', '-c', 'local', str(path)]
    run_env = dict(env, ANSIBLE_STDOUT_CALLBACK='ansible.posix.json')
    proc = subprocess.run(cmd, env=run_env, capture_output=True, text=True, timeout=600, check=False)
    data = json.loads(proc.stdout)
    return dict((t['task']['name'], next(iter(t['hosts'].values()))) for t in data['plays'][0]['tasks']), proc


def test_bad_input_table(gitlab, tmp_path, ansible_env):
    pat = gitlab.new_user(admin=True)
    token = 'glrt-' + secrets.token_urlsafe(20)
    table = cases(gitlab.url, pat, token)
    assert len(table) >= 25
    assert len(set(c[0] for c in table)) == len(table)
    tasks = []
    immutable = []
    for case_id, params, setup, _msg in table:
        directory = tmp_path / 'cases' / case_id / 'gitlab-runner'
        prepare(directory, setup, gitlab.url, token)
        args = dict({'path': str(directory / 'config.toml'), 'api_url': gitlab.url, 'api_token': pat, 'allow_http': True}, **params)
        args = dict((k, v) for k, v in args.items() if v is not None)
        args['runners'] = [dict((k, v) for k, v in r.items() if v is not None) for r in args['runners']]
        tasks.append({'name': case_id, 'dood.gitlab_runner.runner_config': args, 'ignore_errors': True})
        if setup == 'immutable':
            immutable.append(directory)
    before = snapshot(tmp_path / 'cases')
    for directory in immutable:
        subprocess.run(['chattr', '+i', str(directory)], check=True)
    try:
        results, proc = run_playbook(ansible_env, tmp_path, tasks)
    finally:
        for directory in immutable:
            subprocess.run(['chattr', '-i', str(directory)], check=True)

    assert snapshot(tmp_path / 'cases') == before, 'a bad input must leave every file as it was'
    assert [r for r in gitlab.requests() if r['path'].startswith('/api/v4')] == [], 'nothing may be sent to GitLab'
    passed, wrong = [], []
    for case_id, _params, _setup, msg in table:
        directory = tmp_path / 'cases' / case_id / 'gitlab-runner'
        expected = msg.replace('{path}', str(directory / 'config.toml')).replace('{dir}', str(directory))
        result = results[case_id]
        if result.get('failed') and result.get('msg') == expected:
            passed.append(case_id)
        else:
            wrong.append((case_id, result.get('failed'), result.get('msg'), expected))
    print('bad-input table: {0} cases tried, {1} passing'.format(len(table), len(passed)))
    assert wrong == []
    for secret in (pat, token):
        assert secret not in proc.stdout + proc.stderr


def test_quotes_newlines_and_toml_syntax_go_in_verbatim(gitlab, tmp_path, ansible_env):
    """Names, descriptions, tags and environment values that look like TOML never inject anything into config.toml."""
    admin = gitlab.new_user(admin=True)
    group = gitlab.new_group(admin)
    project = gitlab.new_project(admin, group_id=group)
    host = Host(tmp_path, ansible_env)
    name = 'x" = 1 [[runners]] token = "y\' \\ """'
    description = 'line1\nline2 "quoted" \'single\' [[runners]]\ntoken = "z"\n\\'
    env_value = 'A=1"\n[[runners]]\nname = "pwn"\n'
    params = {'api_url': gitlab.url, 'api_token': admin, 'runners': [{
        'name': name, 'runner_type': 'project_type', 'project_id': project, 'description': description,
        'tag_list': ['t"1', "t'2"], 'environment': [env_value], 'pre_build_script': 'echo "]]"\n[runners.docker]\n'}]}
    result = host.run(params)
    assert not result.failed, result.msg
    cfg = tomllib.loads(host.path.read_text())
    [entry] = cfg['runners']
    assert entry['name'] == name
    assert entry['environment'] == [env_value]
    assert entry['pre_build_script'] == 'echo "]]"\n[runners.docker]\n'
    assert 'docker' not in entry and 'description' not in entry
    [remote] = gitlab.runners()
    assert remote['description'] == description
    assert sorted(remote['tag_list']) == sorted(['t"1', "t'2"])
    assert entry['id'] == remote['id'] and entry['token'].startswith('glrt-')
    again = host.run(params)
    assert not again.failed and not again.changed, again.task
