# Copyright (c) dood.gitlab_runner contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Fleet benchmark: N simulated hosts (local connection, one config directory each) against the fake GitLab.

    /opt/dood-venv/bin/python benchmarks/bench.py            # full matrix, about 15 minutes on 2 cores
    /opt/dood-venv/bin/python benchmarks/bench.py --quick    # N = 1, 10: proves the harness works (< 2 minutes)

See benchmarks/README.md for what is measured, how to read the table, and the read-only mode for a real GitLab.
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import random
import resource
import secrets
import shutil
import string
import subprocess
import sys
import sysconfig
import tempfile
import threading
import time
import tomllib
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
PLAYBOOKS = HERE / 'playbooks'
sys.path.insert(0, str(ROOT / 'tools'))

from fake_gitlab.harness import FakeGitLabProcess  # noqa: E402  pylint: disable=wrong-import-position,import-error

WRITES = ('POST', 'PUT', 'DELETE')
ALNUM = string.ascii_letters + string.digits


# -- measuring one ansible-playbook run ---------------------------------------------------------------------------------

def measured_child(out_path, cmd):
    """Run ``cmd`` in this fresh process and record the resources of its whole process tree (RUSAGE_CHILDREN).

    A fresh process per run keeps ``ru_maxrss`` (a high-water mark over all waited-for descendants) to this run.
    """
    with open(out_path + '.log', 'wb') as log:
        rc = subprocess.call(cmd, stdout=log, stderr=subprocess.STDOUT)
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    with open(out_path, 'w', encoding='utf-8') as handle:
        json.dump({'rc': rc, 'cpu_user': usage.ru_utime, 'cpu_sys': usage.ru_stime, 'maxrss_kib': usage.ru_maxrss}, handle)
    return rc


def tree_pss(pid):
    """Proportional set size of a process and all its descendants, in bytes (0 when it is gone).

    PSS, not RSS: forked workers share most of their pages with the controller, and a sum of RSS would count
    those pages once per fork.
    """
    total = 0
    stack = [pid]
    while stack:
        current = stack.pop()
        try:
            with open('/proc/{0}/smaps_rollup'.format(current), encoding='ascii') as handle:
                for line in handle:
                    if line.startswith('Pss:'):
                        total += int(line.split()[1]) * 1024
                        break
            with open('/proc/{0}/task/{0}/children'.format(current), encoding='ascii') as handle:
                stack.extend(int(p) for p in handle.read().split())
        except (OSError, ValueError, IndexError):
            continue
    return total


