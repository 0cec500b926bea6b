# Copyright: Contributors to the dood.gitlab_runner collection
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""A fake GitLab server implementing the runner REST API for tests.

Standard library only; runs on Python 3.9+.  The behaviour follows
docs/gitlab-facts.md section 1 (the GitLab runner REST API); comments
name the subsection a behaviour comes from.  A test-only control API
lives under ``/-/fake/`` (a prefix GitLab never serves API routes on).

The server never stores a raw token: every secret is kept as its SHA-256
hex digest, so neither the state dump nor the request log can leak one.
"""

from __future__ import annotations

import argparse
import datetime
import hashlib
import json
import math
import os
import re
import secrets
import socket
import ssl
import sys
import threading
import time
from email.utils import parsedate_to_datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qsl, quote, unquote, urlencode, urlsplit

API_PREFIX = "/api/v4"
CONTROL_PREFIX = "/-/fake"
MAX_BODY = 10 * 1024 * 1024

# Access levels (GitLab Gitlab::Access).
ROLES = {"guest": 10, "reporter": 20, "developer": 30, "maintainer": 40, "owner": 50}
GUEST, MAINTAINER, OWNER = 10, 40, 50

# Ci::Runner constants (facts 1.6, 1.8, 1.9).
ONLINE_CONTACT_TIMEOUT = 2 * 3600
STALE_TIMEOUT = 7 * 24 * 3600
TAG_LIST_MAX_LENGTH = 50
RUNNER_TYPES = ("instance_type", "group_type", "project_type")
ACCESS_LEVELS = ("not_protected", "ref_protected")
STATUSES_INCL_DEPRECATED = ("active", "paused", "online", "offline", "never_contacted", "stale")
AVAILABLE_SCOPES = ("specific", "shared") + RUNNER_TYPES + STATUSES_INCL_DEPRECATED
LEGACY_SYSTEM_XID = "<legacy>"

# Token prefixes (facts 1.1).
CREATED_RUNNER_TOKEN_PREFIX = "glrt-"
REGISTERED_RUNNER_TOKEN_PREFIX = "glrtr-"
REGISTRATION_TOKEN_PREFIX = "GR1348941"
PAT_PREFIX = "glpat-"
SECRET_PARAM_NAMES = ("token", "private_token", "access_token", "job_token", "registration_token")
SECRET_HEADERS = ("private-token", "authorization", "runner-token", "job-token")

DEFAULT_SETTINGS = {
    "allow_runner_registration_token": True,
    "valid_runner_registrars": ["project", "group"],
    "runner_token_expiration_interval": None,
    "group_runner_token_expiration_interval": None,
    "project_runner_token_expiration_interval": None,
}

# Order of Grape's at_least_one_of for PUT /runners/:id (lib/api/ci/runners.rb, facts 1.6).
PUT_FIELDS = ("description", "active", "paused", "tag_list", "run_untagged", "locked", "access_level",
              "maximum_timeout", "maintenance_note")

TRUE_STRINGS = ("1", "on", "t", "true", "y", "yes")
FALSE_STRINGS = ("0", "off", "f", "false", "n", "no")


def sha256(value):
    return hashlib.sha256(value.encode("utf-8")).hexdigest()


def iso(ts):
    """GitLab's JSON time format: UTC, milliseconds, ``Z``."""
    if ts is None:
        return None
    moment = datetime.datetime.fromtimestamp(ts, tz=datetime.timezone.utc)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + "%03dZ" % (moment.microsecond // 1000)


def parse_time(value):
    """Accept epoch seconds or an ISO 8601 string; return epoch seconds or None."""
    if value is None or isinstance(value, (int, float)):
        return value
    text = str(value).strip()
    if text.endswith("Z"):
        text = text[:-1] + "+00:00"
    moment = datetime.datetime.fromisoformat(text)
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=datetime.timezone.utc)
    return moment.timestamp()


def to_sentence(items):
    """ActiveSupport Array#to_sentence."""
    items = [str(i) for i in items]
    if len(items) <= 1:
        return "".join(items)
    if len(items) == 2:
        return "%s and %s" % (items[0], items[1])
    return "%s, and %s" % (", ".join(items[:-1]), items[-1])


class ApiError(Exception):
    """An HTTP error answer: status, JSON body, extra headers."""

    def __init__(self, status, body, headers=None):
        super().__init__(status)
        self.status = status
        self.body = body
        self.headers = headers or {}


def message_error(status, message, headers=None):
    return ApiError(status, {"message": message}, headers)


def forbidden(reason=None):
    # lib/api/helpers.rb forbidden!(reason) (facts 1.0)
    return message_error(403, "403 Forbidden" + (" - " + reason if reason else ""))


def bad_request(reason=None):
    return message_error(400, "400 Bad request" + (" - " + reason if reason else ""))


def not_found(resource=None):
    # not_found!(resource) renders "404 <resource> Not Found"
    return message_error(404, "404 " + (resource + " " if resource else "") + "Not Found")


def unauthorized():
    return message_error(401, "401 Unauthorized")


def grape_error(messages):
    # Grape parameter validation errors: 400 {"error": "a is missing, b is invalid"}
    return ApiError(400, {"error": ", ".join(messages)})


# ---------------------------------------------------------------------------
# Request parameters (Grape-like coercion)
# ---------------------------------------------------------------------------

def nest_pairs(pairs):
    """Turn form/query pairs into Rack-style nested params (``a[]``, ``a[b]``)."""
    params = {}
    for key, value in pairs:
        match = re.match(r"^([^\[\]]+)((?:\[[^\[\]]*\])*)$", key)
        if not match:
            params[key] = value
            continue
        name, rest = match.group(1), match.group(2)
        parts = re.findall(r"\[([^\[\]]*)\]", rest)
        if not parts:
            params[name] = value
            continue
        target = params
        keys = [name] + parts
        for index, part in enumerate(keys[:-1]):
            nxt = keys[index + 1]
            if nxt == "":
                lst = target.get(part)
                if not isinstance(lst, list):
                    lst = []
                    target[part] = lst
                lst.append(value)
                break
            sub = target.get(part)
            if not isinstance(sub, dict):
                sub = {}
                target[part] = sub
            target = sub
        else:
            target[keys[-1]] = value
    return params


