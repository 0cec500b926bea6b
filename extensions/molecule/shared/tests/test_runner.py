# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Role dood.gitlab_runner.runner: the container and the files it reads."""
from __future__ import annotations

import re

from conftest import proxy_env


def test_runner_container_spec(settings, runtime, docker_inspect):
    container = docker_inspect(settings["gitlab_runner_container_name"])
    assert container["State"]["Running"] is True
    assert container["State"]["Restarting"] is False
    assert container["Config"]["Image"] == f"{settings['gitlab_runner_image']}:{settings['gitlab_runner_image_tag']}"
    assert container["HostConfig"]["RestartPolicy"]["Name"] == "unless-stopped"
    assert container["Config"]["StopSignal"] == "SIGQUIT"
    assert container["Config"]["StopTimeout"] == settings["gitlab_runner_container_stop_timeout"]
    mounts = {m["Destination"]: m for m in container["Mounts"]}
    assert mounts["/etc/gitlab-runner"]["Source"] == settings["gitlab_runner_config_dir"]
    assert mounts["/etc/gitlab-runner"]["RW"] is True
    assert mounts["/var/run/docker.sock"]["Source"] == settings["gitlab_runner_docker_socket"]
    assert container["HostConfig"]["LogConfig"]["Type"] == settings["gitlab_runner_container_log_driver"]
    for key, value in settings["gitlab_runner_container_labels"].items():
        assert container["Config"]["Labels"][key] == value
    env = dict(item.split("=", 1) for item in container["Config"]["Env"])
    for key, value in settings["gitlab_runner_container_env"].items():
        assert env[key] == value
    assert {key: value for key, value in env.items() if key.lower().endswith("_proxy")} == proxy_env(settings, runtime)


def test_config_dir_and_files(host, settings):
    config_dir = host.file(settings["gitlab_runner_config_dir"])
    assert config_dir.is_directory
    assert config_dir.mode == 0o700
    config = host.file(settings["gitlab_runner_config_dir"] + "/config.toml")
    assert config.user == "root"
    assert config.mode == 0o600
    system_id = host.file(settings["gitlab_runner_config_dir"] + "/.runner_system_id")
    assert re.fullmatch(r"[rs]_[0-9a-zA-Z]{12}", system_id.content_string.strip())


def test_config_toml_content(config_toml, settings, declared_names, runtime):
    socket_volume = settings["gitlab_runner_docker_socket"] + ":/var/run/docker.sock"
    proxy = [f"{key}={value}" for key, value in proxy_env(settings, runtime).items()]
    defaults = settings["gitlab_runner_global_defaults"]
    assert config_toml["concurrent"] == (settings["gitlab_runner_concurrent"] or defaults["concurrent"])
    assert config_toml["log_level"] == (settings["gitlab_runner_log_level"] or defaults["log_level"])
    if settings["gitlab_runner_listen_address"]:
        assert config_toml["listen_address"] == settings["gitlab_runner_listen_address"]
    else:
        assert "listen_address" not in config_toml
    runners = {r["name"]: r for r in config_toml["runners"]}
    assert sorted(runners) == sorted(declared_names)
    declared = {r["name"]: r for r in settings.get("gitlab_runner_runners") or []}
    for name, runner in runners.items():
        assert runner["url"].rstrip("/") == runtime["test_fake_gitlab_url"].rstrip("/")
        assert runner["token"] and runner["id"] > 0
        own = declared.get(name, {})
        assert runner["executor"] == own.get("executor", "docker")
        # the proxy is appended to every runner's environment (its own entries first)
        assert runner["environment"] == own.get("environment", ["DOCKER_BUILDKIT=1"]) + proxy
        docker = runner["docker"]
        assert docker["volumes"] == own.get("docker", {}).get("volumes", [socket_volume, "/cache"])
        assert socket_volume in docker["volumes"]
        # gitlab-runner saves a string-or-array key as an array when it re-saves the file (after a token rotation)
        assert docker["pull_policy"] in ("if-not-present", ["if-not-present"])
        assert docker["privileged"] is False
        if "image" in own.get("docker", {}):
            assert docker["image"] == own["docker"]["image"]
        else:
            assert docker["image"] == settings["gitlab_runner_job_image"]
        if "limit" in own:
            assert runner["limit"] == own["limit"]


def test_selfcheck_image_not_left_behind(host, settings):
    names = host.check_output("docker ps -a --format '{{.Names}}'").split()
    assert settings["gitlab_runner_container_name"] + "-selfcheck" not in names
