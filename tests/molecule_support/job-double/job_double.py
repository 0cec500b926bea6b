# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""TEST DOUBLE of gitlab-runner's docker executor: runs one job of a .gitlab-ci.yml on a molecule test host.

It is not GitLab Runner and it asks no GitLab for jobs. It reads one runner's settings from the config.toml the
runner role wrote on the host (``executor``, ``environment``, ``[runners.docker]`` ``image``, ``volumes``,
``pull_policy``, ``privileged``) and runs the job the way the docker executor does, through the host's own Docker
daemon (``docker exec HOST docker ...``, so everything happens in the host's daemon):

* the job's image (its ``image:``, else the runner's ``docker.image``), pulled according to ``pull_policy``
  (``if-not-present``: only when missing; ``never``: fail when missing; ``always``: pull);
* ``host:container[:mode]`` volumes bound as they are; a bare path (``/cache``) and the project directory become
  named cache volumes ``runner-<runner id>-project-<project id>-concurrent-0-cache-<md5 of the path>`` carrying the
  labels gitlab-runner puts on them (``com.gitlab.gitlab-runner.type=cache``, ``...managed=true``, job and project
  ids), reused by the next job of the same project, as the executor does (docs/dood-facts.md);
* the checkout: the project directory given here is copied into the project volume (gitlab-runner clones with its
  helper image; no GitLab can be reached here);
* the variables: predefined ones (``CI_*``, given by the caller where GitLab would compute them), then the runner's
  ``environment``, then the file's global and job ``variables``, later ones winning, ``$VAR`` references expanded;
* ``before_script`` and ``script`` in one container (``sh``, each command echoed as ``$ command``, stop at the first
  failure), ``after_script`` in a second container whose failure does not fail the job; containers labelled
  ``com.gitlab.gitlab-runner.type=build`` and removed afterwards.

Left out: services, artifacts, caches uploaded to object storage, ``rules:`` (GitLab decides which jobs run), tags.

Usage (the molecule verify tests import it; ``scripts/demo`` runs it):
  job_double.py --host gr-default-bookworm --config /srv/gitlab-runner/config/config.toml --runner NAME \\
      --ci-file examples/gitlab-ci/docker-build.gitlab-ci.yml --job build --project DIR --var CI_REGISTRY=... \\
      [--show-image '$IMAGE']
"""
from __future__ import annotations

import argparse
import hashlib
import io
import re
import secrets
import shlex
import subprocess
import sys
import tarfile
import time
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

import yaml

LABEL = 'com.gitlab.gitlab-runner'
BUILDS_DIR = '/builds'
_REFERENCE = re.compile(r'\$(\$|\{(\w+)\}|(\w+))')


def expand(value: str, variables: dict) -> str:
    """$VAR and ${VAR} as gitlab-runner expands them in variable values ($$ is a literal $, unknown names are empty)."""
    def replace(match):
        if match.group(1) == '$':
            return '$'
        return variables.get(match.group(2) or match.group(3), '')
    return _REFERENCE.sub(replace, str(value))


class Host:
    """The molecule host: every command runs in it (`docker exec`), so `docker` there talks to its own daemon."""

    def __init__(self, name: str):
        self.name = name

    def run(self, argv: list, stdin: bytes | None = None, check: bool = True, stream=None) -> subprocess.CompletedProcess:
        command = ['docker', 'exec'] + (['-i'] if stdin is not None else []) + [self.name] + [str(a) for a in argv]
        if stream is None:
            result = subprocess.run(command, input=stdin, capture_output=True, check=False, timeout=1800)
            output = (result.stdout + result.stderr).decode('utf-8', 'replace')
        else:
            # Job logs are streamed as they come, like a runner's trace
            with subprocess.Popen(command, stdin=subprocess.PIPE if stdin is not None else subprocess.DEVNULL,
                                  stdout=subprocess.PIPE, stderr=subprocess.STDOUT) as process:
                if stdin is not None:
                    process.stdin.write(stdin)
                    process.stdin.close()
                chunks = []
                for raw in process.stdout:
                    line = raw.decode('utf-8', 'replace')
                    chunks.append(line)
                    stream.write(line)
                    stream.flush()
                process.wait(timeout=1800)
            result = subprocess.CompletedProcess(command, process.returncode, b'', b'')
            output = ''.join(chunks)
        result.output = output
        if check and result.returncode != 0:
            raise RuntimeError('{0} failed ({1}): {2}'.format(' '.join(argv[:3]), result.returncode, output[-2000:]))
        return result

    def docker(self, *args, **kwargs) -> subprocess.CompletedProcess:
        return self.run(['docker'] + list(args), **kwargs)

    def read(self, path: str) -> str:
        return self.run(['cat', path]).output


def read_runner(host: Host, config_path: str, name: str | None) -> dict:
    """The runner's table from config.toml as deployed (the first docker runner when no name is given)."""
    runners = tomllib.loads(host.read(config_path)).get('runners', [])
    for runner in runners:
        if (name is None and runner.get('executor') == 'docker') or runner.get('name') == name:
            if runner.get('executor') != 'docker':
                raise ValueError('runner {0!r} uses the {1} executor, not docker'.format(name, runner.get('executor')))
            return runner
    raise ValueError('no docker runner {0!r} in {1}'.format(name, config_path))