class Params:
    """Validates and coerces request params the way the Grape declarations do."""

    def __init__(self, raw):
        self.raw = raw
        self.values = {}
        self.errors = []

    def present(self, name):
        return name in self.raw

    def _fail(self, name, what="is invalid"):
        self.errors.append("%s %s" % (name, what))

    def string(self, name, required=False, values=None, regexp=None):
        if name not in self.raw:
            if required:
                self._fail(name, "is missing")
            return
        value = self.raw[name]
        if value is None:
            if required:
                self._fail(name, "is missing")
            elif values is not None:
                self._fail(name, "does not have a valid value")
            else:
                self.values[name] = None
            return
        if isinstance(value, (bool, dict, list)):
            self._fail(name)
            return
        value = str(value)
        if values is not None and value not in values:
            self._fail(name, "does not have a valid value")
            return
        if regexp is not None and not re.match(regexp, value):
            self._fail(name)
            return
        self.values[name] = value

    def boolean(self, name):
        if name not in self.raw:
            return
        value = self.raw[name]
        if isinstance(value, bool):
            self.values[name] = value
        elif isinstance(value, int) and value in (0, 1):
            self.values[name] = bool(value)
        elif isinstance(value, str) and value.strip().lower() in TRUE_STRINGS:
            self.values[name] = True
        elif isinstance(value, str) and value.strip().lower() in FALSE_STRINGS:
            self.values[name] = False
        else:
            self._fail(name)

    def integer(self, name, required=False):
        if name not in self.raw:
            if required:
                self._fail(name, "is missing")
            return
        value = self.raw[name]
        if isinstance(value, bool):
            self._fail(name)
        elif isinstance(value, int):
            self.values[name] = value
        elif isinstance(value, str) and re.match(r"^\s*[-+]?\d+\s*$", value):
            self.values[name] = int(value)
        elif value is None and not required:
            self.values[name] = None
        else:
            self._fail(name)

    def tag_list(self, name="tag_list"):
        # Array[String] with CommaSeparatedToArray coercion (facts 1.2)
        if name not in self.raw:
            return
        value = self.raw[name]
        if value is None:
            value = []
        if isinstance(value, str):
            items = value.split(",")
        elif isinstance(value, list) and all(isinstance(i, (str, int, float)) and not isinstance(i, bool) for i in value):
            items = []
            for item in value:
                items.extend(str(item).split(","))
        else:
            self._fail(name)
            return
        tags = []
        for item in items:
            item = item.strip()
            if item and item not in tags:
                tags.append(item)
        self.values[name] = tags

    def hash(self, name):
        if name not in self.raw:
            return
        if isinstance(self.raw[name], dict):
            self.values[name] = self.raw[name]
        else:
            self._fail(name)

    def mutually_exclusive(self, *names):
        given = [n for n in names if n in self.raw]
        if len(given) > 1:
            self.errors.append("%s are mutually exclusive" % ", ".join(given))

    def at_least_one_of(self, *names):
        if not any(n in self.raw for n in names):
            self.errors.append("%s are missing, at least one parameter must be provided" % ", ".join(names))

    def check(self):
        if self.errors:
            raise grape_error(self.errors)
        return self.values


def pagination_params(params):
    params.integer("page")
    params.integer("per_page")


# ---------------------------------------------------------------------------
# State
# ---------------------------------------------------------------------------

class State:
    """Everything the fake GitLab knows.  Guarded by ``self.lock``."""

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
            self.faults = []
            self.requests = []
            self.request_seq = 0
            self.fault_seq = 0
            self.manager_seq = 0
            self.runner_seq = 0

    # -- ids ---------------------------------------------------------------
    @staticmethod
    def next_id(table):
        return max(table.keys(), default=0) + 1

    # -- seed --------------------------------------------------------------
    def seed(self, data):
        created = {"users": [], "groups": [], "projects": [], "runners": [], "registration_tokens": 0}
        with self.lock:
            if "settings" in data:
                self.update_settings(data["settings"])
            for user in data.get("users", []):
                created["users"].append(self._seed_user(user))
            for group in data.get("groups", []):
                created["groups"].append(self._seed_group(group))
            for project in data.get("projects", []):
                created["projects"].append(self._seed_project(project))
            for reg in data.get("registration_tokens", []):
                self._seed_registration_token(reg)
                created["registration_tokens"] += 1
            for runner in data.get("runners", []):
                created["runners"].append(self._seed_runner(runner))
        return created

    def update_settings(self, settings):
        with self.lock:
            for key, value in settings.items():
                if key not in DEFAULT_SETTINGS:
                    raise ValueError("unknown setting %r" % key)
                self.settings[key] = value

    def _seed_user(self, user):
        uid = int(user.get("id") or self.next_id(self.users))
        username = user.get("username") or "user%d" % uid
        self.users[uid] = {
            "id": uid,
            "username": username,
            "name": user.get("name") or username,
            "admin": bool(user.get("admin", False)),
            "state": "active",
        }
        for tok in user.get("tokens", []):
            self.add_pat(uid, tok)
        return uid

    def add_pat(self, uid, tok):
        if uid not in self.users:
            raise ValueError("unknown user %r" % uid)
        if not tok.get("token"):
            raise ValueError("a personal access token needs a 'token' value")
        digest = sha256(tok["token"])
        expires_at = parse_time(tok.get("expires_at"))
        self.pats[digest] = {
            "user_id": uid,
            "scopes": list(tok.get("scopes", ["api"])),
            "expired": bool(tok.get("expired", False)),
            "revoked": bool(tok.get("revoked", False)),
            "expires_at": expires_at,
        }
        self.known_secret_hashes.add(digest)

    def _resolve_user(self, ref):
        if isinstance(ref, dict):
            if "user_id" in ref:
                return int(ref["user_id"])
            if "token" in ref:
                pat = self.pats.get(sha256(ref["token"]))
                if pat is None:
                    raise ValueError("member token does not belong to any user")
                return pat["user_id"]
            if "username" in ref:
                for user in self.users.values():
                    if user["username"] == ref["username"]:
                        return user["id"]
        raise ValueError("cannot resolve member %r" % ({k: v for k, v in ref.items() if k != "token"},))

    def _members(self, members):
        result = {}
        for member in members or []:
            uid = self._resolve_user(member)
            role = member.get("role", "developer")
            if role not in ROLES:
                raise ValueError("unknown role %r" % role)
            result[uid] = ROLES[role]
        return result

    def _seed_group(self, group):
        gid = int(group.get("id") or self.next_id(self.groups))
        parent_id = group.get("parent_id")
        if parent_id is not None and int(parent_id) not in self.groups:
            raise ValueError("unknown parent group %r" % parent_id)
        name = group.get("name") or "group%d" % gid
        self.groups[gid] = {
            "id": gid,
            "name": name,
            "path": group.get("path") or re.sub(r"[^A-Za-z0-9_.-]", "-", name).lower(),
            "parent_id": int(parent_id) if parent_id is not None else None,
            "members": self._members(group.get("members")),
            "allow_runner_registration_token": bool(group.get("allow_runner_registration_token", True)),
            "runner_token_expiration_interval": group.get("runner_token_expiration_interval"),
        }
        return gid

    def _seed_project(self, project):
        pid = int(project.get("id") or self.next_id(self.projects))
        namespace_id = project.get("namespace_id", project.get("group_id"))
        if namespace_id is not None and int(namespace_id) not in self.groups:
            raise ValueError("unknown namespace group %r" % namespace_id)
        owner_id = None
        if "owner" in project:
            owner_id = self._resolve_user(project["owner"])
        elif project.get("owner_id") is not None:
            owner_id = int(project["owner_id"])
        if namespace_id is None and owner_id is None:
            raise ValueError("a project needs a namespace_id (group) or an owner (user namespace)")
        name = project.get("name") or "project%d" % pid
        self.projects[pid] = {
            "id": pid,
            "name": name,
            "description": project.get("description"),
            "path": project.get("path") or re.sub(r"[^A-Za-z0-9_.-]", "-", name).lower(),
            "namespace_id": int(namespace_id) if namespace_id is not None else None,
            "owner_id": owner_id,
            "members": self._members(project.get("members")),
            "runner_token_expiration_interval": project.get("runner_token_expiration_interval"),
        }
        return pid

    def _seed_registration_token(self, reg):
        kind = reg.get("kind")
        if kind not in ("instance", "group", "project"):
            raise ValueError("registration token kind must be instance, group or project")
        target = None
        if kind == "group":
            target = int(reg["id"])
            if target not in self.groups:
                raise ValueError("unknown group %r" % target)
        elif kind == "project":
            target = int(reg["id"])
            if target not in self.projects:
                raise ValueError("unknown project %r" % target)
        if not reg.get("token"):
            raise ValueError("a registration token needs a 'token' value")
        digest = sha256(reg["token"])
        self.registration_tokens[digest] = {"kind": kind, "id": target}
        self.known_secret_hashes.add(digest)

    def _seed_runner(self, spec):
        runner_type = spec.get("runner_type", "instance_type")
        if runner_type not in RUNNER_TYPES:
            raise ValueError("bad runner_type")
        project_ids = [int(p) for p in spec.get("project_ids", [spec["project_id"]] if "project_id" in spec else [])]
        group_id = int(spec["group_id"]) if spec.get("group_id") is not None else None
        if runner_type == "group_type" and group_id not in self.groups:
            raise ValueError("group runner needs an existing group_id")
        if runner_type == "project_type" and (not project_ids or any(p not in self.projects for p in project_ids)):
            raise ValueError("project runner needs existing project_ids")
        attrs = {
            "description": spec.get("description"),
            "tag_list": list(spec.get("tag_list", [])),
            "run_untagged": spec.get("run_untagged", True),
            "locked": spec.get("locked", False),
            "access_level": spec.get("access_level", "not_protected"),
            "maximum_timeout": spec.get("maximum_timeout"),
            "maintenance_note": spec.get("maintenance_note"),
            "active": not spec.get("paused", False),
            "name": spec.get("name"),
        }
        registration_type = spec.get("registration_type", "authenticated_user")
        runner = self.new_runner(runner_type, group_id, project_ids, attrs, registration_type, spec.get("creator_id"))
        token = spec.get("token")
        if token:
            self.set_runner_token(runner, token)
        else:
            self.rotate_token(runner)
        if "created_at" in spec:
            runner["created_at"] = parse_time(spec["created_at"])
        if "contacted_at" in spec:
            runner["contacted_at"] = parse_time(spec["contacted_at"])
        if "token_expires_at" in spec:
            runner["token_expires_at"] = parse_time(spec["token_expires_at"])
        return runner["id"]

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
        # Ci::Runner#compute_token_expiration (facts 1.7)
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
        """Ci::Runner.find_by_token: unknown and expired tokens both give None (facts 1.7)."""
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
        # Ci::Runner#status (facts 1.6): stale, then never_contacted, then online/offline
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


