# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Fixtures of the brownfield verify step: the shared ones, plus what prepare recorded before the collection ran."""
from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import pytest
import yaml

SHARED = Path(__file__).resolve().parents[2] / "shared" / "tests" / "conftest.py"
_SPEC = importlib.util.spec_from_file_location("shared_conftest", SHARED)
shared = importlib.util.module_from_spec(_SPEC)
sys.modules["shared_conftest"] = shared
_SPEC.loader.exec_module(shared)

# The shared fixtures, under the names the tests ask for.
settings = shared.settings
runtime = shared.runtime
fake_gitlab = shared.fake_gitlab
docker_inspect = shared.docker_inspect
config_toml = shared.config_toml
run_playbook = shared.run_playbook
sha256 = shared.sha256
EPHEMERAL_DIR = shared.EPHEMERAL_DIR
SCENARIO_DIR = shared.SCENARIO_DIR
ROOT = shared.ROOT


@pytest.fixture(scope="session")
def brownfield() -> dict:
    """What prepare.yml put on the host (brownfield.yml)."""
    with (SCENARIO_DIR / "brownfield.yml").open(encoding="utf-8") as handle:
        return yaml.safe_load(handle)


@pytest.fixture(scope="session")
def before() -> dict:
    """The host as prepare recorded it before the collection ran, and the check-mode run's exit status."""
    return json.loads((EPHEMERAL_DIR / "brownfield-before.json").read_text(encoding="utf-8"))


@pytest.fixture(scope="session")
def check_output() -> str:
    return (EPHEMERAL_DIR / "check-before-converge.log").read_text(encoding="utf-8")


def daemon_pid(host) -> str:
    return host.check_output("systemctl show -p MainPID --value docker")


def daemon_json(host) -> dict:
    return json.loads(host.file("/etc/docker/daemon.json").content_string)