class Session:
    """One benchmark session: a scratch directory, the collection on the path, and the fake GitLab (or a real one)."""

    def __init__(self, args):
        self.args = args
        self.root = Path(tempfile.mkdtemp(prefix='dood-bench-'))
        tree = self.root / 'collections'
        link = tree / 'ansible_collections' / 'dood' / 'gitlab_runner'
        link.parent.mkdir(parents=True)
        link.symlink_to(ROOT)
        self.env = dict(os.environ)
        self.env.update({
            'ANSIBLE_COLLECTIONS_PATH': '{0}:{1}'.format(tree, sysconfig.get_paths()['purelib']),
            'ANSIBLE_LOCAL_TEMP': str(self.root / 'tmp'),
            'ANSIBLE_HOME': str(self.root / 'home'),
            'ANSIBLE_NOCOLOR': '1',
            'ANSIBLE_RETRY_FILES_ENABLED': '0',
            'ANSIBLE_HOST_KEY_CHECKING': '0',
            'ANSIBLE_PIPELINING': '1',
            'ANSIBLE_CALLBACK_PLUGINS': str(HERE / 'callback_plugins'),
            'ANSIBLE_CALLBACKS_ENABLED': 'dood_bench_tasks',
            'ANSIBLE_PYTHON_INTERPRETER': sys.executable,
        })
        for var in ('GITLAB_URL', 'GITLAB_API_TOKEN'):
            self.env.pop(var, None)
        self.playbook_bin = str(Path(sys.executable).with_name('ansible-playbook'))
        self.gitlab = None
        self.api_token = None
        self.project_id = None
        self.run_seq = 0

    # -- GitLab ------------------------------------------------------------------------------------------------------
    def start_fake(self):
        self.gitlab = FakeGitLabProcess().start()
        self.api_token = self.gitlab.new_user(admin=True)
        group = self.gitlab.new_group(self.api_token)
        self.project_id = self.gitlab.new_project(self.api_token, group_id=group)

    def stop(self):
        if self.gitlab is not None:
            self.gitlab.stop()
        if not self.args.keep:
            shutil.rmtree(self.root, ignore_errors=True)

    def inject_backoff(self, share, expected_requests, seed):
        """429 (GitLab's migration backoff, Retry-After 1 s) for about ``share`` of the next API requests.

        The fake server offers counted faults (``skip``/``times``), not a probability, so the positions are drawn here:
        fault i answers the r_i-th request after having let through the r_i - i requests that reached it.
        """
        rng = random.Random(seed)  # a string seed: the same positions on every run
        positions = [r for r in range(1, expected_requests + 1) if rng.random() < share]
        specs = [{'path': '^/api/v4/', 'method': '*', 'kind': 'backoff', 'retry_after': 1, 'times': 1, 'skip': r - i}
                 for i, r in enumerate(positions, start=1)]
        if specs:
            self.gitlab.control('POST', '/faults', specs)
        return len(specs)

    def api_log(self):
        """Counts of the API requests since the log was last cleared."""
        entries = [e for e in self.gitlab.requests() if e['path'].startswith('/api/v4')]
        by_method = collections.Counter(e['method'] for e in entries)
        return {
            'total': len(entries),
            'by_method': dict(sorted(by_method.items())),
            'writes': sum(1 for e in entries if e['method'] in WRITES),
            'status_429': sum(1 for e in entries if e['status'] == 429),
            'creations': sum(1 for e in entries if e['method'] == 'POST' and e['path'] in ('/api/v4/user/runners', '/api/v4/runners')
                             and e['status'] == 201),
        }

    # -- fleet ---------------------------------------------------------------------------------------------------------
    def fleet(self, label, hosts, runners_per_host):
        """Write an inventory of ``hosts`` local hosts, each with its own config directory and system_id."""
        base = self.root / label
        hostvars = {}
        for index in range(hosts):
            name = 'h{0:04d}'.format(index + 1)
            config_dir = base / name
            config_dir.mkdir(parents=True, mode=0o700)
            # Distinct machines have distinct system ids (a shared one is what the audit playbook flags).
            (config_dir / '.runner_system_id').write_text('r_' + ''.join(secrets.choice(ALNUM) for _i in range(12)))
            runners = [{'name': '{0}-r{1:02d}'.format(name, r + 1), 'runner_type': 'project_type', 'project_id': self.project_id,
                        'tag_list': ['bench', 'docker-dood'], 'run_untagged': False,
                        'docker': {'image': 'docker:27-cli', 'volumes': ['/var/run/docker.sock:/var/run/docker.sock']}}
                       for r in range(runners_per_host)]
            hostvars[name] = {'bench_config_dir': str(config_dir), 'bench_runners': runners,
                              'gitlab_runner_config_dir': str(config_dir), 'gitlab_runner_runners': runners}
        inventory = base / 'inventory.json'
        inventory.write_text(json.dumps({'all': {'hosts': hostvars, 'vars': {'ansible_connection': 'local'}}}))
        secret_vars = base / 'secrets.json'
        secret_vars.write_text(json.dumps({'bench_api_token': self.api_token, 'gitlab_runner_api_token': self.api_token}))
        secret_vars.chmod(0o600)
        return {'label': label, 'dir': base, 'inventory': inventory, 'secrets': secret_vars, 'hosts': hosts,
                'runners_per_host': runners_per_host}

    def run(self, fleet, playbook, forks, extra=None, check=False, env=None):
        """One measured ansible-playbook run."""
        self.run_seq += 1
        out = str(self.root / 'run-{0:03d}.json'.format(self.run_seq))
        tasks_file = out + '.tasks'
        extra_vars = {'bench_gitlab_url': self.gitlab.url if self.gitlab else self.args.gitlab_url, 'bench_allow_http': True,
                      'bench_concurrent': 4, 'gitlab_runner_url': self.gitlab.url if self.gitlab else self.args.gitlab_url}
        extra_vars.update(extra or {})
        cmd = [self.playbook_bin, '-i', str(fleet['inventory']), '-f', str(forks), str(playbook),
               '-e', json.dumps(extra_vars), '-e', '@' + str(fleet['secrets'])]
        if check:
            cmd.append('--check')
        env = dict(self.env, DOOD_BENCH_TASKS_FILE=tasks_file, **(env or {}))
        if self.gitlab is not None:
            self.gitlab.clear_requests()
        start = time.monotonic()
        proc = subprocess.Popen([sys.executable, __file__, '--measure-child', out, '--'] + cmd, env=env)  # pylint: disable=consider-using-with
        peak = [0]

        def sample():
            while proc.poll() is None:
                peak[0] = max(peak[0], tree_pss(proc.pid))
                time.sleep(0.3)

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        proc.wait()
        wall = time.monotonic() - start
        sampler.join()
        with open(out, encoding='utf-8') as handle:
            usage = json.load(handle)
        try:
            with open(tasks_file, encoding='utf-8') as handle:
                per_host = json.load(handle)
        except (OSError, ValueError):
            per_host = {}
        failures = []
        if usage['rc'] != 0:
            with open(out + '.log', encoding='utf-8', errors='replace') as handle:
                failures = [line.strip()[:400] for line in handle if line.startswith(('fatal:', 'ERROR!', '[ERROR]'))][:5]
            detail = '\n  '.join(failures) or '(no fatal line)'
            print('ansible-playbook failed (rc {0}) for {1} {2}:\n  {3}'.format(usage['rc'], fleet['label'], playbook.name, detail),
                  file=sys.stderr, flush=True)
        executed = [h['executed'] for h in per_host.values()] or [0]
        changed = [h['changed'] for h in per_host.values()] or [0]
        skipped = [h['skipped'] for h in per_host.values()] or [0]
        result = {
            'rc': usage['rc'],
            'wall_s': round(wall, 2),
            'cpu_s': round(usage['cpu_user'] + usage['cpu_sys'], 2),
            'maxrss_mib': round(usage['maxrss_kib'] / 1024.0, 1),
            'peak_tree_pss_mib': round(peak[0] / 1048576.0, 1),
            'hosts_reported': len(per_host),
            'tasks_per_host': max(executed),
            'tasks_per_host_min': min(executed),
            # split by where they ran (callback_plugins/dood_bench_tasks.py): a module on the host, or the controller only
            'host_tasks_per_host': max([h.get('host', 0) for h in per_host.values()] or [0]),
            'controller_tasks_per_host': max([h.get('controller', 0) for h in per_host.values()] or [0]),
            'changed_per_host': max(changed),
            'changed_total': sum(changed),
            'skipped_per_host': max(skipped),
            'failed_total': sum(h['failed'] for h in per_host.values()),
            'task_names': next(iter(per_host.values()))['tasks'] if per_host else [],
            'failures': failures,
        }
        if self.gitlab is not None:
            result['api'] = self.api_log()
        return result


