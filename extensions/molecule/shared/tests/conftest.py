# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Shared fixtures of the molecule verify step (testinfra).

Expectations come from the roles' defaults overlaid with the scenario's vars.yml (the same files converge
reads); run-time values (fake GitLab URL, generated tokens) from runtime.yml in the ephemeral directory.
Every check asks an independent oracle: the host's systemd and Docker daemon, the files on disk, the fake
GitLab's own record of what it holds and of who called it.
"""
from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tomllib
import urllib.request
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[4]
SCENARIO_DIR = Path(os.environ["MOLECULE_SCENARIO_DIRECTORY"])
EPHEMERAL_DIR = Path(os.environ["MOLECULE_EPHEMERAL_DIRECTORY"])


def _load(path: Path) -> dict:
    with path.open(encoding="utf-8") as handle:
        return yaml.safe_load(handle) or {}


def sha256(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()


def run_playbook(playbook: Path, extra_vars: dict | None = None, check: bool = False) -> str:
    """Run a playbook against the scenario's inventory (extra vars hold no secret); return its output."""
    binary = shutil.which("ansible-playbook", path=str(Path(sys.executable).parent)) or "ansible-playbook"
    command = [binary, "-i", os.environ["MOLECULE_INVENTORY_FILE"], str(playbook)]
    if extra_vars is not None:
        extra_file = EPHEMERAL_DIR / "verify-extra-vars.json"
        extra_file.write_text(json.dumps(extra_vars), encoding="utf-8")
        command += ["-e", f"@{extra_file}"]
    if check:
        command.append("--check")
    result = subprocess.run(command, capture_output=True, text=True, check=False, env=os.environ.copy(), timeout=900)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-2000:]
    return result.stdout


@pytest.fixture(scope="session")
def settings() -> dict:
    """Role defaults + scenario vars (literal values only are meaningful as expectations)."""
    merged = {}
    merged.update(_load(ROOT / "roles" / "docker" / "defaults" / "main.yml"))
    merged.update(_load(ROOT / "roles" / "runner" / "defaults" / "main.yml"))
    merged.update(_load(SCENARIO_DIR / "vars.yml"))
    return _resolve(merged, merged)


def _resolve(value, variables):
    """Replace "{{ name }}" by that setting: a whole value keeps the setting's type (the defaults chain job image ->
    self-check image), a reference inside a string is replaced by its text (socket -> job volumes)."""
    if isinstance(value, dict):
        return {key: _resolve(item, variables) for key, item in value.items()}
    if isinstance(value, list):
        return [_resolve(item, variables) for item in value]
    if not isinstance(value, str):
        return value
    match = re.fullmatch(r"\{\{\s*(\w+)\s*\}\}", value)
    if match and match.group(1) in variables:
        return _resolve(variables[match.group(1)], variables)
    return re.sub(r"\{\{\s*(\w+)\s*\}\}",
                  lambda m: str(_resolve(variables[m.group(1)], variables)) if m.group(1) in variables else m.group(0), value)


def proxy_env(settings: dict, runtime: dict) -> dict:
    """The proxy variables the runner container and the jobs must carry, both spellings (empty without a proxy)."""
    if not settings.get("docker_http_proxy"):
        return {}
    url = runtime["test_proxy_url"]
    no_proxy = ",".join(settings["docker_no_proxy"])
    return {"HTTP_PROXY": url, "http_proxy": url, "HTTPS_PROXY": url, "https_proxy": url,
            "NO_PROXY": no_proxy, "no_proxy": no_proxy}


@pytest.fixture(scope="session")
def runtime() -> dict:
    return _load(EPHEMERAL_DIR / "runtime.yml")


@pytest.fixture(scope="session")
def fake_gitlab(runtime):
    base = runtime["test_fake_gitlab_url"].rstrip("/")

    class Fake:
        url = base

        @staticmethod
        def get(path: str):
            with urllib.request.urlopen(base + path, timeout=10) as response:
                return json.load(response)

        def state(self) -> dict:
            return self.get("/-/fake/state")

        def requests(self) -> list:
            return self.get("/-/fake/requests")

    return Fake()


@pytest.fixture()
def docker_inspect(host):
    def inspect(name: str) -> dict:
        return json.loads(host.check_output("docker inspect %s", name))[0]
    return inspect


@pytest.fixture()
def config_toml(host, settings) -> dict:
    content = host.file(settings["gitlab_runner_config_dir"] + "/config.toml").content_string
    return tomllib.loads(content)


@pytest.fixture()
def declared_names(host, settings) -> list:
    if settings.get("gitlab_runner_runners"):
        return [r["name"] for r in settings["gitlab_runner_runners"] if r.get("state", "present") == "present"]
    # one-line form: one runner named after the host (inventory name = container hostname here)
    return [host.check_output("hostname")]
