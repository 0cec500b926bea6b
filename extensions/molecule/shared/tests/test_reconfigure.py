# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Re-running the role with changed settings: what restarts and what does not.

A config.toml change (a runner's limit) must reach the running container without restarting it (gitlab-runner
reloads the file itself); an image change must re-create the container, and `.runner_system_id` must survive
that, so GitLab keeps seeing one runner manager. The scenario's own settings are restored afterwards, so the
molecule check step that follows still finds nothing to change.
"""
from __future__ import annotations

import time
import tomllib
from pathlib import Path

import pytest

from conftest import run_playbook, sha256

NEW_LIMIT = 7
PLAYBOOK = Path(__file__).resolve().parents[1] / "reconfigure.yml"


def converge(extra_vars: dict) -> str:
    return run_playbook(PLAYBOOK, extra_vars)


def wait_for(predicate, timeout=20.0, interval=1.0):
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value or time.monotonic() > deadline:
            return value
        time.sleep(interval)


@pytest.fixture(scope="module")
def restore():
    yield
    converge({})


def test_limit_change_reloads_without_restart(host, settings, docker_inspect, restore):
    name = settings["gitlab_runner_container_name"]
    config_path = settings["gitlab_runner_config_dir"] + "/config.toml"
    before = docker_inspect(name)
    loads_before = host.check_output("docker logs %s 2>&1", name).count("Configuration loaded")
    defaults = dict(settings["gitlab_runner_runner_defaults"], limit=NEW_LIMIT)

    converge({"gitlab_runner_runner_defaults": defaults, "gitlab_runner_selfcheck": False})

    after = docker_inspect(name)
    assert after["Id"] == before["Id"]
    assert after["State"]["StartedAt"] == before["State"]["StartedAt"]
    own_limits = {r["name"]: r["limit"] for r in settings.get("gitlab_runner_runners") or [] if "limit" in r}
    runners = tomllib.loads(host.file(config_path).content_string)["runners"]
    for runner in runners:
        assert runner["limit"] == own_limits.get(runner["name"], NEW_LIMIT)
    # the running process picked the new file up by itself
    assert wait_for(lambda: host.check_output("docker logs %s 2>&1", name).count("Configuration loaded") > loads_before)


def test_image_change_recreates_and_keeps_system_id(host, settings, docker_inspect, fake_gitlab, restore):
    name = settings["gitlab_runner_container_name"]
    id_path = settings["gitlab_runner_config_dir"] + "/.runner_system_id"
    config_path = settings["gitlab_runner_config_dir"] + "/config.toml"
    before = docker_inspect(name)
    system_id = host.file(id_path).content_string.strip()
    seen_before = len(fake_gitlab.requests())

    converge({"gitlab_runner_image_tag": "v2", "gitlab_runner_selfcheck": False})

    after = docker_inspect(name)
    assert after["Id"] != before["Id"]
    assert after["Config"]["Image"] == f"{settings['gitlab_runner_image']}:v2"
    assert after["State"]["Running"] is True
    assert host.file(id_path).content_string.strip() == system_id

    # the new container contacts GitLab as the same runner manager, with every runner's own token
    tokens = {sha256(r["token"]) for r in tomllib.loads(host.file(config_path).content_string)["runners"]}

    def new_calls():
        calls = [c for c in fake_gitlab.requests()[seen_before:] if c["path"] == "/api/v4/runners/verify"
                 and (c.get("params") or {}).get("info", {}).get("version") == "2"]
        return calls if {c["credential"]["sha256"] for c in calls} == tokens else None

    calls = wait_for(new_calls)
    assert calls, "the re-created container did not contact GitLab with every runner token"
    assert {c["params"]["system_id"] for c in calls} == {system_id}
    for runner in fake_gitlab.state()["runners"]:
        assert [m["system_id"] for m in runner["managers"]] == [system_id]