def load_job(ci_file: Path, name: str) -> dict:
    """The job as the runner receives it: `default:` keywords filled in, global variables under the job's own."""
    document = yaml.safe_load(ci_file.read_text(encoding='utf-8'))
    job = dict(document[name])
    for key, value in (document.get('default') or {}).items():
        job.setdefault(key, value)
    job['variables'] = dict(document.get('variables') or {}, **(job.get('variables') or {}))
    return job


def _lines(value) -> list:
    if value is None:
        return []
    return [str(item) for item in (value if isinstance(value, list) else [value])]


@dataclass
class JobResult:
    rc: int
    log: str
    after_script_log: str = ''
    image_report: str = ''
    volumes: list = field(default_factory=list)


class DockerExecutorJob:
    """One job, prepared and run as gitlab-runner's docker executor would."""

    def __init__(self, host: Host, runner: dict, job: dict, predefined: dict, project_dir: Path, stream=None):
        self.host = host
        self.runner = runner
        self.job = job
        self.project_dir = project_dir
        self.stream = stream
        self.docker = runner.get('docker') or {}
        self.job_id = str(predefined['CI_JOB_ID'])
        self.project_id = str(predefined['CI_PROJECT_ID'])
        self.project_path = predefined.get('CI_PROJECT_PATH', 'group/project')
        self.unique = 'runner-{0}-project-{1}-concurrent-0'.format(runner.get('id', 0), self.project_id)
        self.project_dir_in_job = '{0}/{1}'.format(BUILDS_DIR, self.project_path)
        image = job.get('image') or self.docker.get('image')
        self.image = image.get('name') if isinstance(image, dict) else image
        if not self.image:
            raise ValueError('the job has no image and the runner no docker.image')
        self.variables = self._variables(predefined)
        self.volume_names = []

    def _variables(self, predefined: dict) -> dict:
        ordered = [('CI', 'true'), ('GITLAB_CI', 'true'), ('CI_SERVER', 'yes'), ('CI_BUILDS_DIR', BUILDS_DIR),
                   ('CI_PROJECT_DIR', self.project_dir_in_job), ('CI_RUNNER_ID', str(self.runner.get('id', 0))),
                   ('CI_RUNNER_EXECUTABLE_ARCH', 'linux/amd64'), ('CI_DISPOSABLE_ENVIRONMENT', 'true')]
        ordered += list(predefined.items())
        ordered += [tuple(item.split('=', 1)) for item in self.runner.get('environment') or [] if '=' in item]
        ordered += [(key, value.get('value', '') if isinstance(value, dict) else value)
                    for key, value in self.job['variables'].items()]
        variables = {}
        for key, value in ordered:
            variables[key] = expand(value, variables)
        return variables

    def labels(self, kind: str) -> list:
        pairs = {'managed': 'true', 'type': kind, 'job.id': self.job_id, 'project.id': self.project_id,
                 'runner.id': str(self.runner.get('id', 0)), 'pipeline.id': self.variables.get('CI_PIPELINE_ID', '')}
        args = []
        for key, value in pairs.items():
            args += ['--label', '{0}.{1}={2}'.format(LABEL, key, value)]
        return args

    def say(self, text: str):
        if self.stream is not None:
            self.stream.write(text + '\n')
            self.stream.flush()

    def pull(self):
        policies = self.docker.get('pull_policy') or ['always']
        policy = (policies if isinstance(policies, list) else [policies])[0]
        present = self.host.docker('image', 'inspect', self.image, check=False).returncode == 0
        self.say('Using docker image {0} (pull policy {1}{2})'.format(self.image, policy, ', present' if present else ''))
        if policy == 'never' and not present:
            raise RuntimeError('image {0} is missing and the pull policy is never'.format(self.image))
        if policy == 'always' or not present:
            self.host.docker('pull', self.image)

    def cache_volume(self, path: str) -> str:
        name = '{0}-cache-{1}'.format(self.unique, hashlib.md5(path.encode()).hexdigest())  # nosec B324 - a name, as gitlab-runner makes it
        self.host.docker('volume', 'create', *self.labels('cache'), name)
        self.volume_names.append(name)
        return '{0}:{1}'.format(name, path)

    def binds(self) -> list:
        binds = [self.cache_volume(self.project_dir_in_job)]
        for volume in self.docker.get('volumes') or []:
            binds.append(volume if ':' in volume else self.cache_volume(volume))
        return binds

    def checkout(self, binds: list):
        archive = io.BytesIO()
        with tarfile.open(fileobj=archive, mode='w') as tar:
            for path in sorted(self.project_dir.rglob('*')):
                tar.add(str(path), arcname=str(path.relative_to(self.project_dir)), recursive=False)
        script = 'mkdir -p "$1" && find "$1" -mindepth 1 -delete && tar -x -C "$1"'
        self.say('Getting source from the project directory {0} into {1}'.format(self.project_dir, self.project_dir_in_job))
        self.host.docker('run', '--rm', '-i', '--entrypoint', '', *self._volume_args(binds), self.image,
                         'sh', '-c', script, 'checkout', self.project_dir_in_job, stdin=archive.getvalue())

    @staticmethod
    def _volume_args(binds: list) -> list:
        args = []
        for bind in binds:
            args += ['-v', bind]
        return args

    def container(self, binds: list, step: str, commands: list) -> subprocess.CompletedProcess:
        # One stream, in order, as a runner's job log (BuildKit writes its progress to stderr)
        lines = (['set -e'] if step == 'build' else []) + ['exec 2>&1']
        for command in commands:
            lines.append('printf "%s\\n" {0}'.format(shlex.quote('$ ' + command)))
            lines.append(command)
        env = []
        for key, value in self.variables.items():
            env += ['-e', '{0}={1}'.format(key, value)]
        name = '{0}-job-{1}-{2}'.format(self.unique, self.job_id, step)
        args = ['run', '--rm', '--name', name, *self.labels(step), '-w', self.project_dir_in_job, *env,
                *self._volume_args(binds)]
        if self.docker.get('privileged'):
            args.append('--privileged')
        args += [self.image, 'sh', '-c', '\n'.join(lines)]
        return self.host.docker(*args, check=False, stream=self.stream)

    def run(self, show_image: str | None = None) -> JobResult:
        started = time.monotonic()
        self.pull()
        binds = self.binds()
        self.checkout(binds)
        build = self.container(binds, 'build', _lines(self.job.get('before_script')) + _lines(self.job.get('script')))
        result = JobResult(rc=build.returncode, log=build.output, volumes=list(self.volume_names))
        if show_image:
            # What the host daemon holds once the script is done, before after_script cleans up
            reference = expand(show_image, self.variables)
            result.image_report = self.host.docker('image', 'ls', '--filter', 'reference=' + reference, check=False).output
            self.say('Images in the host daemon after the script ({0}):\n{1}'.format(reference, result.image_report))
        if self.job.get('after_script'):
            self.say('Running after_script')
            after = self.container(binds, 'after_script', _lines(self.job.get('after_script')))
            result.after_script_log = after.output
        self.say('Job {0} after {1:.0f} s'.format('succeeded' if result.rc == 0 else 'failed (exit %d)' % result.rc,
                                                  time.monotonic() - started))
        return result


