# Copyright (c) dood.gitlab_runner contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Adopting the config.toml files real runner hosts carry, with the minimal declaration the README gives (name, url,
token): nothing gitlab-runner reads may change, and then a declared change changes exactly what was declared.

The fixtures in fixtures/adoption/ are written in the shapes real files take (``gitlab-runner register`` output, files
gitlab-runner re-saved, hand-edited and hand-written files, every executor kind). Tokens, ids and credentials are
filled in at run time. All fixtures run as the tasks of one playbook per rung (check+diff, apply, apply again), so the
table costs six ansible-playbook runs.
"""

from __future__ import annotations

import datetime
import json
import re
import secrets
import subprocess
import sys
import tomllib
from pathlib import Path

from test_runner_config import create_runner, project_setup

FIXTURES = Path(__file__).resolve().parent / 'fixtures' / 'adoption'
ZERO = datetime.datetime(1, 1, 1, tzinfo=datetime.timezone.utc)
DURATIONS = ('connection_max_age', 'unhealthy_interval', 'upload_timeout', 'response_header_timeout', 'idle_time')
# One declared change per fixture, for the first runner (or a global setting): (top-level params, runner params).
CHANGES = {
    '01-register-docker': ({}, {'docker': {'image': 'alpine:3.20'}}),
    '02-register-shell': ({}, {'limit': 2}),
    '03-dood-hand-edited': ({}, {'docker': {'pull_policy': ['always']}}),
    '04-dind-privileged': ({}, {'environment': ['DOCKER_TLS_CERTDIR=/certs']}),
    '05-cache-s3': ({}, {'cache': {'Path': 'runners-v2'}}),
    '06-cache-gcs': ({}, {'docker': {'image': 'python:3.13'}}),
    '07-cache-azure': ({}, {'limit': 3}),
    '08-custom-globals': ({'concurrent': 12}, {}),
    '09-several-runners': ({}, {'docker': {'image': 'docker:27.5.1-cli'}}),
    '10-kubernetes': ({}, {'extra': {'kubernetes': {'cpu_limit': '3'}}}),
    '11-custom-executor': ({}, {'builds_dir': '/srv/builds'}),
    '12-ssh-executor': ({}, {'extra': {'ssh': {'port': '2222'}}}),
    '13-docker-machine': ({}, {'limit': 10}),
    '14-docker-autoscaler': ({}, {'extra': {'autoscaler': {'max_instances': 20}}}),
    '15-tls-env-flags': ({}, {'feature_flags': {'FF_USE_FASTZIP': False}}),
    '16-docker-resources': ({}, {'docker': {'memory': '8g'}}),
    '17-resaved-by-gitlab-runner': ({}, {'docker': {'image': 'docker:27.5.2-cli'}}),
    '18-limits-and-scripts': ({}, {'output_limit': 32768}),
    '19-labels': ({'labels': {'env': 'staging'}}, {}),
    '20-hand-written-odd-format': ({}, {'docker': {'image': 'docker:27-cli'}}),
    '21-legacy-registered': ({}, {'docker': {'services': [{'name': 'postgres:17', 'alias': 'db'}]}}),
    '22-artifacts-and-dirs': ({}, {'extra': {'artifact': {'upload_timeout': '3h'}}}),
}
# The leaf each change reaches, as (path in the parsed file, value after).
REACHES = {
    '01-register-docker': [(('runners', 0, 'docker', 'image'), 'alpine:3.20')],
    '02-register-shell': [(('runners', 0, 'limit'), 2)],
    '03-dood-hand-edited': [(('runners', 0, 'docker', 'pull_policy'), ['always'])],
    '04-dind-privileged': [(('runners', 0, 'environment'), ['DOCKER_TLS_CERTDIR=/certs'])],
    '05-cache-s3': [(('runners', 0, 'cache', 'Path'), 'runners-v2')],
    '06-cache-gcs': [(('runners', 0, 'docker', 'image'), 'python:3.13')],
    '07-cache-azure': [(('runners', 0, 'limit'), 3)],
    '08-custom-globals': [(('concurrent',), 12)],
    '09-several-runners': [(('runners', 0, 'docker', 'image'), 'docker:27.5.1-cli')],
    '10-kubernetes': [(('runners', 0, 'kubernetes', 'cpu_limit'), '3')],
    '11-custom-executor': [(('runners', 0, 'builds_dir'), '/srv/builds')],
    '12-ssh-executor': [(('runners', 0, 'ssh', 'port'), '2222')],
    '13-docker-machine': [(('runners', 0, 'limit'), 10)],
    '14-docker-autoscaler': [(('runners', 0, 'autoscaler', 'max_instances'), 20)],
    '15-tls-env-flags': [(('runners', 0, 'feature_flags', 'FF_USE_FASTZIP'), False)],
    '16-docker-resources': [(('runners', 0, 'docker', 'memory'), '8g')],
    '17-resaved-by-gitlab-runner': [(('runners', 0, 'docker', 'image'), 'docker:27.5.2-cli')],
    '18-limits-and-scripts': [(('runners', 0, 'output_limit'), 32768)],
    '19-labels': [(('labels', 'env'), 'staging')],
    '20-hand-written-odd-format': [(('runners', 0, 'docker', 'image'), 'docker:27-cli')],
    '21-legacy-registered': [(('runners', 0, 'docker', 'services'), [{'name': 'postgres:17', 'alias': 'db'}])],
    '22-artifacts-and-dirs': [(('runners', 0, 'artifact', 'upload_timeout'), '3h0m0s')],
}
# What a rewrite may add to an entry that lacked it: the fields gitlab-runner owns, at the values it reads for
# "unknown" (a hand-written entry without id, say).
OWNED_ZEROS = {'id': 0, 'token_obtained_at': ZERO, 'token_expires_at': ZERO}


def go_duration(text):
    """Go's canonical spelling of the simple durations the fixtures use ("30m" -> "30m0s", "2h" -> "2h0m0s")."""
    seconds = sum(int(n) * {'h': 3600, 'm': 60, 's': 1}[u] for n, u in re.findall(r'(\d+)([hms])', text))
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    return ('{0}h'.format(hours) if hours else '') + ('{0}m'.format(minutes) if hours or minutes else '') + '{0}s'.format(secs)


