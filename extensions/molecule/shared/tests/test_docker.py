# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Role dood.gitlab_runner.docker: the engine, its config and the prune timer."""
from __future__ import annotations

import json


def test_docker_service_active_and_enabled(host):
    service = host.service("docker")
    assert service.is_running
    assert service.is_enabled


def test_daemon_json_merged(host, settings):
    # A fresh host has no daemon.json: the defaults, then the declared keys, plus live-restore (no swarm here).
    daemon_json = host.file("/etc/docker/daemon.json")
    assert daemon_json.user == "root"
    assert daemon_json.mode == 0o644
    expected = dict(settings["docker_daemon_config_defaults"])
    declared = dict(settings["docker_daemon_config"])
    for key, value in settings["docker_daemon_config_extra"].items():
        if isinstance(value, dict) and isinstance(declared.get(key), dict):
            declared[key] = {**declared[key], **value}
        else:
            declared[key] = value
    expected.update(declared)
    if settings["docker_live_restore"]:
        expected.setdefault("live-restore", True)
    assert json.loads(daemon_json.content_string) == expected
    assert not host.file("/etc/docker/daemon.json.pending").exists


def test_daemon_applies_daemon_json(host, settings):
    info = json.loads(host.check_output("docker info --format '{{json .}}'"))
    assert info["LoggingDriver"] == settings["docker_daemon_config_defaults"]["log-driver"]
    assert info["LiveRestoreEnabled"] is settings["docker_live_restore"]


def test_no_compose_v1(host):
    # Debian 12's docker-compose package is Compose v1 (Python); the role installs Compose v2 or nothing
    assert not host.package("python3-docker").is_installed


def test_prune_timer(host, settings):
    timer = host.file("/etc/systemd/system/docker-prune.timer")
    service = host.file("/etc/systemd/system/docker-prune.service")
    if not settings["docker_prune_enabled"]:
        assert not timer.exists
        assert not service.exists
        return
    assert host.service("docker-prune.timer").is_enabled
    assert host.service("docker-prune.timer").is_running
    assert f"OnCalendar={settings['docker_prune_schedule']}" in timer.content_string
    exec_start = host.check_output("systemctl show -p ExecStart --value docker-prune.service")
    assert "system prune --force" in exec_start
    for prune_filter in settings["docker_prune_filters"]:
        assert prune_filter in exec_start
    assert ("--volumes" in exec_start) is settings["docker_prune_volumes"]
    assert ("--all" in exec_start) is settings["docker_prune_all_images"]
    # systemd accepts the schedule: the timer has a next elapse time
    assert host.check_output("systemctl show -p NextElapseUSecRealtime --value docker-prune.timer")


def as_bool(value) -> bool:
    """A role boolean as a user may give it: true/false, or the strings `-e var=false` passes."""
    return value if isinstance(value, bool) else str(value).lower() in ("true", "yes", "on", "1")


def test_plugins_follow_string_booleans(host, settings):
    # Debian's compose package for docker_install_source: distro (the scenarios' source), which is Compose v2 from
    # Debian 13 on; Debian 12's is Compose v1, which the role never installs
    compose_v2 = int(host.system_info.release.split(".")[0]) >= 13
    expected = as_bool(settings["docker_install_compose_plugin"]) and compose_v2
    assert host.package("docker-compose").is_installed is expected


def test_daemon_listens_where_the_socket_setting_says(host, settings):
    assert host.file(settings["docker_socket"]).is_socket
    if settings["docker_socket"] != "/var/run/docker.sock":
        # nothing could have used the default path by mistake
        assert not host.file("/var/run/docker.sock").exists


def test_daemon_proxy(host, settings, runtime):
    dropin = host.file("/etc/systemd/system/docker.service.d/zz-dood-proxy.conf")
    info = json.loads(host.check_output("docker info --format '{{json .}}'"))
    if not settings["docker_http_proxy"]:
        assert not dropin.exists
        assert not info.get("HttpProxy") and not info.get("HttpsProxy")
        return
    assert dropin.mode == 0o600
    assert info["HttpProxy"] == runtime["test_proxy_url"]
    assert info["HttpsProxy"] == runtime["test_proxy_url"]
    assert info["NoProxy"] == ",".join(settings["docker_no_proxy"])


def test_registry_ca(host, settings, runtime):
    registries = settings["docker_registry_ca_certificates"]
    for registry in registries:
        ca = host.file(f"/etc/docker/certs.d/{registry}/ca.crt")
        assert ca.mode == 0o644
        assert ca.content_string.strip() == runtime["test_registry_ca"].strip()
    if not registries:
        assert not host.file("/etc/docker/certs.d").exists