def ensure_loopback_registry(host_name: str, image: str = 'local/net-services:1', port: int = 5000) -> str:
    """A registry inside the host's own daemon on 127.0.0.1 (plain HTTP, which Docker allows for loopback registries):
    the stand-in for GitLab's container registry where a scenario has none on its network. Returns its address."""
    host = Host(host_name)
    name = 'dood-test-registry'
    if host.docker('container', 'inspect', '--format', '{{.State.Running}}', name, check=False).output.strip() == 'true':
        return '127.0.0.1:{0}'.format(port)
    if host.docker('image', 'inspect', image, check=False).returncode != 0:
        saved = subprocess.run(['docker', 'save', image], capture_output=True, check=True, timeout=600).stdout
        host.docker('load', stdin=saved)
    host.docker('rm', '--force', name, check=False)
    host.docker('run', '--detach', '--name', name, '--publish', '127.0.0.1:{0}:5000'.format(port), image,
                'docker-registry', 'serve', '/etc/docker/registry/config.yml')
    for _attempt in range(30):
        if host.run(['curl', '-fsS', 'http://127.0.0.1:{0}/v2/'.format(port)], check=False).returncode == 0:
            return '127.0.0.1:{0}'.format(port)
        time.sleep(1)
    raise RuntimeError('the loopback registry did not answer: ' + host.docker('logs', name, check=False).output[-2000:])


