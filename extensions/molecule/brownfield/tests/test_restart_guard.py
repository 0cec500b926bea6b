# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""A daemon.json change that needs a restart while a job runs: held back and said, every run, until allowed.

`experimental` is not among the keys dockerd reloads, and `docker info` shows whether the daemon applied it. The
scenario's own state is restored at the end (the key removed, with a restart allowed).
"""
from __future__ import annotations

import json

import pytest

from conftest import SCENARIO_DIR, daemon_json, daemon_pid, run_playbook

CONVERGE = SCENARIO_DIR / "converge.yml"
PENDING = "/etc/docker/daemon.json.pending"
CHANGE = {"docker_daemon_config": {"experimental": True}}


def experimental(host) -> bool:
    return host.check_output("docker info --format '{{.ExperimentalBuild}}'") == "true"


@pytest.fixture(scope="module")
def restore():
    yield
    run_playbook(CONVERGE, {"docker_daemon_config_remove": ["experimental"], "docker_daemon_restart": "always"})


def test_restart_held_back_while_a_job_runs(host, brownfield, docker_inspect, restore):
    job = brownfield["test_job_container"]
    pid = daemon_pid(host)
    started = docker_inspect(job)["State"]["StartedAt"]

    for attempt in (1, 2):
        output = run_playbook(CONVERGE, CHANGE)
        # said on every run, naming the key and the container that holds it back
        assert "Docker is NOT restarted: experimental" in output, (attempt, output[-3000:])
        assert "these containers are running: " + job in output
        assert daemon_pid(host) == pid
        assert docker_inspect(job)["State"]["StartedAt"] == started
        assert daemon_json(host)["experimental"] is True
        assert not experimental(host)
        assert json.loads(host.file(PENDING).content_string) == {"reload": [], "restart": ["experimental"]}


def test_restart_when_allowed(host, brownfield, docker_inspect, restore):
    job = brownfield["test_job_container"]
    pid = daemon_pid(host)
    started = docker_inspect(job)["State"]["StartedAt"]

    output = run_playbook(CONVERGE, dict(CHANGE, docker_daemon_restart="always"))

    said = [line for line in output.splitlines() if "Docker restarted to apply experimental. Running containers: " in line]
    assert said and job in said[0] and "live-restore keeps them running" in said[0], output[-3000:]
    assert daemon_pid(host) != pid
    assert experimental(host)
    assert not host.file(PENDING).exists
    # live-restore, which the first converge added, kept the job running through the restart
    assert docker_inspect(job)["State"]["StartedAt"] == started
    assert docker_inspect(job)["State"]["Running"] is True
