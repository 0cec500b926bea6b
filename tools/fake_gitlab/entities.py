# Copyright: Contributors to the dood.gitlab_runner collection
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The JSON shapes of GitLab's API entities (lib/api/entities/ci/*.rb) built from the state."""

from __future__ import annotations

from .auth import can_update_runner
from .constants import GITLAB_REVISION, GITLAB_VERSION
from .util import iso


def user_basic(state, req, uid):
    user = state.users.get(uid)
    if user is None:
        return None
    return {
        "id": user["id"], "username": user["username"], "name": user["name"], "state": user["state"],
        "locked": False, "avatar_url": None, "web_url": "%s/%s" % (req.base_url(), user["username"]),
    }


def runner_entity(state, req, runner):
    # Entities::Ci::Runner (docs/gitlab-api.md §1.8)
    status = state.runner_status(runner)
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
        "created_by": user_basic(state, req, runner["creator_id"]) if runner["creator_id"] else None,
        "created_at": iso(runner["created_at"]),
        "status": status,
        "job_execution_status": "idle",
    }


def runner_details(state, req, runner):
    # Entities::Ci::RunnerDetails (docs/gitlab-api.md §1.6)
    entity = runner_entity(state, req, runner)
    manager = state.latest_manager(runner)
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
    if can_update_runner(state, req.user, runner):
        entity["maintenance_note"] = runner["maintenance_note"]
    entity["projects"] = []
    for pid in runner["project_ids"]:
        project = state.projects.get(pid)
        if project is None:
            continue
        entity["projects"].append({
            "id": pid,
            "description": project["description"],
            "name": project["name"],
            "name_with_namespace": state.project_name_with_namespace(project),
            "path": project["path"],
            "path_with_namespace": state.project_full_path(project),
        })
    entity["groups"] = []
    if runner["group_id"] is not None and runner["group_id"] in state.groups:
        group = state.groups[runner["group_id"]]
        entity["groups"].append({
            "id": group["id"], "name": group["name"],
            "web_url": "%s/groups/%s" % (req.base_url(), state.group_full_path(group["id"])),
        })
    return entity


def manager_entity(state, manager):
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
        "status": state.contact_status(manager["created_at"], manager["contacted_at"]),
        "job_execution_status": "idle",
    }


def registration_details(runner, token):
    # Entities::Ci::RunnerRegistrationDetails = id, token, token_expires_at (docs/gitlab-api.md §1.2)
    return {"id": runner["id"], "token": token, "token_expires_at": iso(runner["token_expires_at"])}


def reset_token_result(runner, token):
    # Entities::Ci::ResetTokenResult: token_expires_at only when expirable (docs/gitlab-api.md §1.7)
    result = {"token": token}
    if runner["token_expires_at"] is not None:
        result["token_expires_at"] = iso(runner["token_expires_at"])
    return result


def current_user(state, req, user):
    """GET /user: Entities::UserPublic, or Entities::UserWithAdmin for an administrator (docs/gitlab-api.md §1.12)."""
    created_at = iso(user["created_at"])
    entity = user_basic(state, req, user["id"])
    entity.update({
        "created_at": created_at, "bio": "", "location": "", "public_email": None, "linkedin": "", "twitter": "",
        "discord": "", "website_url": "", "organization": "", "job_title": "", "pronouns": None, "bot": False,
        "work_information": None, "followers": 0, "following": 0, "local_time": None,
        "last_sign_in_at": None, "confirmed_at": created_at, "last_activity_on": None, "email": user["email"],
        "theme_id": 3, "color_scheme_id": 1, "projects_limit": 100000, "current_sign_in_at": None, "identities": [],
        "can_create_group": True, "can_create_project": True, "two_factor_enabled": False, "external": False,
        "private_profile": False, "commit_email": user["email"],
    })
    if user["admin"]:
        entity.update({"is_admin": True, "note": None, "namespace_id": None, "created_by": None, "email_reset_offered_at": None,
                       "current_sign_in_ip": None, "last_sign_in_ip": None})
    return entity


def metadata():
    """GET /version and GET /metadata: the version API mirrors the metadata API since GitLab 15.5 (docs/gitlab-api.md §1.12)."""
    return {
        "version": GITLAB_VERSION,
        "revision": GITLAB_REVISION,
        "kas": {"enabled": False, "externalUrl": None, "externalK8sProxyUrl": None, "version": None},
        "enterprise": False,
    }