# -- the matrix ------------------------------------------------------------------------------------------------------------

def cell(session, hosts, forks, runners_per_host=1, label=None, backoff_share=0.0, steps=('converge', 'noop', 'change')):
    """Ping floor, first converge, no-op re-run, re-run after one setting changed on every host."""
    label = label or 'n{0}-f{1}-r{2}{3}'.format(hosts, forks, runners_per_host, '-429' if backoff_share else '')
    fleet = session.fleet(label, hosts, runners_per_host)
    row = {'label': label, 'hosts': hosts, 'forks': forks, 'runners_per_host': runners_per_host, 'backoff_share': backoff_share}
    row['ping'] = session.run(fleet, PLAYBOOKS / 'ping.yml', forks)
    floor = row['ping']['wall_s'] or 1e-9
    injected = 0
    for step in steps:
        if backoff_share and step in ('converge', 'noop'):
            session.gitlab.clear_faults()
            injected += session.inject_backoff(backoff_share, hosts * runners_per_host * 3 + 20, seed=label + '/' + step)
        extra = {'bench_concurrent': 5} if step == 'change' else None
        result = session.run(fleet, PLAYBOOKS / 'module.yml', forks, extra=extra)
        result['ratio'] = round(result['wall_s'] / floor, 2)
        row[step] = result
        session.gitlab.clear_faults()
    row['faults_injected'] = injected
    row['declared_runners'] = hosts * runners_per_host
    row['fleet'] = fleet
    return row


