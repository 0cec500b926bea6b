# Copyright: Contributors to the dood.gitlab_runner collection
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Seeding the fake GitLab from test data: settings, users and their tokens, groups, projects, registration tokens
and runners.  The control API (control.py) calls ``State.seed``; no raw token is kept, only its SHA-256 digest.
"""

from __future__ import annotations

import re
import time

from .constants import DEFAULT_SETTINGS, ROLES, RUNNER_TYPES
from .util import parse_time, sha256


class Seeding:
    """Mixed into ``State``, which provides the tables, ``lock``, ``next_id``, ``new_runner`` and the token setters."""

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
        known = self.users.get(uid, {})
        self.users[uid] = {
            "id": uid,
            "username": username,
            "name": user.get("name") or username,
            "email": user.get("email") or known.get("email") or "%s@example.com" % username,
            "admin": bool(user.get("admin", False)),
            "state": "active",
            "created_at": known.get("created_at") or time.time(),
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