def leaves(value, prefix=()):
    if isinstance(value, dict):
        for key, item in value.items():
            yield from leaves(item, prefix + (key,))
    elif isinstance(value, list) and value and all(isinstance(v, dict) for v in value) and prefix[-1] == 'runners':
        for i, item in enumerate(value):
            yield from leaves(item, prefix + (i,))
    else:
        if prefix and prefix[-1] in DURATIONS and isinstance(value, str):
            value = go_duration(value)
        yield prefix, value


def changed_leaves(before, after):
    """Leaves that differ, apart from owned fields a rewrite adds at gitlab-runner's "unknown" values."""
    old, new = dict(leaves(before)), dict(leaves(after))
    found = {}
    for path in set(old) | set(new):
        if old.get(path, KeyError) == new.get(path, KeyError):
            continue
        if path not in old and len(path) == 3 and path[0] == 'runners' and OWNED_ZEROS.get(path[2], KeyError) == new[path]:
            continue
        found[path] = new.get(path, '<removed>')
    return found


def fill(text, url, runners, hidden):
    text = text.replace('@URL@', url)
    for i, (runner_id, token) in enumerate(runners, 1):
        text = text.replace('@ID{0}@'.format(i), str(runner_id)).replace('@TOKEN{0}@'.format(i), token)
    for i, value in enumerate(hidden, 1):
        text = text.replace('@SECRET{0}@'.format(i), value)
    assert not re.search(r'@(URL|ID\d|TOKEN\d|SECRET\d)@', text), 'unfilled placeholder'
    return text


def play(env, root, name, tasks, check=False, diff=False):
    path = root / (name + '.yml')
    path.write_text(json.dumps([{'hosts': 'localhost', 'gather_facts': False, 'tasks': tasks}]))
    cmd = [str(Path(sys.executable).with_name('ansible-playbook')), '-i', 'localhost,', '-c', 'local', str(path)]
    cmd += ['--check'] * check + ['--diff'] * diff
    proc = subprocess.run(cmd, env=dict(env, ANSIBLE_STDOUT_CALLBACK='ansible.posix.json'), capture_output=True,
                          text=True, timeout=900, check=False)
    data = json.loads(proc.stdout)
    return dict((t['task']['name'], next(iter(t['hosts'].values()))) for t in data['plays'][0]['tasks']), proc.stdout + proc.stderr