def role_cell(session, hosts, forks, runners_per_host=1):
    """The whole runner role, with Docker and the container steps switched off, converged then re-run (no-op)."""
    label = 'role-n{0}-f{1}-r{2}'.format(hosts, forks, runners_per_host)
    fleet = session.fleet(label, hosts, runners_per_host)
    row = {'label': label, 'hosts': hosts, 'forks': forks, 'runners_per_host': runners_per_host}
    row['ping'] = session.run(fleet, PLAYBOOKS / 'ping.yml', forks)
    stub = {'ANSIBLE_COLLECTIONS_PATH': '{0}:{1}'.format(HERE / 'stub_collections', session.env['ANSIBLE_COLLECTIONS_PATH'])}
    row['converge'] = session.run(fleet, PLAYBOOKS / 'role.yml', forks, env=stub)
    row['noop'] = session.run(fleet, PLAYBOOKS / 'role.yml', forks, env=stub)
    row['noop']['ratio'] = round(row['noop']['wall_s'] / (row['ping']['wall_s'] or 1e-9), 2)
    row['declared_runners'] = hosts * runners_per_host
    return row


class Budget:
    """Bounds the session: estimates a cell from the seconds per host-run measured so far."""

    def __init__(self, seconds, started):
        self.seconds = seconds
        self.started = started
        self.per_host_run = None

    def allows(self, hosts, runs, skipped, label):
        elapsed = time.monotonic() - self.started
        estimate = (self.per_host_run or 0.0) * hosts * runs
        if self.per_host_run is not None and elapsed + estimate > self.seconds:
            skipped.append('{0}: estimated {1:.0f}s would overrun the {2:.0f}s budget ({3:.0f}s used)'.format(
                label, estimate, self.seconds, elapsed))
            return False
        return True

    def timed(self, hosts, runs, func, *args, **kwargs):
        learn = kwargs.pop('learn', True)
        start = time.monotonic()
        row = func(*args, **kwargs)
        # Small fleets are dominated by start-up time: only cells of 10 hosts or more teach the rate.
        if learn and hosts >= 10:
            self.per_host_run = (time.monotonic() - start) / float(hosts * runs)
        return row


# -- output ----------------------------------------------------------------------------------------------------------------

def api_cell(result):
    api = result.get('api')
    if not api:
        return 'n/a'
    methods = ' '.join('{0}:{1}'.format(m, c) for m, c in api['by_method'].items()) or '-'
    extra = ' (429:{0})'.format(api['status_429']) if api['status_429'] else ''
    return methods + extra


