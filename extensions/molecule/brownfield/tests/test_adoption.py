# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The one-line include on an existing CI host: the engine, its daemon.json and the job in progress stay.

Check mode ran first (prepare.yml kept its output and what the host looked like before and after it); converge and
idempotence followed. Every check asks the host itself: dpkg, the files, the Docker daemon, systemd.
"""
from __future__ import annotations

import json
import re

from conftest import daemon_json, daemon_pid, sha256


def test_daemon_json_keeps_every_key_of_the_host(host, brownfield):
    current = daemon_json(host)
    for key, value in brownfield["test_daemon_json"].items():
        assert current[key] == value, key
    # the one key added: live-restore, reloadable, so adding it stopped nothing
    assert set(current) == set(brownfield["test_daemon_json"]) | {"live-restore"}
    assert current["live-restore"] is True


def test_previous_daemon_json_backed_up(host, before):
    backups = [name for name in host.check_output("ls -A /etc/docker").split()
               if re.fullmatch(r"daemon\.json\..+~", name)]
    assert backups, "no backup of daemon.json"
    digests = {host.check_output("sha256sum /etc/docker/%s | cut -d' ' -f1", name) for name in backups}
    assert before["daemon_json"] in digests


def test_daemon_runs_the_merged_settings(host, brownfield):
    info = json.loads(host.check_output("docker info --format '{{json .}}'"))
    assert info["LoggingDriver"] == brownfield["test_daemon_json"]["log-driver"]
    assert [m.rstrip("/") for m in info["RegistryConfig"]["Mirrors"]] == brownfield["test_daemon_json"]["registry-mirrors"]
    assert info["LiveRestoreEnabled"] is True
    assert not host.file("/etc/docker/daemon.json.pending").exists


def test_job_kept_running_and_docker_not_restarted(host, brownfield, before, docker_inspect):
    job = docker_inspect(brownfield["test_job_container"])
    assert job["State"]["Running"] is True
    assert job["State"]["StartedAt"] == before["job_started_at"]
    # the change was applied by a reload: the same daemon process
    assert daemon_pid(host) == before["dockerd_pid"]


def test_engine_kept_and_nothing_extra_installed(host):
    assert host.package("docker.io").is_installed
    for package in ("docker-ce", "docker-ce-cli", "containerd.io", "docker-compose", "python3-docker"):
        assert not host.package(package).is_installed, package
    # nothing of Docker's repository: the adopted engine comes from Debian
    assert not host.file("/etc/apt/sources.list.d/docker.sources").exists
    assert not host.file("/etc/apt/keyrings/docker.asc").exists


def test_runner_adopted_as_the_same_runner_manager(host, settings, before, config_toml, runtime, fake_gitlab):
    config_dir = host.file(settings["gitlab_runner_config_dir"])
    assert config_dir.mode == 0o700
    assert host.file(settings["gitlab_runner_config_dir"] + "/.runner_system_id").content_string == before["system_id"] + "\n"
    runners = config_toml["runners"]
    assert [r["name"] for r in runners] == [host.check_output("hostname")]
    assert sha256(runners[0]["token"]) == sha256(runtime["test_runner_token"])  # digests: a failure prints no token
    # the runner registered before is the one GitLab knows: nothing was created
    assert [r["id"] for r in fake_gitlab.state()["runners"]] == [runners[0]["id"]]
    assert host.docker(settings["gitlab_runner_container_name"]).is_running


def test_check_mode_before_converge(before, check_output, runtime, settings):
    assert before["check_rc"] == 0, check_output[-3000:]
    recap = re.findall(r"^\S+\s+: ok=\d+\s+changed=\d+\s+unreachable=0\s+failed=(\d+)", check_output, re.MULTILINE)
    assert recap == ["0"], check_output[-3000:]
    # it changed nothing
    assert before["daemon_json_after_check"] == before["daemon_json"]
    assert before["config_toml_after_check"] == before["config_toml"]
    # it reached the config.toml reconciliation although the directory's mode changes, and showed the diff
    config_file = settings["gitlab_runner_config_dir"] + "/config.toml"
    assert "+++ after: " + config_file in check_output
    # the job defaults the register form lacks are added
    assert re.search(r'^\+\s*environment = \["DOCKER_BUILDKIT=1"\]$', check_output, re.MULTILINE), check_output[-3000:]
    # and the daemon.json merge, with what would happen to the daemon
    assert "+++ after: /etc/docker/daemon.json" in check_output
    assert re.search(r'^\+\s+"live-restore": true', check_output, re.MULTILINE)
    assert "Check mode: Docker would reload (SIGHUP) to apply live-restore; no container is stopped." in check_output
    # the container task did not fail for want of the requests library a real run installs
    assert "requests library" in check_output
    token_shown = runtime["test_runner_token"] in check_output
    assert not token_shown, "the runner token appears in the check-mode output"
