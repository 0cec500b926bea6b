# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The GitLab API token stays on the controller.

The runner role runs with the API-token flow against the molecule host (a connection that is not local) with
ANSIBLE_KEEP_REMOTE_FILES=1, so every module payload Ansible sent stays on the host. Then the host's files (module
payloads included), the arguments and environments of its processes hold no copy of the API token, and every request
the fake GitLab received with that token came from the controller's address, not from the host's.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import EPHEMERAL_DIR, sha256

PLAYBOOK = Path(__file__).resolve().parents[1] / "reconfigure.yml"
# Runs on the host with the token on stdin (never in an argument): where does the token appear?
SCAN = r'''
import os, sys
token = sys.stdin.read().strip().encode()
found = []
for top in ("/root", "/tmp", "/var/tmp", "/etc", "/srv", "/opt", "/home", "/run", "/var/log"):
    for dirpath, dirnames, filenames in os.walk(top):
        for name in filenames:
            path = os.path.join(dirpath, name)
            try:
                if os.path.isfile(path) and os.path.getsize(path) < 50 * 1024 * 1024:
                    with open(path, "rb") as handle:
                        if token in handle.read():
                            found.append(path)
            except OSError:
                pass
for pid in os.listdir("/proc"):
    if pid.isdigit() and int(pid) != os.getpid():
        for part in ("cmdline", "environ"):
            try:
                with open("/proc/%s/%s" % (pid, part), "rb") as handle:
                    if token in handle.read():
                        found.append("/proc/%s/%s" % (pid, part))
            except OSError:
                pass
payloads = []
for dirpath, dirnames, filenames in os.walk("/root/.ansible/tmp"):
    payloads += [name for name in filenames if name.startswith("AnsiballZ_")]
print(__import__("json").dumps({"found": found, "payloads": sorted(set(payloads))}))
'''


def docker(*args: str, stdin: str | None = None) -> str:
    return subprocess.run(["docker", *args], input=stdin, capture_output=True, text=True, check=True, timeout=300).stdout


@pytest.fixture()
def api_token(runtime):
    if not runtime.get("test_api_token"):
        pytest.skip("this scenario has no API token")
    return runtime["test_api_token"]


def test_api_token_never_reaches_the_host(host, settings, runtime, fake_gitlab, api_token):
    instance = host.check_output("hostname")
    host.run("rm -rf /root/.ansible/tmp")
    binary = shutil.which("ansible-playbook", path=str(Path(sys.executable).parent)) or "ansible-playbook"
    env = dict(os.environ, ANSIBLE_KEEP_REMOTE_FILES="1")
    extra = EPHEMERAL_DIR / "verify-extra-vars.json"
    extra.write_text(json.dumps({"gitlab_runner_selfcheck": False}), encoding="utf-8")
    run = subprocess.run([binary, "-i", os.environ["MOLECULE_INVENTORY_FILE"], str(PLAYBOOK), "-e", f"@{extra}"],
                         env=env, capture_output=True, text=True, check=False, timeout=900)
    assert run.returncode == 0, run.stdout[-3000:]

    scan = json.loads(docker("exec", "-i", instance, "python3", "-c", SCAN, stdin=api_token))
    assert scan["found"] == [], "the API token is on the runner host: %s" % scan["found"]
    assert "AnsiballZ_runner_config_host.py" in scan["payloads"], scan["payloads"]
    assert "AnsiballZ_runner_config.py" not in scan["payloads"], "the whole module ran on the host"

    network = "molecule-" + os.environ["MOLECULE_SCENARIO_NAME"]
    host_ip = json.loads(docker("inspect", instance))[0]["NetworkSettings"]["Networks"][network]["IPAddress"]
    gateway = json.loads(docker("network", "inspect", network))[0]["IPAM"]["Config"][0]["Gateway"]
    digest = sha256(api_token)
    peers = {r["peer"] for r in fake_gitlab.requests() if (r.get("credential") or {}).get("sha256") == digest}
    assert peers == {gateway}, "requests with the API token came from %s; the controller is %s, the host %s" % (
        sorted(peers), gateway, host_ip)
    # the runner itself (on the host, directly or through the scenario's proxy) did talk to GitLab, with its own tokens
    assert host_ip not in peers and {r["peer"] for r in fake_gitlab.requests()} - {gateway}