def table(rows):
    head = ('scenario', 'N', 'forks', 'R/host', 'run', 'wall s', 'ping s', 'ratio', 'cpu s', 'maxrss MiB', 'tree PSS MiB',
            'tasks/host', 'changed/host', 'API requests', 'req/runner')
    lines = [head]
    for row in rows:
        for step in ('converge', 'noop', 'change'):
            result = row.get(step)
            if not result:
                continue
            api = result.get('api') or {}
            per_runner = '{0:.2f}'.format(api['total'] / float(row['declared_runners'])) if api else 'n/a'
            lines.append((row['label'], str(row['hosts']), str(row['forks']), str(row['runners_per_host']), step,
                          '{0:.2f}'.format(result['wall_s']), '{0:.2f}'.format(row['ping']['wall_s']),
                          '{0:.2f}'.format(result.get('ratio', result['wall_s'] / (row['ping']['wall_s'] or 1e-9))),
                          '{0:.1f}'.format(result['cpu_s']), '{0:.0f}'.format(result['maxrss_mib']),
                          '{0:.0f}'.format(result['peak_tree_pss_mib']), str(result['tasks_per_host']),
                          str(result['changed_per_host']), api_cell(result), per_runner))
    widths = [max(len(line[i]) for line in lines) for i in range(len(head))]
    out = []
    for index, line in enumerate(lines):
        out.append('| ' + ' | '.join(cell_.ljust(widths[i]) for i, cell_ in enumerate(line)) + ' |')
        if index == 0:
            out.append('|' + '|'.join('-' * (w + 2) for w in widths) + '|')
    return '\n'.join(out)


def goals(rows, role_rows):
    """The issue's goals, judged from the measured numbers (reported, never asserted)."""
    verdicts = []

    def add(ok, text):
        verdicts.append(('MET ' if ok else 'MISSED ') + text)

    fake_rows = [r for r in rows if r['noop'].get('api')]
    for row in fake_rows:
        noop = row['noop']
        api = noop['api']
        add(noop['changed_total'] == 0 and api['writes'] == 0 and api['total'] - api['status_429'] <= row['declared_runners'],
            '{0}: no-op changed={1}, writes={2}, requests={3} (429 retries {4}) for {5} runners'.format(
                row['label'], noop['changed_total'], api['writes'], api['total'], api['status_429'], row['declared_runners']))
        conv = row['converge']['api']
        add(conv['creations'] == row['declared_runners'] and row['converge']['rc'] == 0,
            '{0}: first converge created {1} runners for {2} declared ({3} creation attempts answered 429)'.format(
                row['label'], conv['creations'], row['declared_runners'],
                conv['status_429']))
    by_runners = collections.defaultdict(set)
    for row in rows:
        by_runners[row['runners_per_host']].add(row['noop']['tasks_per_host'])
    if 1 in by_runners and 10 in by_runners:
        add(by_runners[1] == by_runners[10], 'tasks per host on a no-op run: {0} with 1 runner/host, {1} with 10'.format(
            sorted(by_runners[1]), sorted(by_runners[10])))
    for row in rows:
        if row['hosts'] == 50 and not row['backoff_share'] and row['runners_per_host'] == 1:
            add(row['noop']['ratio'] <= 2.0, '{0}: module no-op costs {1}x the ping floor (goal <= 2x)'.format(
                row['label'], row['noop']['ratio']))
    for row in role_rows:
        noop = row['noop']
        add(noop['host_tasks_per_host'] <= 8 and noop['changed_total'] == 0 and noop['rc'] == 0,
            '{0}: whole role no-op (docker role off, container step stubbed) executes {1} tasks/host on the host and {2} on '
            'the controller (skips {3}), changed {4} (goal <= 8 on the host, 0 changed; the real figure, docker role on, comes '
            'from benchmarks/role_noop.py on a molecule host): {5}'.format(
                row['label'], noop['host_tasks_per_host'], noop['controller_tasks_per_host'], noop['skipped_per_host'],
                noop['changed_total'], ', '.join(noop['task_names'])))
    return verdicts


