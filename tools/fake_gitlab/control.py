# Copyright: Contributors to the dood.gitlab_runner collection
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The test-facing control API under ``/-/fake`` (a prefix GitLab never serves API routes on): seed and inspect
the state, read the request log, add and clear faults, age runners, reset everything.  JSON in, JSON out; these
calls are never written to the request log.
"""

from __future__ import annotations

import json
import re
import time
from urllib.parse import quote

from .entities import manager_entity
from .util import iso, parse_time

CONTROL_PREFIX = "/-/fake"


class Control:
    """Answers the control calls of one fake GitLab (``app``: its state, request log and faults)."""

    def __init__(self, app):
        self.app = app
        self.calls = {
            ("GET", "/health"): lambda query, data: (200, {"ok": True}),
            ("POST", "/seed"): lambda query, data: (201, app.state.seed(data)),
            ("POST", "/settings"): self.update_settings,
            ("PUT", "/settings"): self.update_settings,
            ("GET", "/settings"): lambda query, data: (200, dict(app.state.settings)),
            ("GET", "/state"): lambda query, data: (200, self.state_dump()),
            ("GET", "/requests"): lambda query, data: (200, app.requests.since(int(query.get("since", 0)))),
            ("DELETE", "/requests"): self.clear_requests,
            ("POST", "/reset"): self.reset,
            ("POST", "/faults"): self.add_faults,
            ("GET", "/faults"): lambda query, data: (200, app.faults.list()),
            ("DELETE", "/faults"): self.clear_faults,
        }

    def handle(self, method, path, query_pairs, raw):
        """Return (status, body) for a request to ``CONTROL_PREFIX`` + something."""
        sub = path[len(CONTROL_PREFIX):].rstrip("/") or "/"
        try:
            data = json.loads(raw.decode("utf-8")) if raw else {}
        except ValueError:
            return 400, {"error": "control bodies must be JSON"}
        try:
            return self.call(method, sub, dict(query_pairs), data)
        except (ValueError, KeyError, TypeError, re.error) as exc:
            return 400, {"error": "%s: %s" % (type(exc).__name__, exc)}

    def call(self, method, sub, query, data):
        func = self.calls.get((method, sub))
        if func is not None:
            return func(query, data)
        match = re.match(r"^/runners/(\d+)/(expire|times)$", sub)
        if match and method == "POST":
            return self.runner_times(int(match.group(1)), match.group(2), data)
        return 404, {"error": "unknown control endpoint %s %s" % (method, quote(sub))}

    # -- calls -------------------------------------------------------------
    def update_settings(self, _query, data):
        self.app.state.update_settings(data)
        return 200, dict(self.app.state.settings)

    def clear_requests(self, _query, _data):
        self.app.requests.clear()
        return 200, {"ok": True}

    def reset(self, _query, _data):
        self.app.reset()
        return 200, {"ok": True}

    def add_faults(self, _query, data):
        specs = data if isinstance(data, list) else [data]
        return 201, [self.app.faults.add(spec) for spec in specs]

    def clear_faults(self, _query, _data):
        self.app.faults.clear()
        return 200, {"ok": True}

    def runner_times(self, runner_id, what, data):
        """``expire``: the runner's token expiry moves to the past; ``times``: set ``created_at``/``contacted_at``."""
        state = self.app.state
        with state.lock:
            runner = state.runners.get(runner_id)
            if runner is None:
                return 404, {"error": "no such runner"}
            now = time.time()
            if what == "expire":
                runner["token_expires_at"] = now - 1
            else:
                for key in ("created_at", "contacted_at"):
                    if key in data:
                        runner[key] = parse_time(data[key])
                    if key + "_seconds_ago" in data:
                        runner[key] = now - float(data[key + "_seconds_ago"])
            return 200, {"id": runner["id"], "token_expires_at": iso(runner["token_expires_at"]),
                         "created_at": iso(runner["created_at"]), "contacted_at": iso(runner["contacted_at"])}

    def state_dump(self):
        """Everything the fake knows, secrets as SHA-256 digests or ``[FILTERED]``."""
        state = self.app.state
        with state.lock:
            runners = []
            for runner in sorted(state.runners.values(), key=lambda r: r["id"]):
                item = {k: v for k, v in runner.items() if k not in ("managers", "token_prefix")}
                for key in ("created_at", "updated_at", "contacted_at", "token_expires_at"):
                    item[key] = iso(runner[key])
                item["paused"] = not runner["active"]
                item["status"] = state.runner_status(runner)
                item["token_expired"] = runner["token_expires_at"] is not None and runner["token_expires_at"] <= time.time()
                item["managers"] = [manager_entity(state, m) for m in sorted(runner["managers"].values(), key=lambda m: m["id"])]
                runners.append(item)
            users = []
            for user in state.users.values():
                entry = dict(user, created_at=iso(user["created_at"]))
                entry["tokens"] = [
                    {"token_sha256": digest, "scopes": pat["scopes"], "expired": pat["expired"], "revoked": pat["revoked"]}
                    for digest, pat in state.pats.items() if pat["user_id"] == user["id"]
                ]
                users.append(entry)
            # scrub() also hides a secret a client stored in a free-text field (e.g. a description).
            return state.scrub({
                "settings": dict(state.settings),
                "users": users,
                "groups": [dict(g, members={str(k): v for k, v in g["members"].items()}, full_path=state.group_full_path(g["id"]))
                           for g in state.groups.values()],
                "projects": [dict(p, members={str(k): v for k, v in p["members"].items()}, path_with_namespace=state.project_full_path(p))
                             for p in state.projects.values()],
                "registration_tokens": [dict(v, token_sha256=k) for k, v in state.registration_tokens.items()],
                "runners": runners,
            })
