# Copyright: Contributors to the dood.gitlab_runner collection
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Who may call what: personal access tokens and their scopes (APIGuard), runner tokens, and the permission rules
for reading, changing and listing runners."""

from __future__ import annotations

import time

from .errors import ApiError, forbidden, unauthorized
from .constants import LEGACY_SYSTEM_XID, MAINTAINER, OWNER
from .util import sha256


def authenticate_user(state, req, route):
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
    with state.lock:
        pat = state.pats.get(digest)
        user = state.users.get(pat["user_id"]) if pat else None
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
        # allow_access_with_scope :manage_runner for /runners/<id> paths (docs/gitlab-api.md §1.6)
        allowed.append("manage_runner")
    if route.pat_scopes == "create" and req.method == "POST":
        allowed.append("create_runner")
    if route.pat_scopes == "user" and req.method in ("GET", "HEAD"):
        # allow_access_with_scope :read_user for GET and HEAD (docs/gitlab-api.md §1.12)
        allowed.append("read_user")
    if not set(allowed) & set(pat["scopes"]):
        raise ApiError(403, {"error": "insufficient_scope",
                             "error_description": "The request requires higher privileges than provided by the access token.",
                             "scope": " ".join(allowed)})
    req.user = user


def authenticate_runner(state, req, heartbeat=True, ensure_manager=True):
    """API::Ci::Helpers::Runner#authenticate_runner! (docs/gitlab-api.md §1.4)."""
    token = req.params.get("token")
    runner = state.runner_by_token(token)
    if runner is None:
        raise forbidden()
    if heartbeat:
        runner["contacted_at"] = time.time()
    if ensure_manager:
        system_id = req.params.get("system_id", LEGACY_SYSTEM_XID)
        state.ensure_manager(runner, str(system_id), req.params.get("info"), req.handler.client_address[0])
    return runner


def can_read_runner(state, user, runner):
    if user["admin"] or runner["runner_type"] == "instance_type":
        return True
    if runner["runner_type"] == "group_type":
        return state.group_level(user, runner["group_id"]) >= MAINTAINER
    return any(state.project_level(user, p) >= MAINTAINER for p in runner["project_ids"])


def can_update_runner(state, user, runner):
    # runners.md: instance -> admin; group -> Owner; project -> Maintainer of the owning project (docs/gitlab-api.md §1.5)
    if user is None:
        return False
    if user["admin"]:
        return True
    if runner["runner_type"] == "instance_type":
        return False
    if runner["runner_type"] == "group_type":
        return state.group_level(user, runner["group_id"]) >= OWNER
    owner = runner["project_ids"][0] if runner["project_ids"] else None
    return owner is not None and state.project_level(user, owner) >= MAINTAINER


def owned_runners(state, user):
    """User#ci_owned_runners: group runners of owned groups (and descendants), project runners of maintained projects."""
    result = []
    for runner in state.runners.values():
        if runner["runner_type"] == "group_type":
            if state.group_level(user, runner["group_id"]) >= OWNER:
                result.append(runner)
        elif runner["runner_type"] == "project_type":
            if any(state.project_level(user, p) >= MAINTAINER for p in runner["project_ids"]):
                result.append(runner)
    return result
