# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The seed's promise end to end: a job container configured by the config.toml the role wrote builds an image on the
host's daemon, pushes it, and a second job reuses the build cache; then the prune timer clears old runner caches.

The job double (tests/molecule_support/job-double/) runs the `build` job of examples/gitlab-ci/docker-build.gitlab-ci.yml
as gitlab-runner's docker executor would, with the runner's image, volumes, environment and pull policy. The registry
is the scenario's own: behind the proxy and the private CA where the scenario has them (alternative), else a
registry on the host's loopback (plain HTTP, which Docker allows there).
"""
from __future__ import annotations

import json
import re
import secrets
import shlex
import sys

import pytest

from conftest import ROOT, SCENARIO_DIR

sys.path.insert(0, str(ROOT / "tests" / "molecule_support" / "job-double"))
import job_double  # noqa: E402  pylint: disable=wrong-import-position

CI_FILE = ROOT / "examples" / "gitlab-ci" / "docker-build.gitlab-ci.yml"
PROJECT = ROOT / "tests" / "molecule_support" / "job-double" / "project"
CACHE_LABEL = "com.gitlab.gitlab-runner.type=cache"


@pytest.fixture(scope="module")
def instance(host) -> str:
    return host.check_output("hostname")


@pytest.fixture(scope="module")
def registry(instance, runtime) -> str:
    return runtime.get("test_registry") or job_double.ensure_loopback_registry(instance)


@pytest.fixture(scope="module")
def jobs(instance, settings, registry):
    """The build job twice, as two pipelines of one project (two commits): (predefined variables, result) each.
    The runner: the one of the one-line form, or the entry with its own volumes and environment (alternative)."""
    runner = "ui-01" if settings.get("gitlab_runner_runners") else instance
    common = {
        "CI_PROJECT_ID": "42", "CI_PROJECT_PATH": "group/app", "CI_PROJECT_URL": "https://gitlab.example.com/group/app",
        "CI_REGISTRY": registry, "CI_REGISTRY_IMAGE": registry + "/group/app",
        "CI_REGISTRY_USER": "gitlab-ci-token", "CI_REGISTRY_PASSWORD": secrets.token_urlsafe(16),
        "CI_PIPELINE_SOURCE": "push", "CI_COMMIT_BRANCH": "main", "CI_DEFAULT_BRANCH": "main",
    }
    runs = []
    for number in (1, 2):
        sha = secrets.token_hex(20)
        predefined = dict(common, CI_JOB_ID=str(1000 + number), CI_PIPELINE_ID=str(500 + number), CI_COMMIT_SHA=sha,
                          CI_COMMIT_SHORT_SHA=sha[:8])
        result = job_double.run_job(instance, settings["gitlab_runner_config_dir"] + "/config.toml", runner, CI_FILE, "build",
                                    PROJECT, predefined, show_image="$IMAGE")
        runs.append((predefined, result))
    return runs


def test_build_job_builds_and_pushes_on_the_host_daemon(host, jobs):
    predefined, result = jobs[0]
    assert result.rc == 0, result.log[-4000:]
    image = "{0}:{1}".format(predefined["CI_REGISTRY_IMAGE"], predefined["CI_COMMIT_SHORT_SHA"])
    assert "Login Succeeded" in result.log
    # BuildKit through buildx, whose default builder is the host daemon itself
    assert 'building with "default" instance using docker driver' in result.log
    # the host daemon held the image once the script was done ...
    repository, tag = image.rsplit(":", 1)
    assert re.search(r"^{0}\s+{1}\s".format(re.escape(repository), tag), result.image_report, re.MULTILINE), result.image_report
    # ... the registry holds it now, and the example's after_script removed it from the host
    assert host.run("docker image inspect %s", image).rc != 0
    assert predefined["CI_COMMIT_SHORT_SHA"] in registry_tags(host, predefined)


def test_second_job_reuses_the_build_cache(jobs):
    predefined, result = jobs[1]
    assert result.rc == 0, result.log[-4000:]
    # the RUN and COPY steps of the build stage come from the first job's cache
    assert re.search(r"^#\d+ \[build 3/3\] RUN ", result.log, re.MULTILINE), result.log[-3000:]
    cached = re.findall(r"^#\d+ CACHED$", result.log, re.MULTILINE)
    assert len(cached) >= 2, result.log[-3000:]


def test_jobs_share_the_runner_cache_volumes(host, jobs):
    first, second = jobs[0][1].volumes, jobs[1][1].volumes
    assert first and first == second
    for name in first:
        labels = json.loads(host.check_output("docker volume inspect --format '{{json .Labels}}' %s", name))
        assert labels["com.gitlab.gitlab-runner.type"] == "cache"
        assert labels["com.gitlab.gitlab-runner.managed"] == "true"


def registry_tags(host, predefined) -> list:
    registry = predefined["CI_REGISTRY"]
    if registry.startswith("127.0.0.1:"):
        body = host.check_output("curl -fsS http://%s/v2/group/app/tags/list", registry)
    else:
        # asked from inside the registry's own container (plain loopback HTTPS there)
        name = registry.split(":")[0]
        body = job_double.subprocess.run(
            ["docker", "exec", name, "curl", "-fsSk", "https://localhost:5050/v2/group/app/tags/list"],
            capture_output=True, text=True, check=True, timeout=60).stdout
    return json.loads(body).get("tags") or []


def test_daemon_and_runner_went_through_the_proxy(host, settings, runtime, jobs, fake_gitlab):
    if not settings.get("docker_http_proxy"):
        pytest.skip("no proxy in this scenario")
    proxy_log = job_double.subprocess.run(["docker", "logs", "proxy-" + SCENARIO_DIR.name], capture_output=True, text=True,
                                          check=True, timeout=60)
    requests = proxy_requests(proxy_log.stdout + proxy_log.stderr)
    instance = host.check_output("hostname")
    host_ip = job_double.subprocess.run(
        ["docker", "inspect", "--format", "{{json .NetworkSettings.Networks}}", instance],
        capture_output=True, text=True, check=True, timeout=60).stdout
    host_ip = json.loads(host_ip)["molecule-" + SCENARIO_DIR.name]["IPAddress"]
    registry = runtime["test_registry"]
    # the host daemon (login, pull, push of the job) opened its tunnels to the registry through the proxy
    assert (host_ip, "CONNECT {0}".format(registry)) in {(ip, " ".join(line.split()[:2])) for ip, line in requests}, requests[-20:]
    # the runner container reached GitLab through it
    verify = "POST {0}/api/v4/runners/verify".format(runtime["test_fake_gitlab_url"])
    assert any(line.startswith(verify) for _ip, line in requests), requests[-20:]
    # and nothing took a direct path: GitLab and the registry saw only the proxy's address
    for runner in fake_gitlab.state()["runners"]:
        assert {m["ip_address"] for m in runner["managers"]} == {runtime["test_proxy_ip"]}
    registry_log = job_double.subprocess.run(["docker", "logs", registry.split(":")[0]], capture_output=True, text=True,
                                             check=True, timeout=60)
    clients = set(re.findall(r'http\.request\.remoteaddr="?([0-9.]+):\d+', registry_log.stdout + registry_log.stderr))
    assert clients and clients <= {runtime["test_proxy_ip"], "127.0.0.1"}, clients


def proxy_requests(log: str) -> list:
    """(client address, request line) from tinyproxy's log: a `Connect (file descriptor N): ADDRESS` line, then
    `Request (file descriptor N): METHOD URL HTTP/1.1` for the same descriptor."""
    clients, requests = {}, []
    for line in log.splitlines():
        match = re.search(r"Connect \(file descriptor (\d+)\): (\S+)", line)
        if match:
            clients[match.group(1)] = match.group(2)
            continue
        match = re.search(r"Request \(file descriptor (\d+)\): (.*)$", line)
        if match:
            requests.append((clients.get(match.group(1)), match.group(2)))
    return requests


def test_prune_timer_removes_old_runner_cache_volumes(host, settings, jobs):
    if not settings["docker_prune_enabled"]:
        pytest.skip("the prune timer is off in this scenario")
    cache = jobs[0][1].volumes
    image = settings["gitlab_runner_job_image"]
    host.check_output("docker volume create dood-test-unlabelled")
    host.check_output("docker volume create --label %s dood-test-in-use", CACHE_LABEL)
    host.check_output("docker run -d --name dood-test-job -v dood-test-in-use:/cache %s sleep 300", image)
    try:
        # the timer's service as installed: every volume is younger than the set age, so none goes
        assert host.run("systemctl start docker-prune.service").rc == 0
        volumes = set(host.check_output("docker volume ls --quiet").split())
        assert set(cache) | {"dood-test-unlabelled", "dood-test-in-use"} <= volumes
        # the same command once that age has passed (its age argument set to 0), in the unit's environment
        show = host.check_output("systemctl show -p ExecStart -p Environment docker-prune.service")
        argv = [re.search(r"argv\[\]=([^;]*)", entry).group(1).split() for entry in show.split("{")[1:]
                if "docker-prune-volumes" in entry][0]
        assert argv[1] == str(settings["docker_prune_volume_min_age_hours"]) and CACHE_LABEL in argv
        environment = re.search(r"^Environment=(.*)$", show, re.MULTILINE).group(1)
        output = host.check_output(" ".join(shlex.quote(word) for word in ["env", environment, argv[0], "0"] + argv[2:]))
        volumes = set(host.check_output("docker volume ls --quiet").split())
        assert not set(cache) & volumes, output
        assert {"dood-test-unlabelled", "dood-test-in-use"} <= volumes
        for name in cache:
            assert "removed volume " + name in output
    finally:
        host.run("docker rm --force dood-test-job")
        host.run("docker volume rm dood-test-unlabelled dood-test-in-use")


def test_the_daemon_trusts_the_registry_through_certs_d(host, settings, runtime, jobs):
    if not settings["docker_registry_ca_certificates"]:
        pytest.skip("no private registry in this scenario")
    predefined = jobs[0][0]
    image = "{0}:{1}".format(predefined["CI_REGISTRY_IMAGE"], predefined["CI_COMMIT_SHORT_SHA"])
    ca = "/etc/docker/certs.d/{0}/ca.crt".format(runtime["test_registry"])
    host.check_output("mv %s %s.off", ca, ca)
    try:
        refused = host.run("docker pull %s", image)
    finally:
        host.check_output("mv %s.off %s", ca, ca)
    # without the role's file the daemon refuses the registry's certificate; with it the same pull works
    assert refused.rc != 0 and "certificate" in refused.stderr, refused.stderr
    assert host.run("docker pull %s", image).rc == 0
    host.run("docker image rm %s", image)
