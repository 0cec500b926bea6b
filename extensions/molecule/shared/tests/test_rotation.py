# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""gitlab-runner rotates a token and re-saves the whole config.toml its own way; the next converge must report no
change and keep the new token (never write back the old one).

The runner double rotates with `gitlab-runner reset-token --all-runners` (the same reset and save its `run` does at
75 % of a token's lifetime) and saves the file as gitlab-runner v18.10.1 does: zero values written, string-or-array
keys as arrays, key order of its structs.
"""
from __future__ import annotations

import re
import tomllib
from pathlib import Path

from conftest import run_playbook, sha256

PLAYBOOK = Path(__file__).resolve().parents[1] / "reconfigure.yml"


def recap_changed(output: str) -> list[int]:
    return [int(n) for n in re.findall(r"changed=(\d+)", output.split("PLAY RECAP")[-1])]


def test_converge_after_gitlab_runner_rotated_a_token_changes_nothing(host, settings, fake_gitlab):
    name = settings["gitlab_runner_container_name"]
    path = settings["gitlab_runner_config_dir"] + "/config.toml"
    before_text = host.file(path).content_string
    before = {r["name"]: r["token"] for r in tomllib.loads(before_text)["runners"]}

    host.check_output("docker exec %s gitlab-runner reset-token --all-runners", name)

    saved_text = host.file(path).content_string
    saved = tomllib.loads(saved_text)
    rotated = {r["name"]: r["token"] for r in saved["runners"]}
    assert set(rotated) == set(before) and all(rotated[n] != before[n] for n in before), "every token was rotated"
    assert saved_text != before_text and "shm_size = 0" in saved_text, "saved the way gitlab-runner saves"

    output = run_playbook(PLAYBOOK, {"gitlab_runner_selfcheck": False})

    assert recap_changed(output) and set(recap_changed(output)) == {0}, output[-2000:]
    assert host.file(path).content_string == saved_text, "config.toml was not rewritten"
    # GitLab knows the rotated tokens and no longer the old ones
    live = {r["token_sha256"] for r in fake_gitlab.state()["runners"]}
    assert {sha256(t) for t in rotated.values()} <= live
    assert not ({sha256(t) for t in before.values()} & live)