def growth_sentence(rows):
    noops = sorted((r for r in rows if r['runners_per_host'] == 1 and not r['backoff_share'] and r['noop'].get('api')),
                   key=lambda r: (r['forks'], r['hosts']))
    parts = []
    for forks in sorted(set(r['forks'] for r in noops)):
        series = [r for r in noops if r['forks'] == forks]
        if len(series) >= 2:
            first, last = series[0], series[-1]
            per_host_first = first['noop']['wall_s'] / first['hosts']
            per_host_last = last['noop']['wall_s'] / last['hosts']
            parts.append('forks {0}: no-op wall {1:.1f}s at N={2} -> {3:.1f}s at N={4} ({5:.3f} -> {6:.3f} s/host), '
                         'API requests {7} -> {8}'.format(forks, first['noop']['wall_s'], first['hosts'], last['noop']['wall_s'],
                                                          last['hosts'], per_host_first, per_host_last,
                                                          first['noop']['api']['total'], last['noop']['api']['total']))
    multi = [r for r in rows if r['runners_per_host'] > 1]
    for row in multi:
        twin = next((r for r in rows if r['runners_per_host'] == 1 and r['hosts'] == row['hosts'] and r['forks'] == row['forks']
                     and not r['backoff_share']), None)
        if twin:
            parts.append('N={0} forks {1}: {2} runners/host -> {3} tasks/host (same as {4} with 1), {5} API requests '
                         '(vs {6}), no-op wall {7:.1f}s (vs {8:.1f}s)'.format(
                             row['hosts'], row['forks'], row['runners_per_host'], row['noop']['tasks_per_host'],
                             twin['noop']['tasks_per_host'], row['noop']['api']['total'], twin['noop']['api']['total'],
                             row['noop']['wall_s'], twin['noop']['wall_s']))
    return parts


# -- real GitLab, read-only ----------------------------------------------------------------------------------------------

def real_gitlab(session, args):
    """No-op runs only, in check mode, against a real GitLab: copies of one existing config.toml, nothing written."""
    source = Path(args.config_toml)
    config = tomllib.loads(source.read_text())
    token = os.environ.get(args.api_token_env) or ''
    session.api_token = token
    declared = []
    for entry in config.get('runners', []):
        declared.append({'name': entry['name'], 'token': entry['token'], 'url': entry.get('url'), 'executor': entry.get('executor', 'docker'),
                         'docker': entry.get('docker'), 'environment': entry.get('environment')})
    rows = []
    for hosts in args.hosts:
        for forks in args.forks:
            label = 'real-n{0}-f{1}'.format(hosts, forks)
            fleet = session.fleet(label, hosts, 0)
            inventory = json.loads(fleet['inventory'].read_text())
            for name, hostvars in inventory['all']['hosts'].items():
                shutil.copy(source, Path(hostvars['bench_config_dir']) / 'config.toml')
                (Path(hostvars['bench_config_dir']) / 'config.toml').chmod(0o600)
                hostvars['bench_runners'] = [dict((k, v) for k, v in r.items() if v is not None) for r in declared]
                inventory['all']['hosts'][name] = hostvars
            fleet['inventory'].write_text(json.dumps(inventory))
            fleet['inventory'].chmod(0o600)
            row = {'label': label, 'hosts': hosts, 'forks': forks, 'runners_per_host': len(declared), 'backoff_share': 0,
                   'declared_runners': hosts * len(declared)}
            row['ping'] = session.run(fleet, PLAYBOOKS / 'ping.yml', forks)
            extra = {'bench_concurrent': config.get('concurrent', 1), 'bench_allow_http': False}
            row['noop'] = session.run(fleet, PLAYBOOKS / 'module.yml', forks, extra=extra, check=True)
            row['noop']['ratio'] = round(row['noop']['wall_s'] / (row['ping']['wall_s'] or 1e-9), 2)
            rows.append(row)
    return rows


# -- main ------------------------------------------------------------------------------------------------------------------