def test_adopting_real_files_keeps_everything_not_declared(gitlab, tmp_path, ansible_env):
    admin, _group, project = project_setup(gitlab)
    fixtures = sorted(FIXTURES.glob('*.toml'))
    assert len(fixtures) >= 20 and set(f.stem for f in fixtures) == set(CHANGES) == set(REACHES)
    secrets_used = [admin]
    cases = {}
    for fixture in fixtures:
        raw = fixture.read_text()
        count = len(set(re.findall(r'@TOKEN(\d)@', raw)))
        runners = [create_runner(gitlab, admin, project) for _i in range(count)]
        hidden = [secrets.token_urlsafe(18) for _i in range(2)]
        secrets_used += [t for _id, t in runners] + hidden
        directory = tmp_path / fixture.stem / 'gitlab-runner'
        directory.mkdir(parents=True, mode=0o700)
        path = directory / 'config.toml'
        path.touch(mode=0o600)
        path.write_text(fill(raw, gitlab.url, runners, hidden))
        parsed = tomllib.loads(path.read_text())
        minimal = [{'name': e['name'], 'url': e['url'], 'token': e['token']} for e in parsed['runners']]
        cases[fixture.stem] = (path, minimal)

    def tasks(change=False):
        found = []
        for stem, (path, minimal) in cases.items():
            top, first = CHANGES[stem] if change else ({}, {})
            runners = [dict(r, **first) if i == 0 else r for i, r in enumerate(minimal)]
            args = dict({'path': str(path), 'allow_http': True, 'runner_version': 'v18.10.1', 'runners': runners}, **top)
            found.append({'name': stem, 'dood.gitlab_runner.runner_config': args, 'ignore_errors': True})
        return found

    original = dict((stem, path.read_bytes()) for stem, (path, _m) in cases.items())
    outputs = []
    # Adoption: check + diff, apply, apply again. Not a byte may change.
    for name, check in (('adopt-check', True), ('adopt-apply', False), ('adopt-again', False)):
        results, output = play(ansible_env, tmp_path, name, tasks(), check=check, diff=True)
        outputs.append(output)
        for stem, result in results.items():
            assert not result.get('failed'), (name, stem, result.get('msg'))
            assert not result['changed'], (name, stem, result.get('diff'))
            assert [r['config'] for r in result['runners']] == ['unchanged'] * len(cases[stem][1]), (name, stem)
            assert set(r['action'] for r in result['runners']) == {'unchanged'}, (name, stem)
    for stem, (path, _m) in cases.items():
        assert path.read_bytes() == original[stem], stem
    # A declared change: predicted, applied, then quiet. Only the declared leaves change.
    results, output = play(ansible_env, tmp_path, 'change-check', tasks(True), check=True, diff=True)
    outputs.append(output)
    for stem, result in results.items():
        assert not result.get('failed') and result['changed'], (stem, result.get('msg'))
        assert result['diff']['before'] != result['diff']['after'], stem
    results, output = play(ansible_env, tmp_path, 'change-apply', tasks(True))
    outputs.append(output)
    for stem, result in results.items():
        assert not result.get('failed') and result['changed'], (stem, result.get('msg'))
        expected = dict(REACHES[stem])
        assert changed_leaves(tomllib.loads(original[stem].decode()), tomllib.loads(cases[stem][0].read_text())) == expected, stem
    results, output = play(ansible_env, tmp_path, 'change-again', tasks(True))
    outputs.append(output)
    assert [stem for stem, result in results.items() if result['changed'] or result.get('failed')] == []
    everything = '\n'.join(outputs)
    assert [s[:6] for s in secrets_used if s in everything] == []
    assert [r for r in gitlab.requests() if r['method'] != 'GET' and r['path'].startswith('/api/v4/runners')] == [], \
        'adopting with existing tokens sends nothing that changes GitLab'
