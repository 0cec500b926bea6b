# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Asking for Docker's own packages on a host that runs docker.io, while a job runs, and a stale repository file.

The switch removes docker.io, which stops the daemon: like a restart, it waits while the job runs, and says so.
A definition of Docker's repository left by an earlier setup is reported, and stays while the role writes no
repository definition of its own. No package manager runs, so nothing leaves the test network.
"""
from __future__ import annotations

import pytest

from conftest import SCENARIO_DIR, daemon_pid, run_playbook

STALE = "/etc/apt/sources.list.d/docker.list"


@pytest.fixture()
def stale_repository(host):
    line = "deb [signed-by=/usr/share/keyrings/docker-archive-keyring.gpg] https://download.docker.com/linux/debian bookworm stable"
    host.run("echo %s > %s", line, STALE)
    yield
    host.run("rm -f %s", STALE)


def test_switch_waits_for_the_job_and_stale_file_is_reported(host, brownfield, docker_inspect, stale_repository):
    job = brownfield["test_job_container"]
    pid = daemon_pid(host)
    started = docker_inspect(job)["State"]["StartedAt"]

    output = run_playbook(SCENARIO_DIR / "converge.yml", {"docker_switch_source": True})

    assert "NOT changing Docker Engine now (switch to docker)" in output, output[-3000:]
    assert "these containers are running: " + job in output
    assert host.package("docker.io").is_installed
    assert not host.package("docker-ce").is_installed
    assert daemon_pid(host) == pid
    assert docker_inspect(job)["State"]["StartedAt"] == started
    assert STALE + " also defines a repository on download.docker.com" in output
    # the role writes no repository definition of its own while the switch waits, so the old one stays
    assert host.file(STALE).exists
    assert not host.file("/etc/apt/sources.list.d/docker.sources").exists