def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--quick', action='store_true',
                        help='N = 1 and 10, the 429 run at N = 10, no role run: a harness check for CI, under 2 minutes')
    parser.add_argument('--hosts', type=int, nargs='+', help='fleet sizes (default 1 10 50 200; --quick: 1 10)')
    parser.add_argument('--forks', type=int, nargs='+', default=[10, 50])
    parser.add_argument('--backoff-share', type=float, default=0.1, help='share of API requests answered 429 in the backoff run')
    parser.add_argument('--no-role', action='store_true', help='skip the whole-role measurement')
    parser.add_argument('--output', default=str(HERE / 'results' / 'latest.json'), help='where the JSON goes')
    parser.add_argument('--budget', type=float, default=1200.0,
                        help='seconds; a cell whose estimated time would overrun it is skipped and listed as such')
    parser.add_argument('--keep', action='store_true', help='keep the scratch directory (inventories, logs)')
    parser.add_argument('--gitlab-url', help='a real GitLab: read-only no-op mode (check mode), needs --config-toml')
    parser.add_argument('--config-toml', help='an existing config.toml whose runners exist on --gitlab-url')
    parser.add_argument('--api-token-env', default='GITLAB_API_TOKEN', help='environment variable holding a read_api token')
    return parser.parse_args(argv)


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ['--measure-child']:
        return measured_child(argv[1], argv[3:])
    args = parse_args(argv)
    if args.hosts is None:
        args.hosts = [1, 10] if args.quick else [1, 10, 50, 200]
    session = Session(args)
    started = time.monotonic()
    rows, role_rows, skipped = [], [], []
    try:
        if args.gitlab_url:
            if not args.config_toml:
                sys.exit('--gitlab-url needs --config-toml (a config.toml whose runners exist there)')
            rows = real_gitlab(session, args)
        else:
            session.start_fake()
            budget = Budget(args.budget, started)
            for hosts in args.hosts:
                for forks in args.forks:
                    if budget.allows(hosts, 4, skipped, 'n{0}-f{1}'.format(hosts, forks)):
                        rows.append(budget.timed(hosts, 4, cell, session, hosts, forks))
                        print('done {0} (elapsed {1:.0f}s)'.format(rows[-1]['label'], time.monotonic() - started), flush=True)
            if not args.quick and budget.allows(10 * 3, 3, skipped, 'n10-f10-r10'):
                rows.append(budget.timed(10 * 3, 3, cell, session, 10, 10, runners_per_host=10, steps=('converge', 'noop'), learn=False))
            backoff_hosts = 10 if args.quick else 50
            if budget.allows(backoff_hosts, 3, skipped, 'n{0}-f50-429'.format(backoff_hosts)):
                rows.append(budget.timed(backoff_hosts, 3, cell, session, backoff_hosts, 50, backoff_share=args.backoff_share,
                                         steps=('converge', 'noop'), learn=False))
            if not args.no_role and not args.quick:
                for hosts, per_host in [(10, 1)]:
                    # A role run costs about ten module runs (its tasks per host, plus fact gathering).
                    if budget.allows(hosts * 10, 3, skipped, 'role-n{0}-r{1}'.format(hosts, per_host)):
                        role_rows.append(budget.timed(hosts * 10, 3, role_cell, session, hosts, min(hosts, 50), runners_per_host=per_host,
                                                      learn=False))
    finally:
        session.stop()
    elapsed = time.monotonic() - started
    print()
    print(table(rows + role_rows))
    print()
    for line in goals(rows, role_rows):
        print(line)
    for line in growth_sentence(rows):
        print('growth: ' + line)
    for line in skipped:
        print('SKIPPED ' + line)
    print('\nmatrix took {0:.0f}s'.format(elapsed))
    for row in rows + role_rows:
        row.pop('fleet', None)
    report = {'elapsed_s': round(elapsed, 1), 'rows': rows, 'role_rows': role_rows, 'goals': goals(rows, role_rows),
              'growth': growth_sentence(rows), 'python': sys.version.split()[0], 'cpus': os.cpu_count(),
              'backoff_share': args.backoff_share, 'quick': args.quick, 'skipped': skipped}
    output = Path(args.output)
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(json.dumps(report, indent=1, default=str))
    print('JSON written to {0}'.format(output))
    failed = [r for r in rows + role_rows for step in ('converge', 'noop', 'change') if r.get(step) and r[step]['rc'] != 0]
    return 1 if failed else 0


if __name__ == '__main__':
    sys.exit(main())
