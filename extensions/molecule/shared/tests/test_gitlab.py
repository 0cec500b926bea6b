# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""What the fake GitLab holds and who called it: the runners exist server-side and the runner container uses them."""
from __future__ import annotations

from conftest import sha256


def test_gitlab_holds_exactly_the_declared_runners(fake_gitlab, config_toml, declared_names):
    server = fake_gitlab.state()["runners"]
    local = {r["name"]: r for r in config_toml["runners"]}
    assert len(server) == len(declared_names)
    by_id = {r["id"]: r for r in server}
    for name in declared_names:
        runner = by_id[local[name]["id"]]
        # the token in config.toml is the one GitLab knows for that runner
        assert runner["token_sha256"] == sha256(local[name]["token"])


def test_each_runner_contacted_with_its_own_token_from_the_runner_container(host, fake_gitlab, config_toml, settings):
    system_id = host.file(settings["gitlab_runner_config_dir"] + "/.runner_system_id").content_string.strip()
    double_version = settings["gitlab_runner_image_tag"].lstrip("v")
    calls = [r for r in fake_gitlab.requests() if r["path"] == "/api/v4/runners/verify" and r["status"] == 200]
    server = {r["token_sha256"]: r for r in fake_gitlab.state()["runners"]}
    for runner in config_toml["runners"]:
        digest = sha256(runner["token"])
        # The runner process reports itself in `info` (the module sends none): the call came from the container.
        from_runner = [c for c in calls if c["credential"] == {"kind": "runner_token", "sha256": digest}
                       and (c.get("params") or {}).get("info", {}).get("name") == "gitlab-runner"]
        assert from_runner, f"no verify call of runner {runner['name']} from the runner container"
        assert {c["params"]["system_id"] for c in from_runner} == {system_id}
        managers = {m["system_id"]: m for m in server[digest]["managers"]}
        assert managers[system_id]["contacted_at"]
        assert managers[system_id]["version"] == double_version
        assert server[digest]["status"] == "online"