def validate_runner(attrs, changed=None):
    """Ci::Runner model validations (facts 1.9).  Returns an ordered {field: [messages]}."""
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


# ---------------------------------------------------------------------------
# HTTP layer
# ---------------------------------------------------------------------------

class Request:
    """One parsed API request."""

    def __init__(self, handler, method, path, query_pairs, body_params):
        self.handler = handler
        self.method = method
        self.path = path
        self.query_pairs = query_pairs
        self.query = nest_pairs(query_pairs)
        self.params = dict(self.query)
        self.params.update(body_params)
        self.headers = handler.headers
        self.credential = None  # (kind, sha256)
        self.user = None
        self.route_params = {}

    def base_url(self):
        scheme = "https" if self.handler.server.tls else "http"
        host = self.headers.get("Host") or "%s:%d" % self.handler.server.server_address[:2]
        return "%s://%s" % (scheme, host)


class Route:
    def __init__(self, method, pattern, func, pat_scopes=None):
        self.method = method
        self.regex = re.compile("^" + pattern + "$")
        self.func = func
        self.pat_scopes = pat_scopes


class FakeGitLab:
    """The API and control logic, independent from the socket handling."""

    def __init__(self):
        self.state = State()
        self.routes = []
        add = self.routes.append
        # Runner-token endpoints (lib/api/ci/runner.rb, facts 1.2, 1.4, 1.5, 1.7)
        add(Route("POST", r"/runners", self.register_runner))
        add(Route("DELETE", r"/runners", self.delete_runner_by_token))
        add(Route("DELETE", r"/runners/managers", self.delete_manager_by_token))
        add(Route("POST", r"/runners/verify", self.verify_runner))
        add(Route("POST", r"/runners/reset_authentication_token", self.reset_token_by_token))
        # User-token endpoints (lib/api/user_runners.rb, lib/api/ci/runners.rb; facts 1.3, 1.5-1.8)
        add(Route("POST", r"/user/runners", self.create_user_runner, pat_scopes="create"))
        add(Route("GET", r"/runners", self.list_owned_runners, pat_scopes="list"))
        add(Route("GET", r"/runners/all", self.list_all_runners, pat_scopes="list"))
        add(Route("GET", r"/runners/(?P<id>[^/]+)", self.get_runner_details, pat_scopes="id"))
        add(Route("PUT", r"/runners/(?P<id>[^/]+)", self.update_runner, pat_scopes="id"))
        add(Route("DELETE", r"/runners/(?P<id>[^/]+)", self.delete_runner_by_id, pat_scopes="id"))
        add(Route("GET", r"/runners/(?P<id>[^/]+)/managers", self.list_managers, pat_scopes="id"))
        add(Route("POST", r"/runners/(?P<id>[^/]+)/reset_authentication_token", self.reset_token_by_id, pat_scopes="id"))
        add(Route("GET", r"/projects/(?P<id>[^/]+)/runners", self.list_project_runners, pat_scopes="list"))
        add(Route("GET", r"/groups/(?P<id>[^/]+)/runners", self.list_group_runners, pat_scopes="list"))

    # -- dispatch ----------------------------------------------------------
    def dispatch(self, req):
        """Return (status, body, headers).  ``body`` None means no content."""
        path = req.path[len(API_PREFIX):].rstrip("/") or "/"
        path_matched = False
        for route in self.routes:
            match = route.regex.match(path)
            if not match:
                continue
            path_matched = True
            if route.method != req.method and not (route.method == "GET" and req.method == "HEAD"):
                continue
            req.route_params = match.groupdict()
            try:
                if route.pat_scopes:
                    self.authenticate_user(req, route)
                with self.state.lock:
                    return route.func(req)
            except ApiError as err:
                return err.status, err.body, err.headers
        if path_matched:
            return 405, {"error": "405 Not Allowed"}, {}
        return 404, {"error": "404 Not Found"}, {}

    # -- authentication ----------------------------------------------------
    def authenticate_user(self, req, route):
        """APIGuard: PAT from PRIVATE-TOKEN, Bearer or private_token param, with scope checks."""
        token = req.headers.get("PRIVATE-TOKEN")
        kind = "private_token"
        if token is None:
            auth = req.headers.get("Authorization") or ""
            if auth.lower().startswith("bearer "):
                token = auth[7:].strip()
                kind = "bearer"
        if token is None and isinstance(req.query.get("private_token"), str):
            token = req.query["private_token"]
            kind = "private_token_param"
        if token is None:
            raise unauthorized()
        digest = sha256(token)
        req.credential = (kind, digest)
        with self.state.lock:
            pat = self.state.pats.get(digest)
            user = self.state.users.get(pat["user_id"]) if pat else None
        if pat is None or user is None:
            raise unauthorized()
        # lib/api/api_guard.rb oauth2_bearer_token_error_handler
        if pat["revoked"]:
            raise ApiError(401, {"error": "invalid_token", "error_description": "Token was revoked. You have to re-authorize from the user."},
                           {"WWW-Authenticate": 'Bearer realm="The API", error="invalid_token"'})
        if pat["expired"] or (pat["expires_at"] is not None and pat["expires_at"] <= time.time()):
            raise ApiError(401, {"error": "invalid_token",
                                 "error_description": "Token is expired. You can either do re-authorization or token refresh."},
                           {"WWW-Authenticate": 'Bearer realm="The API", error="invalid_token"'})
        allowed = ["api"]
        if req.method in ("GET", "HEAD"):
            allowed.append("read_api")
        if route.pat_scopes == "id":
            # allow_access_with_scope :manage_runner for /runners/<id> paths (facts 1.6)
            allowed.append("manage_runner")
        if route.pat_scopes == "create" and req.method == "POST":
            allowed.append("create_runner")
        if not set(allowed) & set(pat["scopes"]):
            raise ApiError(403, {"error": "insufficient_scope",
                                 "error_description": "The request requires higher privileges than provided by the access token.",
                                 "scope": " ".join(allowed)})
        req.user = user

    def authenticate_runner(self, req, heartbeat=True, ensure_manager=True):
        """API::Ci::Helpers::Runner#authenticate_runner! (facts 1.4)."""
        token = req.params.get("token")
        runner = self.state.runner_by_token(token)
        if runner is None:
            raise forbidden()
        if heartbeat:
            runner["contacted_at"] = time.time()
        if ensure_manager:
            system_id = req.params.get("system_id", LEGACY_SYSTEM_XID)
            self.state.ensure_manager(runner, str(system_id), req.params.get("info"), req.handler.client_address[0])
        return runner

    # -- entities ----------------------------------------------------------
    def user_basic(self, req, uid):
        user = self.state.users.get(uid)
        if user is None:
            return None
        return {
            "id": user["id"], "username": user["username"], "name": user["name"], "state": user["state"],
            "locked": False, "avatar_url": None, "web_url": "%s/%s" % (req.base_url(), user["username"]),
        }

    def runner_entity(self, req, runner):
        # Entities::Ci::Runner (facts 1.8)
        status = self.state.runner_status(runner)
        return {
            "id": runner["id"],
            "description": runner["description"],
            "ip_address": None,
            "active": runner["active"],
            "paused": not runner["active"],
            "is_shared": runner["runner_type"] == "instance_type",
            "runner_type": runner["runner_type"],
            "name": runner["name"],
            "online": status == "online",
            "created_by": self.user_basic(req, runner["creator_id"]) if runner["creator_id"] else None,
            "created_at": iso(runner["created_at"]),
            "status": status,
            "job_execution_status": "idle",
        }

    def runner_details(self, req, runner):
        # Entities::Ci::RunnerDetails (facts 1.6)
        entity = self.runner_entity(req, runner)
        manager = self.state.latest_manager(runner)
        entity.update({
            "tag_list": list(runner["tag_list"]),
            "run_untagged": runner["run_untagged"],
            "locked": runner["locked"],
            "maximum_timeout": runner["maximum_timeout"],
            "access_level": runner["access_level"],
            "version": manager["version"] if manager else None,
            "revision": manager["revision"] if manager else None,
            "platform": manager["platform"] if manager else None,
            "architecture": manager["architecture"] if manager else None,
            "contacted_at": iso(runner["contacted_at"]),
        })
        if self.can_update_runner(req.user, runner):
            entity["maintenance_note"] = runner["maintenance_note"]
        entity["projects"] = []
        for pid in runner["project_ids"]:
            project = self.state.projects.get(pid)
            if project is None:
                continue
            entity["projects"].append({
                "id": pid,
                "description": project["description"],
                "name": project["name"],
                "name_with_namespace": self.state.project_name_with_namespace(project),
                "path": project["path"],
                "path_with_namespace": self.state.project_full_path(project),
            })
        entity["groups"] = []
        if runner["group_id"] is not None and runner["group_id"] in self.state.groups:
            group = self.state.groups[runner["group_id"]]
            entity["groups"].append({
                "id": group["id"], "name": group["name"],
                "web_url": "%s/groups/%s" % (req.base_url(), self.state.group_full_path(group["id"])),
            })
        return entity

    def manager_entity(self, manager):
        return {
            "id": manager["id"],
            "system_id": manager["system_id"],
            "version": manager["version"],
            "revision": manager["revision"],
            "platform": manager["platform"],
            "architecture": manager["architecture"],
            "created_at": iso(manager["created_at"]),
            "contacted_at": iso(manager["contacted_at"]),
            "ip_address": manager["ip_address"],
            "status": self.state.contact_status(manager["created_at"], manager["contacted_at"]),
            "job_execution_status": "idle",
        }

    @staticmethod
    def registration_details(runner, token):
        # Entities::Ci::RunnerRegistrationDetails = id, token, token_expires_at (facts 1.2)
        return {"id": runner["id"], "token": token, "token_expires_at": iso(runner["token_expires_at"])}

    @staticmethod
    def reset_token_result(runner, token):
        # Entities::Ci::ResetTokenResult: token_expires_at only when expirable (facts 1.7)
        result = {"token": token}
        if runner["token_expires_at"] is not None:
            result["token_expires_at"] = iso(runner["token_expires_at"])
        return result

    # -- permissions -------------------------------------------------------
    def can_read_runner(self, user, runner):
        if user["admin"] or runner["runner_type"] == "instance_type":
            return True
        if runner["runner_type"] == "group_type":
            return self.state.group_level(user, runner["group_id"]) >= MAINTAINER
        return any(self.state.project_level(user, p) >= MAINTAINER for p in runner["project_ids"])

    def can_update_runner(self, user, runner):
        # runners.md: instance -> admin; group -> Owner; project -> Maintainer of the owning project (facts 1.5)
        if user is None:
            return False
        if user["admin"]:
            return True
        if runner["runner_type"] == "instance_type":
            return False
        if runner["runner_type"] == "group_type":
            return self.state.group_level(user, runner["group_id"]) >= OWNER
        owner = runner["project_ids"][0] if runner["project_ids"] else None
        return owner is not None and self.state.project_level(user, owner) >= MAINTAINER

    def owned_runners(self, user):
        """User#ci_owned_runners: group runners of owned groups (and descendants), project runners of maintained projects."""
        result = []
        for runner in self.state.runners.values():
            if runner["runner_type"] == "group_type":
                if self.state.group_level(user, runner["group_id"]) >= OWNER:
                    result.append(runner)
            elif runner["runner_type"] == "project_type":
                if any(self.state.project_level(user, p) >= MAINTAINER for p in runner["project_ids"]):
                    result.append(runner)
        return result

    def get_runner(self, req):
        value = req.route_params["id"]
        if not re.match(r"^\d+$", value):
            raise grape_error(["id is invalid"])
        runner = self.state.runners.get(int(value))
        if runner is None:
            # ActiveRecord::RecordNotFound rescued by the API (facts 1.6)
            raise message_error(404, "404 Not found")
        return runner

    @staticmethod
    def check_unmodified_since(req, resource):
        # destroy_conditionally! -> 412 when If-Unmodified-Since is older than the last update (facts 1.5)
        header = req.headers.get("If-Unmodified-Since")
        if not header:
            return
        try:
            since = parsedate_to_datetime(header).timestamp()
        except (TypeError, ValueError, IndexError):
            return
        if resource.get("updated_at", 0) > since + 0.999:
            raise message_error(412, "412 Precondition Failed")

    # -- runner-token endpoints -------------------------------------------
    def register_runner(self, req):
        req.credential = ("registration_token", sha256(req.params["token"])) if isinstance(req.params.get("token"), str) else None
        params = Params(req.params)
        params.string("token", required=True)
        for name in ("description", "maintainer_note", "maintenance_note"):
            params.string(name)
        params.hash("info")
        for name in ("active", "paused", "locked"):
            params.boolean(name)
        params.string("access_level", values=ACCESS_LEVELS)
        params.boolean("run_untagged")
        params.tag_list()
        params.integer("maximum_timeout")
        params.mutually_exclusive("maintainer_note", "maintenance_note")
        params.mutually_exclusive("active", "paused")
        values = params.check()

        state = self.state
        # RegisterRunnerService: invalid token -> 403, disallowed -> 410 (facts 1.2)
        reg = state.registration_tokens.get(sha256(values["token"])) if isinstance(values.get("token"), str) else None
        if reg is not None and reg["kind"] != "instance" and reg["kind"] not in state.settings.get("valid_runner_registrars", []):
            reg = None
        if reg is not None and reg["kind"] == "group" and reg["id"] not in state.groups:
            reg = None
        if reg is not None and reg["kind"] == "project" and reg["id"] not in state.projects:
            reg = None
        if reg is None:
            raise forbidden("invalid token supplied")
        allowed = bool(state.settings.get("allow_runner_registration_token", True))
        # A top-level group may forbid registration tokens for its whole hierarchy.
        namespace_id = reg["id"] if reg["kind"] == "group" else None
        if reg["kind"] == "project":
            namespace_id = state.projects[reg["id"]]["namespace_id"]
        root = state.root_group(namespace_id) if namespace_id is not None else {}
        if not root.get("allow_runner_registration_token", True):
            allowed = False
        if not allowed:
            raise message_error(410, "410 Gone - runner registration disallowed")

        attrs = {key: values[key] for key in ("description", "locked", "run_untagged", "tag_list", "access_level", "maximum_timeout")
                 if key in values}
        note = values.get("maintenance_note", values.get("maintainer_note"))
        if note is not None:
            attrs["maintenance_note"] = note
        if "paused" in values:
            attrs["active"] = not values["paused"]
        elif "active" in values:
            attrs["active"] = values["active"]
        info = values.get("info") or {}
        if info.get("name") is not None:
            attrs["name"] = str(info["name"])
        merged = {"run_untagged": True}
        merged.update(attrs)
        errors = validate_runner(merged)
        if errors:
            raise ApiError(400, {"message": errors})
        runner_type = {"instance": "instance_type", "group": "group_type", "project": "project_type"}[reg["kind"]]
        runner = state.new_runner(runner_type, reg["id"] if reg["kind"] == "group" else None,
                                  [reg["id"]] if reg["kind"] == "project" else [], attrs, "registration_token", None)
        token = state.rotate_token(runner)
        return 201, self.registration_details(runner, token), {}

    def _runner_token_params(self, req, *extra):
        if isinstance(req.params.get("token"), str):
            req.credential = ("runner_token", sha256(req.params["token"]))
        params = Params(req.params)
        params.string("token", required=True)
        for name in extra:
            params.string(name, required=True)
        return params

    def verify_runner(self, req):
        params = self._runner_token_params(req)
        params.string("system_id")
        params.hash("info")
        params.check()
        runner = self.authenticate_runner(req)
        return 200, self.registration_details(runner, req.params["token"]), {}

    def delete_runner_by_token(self, req):
        self._runner_token_params(req).check()
        runner = self.authenticate_runner(req, ensure_manager=False)
        self.check_unmodified_since(req, runner)
        self.state.delete_runner(runner)
        return 204, None, {}

    def delete_manager_by_token(self, req):
        self._runner_token_params(req, "system_id").check()
        runner = self.authenticate_runner(req, ensure_manager=False)
        manager = runner["managers"].get(req.params["system_id"])
        if manager is None:
            raise not_found("Runner manager not found")
        self.check_unmodified_since(req, {"updated_at": manager["created_at"]})
        del runner["managers"][req.params["system_id"]]
        return 204, None, {}

    def reset_token_by_token(self, req):
        self._runner_token_params(req).check()
        runner = self.authenticate_runner(req)
        token = self.state.rotate_token(runner)
        return 201, self.reset_token_result(runner, token), {}

    # -- user-token endpoints ---------------------------------------------
    def create_user_runner(self, req):
        params = Params(req.params)
        params.string("runner_type", required=True, values=RUNNER_TYPES)
        runner_type = params.values.get("runner_type")
        if runner_type == "group_type":
            params.integer("group_id", required=True)
        if runner_type == "project_type":
            params.integer("project_id", required=True)
        params.string("description")
        params.string("maintenance_note")
        for name in ("paused", "locked"):
            params.boolean(name)
        params.string("access_level", values=ACCESS_LEVELS)
        params.boolean("run_untagged")
        params.tag_list()
        params.integer("maximum_timeout")
        values = params.check()

        state = self.state
        user = req.user
        registrars = state.settings.get("valid_runner_registrars", [])
        # CreateRunnerService strategies (facts 1.3): missing scope -> 400, no permission -> 403
        group_id = None
        project_ids = []
        if runner_type == "instance_type":
            authorized = user["admin"]
        elif runner_type == "group_type":
            group = state.groups.get(values["group_id"])
            if group is None:
                raise bad_request("Missing/invalid group")
            group_id = group["id"]
            authorized = user["admin"] or ("group" in registrars and state.group_level(user, group_id) >= OWNER)
        else:
            project = state.projects.get(values["project_id"])
            if project is None:
                raise bad_request("Missing/invalid project")
            project_ids = [project["id"]]
            authorized = user["admin"] or ("project" in registrars and state.project_level(user, project["id"]) >= OWNER)
        if not authorized:
            raise forbidden("Insufficient permissions")
        attrs = {key: values[key] for key in ("description", "maintenance_note", "locked", "run_untagged", "tag_list",
                                              "access_level", "maximum_timeout") if key in values}
        attrs["active"] = not values.get("paused", False)
        merged = {"run_untagged": True}
        merged.update(attrs)
        errors = validate_runner(merged)
        if errors:
            raise bad_request(to_sentence(full_messages(errors)))
        runner = state.new_runner(runner_type, group_id, project_ids, attrs, "authenticated_user", user["id"])
        token = state.rotate_token(runner)
        return 201, self.registration_details(runner, token), {}

    def get_runner_details(self, req):
        runner = self.get_runner(req)
        if not self.can_read_runner(req.user, runner):
            raise forbidden("No access granted")
        return 200, self.runner_details(req, runner), {}

    def update_runner(self, req):
        params = Params(req.params)
        params.string("description")
        params.boolean("active")
        params.boolean("paused")
        params.tag_list()
        params.boolean("run_untagged")
        params.boolean("locked")
        params.string("access_level", values=ACCESS_LEVELS)
        params.integer("maximum_timeout")
        params.string("maintenance_note")
        params.at_least_one_of(*PUT_FIELDS)
        params.mutually_exclusive("active", "paused")
        if not re.match(r"^\d+$", req.route_params["id"]):
            params.errors.insert(0, "id is invalid")
        values = params.check()
        runner = self.get_runner(req)
        if not self.can_update_runner(req.user, runner):
            raise forbidden("No access granted")
        changes = {key: values[key] for key in PUT_FIELDS if key in values and key not in ("active", "paused")}
        if "paused" in values:
            changes["active"] = not values["paused"]
        elif "active" in values:
            changes["active"] = values["active"]
        merged = dict(runner)
        merged.update(changes)
        errors = validate_runner(merged, changed=set(changes))
        if errors:
            raise ApiError(400, {"message": errors})
        runner.update(changes)
        runner["updated_at"] = time.time()
        return 200, self.runner_details(req, runner), {}

    def delete_runner_by_id(self, req):
        runner = self.get_runner(req)
        if not req.user["admin"]:
            if len(runner["project_ids"]) > 1:
                raise forbidden("Runner associated with more than one project")
            if not self.can_update_runner(req.user, runner):
                raise forbidden("No access granted")
        self.check_unmodified_since(req, runner)
        self.state.delete_runner(runner)
        return 204, None, {}

    def list_managers(self, req):
        runner = self.get_runner(req)
        if not self.can_read_runner(req.user, runner):
            raise forbidden("No access granted")
        managers = sorted(runner["managers"].values(), key=lambda m: m["id"])
        return 200, [self.manager_entity(m) for m in managers], {}

    def reset_token_by_id(self, req):
        runner = self.get_runner(req)
        if not self.can_update_runner(req.user, runner):
            raise forbidden("No access granted")
        token = self.state.rotate_token(runner)
        return 201, self.reset_token_result(runner, token), {}

    # -- listing -----------------------------------------------------------
    @staticmethod
    def filter_params(req, with_scope=True):
        params = Params(req.params)
        if with_scope:
            params.string("scope", values=AVAILABLE_SCOPES)
        params.string("type", values=RUNNER_TYPES)
        params.boolean("paused")
        params.string("status", values=STATUSES_INCL_DEPRECATED)
        params.tag_list()
        params.string("version_prefix", regexp=r"^[\d+.]+")
        pagination_params(params)
        return params.check()

    def scope_filter(self, runners, scope, allowed):
        # filter_runners (lib/api/ci/runners.rb): unknown scope -> 400 "Scope contains invalid value"
        if not scope:
            return runners
        if scope not in allowed:
            raise message_error(400, "Scope contains invalid value")
        now = time.time()

        def keep(runner):
            if scope in RUNNER_TYPES:
                return runner["runner_type"] == scope
            if scope == "specific":
                return runner["runner_type"] in ("group_type", "project_type")
            if scope == "shared":
                return runner["runner_type"] == "instance_type"
            if scope == "active":
                return runner["active"]
            if scope == "paused":
                return not runner["active"]
            contacted = runner["contacted_at"]
            if scope == "online":
                return contacted is not None and contacted > now - ONLINE_CONTACT_TIMEOUT
            if scope == "offline":
                return contacted is not None and contacted <= now - ONLINE_CONTACT_TIMEOUT
            if scope == "never_contacted":
                return contacted is None
            # stale
            return runner["created_at"] <= now - STALE_TIMEOUT and (contacted is None or contacted <= now - STALE_TIMEOUT)

        return [r for r in runners if keep(r)]

    def apply_filter(self, runners, values):
        runners = self.scope_filter(runners, values.get("type"), RUNNER_TYPES)
        runners = self.scope_filter(runners, values.get("status"), STATUSES_INCL_DEPRECATED)
        if "paused" in values:
            runners = self.scope_filter(runners, "paused" if values["paused"] else "active", ("paused", "active"))
        if values.get("version_prefix"):
            prefix = values["version_prefix"]
            runners = [r for r in runners if any((m["version"] or "").startswith(prefix) for m in r["managers"].values())]
        if values.get("tag_list"):
            wanted = set(values["tag_list"])
            runners = [r for r in runners if wanted <= set(r["tag_list"])]
        return runners

    def paginate(self, req, runners, values):
        # Offset pagination, ordered by id (facts 1.0)
        runners = sorted(runners, key=lambda r: r["id"])
        page = values.get("page") or 1
        page = max(1, page)
        per_page = values.get("per_page") or 20
        per_page = min(100, max(1, per_page))
        total = len(runners)
        total_pages = max(1, int(math.ceil(total / float(per_page))))
        items = runners[(page - 1) * per_page:page * per_page]
        next_page = page + 1 if page < total_pages else None
        prev_page = page - 1 if page > 1 else None
        query = [(k, v) for k, v in req.query_pairs if k not in ("page", "per_page") and k not in SECRET_PARAM_NAMES]

        def href(number):
            pairs = sorted(query + [("page", str(number)), ("per_page", str(per_page))])
            return "%s%s?%s" % (req.base_url(), req.path, urlencode(pairs))

        links = []
        if prev_page:
            links.append('<%s>; rel="prev"' % href(prev_page))
        if next_page:
            links.append('<%s>; rel="next"' % href(next_page))
        links.append('<%s>; rel="first"' % href(1))
        links.append('<%s>; rel="last"' % href(total_pages))
        headers = {
            "X-Page": str(page),
            "X-Per-Page": str(per_page),
            "X-Next-Page": str(next_page or ""),
            "X-Prev-Page": str(prev_page or ""),
            "X-Total": str(total),
            "X-Total-Pages": str(total_pages),
            "Link": ", ".join(links),
        }
        return 200, [self.runner_entity(req, r) for r in items], headers

    def list_owned_runners(self, req):
        values = self.filter_params(req)
        runners = self.owned_runners(req.user)
        runners = self.scope_filter(runners, values.get("scope"), STATUSES_INCL_DEPRECATED)
        return self.paginate(req, self.apply_filter(runners, values), values)

    def list_all_runners(self, req):
        values = self.filter_params(req)
        if not req.user["admin"]:
            raise forbidden()
        runners = list(self.state.runners.values())
        runners = self.scope_filter(runners, values.get("scope"), AVAILABLE_SCOPES)
        return self.paginate(req, self.apply_filter(runners, values), values)

    def list_project_runners(self, req):
        project = self.state.find_project(req.route_params["id"])
        user = req.user
        if project is None or (not user["admin"] and self.state.project_level(user, project["id"]) < GUEST):
            raise not_found("Project")
        if not user["admin"] and self.state.project_level(user, project["id"]) < MAINTAINER:
            raise forbidden()
        values = self.filter_params(req)
        # Ci::Runner.owned_or_instance_wide: project runners, ancestor-group runners, instance runners
        groups = set()
        if project["namespace_id"] is not None:
            groups = {g["id"] for g in self.state.group_ancestors(project["namespace_id"])}
        runners = [r for r in self.state.runners.values()
                   if project["id"] in r["project_ids"] or r["group_id"] in groups or r["runner_type"] == "instance_type"]
        runners = self.scope_filter(runners, values.get("scope"), AVAILABLE_SCOPES)
        return self.paginate(req, self.apply_filter(runners, values), values)

    def list_group_runners(self, req):
        group = self.state.find_group(req.route_params["id"])
        user = req.user
        if group is None or (not user["admin"] and self.state.group_level(user, group["id"]) < GUEST):
            raise not_found("Group")
        if not user["admin"] and self.state.group_level(user, group["id"]) < OWNER:
            raise forbidden()
        values = self.filter_params(req, with_scope=False)
        # Ci::Runner.group_or_instance_wide: group and ancestor-group runners, instance runners
        groups = {g["id"] for g in self.state.group_ancestors(group["id"])}
        runners = [r for r in self.state.runners.values() if r["group_id"] in groups or r["runner_type"] == "instance_type"]
        return self.paginate(req, self.apply_filter(runners, values), values)

    # -- control API -------------------------------------------------------
    def state_dump(self):
        state = self.state
        with state.lock:
            runners = []
            for runner in sorted(state.runners.values(), key=lambda r: r["id"]):
                item = {k: v for k, v in runner.items() if k not in ("managers", "token_prefix")}
                for key in ("created_at", "updated_at", "contacted_at", "token_expires_at"):
                    item[key] = iso(runner[key])
                item["paused"] = not runner["active"]
                item["status"] = state.runner_status(runner)
                item["token_expired"] = runner["token_expires_at"] is not None and runner["token_expires_at"] <= time.time()
                item["managers"] = [self.manager_entity(m) for m in sorted(runner["managers"].values(), key=lambda m: m["id"])]
                runners.append(item)
            users = []
            for user in state.users.values():
                entry = dict(user)
                entry["tokens"] = [
                    {"token_sha256": digest, "scopes": pat["scopes"], "expired": pat["expired"], "revoked": pat["revoked"]}
                    for digest, pat in state.pats.items() if pat["user_id"] == user["id"]
                ]
                users.append(entry)
            # scrub() also hides a secret a client stored in a free-text field (e.g. a description).
            return self.scrub({
                "settings": dict(state.settings),
                "users": users,
                "groups": [dict(g, members={str(k): v for k, v in g["members"].items()}, full_path=state.group_full_path(g["id"]))
                           for g in state.groups.values()],
                "projects": [dict(p, members={str(k): v for k, v in p["members"].items()}, path_with_namespace=state.project_full_path(p))
                             for p in state.projects.values()],
                "registration_tokens": [dict(v, token_sha256=k) for k, v in state.registration_tokens.items()],
                "runners": runners,
            })

    def add_fault(self, spec):
        kinds = ("status", "backoff", "delay", "drop", "reset", "non_json")
        kind = spec.get("kind", "status")
        if kind not in kinds:
            raise ValueError("fault kind must be one of %s" % ", ".join(kinds))
        re.compile(spec.get("path", ".*"))
        fault = {
            "method": str(spec.get("method", "*")).upper(),
            "path": spec.get("path", ".*"),
            "kind": kind,
            "status": int(spec.get("status", {"backoff": 429, "non_json": 200, "reset": 200}.get(kind, 500))),
            "body": spec.get("body"),
            "headers": dict(spec.get("headers") or {}),
            "retry_after": spec.get("retry_after", 60),
            "delay": float(spec.get("delay", 0) or 0),
            "times": spec.get("times"),
            "skip": int(spec.get("skip", 0) or 0),
            "hits": 0,
        }
        if fault["times"] is not None:
            fault["times"] = int(fault["times"])
        with self.state.lock:
            self.state.fault_seq += 1
            fault["id"] = self.state.fault_seq
            self.state.faults.append(fault)
        return fault

    def take_fault(self, method, path):
        with self.state.lock:
            for fault in self.state.faults:
                if fault["method"] not in ("*", method):
                    continue
                if not re.search(fault["path"], path):
                    continue
                if fault["times"] is not None and fault["hits"] >= fault["times"]:
                    continue
                if fault["skip"] > 0:
                    fault["skip"] -= 1
                    continue
                fault["hits"] += 1
                return dict(fault)
        return None

    def log_request(self, entry):
        with self.state.lock:
            self.state.request_seq += 1
            entry["seq"] = self.state.request_seq
            self.state.requests.append(entry)
            if len(self.state.requests) > 10000:
                del self.state.requests[:1000]

    def scrub(self, value):
        """Replace any known or token-shaped secret in a params structure."""
        if isinstance(value, dict):
            return {k: ("[FILTERED]" if k.lower() in SECRET_PARAM_NAMES else self.scrub(v)) for k, v in value.items()}
        if isinstance(value, list):
            return [self.scrub(v) for v in value]
        if isinstance(value, str):
            if value.startswith((CREATED_RUNNER_TOKEN_PREFIX, REGISTERED_RUNNER_TOKEN_PREFIX, PAT_PREFIX, REGISTRATION_TOKEN_PREFIX)):
                return "[FILTERED]"
            if sha256(value) in self.state.known_secret_hashes:
                return "[FILTERED]"
        return value


