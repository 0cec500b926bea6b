# Copyright: Contributors to the dood.gitlab_runner collection
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Test harness: run the fake GitLab as a subprocess and drive its control API.

    from fake_gitlab.harness import FakeGitLabProcess     # with tools/ on sys.path

    with FakeGitLabProcess() as gitlab:
        admin = gitlab.new_user(admin=True)
        group_id = gitlab.new_group(admin)
        ...

Every secret this module creates comes from ``secrets`` at run time.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import shutil
import ssl
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from urllib.parse import urlencode

SERVER = os.path.join(os.path.dirname(os.path.abspath(__file__)), "server.py")


def new_pat():
    return "glpat-" + secrets.token_urlsafe(20)


def new_registration_token():
    return "GR1348941" + secrets.token_urlsafe(15)[:20]


class FakeGitLabProcess:
    """Start ``server.py`` on a free loopback port; usable as a context manager."""

    def __init__(self, tls_cert=None, tls_key=None, python=None, seed=None, quiet=True, start_timeout=15.0, tls_ca=None):
        self.tls_cert = tls_cert
        self.tls_key = tls_key
        # The CA that signed tls_cert, when it is not self-signed (a leaf is no trust anchor for OpenSSL).
        self.tls_ca = tls_ca
        self.python = python or os.environ.get("FAKE_GITLAB_PYTHON") or sys.executable
        self.initial_seed = seed
        self.quiet = quiet
        self.start_timeout = start_timeout
        self.proc = None
        self.port = None
        self.url = None
        self.user_ids = {}
        self._tmpdir = None
        self._ssl_context = None
        self._log = None

    # -- lifecycle ---------------------------------------------------------
    def start(self):
        self._tmpdir = tempfile.mkdtemp(prefix="fake-gitlab-")
        port_file = os.path.join(self._tmpdir, "port")
        # --parent-pid: a test process that ends without running stop() (ansible-test runs each unit test in a forked
        # child, which never reaches a module fixture's teardown) takes its server with it.
        cmd = [self.python, SERVER, "--host", "127.0.0.1", "--port", "0", "--port-file", port_file,
               "--parent-pid", str(os.getpid())]
        if self.quiet:
            cmd.append("--quiet")
        if self.tls_cert:
            cmd += ["--tls-cert", self.tls_cert, "--tls-key", self.tls_key]
            self._ssl_context = ssl.create_default_context(cafile=self.tls_ca or self.tls_cert)
        if self.initial_seed is not None:
            seed_file = os.path.join(self._tmpdir, "seed.json")
            with open(seed_file, "w", encoding="utf-8") as handle:
                json.dump(self.initial_seed, handle)
            os.chmod(seed_file, 0o600)
            cmd += ["--seed", seed_file]
        self._log = open(os.path.join(self._tmpdir, "server.log"), "wb")  # pylint: disable=consider-using-with
        self.proc = subprocess.Popen(cmd, stdout=self._log, stderr=subprocess.STDOUT)  # pylint: disable=consider-using-with
        deadline = time.time() + self.start_timeout
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError("fake GitLab exited with %s: %s" % (self.proc.returncode, self.server_log()))
            if os.path.exists(port_file):
                with open(port_file, encoding="utf-8") as handle:
                    self.port = int(handle.read().strip())
                break
            time.sleep(0.02)
        else:
            self.stop()
            raise RuntimeError("fake GitLab did not start in time")
        scheme = "https" if self.tls_cert else "http"
        host = "localhost" if self.tls_cert else "127.0.0.1"
        self.url = "%s://%s:%d" % (scheme, host, self.port)
        self.control("GET", "/health")
        return self

    def stop(self):
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=5)
        if self._log is not None:
            self._log.close()
            self._log = None
        if self._tmpdir:
            shutil.rmtree(self._tmpdir, ignore_errors=True)
            self._tmpdir = None

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()

    def server_log(self):
        path = os.path.join(self._tmpdir or "", "server.log")
        if self._tmpdir and os.path.exists(path):
            with open(path, encoding="utf-8", errors="replace") as handle:
                return handle.read()
        return ""

    # -- HTTP --------------------------------------------------------------
    def request(self, method, path, body=None, headers=None, form=False, timeout=10):
        """Raw HTTP call against the server.  Returns (status, headers, parsed body or text)."""
        data = None
        headers = dict(headers or {})
        if body is not None:
            if form:
                data = urlencode(body, doseq=True).encode()
                headers.setdefault("Content-Type", "application/x-www-form-urlencoded")
            else:
                data = json.dumps(body).encode()
                headers.setdefault("Content-Type", "application/json")
        req = urllib.request.Request(self.url + path, data=data, method=method, headers=headers)
        try:
            with urllib.request.urlopen(req, timeout=timeout, context=self._ssl_context) as resp:
                status, resp_headers, raw = resp.status, resp.headers, resp.read()
        except urllib.error.HTTPError as err:
            status, resp_headers, raw = err.code, err.headers, err.read()
        text = raw.decode("utf-8", "replace")
        try:
            parsed = json.loads(text) if text else None
        except ValueError:
            parsed = text
        return status, resp_headers, parsed

    def api(self, method, path, token=None, body=None, form=False, headers=None):
        headers = dict(headers or {})
        if token is not None:
            headers["PRIVATE-TOKEN"] = token
        return self.request(method, "/api/v4" + path, body=body, headers=headers, form=form)

    def control(self, method, path, body=None):
        status, _headers, parsed = self.request(method, "/-/fake" + path, body=body)
        if status >= 300:
            raise RuntimeError("control %s %s failed with %s: %s" % (method, path, status, parsed))
        return parsed

    # -- control API -------------------------------------------------------
    def seed(self, data=None, **kwargs):
        payload = dict(data or {})
        payload.update(kwargs)
        return self.control("POST", "/seed", payload)

    def settings(self, **values):
        return self.control("POST", "/settings", values)

    def state(self):
        return self.control("GET", "/state")

    def requests(self, since=0):
        return self.control("GET", "/requests?since=%d" % since)

    def clear_requests(self):
        self.control("DELETE", "/requests")

    def add_fault(self, path=".*", method="*", kind="status", **options):
        spec = dict(options, path=path, method=method, kind=kind)
        return self.control("POST", "/faults", spec)[0]

    def faults(self):
        return self.control("GET", "/faults")

    def clear_faults(self):
        self.control("DELETE", "/faults")

    def reset(self):
        self.user_ids = {}
        self.control("POST", "/reset")

    def expire_runner_token(self, runner_id):
        return self.control("POST", "/runners/%d/expire" % runner_id)

    def set_runner_times(self, runner_id, **values):
        return self.control("POST", "/runners/%d/times" % runner_id, values)

    # -- helpers -----------------------------------------------------------
    def new_user(self, admin=False, scopes=("api",), expired=False, username=None):
        """Create a user with one personal access token; return the token."""
        token = new_pat()
        user = {"admin": admin, "tokens": [{"token": token, "scopes": list(scopes), "expired": expired}]}
        if username:
            user["username"] = username
        uid = self.seed(users=[user])["users"][0]
        self.user_ids[token] = uid
        return token

    def add_token(self, user_token, scopes=("api",), expired=False):
        """Another personal access token for the user owning ``user_token``."""
        token = new_pat()
        uid = self.user_ids[user_token]
        self.seed(users=[{"id": uid, "username": self._username(uid), "tokens": [{"token": token, "scopes": list(scopes), "expired": expired}],
                          "admin": self._is_admin(uid)}])
        self.user_ids[token] = uid
        return token

    def _username(self, uid):
        return next(u["username"] for u in self.state()["users"] if u["id"] == uid)

    def _is_admin(self, uid):
        return next(u["admin"] for u in self.state()["users"] if u["id"] == uid)

    def new_group(self, owner_token=None, parent_id=None, name=None, members=None, **extra):
        """Create a group; ``members`` maps a user token to a role.  Returns the group id."""
        spec = dict(extra)
        member_list = [{"token": owner_token, "role": "owner"}] if owner_token else []
        for token, role in (members or {}).items():
            member_list.append({"token": token, "role": role})
        spec["members"] = member_list
        if parent_id is not None:
            spec["parent_id"] = parent_id
        spec["name"] = name or "group-" + secrets.token_hex(4)
        return self.seed(groups=[spec])["groups"][0]

    def new_project(self, owner_token=None, group_id=None, name=None, members=None, **extra):
        """Create a project in ``group_id`` (or in the owner's user namespace).  Returns the project id."""
        spec = dict(extra)
        member_list = []
        if owner_token:
            if group_id is None:
                spec["owner"] = {"token": owner_token}
            else:
                member_list.append({"token": owner_token, "role": "owner"})
        for token, role in (members or {}).items():
            member_list.append({"token": token, "role": role})
        spec["members"] = member_list
        if group_id is not None:
            spec["namespace_id"] = group_id
        spec["name"] = name or "project-" + secrets.token_hex(4)
        return self.seed(projects=[spec])["projects"][0]

    def registration_token(self, kind="instance", id=None):  # pylint: disable=redefined-builtin
        """Create a legacy registration token for the instance, a group or a project; return it."""
        token = new_registration_token()
        spec = {"token": token, "kind": kind}
        if id is not None:
            spec["id"] = id
        self.seed(registration_tokens=[spec])
        return token

    def runners(self):
        return self.state()["runners"]

    def runner_by_id(self, runner_id):
        for runner in self.runners():
            if runner["id"] == runner_id:
                return runner
        return None

    def count_requests(self, method=None, path_regex=None):
        count = 0
        for entry in self.requests():
            if method and entry["method"] != method.upper():
                continue
            if path_regex and not re.search(path_regex, entry["path"]):
                continue
            count += 1
        return count