def run_job(host_name: str, config_path: str, runner_name: str | None, ci_file: Path, job_name: str, project_dir: Path,
            predefined: dict, show_image: str | None = None, stream=None) -> JobResult:
    host = Host(host_name)
    runner = read_runner(host, config_path, runner_name)
    job = DockerExecutorJob(host, runner, load_job(ci_file, job_name), predefined, project_dir, stream=stream)
    return job.run(show_image=show_image)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split('\n', maxsplit=1)[0])
    parser.add_argument('--host', required=True, help='molecule instance (container) name')
    parser.add_argument('--config', required=True, help='path of config.toml on the host')
    parser.add_argument('--runner', help='runner name in config.toml (default: the first docker runner)')
    parser.add_argument('--ci-file', required=True, type=Path)
    parser.add_argument('--job', required=True)
    parser.add_argument('--project', required=True, type=Path, help='directory checked out as the project')
    parser.add_argument('--var', action='append', default=[], help='predefined variable KEY=VALUE (as GitLab sets it)')
    parser.add_argument('--show-image', help='after the script, list the host daemon\'s images matching this reference')
    parser.add_argument('--loopback-registry', action='store_true',
                        help='start a test registry on the host\'s 127.0.0.1:5000 and make it CI_REGISTRY')
    args = parser.parse_args(argv)
    predefined = dict(item.split('=', 1) for item in args.var)
    # What GitLab would set for a push to the default branch of a project group/app
    sha = secrets.token_hex(20)
    for key, value in (('CI_PROJECT_ID', '1'), ('CI_PROJECT_PATH', 'group/app'), ('CI_JOB_ID', '1'),
                       ('CI_PIPELINE_ID', '1'), ('CI_COMMIT_SHA', sha), ('CI_COMMIT_SHORT_SHA', sha[:8]),
                       ('CI_PIPELINE_SOURCE', 'push'), ('CI_COMMIT_BRANCH', 'main'), ('CI_DEFAULT_BRANCH', 'main'),
                       ('CI_REGISTRY_USER', 'gitlab-ci-token'), ('CI_REGISTRY_PASSWORD', secrets.token_urlsafe(16))):
        predefined.setdefault(key, value)
    predefined.setdefault('CI_PROJECT_URL', 'https://gitlab.example.com/' + predefined['CI_PROJECT_PATH'])
    if args.loopback_registry:
        predefined.setdefault('CI_REGISTRY', ensure_loopback_registry(args.host))
        predefined.setdefault('CI_REGISTRY_IMAGE', '{0}/{1}'.format(predefined['CI_REGISTRY'], predefined['CI_PROJECT_PATH']))
    result = run_job(args.host, args.config, args.runner, args.ci_file, args.job, args.project, predefined,
                     show_image=args.show_image, stream=sys.stdout)
    return result.rc


if __name__ == '__main__':
    sys.exit(main())