class Server(ThreadingHTTPServer):
    """Threaded HTTP server with a bound on concurrent handler threads."""

    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 64

    def __init__(self, address, app, max_threads=32, tls_context=None, quiet=False):
        self.app = app
        self.tls = tls_context is not None
        self.quiet = quiet
        self.slots = threading.BoundedSemaphore(max_threads)
        if address[0] and ":" in address[0]:
            self.address_family = socket.AF_INET6
        super().__init__(address, Handler)
        if tls_context is not None:
            self.socket = tls_context.wrap_socket(self.socket, server_side=True, do_handshake_on_connect=False)

    def process_request(self, request, client_address):
        self.slots.acquire()  # pylint: disable=consider-using-with
        try:
            super().process_request(request, client_address)
        except Exception:
            self.slots.release()
            raise

    def process_request_thread(self, request, client_address):
        try:
            super().process_request_thread(request, client_address)
        finally:
            self.slots.release()

    def handle_error(self, request, client_address):
        exc = sys.exc_info()[1]
        if not self.quiet:
            sys.stderr.write("fake-gitlab: connection error from %s: %s\n" % (client_address[0], type(exc).__name__))


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "fake-gitlab"
    sys_version = ""
    timeout = 30

    def setup(self):
        if isinstance(self.request, ssl.SSLSocket):
            # The handshake runs here, in the handler thread, so a slow client cannot stall accept().
            self.request.settimeout(self.timeout)
            self.request.do_handshake()
        super().setup()

    # Never let the base class log request lines: they may carry a private_token query parameter.
    def log_request(self, code="-", size="-"):
        return

    def log_message(self, format, *args):  # pylint: disable=redefined-builtin
        return

    def log_line(self, method, path, status, fault):
        if not self.server.quiet:
            sys.stderr.write("fake-gitlab: %s %s -> %s%s\n" % (method, path, status, " (fault %s)" % fault if fault else ""))

    def read_body(self):
        if "chunked" in (self.headers.get("Transfer-Encoding") or "").lower():
            chunks = []
            size = 0
            while True:
                line = self.rfile.readline(65537)
                length = int(line.split(b";")[0].strip() or b"0", 16)
                if length == 0:
                    while self.rfile.readline(65537) not in (b"\r\n", b"\n", b""):
                        pass
                    break
                size += length
                if size > MAX_BODY:
                    raise ApiError(413, {"message": "413 Request Entity Too Large"})
                chunks.append(self.rfile.read(length))
                self.rfile.readline(65537)
            return b"".join(chunks)
        length = int(self.headers.get("Content-Length") or 0)
        if length > MAX_BODY:
            raise ApiError(413, {"message": "413 Request Entity Too Large"})
        return self.rfile.read(length) if length > 0 else b""

    @staticmethod
    def parse_body(raw, content_type):
        if not raw:
            return {}
        content_type = (content_type or "").split(";")[0].strip().lower()
        text = raw.decode("utf-8", "replace")
        if content_type == "application/json" or (not content_type and text.lstrip().startswith(("{", "["))):
            try:
                data = json.loads(text)
            except ValueError:
                raise ApiError(400, {"message": "400 Bad request - invalid JSON body"}) from None
            if not isinstance(data, dict):
                raise ApiError(400, {"message": "400 Bad request - JSON body must be an object"})
            return data
        if content_type in ("application/x-www-form-urlencoded", ""):
            return nest_pairs(parse_qsl(text, keep_blank_values=True))
        return {}

    def send(self, status, body, headers=None, content_type="application/json"):
        headers = dict(headers or {})
        content_type = headers.pop("Content-Type", content_type)
        if body is None or status in (204, 304):
            payload = b""
        elif isinstance(body, (bytes, bytearray)):
            payload = bytes(body)
        elif isinstance(body, str):
            payload = body.encode("utf-8")
        else:
            payload = json.dumps(body).encode("utf-8")
        self.send_response(status)
        if status not in (204, 304):
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(payload)))
        for key, value in headers.items():
            self.send_header(key, str(value))
        if self.close_connection:
            self.send_header("Connection", "close")
        self.end_headers()
        if payload and self.command != "HEAD":
            self.wfile.write(payload)
        self.wfile.flush()

    def handle_any(self):
        app = self.server.app
        started = time.time()
        split = urlsplit(self.path)
        path = split.path
        query_pairs = parse_qsl(split.query, keep_blank_values=True)
        method = self.command
        try:
            raw = self.read_body()
        except ApiError as err:
            self.close_connection = True
            self.send(err.status, err.body, err.headers)
            return
        except (ValueError, OSError):
            self.close_connection = True
            self.send(400, {"message": "400 Bad request - malformed body"})
            return
        if path == CONTROL_PREFIX or path.startswith(CONTROL_PREFIX + "/"):
            self.handle_control(method, path, query_pairs, raw)
            return

        fault = app.take_fault(method, path) if path.startswith(API_PREFIX) else None
        entry = {
            "time": iso(started),
            "method": method,
            "path": path,
            "query": app.scrub(nest_pairs(query_pairs)),
            "status": None,
            "credential": None,
            "fault": fault["kind"] if fault else None,
        }
        if fault and fault["delay"]:
            time.sleep(fault["delay"])
        if fault and fault["kind"] == "drop":
            entry["status"] = None
            app.log_request(entry)
            self.log_line(method, path, "dropped", "drop")
            self.close_connection = True
            self.abort_connection()
            return
        if fault and fault["kind"] in ("status", "backoff", "non_json", "reset"):
            self.answer_fault(fault, entry)
            app.log_request(entry)
            return

        status, body, headers = 500, {"message": "500 Internal Server Error"}, {}
        req = None
        try:
            body_params = self.parse_body(raw, self.headers.get("Content-Type"))
            req = Request(self, method, path, query_pairs, body_params)
            entry["params"] = app.scrub(body_params)
            if path == API_PREFIX or path.startswith(API_PREFIX + "/"):
                status, body, headers = app.dispatch(req)
            else:
                status, body, headers = 404, {"error": "404 Not Found"}, {}
        except ApiError as err:
            status, body, headers = err.status, err.body, err.headers
        except Exception as exc:  # pylint: disable=broad-except
            sys.stderr.write("fake-gitlab: internal error on %s %s: %s\n" % (method, path, type(exc).__name__))
            status, body, headers = 500, {"message": "500 Internal Server Error"}, {}
        credential = req.credential if req is not None else None
        if credential:
            entry["credential"] = {"kind": credential[0], "sha256": credential[1]}
        if req is None and self.headers.get("PRIVATE-TOKEN"):
            entry["credential"] = {"kind": "private_token", "sha256": sha256(self.headers["PRIVATE-TOKEN"])}
        entry["status"] = status
        entry["duration_ms"] = int((time.time() - started) * 1000)
        app.log_request(entry)
        self.log_line(method, path, status, None)
        self.send(status, body, headers)

    def abort_connection(self):
        try:
            self.wfile.flush()
        except OSError:
            pass
        try:
            self.connection.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self.connection.close()

    def answer_fault(self, fault, entry):
        kind = fault["kind"]
        headers = dict(fault["headers"])
        status = fault["status"]
        entry["status"] = status
        if kind == "backoff":
            # check_if_backoff_required! -> too_many_requests! (facts 1.0)
            headers.setdefault("Retry-After", str(int(fault["retry_after"])))
            body = fault["body"] if fault["body"] is not None else {"message": "Executing database migrations. Please retry later."}
            self.send(status, body, headers)
        elif kind == "non_json":
            body = fault["body"] if fault["body"] is not None else "<html><body><h1>502 Bad Gateway</h1></body></html>"
            if not isinstance(body, str):
                body = json.dumps(body)
            self.send(status, body, headers, content_type="text/html; charset=utf-8")
        elif kind == "reset":
            body = fault["body"] if fault["body"] is not None else {"id": 0, "token": "", "token_expires_at": None, "padding": "x" * 256}
            payload = (body if isinstance(body, str) else json.dumps(body)).encode("utf-8")
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(payload)))
            for key, value in headers.items():
                self.send_header(key, str(value))
            self.end_headers()
            self.wfile.write(payload[:max(1, len(payload) // 2)])
            self.close_connection = True
            self.abort_connection()
        else:
            if "Retry-After" not in headers and status == 429 and fault.get("retry_after") is not None:
                headers["Retry-After"] = str(int(fault["retry_after"]))
            body = fault["body"] if fault["body"] is not None else {"message": "%d Fault injected" % status}
            if isinstance(body, str):
                self.send(status, body, headers, content_type="text/plain; charset=utf-8")
            else:
                self.send(status, body, headers)
        self.log_line(entry["method"], entry["path"], status, kind)

    def handle_control(self, method, path, query_pairs, raw):
        app = self.server.app
        sub = path[len(CONTROL_PREFIX):].rstrip("/") or "/"
        try:
            data = json.loads(raw.decode("utf-8")) if raw else {}
        except ValueError:
            self.send(400, {"error": "control bodies must be JSON"})
            return
        try:
            status, body = self.control(app, method, sub, dict(query_pairs), data)
        except (ValueError, KeyError, TypeError, re.error) as exc:
            status, body = 400, {"error": "%s: %s" % (type(exc).__name__, exc)}
        self.send(status, body)

    @staticmethod
    def control(app, method, sub, query, data):
        state = app.state
        if sub == "/health" and method == "GET":
            return 200, {"ok": True}
        if sub == "/seed" and method == "POST":
            return 201, state.seed(data)
        if sub == "/settings" and method in ("POST", "PUT"):
            state.update_settings(data)
            return 200, dict(state.settings)
        if sub == "/settings" and method == "GET":
            return 200, dict(state.settings)
        if sub == "/state" and method == "GET":
            return 200, app.state_dump()
        if sub == "/requests" and method == "GET":
            since = int(query.get("since", 0))
            with state.lock:
                return 200, [dict(e) for e in state.requests if e["seq"] > since]
        if sub == "/requests" and method == "DELETE":
            with state.lock:
                state.requests = []
            return 200, {"ok": True}
        if sub == "/reset" and method == "POST":
            state.clear()
            return 200, {"ok": True}
        if sub == "/faults" and method == "POST":
            specs = data if isinstance(data, list) else [data]
            return 201, [app.add_fault(spec) for spec in specs]
        if sub == "/faults" and method == "GET":
            with state.lock:
                return 200, [dict(f) for f in state.faults]
        if sub == "/faults" and method == "DELETE":
            with state.lock:
                state.faults = []
            return 200, {"ok": True}
        match = re.match(r"^/runners/(\d+)/(expire|times)$", sub)
        if match and method == "POST":
            with state.lock:
                runner = state.runners.get(int(match.group(1)))
                if runner is None:
                    return 404, {"error": "no such runner"}
                now = time.time()
                if match.group(2) == "expire":
                    runner["token_expires_at"] = now - 1
                else:
                    for key in ("created_at", "contacted_at"):
                        if key in data:
                            runner[key] = parse_time(data[key])
                        if key + "_seconds_ago" in data:
                            runner[key] = now - float(data[key + "_seconds_ago"])
                return 200, {"id": runner["id"], "token_expires_at": iso(runner["token_expires_at"]),
                             "created_at": iso(runner["created_at"]), "contacted_at": iso(runner["contacted_at"])}
        return 404, {"error": "unknown control endpoint %s %s" % (method, quote(sub))}

    do_GET = handle_any
    do_POST = handle_any
    do_PUT = handle_any
    do_DELETE = handle_any
    do_PATCH = handle_any
    do_HEAD = handle_any


def build_server(host="127.0.0.1", port=0, seed=None, tls_cert=None, tls_key=None, max_threads=32, quiet=False):
    app = FakeGitLab()
    if seed:
        app.state.seed(seed)
    context = None
    if tls_cert:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(tls_cert, tls_key)
    return Server((host, port), app, max_threads=max_threads, tls_context=context, quiet=quiet)


def main(argv=None):
    parser = argparse.ArgumentParser(description="Fake GitLab runner REST API server for tests.")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port")
    parser.add_argument("--port-file", help="write the bound port to this file once listening")
    parser.add_argument("--seed", help="JSON seed file (see README)")
    parser.add_argument("--tls-cert", help="PEM certificate: serve HTTPS")
    parser.add_argument("--tls-key", help="PEM private key for --tls-cert")
    parser.add_argument("--max-threads", type=int, default=32)
    parser.add_argument("--quiet", action="store_true", help="do not log requests to stderr")
    args = parser.parse_args(argv)
    if bool(args.tls_cert) != bool(args.tls_key):
        parser.error("--tls-cert and --tls-key go together")
    seed = None
    if args.seed:
        with open(args.seed, encoding="utf-8") as handle:
            seed = json.load(handle)
    server = build_server(args.host, args.port, seed, args.tls_cert, args.tls_key, args.max_threads, args.quiet)
    port = server.server_address[1]
    if args.port_file:
        tmp = args.port_file + ".tmp"
        with open(tmp, "w", encoding="utf-8") as handle:
            handle.write(str(port))
        os.replace(tmp, args.port_file)
    sys.stderr.write("fake-gitlab: listening on %s://%s:%d\n" % ("https" if server.tls else "http", args.host, port))
    try:
        server.serve_forever(poll_interval=0.2)
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
