# Copyright (c) dood.gitlab_runner contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""What the one-line include of the runner role costs on a converged real host: tasks per host, by where they run.

    python benchmarks/role_noop.py -i INVENTORY PLAYBOOK [-e @vars.json ...] [--runs 3] [--output FILE]

Runs PLAYBOOK (the one-line include, e.g. a molecule scenario's converge playbook) against INVENTORY, a host it
has already converged, with the task-counting callback (callback_plugins/dood_bench_tasks.py), and prints per host
the tasks that ran on the host (a module executed there, fact gathering included), the ones that stayed on the
controller (argument validation, asserts, includes, debug), the skipped ones, the changes and the wall time. The
molecule scenario `brownfield` runs it in its verify step against its systemd host, where Docker, the runner
container and config.toml are all real (see benchmarks/README.md). The figures are printed, never asserted; the
goal (at most 8 tasks on the host) is reported as MET or MISSED. The exit status is non-zero only when a run failed.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
HOST_TASK_GOAL = 8


def run_once(playbook_bin, inventory, playbook, extra, env):
    """One ansible-playbook run with the counting callback; returns (rc, wall seconds, per-host counts, output)."""
    with tempfile.TemporaryDirectory() as work:
        tasks_file = os.path.join(work, 'tasks.json')
        run_env = dict(env)
        run_env['DOOD_BENCH_TASKS_FILE'] = tasks_file
        run_env['ANSIBLE_CALLBACK_PLUGINS'] = os.pathsep.join(
            filter(None, [str(HERE / 'callback_plugins'), env.get('ANSIBLE_CALLBACK_PLUGINS', '')]))
        enabled = [name for name in env.get('ANSIBLE_CALLBACKS_ENABLED', '').split(',') if name.strip()]
        run_env['ANSIBLE_CALLBACKS_ENABLED'] = ','.join(enabled + ['dood_bench_tasks'])
        cmd = [playbook_bin, '-i', inventory, playbook]
        for item in extra:
            cmd += ['-e', item]
        start = time.monotonic()
        proc = subprocess.run(cmd, env=run_env, capture_output=True, text=True, check=False)
        wall = time.monotonic() - start
        try:
            with open(tasks_file, encoding='utf-8') as handle:
                per_host = json.load(handle)
        except (OSError, ValueError):
            per_host = {}
    return proc.returncode, wall, per_host, proc.stdout + proc.stderr


def summarise(runs):
    """Per host: the counts of the last run (they do not vary between no-op runs) and the wall times of all."""
    rows = {}
    for rc, wall, per_host, dummy in runs:
        for host, counts in per_host.items():
            row = rows.setdefault(host, {'walls': [], 'rcs': []})
            row['walls'].append(round(wall, 2))
            row['rcs'].append(rc)
            row.update({key: counts[key] for key in ('host', 'controller', 'skipped', 'changed', 'failed',
                                                     'host_tasks', 'controller_tasks')})
    return rows


def report(rows):
    lines = ['| host | on the host | on the controller | skipped | changed | wall s (each run) |',
             '|---|---|---|---|---|---|']
    for host, row in sorted(rows.items()):
        lines.append('| {0} | {1} | {2} | {3} | {4} | {5} |'.format(
            host, row['host'], row['controller'], row['skipped'], row['changed'], ', '.join(map(str, row['walls']))))
    for host, row in sorted(rows.items()):
        lines.append('')
        lines.append('{0}: on the host: {1}'.format(host, '; '.join(row['host_tasks'])))
        lines.append('{0}: on the controller: {1}'.format(host, '; '.join(row['controller_tasks'])))
        verdict = 'MET' if row['host'] <= HOST_TASK_GOAL and row['changed'] == 0 else 'MISSED'
        lines.append('{0} {1}: no-op runs {2} tasks on the host (goal <= {3}), {4} on the controller, changed {5}'.format(
            verdict, host, row['host'], HOST_TASK_GOAL, row['controller'], row['changed']))
    return '\n'.join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n', maxsplit=1)[0])
    parser.add_argument('-i', '--inventory', required=True)
    parser.add_argument('playbook')
    parser.add_argument('-e', '--extra-vars', action='append', default=[], help='passed to ansible-playbook as -e')
    parser.add_argument('--runs', type=int, default=3, help='no-op runs to time (the counts come from each)')
    parser.add_argument('--output', help='write the figures as JSON to this file')
    args = parser.parse_args(argv)

    playbook_bin = shutil.which('ansible-playbook', path=str(Path(sys.executable).parent)) or 'ansible-playbook'
    runs = [run_once(playbook_bin, args.inventory, args.playbook, args.extra_vars, os.environ) for dummy in range(args.runs)]
    failed = [output for rc, dummy, dummy2, output in runs if rc != 0]
    for output in failed[:1]:
        print(output[-4000:], file=sys.stderr)
    rows = summarise(runs)
    print(report(rows))
    if args.output:
        Path(args.output).parent.mkdir(parents=True, exist_ok=True)
        Path(args.output).write_text(json.dumps({'playbook': args.playbook, 'hosts': rows}, indent=2), encoding='utf-8')
    return 1 if failed or not rows else 0


if __name__ == '__main__':
    sys.exit(main())
