# Copyright: Contributors to the dood.gitlab_runner collection
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The fake GitLab's data: settings, users and their tokens, groups, projects, registration tokens, runners and
their managers, and the request log.  Tests read all of it through the control API (control.py).

No raw token is ever stored: every secret is kept as its SHA-256 hex digest.
"""

from __future__ import annotations

import re
import secrets
import threading
import time
from urllib.parse import unquote

from .constants import (CREATED_RUNNER_TOKEN_PREFIX, DEFAULT_SETTINGS, ONLINE_CONTACT_TIMEOUT, OWNER, PAT_PREFIX,
                        REGISTERED_RUNNER_TOKEN_PREFIX, REGISTRATION_TOKEN_PREFIX, SECRET_PARAM_NAMES, STALE_TIMEOUT,
                        TAG_LIST_MAX_LENGTH)
from .seed import Seeding
from .util import sha256


class State(Seeding):
    """Everything the fake GitLab knows about users, groups, projects and runners.  Guarded by ``self.lock``.

    Filling it from test data is the ``Seeding`` mixin's part (seed.py).
    """

    def __init__(self):
        self.lock = threading.RLock()
        self.clear()

    def clear(self):
        with self.lock:
            self.settings = dict(DEFAULT_SETTINGS)
            self.settings["valid_runner_registrars"] = list(DEFAULT_SETTINGS["valid_runner_registrars"])
            self.users = {}
            self.pats = {}
            self.groups = {}
            self.projects = {}
            self.registration_tokens = {}
            self.runners = {}
            self.runner_tokens = {}
            self.known_secret_hashes = set()
            self.manager_seq = 0
            self.runner_seq = 0

    # -- ids ---------------------------------------------------------------
    @staticmethod
    def next_id(table):
        return max(table.keys(), default=0) + 1

    # -- users, groups, projects ------------------------------------------
    def group_ancestors(self, gid):
        chain = []
        seen = set()
        while gid is not None and gid in self.groups and gid not in seen:
            seen.add(gid)
            chain.append(self.groups[gid])
            gid = self.groups[gid]["parent_id"]
        return chain

    def group_full_path(self, gid):
        return "/".join(g["path"] for g in reversed(self.group_ancestors(gid)))

    def group_full_name(self, gid):
        return " / ".join(g["name"] for g in reversed(self.group_ancestors(gid)))

    def project_full_path(self, project):
        if project["namespace_id"] is not None:
            return self.group_full_path(project["namespace_id"]) + "/" + project["path"]
        return self.users[project["owner_id"]]["username"] + "/" + project["path"]

    def project_name_with_namespace(self, project):
        if project["namespace_id"] is not None:
            return self.group_full_name(project["namespace_id"]) + " / " + project["name"]
        return self.users[project["owner_id"]]["name"] + " / " + project["name"]

    def group_level(self, user, gid):
        """Highest access level of ``user`` in group ``gid`` (inherited from ancestors)."""
        level = 0
        for group in self.group_ancestors(gid):
            level = max(level, group["members"].get(user["id"], 0))
        return level

    def project_level(self, user, pid):
        project = self.projects.get(pid)
        if project is None:
            return 0
        level = project["members"].get(user["id"], 0)
        if project["owner_id"] == user["id"]:
            level = max(level, OWNER)
        if project["namespace_id"] is not None:
            level = max(level, self.group_level(user, project["namespace_id"]))
        return level

    def find_group(self, ref):
        ref = unquote(ref)
        if re.match(r"^\d+$", ref):
            return self.groups.get(int(ref))
        for group in self.groups.values():
            if self.group_full_path(group["id"]) == ref:
                return group
        return None

    def find_project(self, ref):
        ref = unquote(ref)
        if re.match(r"^\d+$", ref):
            return self.projects.get(int(ref))
        for project in self.projects.values():
            if self.project_full_path(project) == ref:
                return project
        return None

    def root_group(self, gid):
        chain = self.group_ancestors(gid)
        return chain[-1] if chain else None

    # -- runners -----------------------------------------------------------
    def new_runner(self, runner_type, group_id, project_ids, attrs, registration_type, creator_id):
        now = time.time()
        # GitLab never hands out a deleted runner's id again (database sequence).
        self.runner_seq = max([self.runner_seq, *self.runners.keys()]) + 1
        rid = self.runner_seq
        runner = {
            "id": rid,
            "runner_type": runner_type,
            "group_id": group_id if runner_type == "group_type" else None,
            "project_ids": list(project_ids) if runner_type == "project_type" else [],
            "description": attrs.get("description"),
            "name": attrs.get("name"),
            "tag_list": list(attrs.get("tag_list") or []),
            "run_untagged": True if attrs.get("run_untagged") is None else attrs["run_untagged"],
            "locked": bool(attrs.get("locked")),
            "access_level": attrs.get("access_level") or "not_protected",
            "maximum_timeout": attrs.get("maximum_timeout"),
            "maintenance_note": attrs.get("maintenance_note"),
            "active": True if attrs.get("active") is None else attrs["active"],
            "registration_type": registration_type,
            "creator_id": creator_id,
            "created_at": now,
            "updated_at": now,
            "contacted_at": None,
            "token_sha256": None,
            "token_expires_at": None,
            "token_prefix": CREATED_RUNNER_TOKEN_PREFIX if registration_type == "authenticated_user" else REGISTERED_RUNNER_TOKEN_PREFIX,
            "managers": {},
        }
        self.runners[rid] = runner
        return runner

    def delete_runner(self, runner):
        self.runners.pop(runner["id"], None)
        self.runner_tokens.pop(runner["token_sha256"], None)

    def effective_group_interval(self, gid):
        values = [g.get("runner_token_expiration_interval") for g in self.group_ancestors(gid)]
        values.append(self.settings.get("group_runner_token_expiration_interval"))
        values = [int(v) for v in values if v is not None]
        return min(values) if values else None

    def effective_project_interval(self, pid):
        project = self.projects.get(pid)
        if project is None:
            return None
        values = [project.get("runner_token_expiration_interval"), self.settings.get("project_runner_token_expiration_interval")]
        values = [int(v) for v in values if v is not None]
        return min(values) if values else None

    def token_interval(self, runner):
        # Ci::Runner#compute_token_expiration (docs/gitlab-api.md §1.7)
        if runner["runner_type"] == "instance_type":
            value = self.settings.get("runner_token_expiration_interval")
            return int(value) if value is not None else None
        if runner["runner_type"] == "group_type":
            return self.effective_group_interval(runner["group_id"])
        values = [self.effective_project_interval(p) for p in runner["project_ids"]]
        values = [v for v in values if v is not None]
        return min(values) if values else None

    def set_runner_token(self, runner, token):
        self.runner_tokens.pop(runner["token_sha256"], None)
        digest = sha256(token)
        runner["token_sha256"] = digest
        self.runner_tokens[digest] = runner["id"]
        self.known_secret_hashes.add(digest)
        interval = self.token_interval(runner)
        runner["token_expires_at"] = time.time() + interval if interval is not None else None

    def rotate_token(self, runner):
        token = runner["token_prefix"] + secrets.token_urlsafe(20)
        self.set_runner_token(runner, token)
        runner["updated_at"] = time.time()
        return token

    def runner_by_token(self, token):
        """Ci::Runner.find_by_token: unknown and expired tokens both give None (docs/gitlab-api.md §1.7)."""
        if not isinstance(token, str) or not token:
            return None
        rid = self.runner_tokens.get(sha256(token))
        runner = self.runners.get(rid) if rid is not None else None
        if runner is None:
            return None
        if runner["token_expires_at"] is not None and runner["token_expires_at"] <= time.time():
            return None
        return runner

    @staticmethod
    def contact_status(created_at, contacted_at, now=None):
        # Ci::Runner#status (docs/gitlab-api.md §1.6): stale, then never_contacted, then online/offline
        now = time.time() if now is None else now
        latest = max(t for t in (created_at, contacted_at) if t is not None) if (created_at or contacted_at) else None
        if latest is not None and latest <= now - STALE_TIMEOUT:
            return "stale"
        if contacted_at is None:
            return "never_contacted"
        return "online" if contacted_at > now - ONLINE_CONTACT_TIMEOUT else "offline"

    def runner_status(self, runner):
        return self.contact_status(runner["created_at"], runner["contacted_at"])

    def ensure_manager(self, runner, system_id, info, ip_address):
        now = time.time()
        manager = runner["managers"].get(system_id)
        if manager is None:
            self.manager_seq += 1
            manager = {
                "id": self.manager_seq,
                "system_id": system_id,
                "version": None,
                "revision": None,
                "platform": None,
                "architecture": None,
                "executor": None,
                "created_at": now,
                "contacted_at": None,
                "ip_address": None,
            }
            runner["managers"][system_id] = manager
        for key in ("version", "revision", "platform", "architecture", "executor"):
            if isinstance(info, dict) and info.get(key) is not None:
                manager[key] = str(info[key])
        manager["ip_address"] = ip_address
        manager["contacted_at"] = now
        return manager

    def latest_manager(self, runner):
        managers = sorted(runner["managers"].values(), key=lambda m: (m["contacted_at"] or 0, m["id"]))
        return managers[-1] if managers else None

    # -- secrets ---------------------------------------------------------
    def scrub(self, value):
        """Replace any known or token-shaped secret in a params structure."""
        if isinstance(value, dict):
            return {k: ("[FILTERED]" if k.lower() in SECRET_PARAM_NAMES else self.scrub(v)) for k, v in value.items()}
        if isinstance(value, list):
            return [self.scrub(v) for v in value]
        if isinstance(value, str):
            if value.startswith((CREATED_RUNNER_TOKEN_PREFIX, REGISTERED_RUNNER_TOKEN_PREFIX, PAT_PREFIX, REGISTRATION_TOKEN_PREFIX)):
                return "[FILTERED]"
            if sha256(value) in self.known_secret_hashes:
                return "[FILTERED]"
        return value


def validate_runner(attrs, changed=None):
    """Ci::Runner model validations (docs/gitlab-api.md §1.9).  Returns an ordered {field: [messages]}."""
    errors = {}

    def add(field, message):
        errors.setdefault(field, []).append(message)

    tags = attrs.get("tag_list") or []
    if not tags and not attrs.get("run_untagged"):
        add("tags_list", "can not be empty when runner is not allowed to pick untagged jobs")
    if (changed is None or "tag_list" in changed) and len(tags) > TAG_LIST_MAX_LENGTH:
        add("tags_list", "Too many tags specified. Please limit the number of tags to %d" % TAG_LIST_MAX_LENGTH)
    if (changed is None or "description" in changed) and len(attrs.get("description") or "") > 1024:
        add("description", "is too long (maximum is 1024 characters)")
    if (changed is None or "name" in changed) and len(attrs.get("name") or "") > 256:
        add("name", "is too long (maximum is 256 characters)")
    if attrs.get("maximum_timeout") is not None and attrs["maximum_timeout"] < 600:
        add("maximum_timeout", "needs to be at least 10 minutes")
    if len(attrs.get("maintenance_note") or "") > 1024:
        add("maintenance_note", "is too long (maximum is 1024 characters)")
    return errors


def full_messages(errors):
    result = []
    for field, messages in errors.items():
        human = field.replace("_", " ").capitalize()
        for message in messages:
            result.append("%s %s" % (human, message))
    return result


class RequestLog:
    """Every API request answered (or dropped), newest last, with secrets already scrubbed by the caller."""

    LIMIT = 10000

    def __init__(self):
        self.lock = threading.Lock()
        self.entries = []
        self.seq = 0

    def add(self, entry):
        with self.lock:
            self.seq += 1
            entry["seq"] = self.seq
            self.entries.append(entry)
            if len(self.entries) > self.LIMIT:
                del self.entries[:1000]

    def since(self, seq):
        with self.lock:
            return [dict(e) for e in self.entries if e["seq"] > seq]

    def clear(self):
        """Forget the entries; numbering goes on (``since`` stays meaningful for a client that kept a number)."""
        with self.lock:
            self.entries = []

    def reset(self):
        with self.lock:
            self.entries = []
            self.seq = 0
