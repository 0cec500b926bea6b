# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The Docker-out-of-Docker path: a job-like container with the socket mounted drives the host daemon."""
from __future__ import annotations

import pytest


def test_container_with_socket_lists_host_containers(host, settings):
    listed = host.check_output(
        "docker run --rm --network none -v %s:/var/run/docker.sock %s "
        "docker ps --format '{{.Names}}'", settings["gitlab_runner_docker_socket"], settings["gitlab_runner_selfcheck_image"])
    assert settings["gitlab_runner_container_name"] in listed.split()


def test_runner_container_mounts_the_host_socket(host, settings):
    # the socket inside the runner container is the host daemon's socket
    inner = host.check_output("docker exec %s stat -c %%i /var/run/docker.sock", settings["gitlab_runner_container_name"])
    outer = host.check_output("stat -c %%i %s", settings["gitlab_runner_docker_socket"])
    assert inner == outer


def test_metrics_endpoint(host, settings):
    if not settings["gitlab_runner_listen_address"]:
        pytest.skip("metrics are off in this scenario")
    published = settings["gitlab_runner_container_published_ports"][0].rsplit(":", 1)[0]
    body = host.check_output("curl -fsS http://%s/metrics", published)
    assert "gitlab_runner_version_info" in body
    assert f"gitlab_runner_configured_runners {len(settings['gitlab_runner_runners'])}" in body
