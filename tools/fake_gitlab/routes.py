# Copyright: Contributors to the dood.gitlab_runner collection
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The GitLab endpoints: the route table, dispatch, and one method per endpoint of the runner REST API."""

from __future__ import annotations

import math
import re
import time
from email.utils import parsedate_to_datetime
from urllib.parse import urlencode

from .auth import authenticate_runner, authenticate_user, can_read_runner, can_update_runner, owned_runners
from .entities import (current_user, manager_entity, metadata, registration_details, reset_token_result, runner_details,
                       runner_entity)
from .errors import ApiError, bad_request, forbidden, grape_error, message_error, not_found
from .params import Params, nest_pairs, pagination_params
from .state import (ACCESS_LEVELS, AVAILABLE_SCOPES, GUEST, MAINTAINER, ONLINE_CONTACT_TIMEOUT, OWNER, RUNNER_TYPES,
                    SECRET_PARAM_NAMES, STALE_TIMEOUT, STATUSES_INCL_DEPRECATED, full_messages, validate_runner)
from .util import sha256, to_sentence

API_PREFIX = "/api/v4"

# Order of Grape's at_least_one_of for PUT /runners/:id (lib/api/ci/runners.rb, docs/gitlab-api.md §1.6).
PUT_FIELDS = ("description", "active", "paused", "tag_list", "run_untagged", "locked", "access_level",
              "maximum_timeout", "maintenance_note")


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


class Api:
    """GitLab's REST API (``/api/v4``) over a ``State``, independent from the socket handling."""

    def __init__(self, state):
        self.state = state
        self.routes = []
        add = self.routes.append
        # Runner-token endpoints (lib/api/ci/runner.rb, docs/gitlab-api.md §1.2, §1.4, §1.5, §1.7)
        add(Route("POST", r"/runners", self.register_runner))
        add(Route("DELETE", r"/runners", self.delete_runner_by_token))
        add(Route("DELETE", r"/runners/managers", self.delete_manager_by_token))
        add(Route("POST", r"/runners/verify", self.verify_runner))
        add(Route("POST", r"/runners/reset_authentication_token", self.reset_token_by_token))
        # User-token endpoints (lib/api/user_runners.rb, lib/api/ci/runners.rb; docs/gitlab-api.md §1.3, §1.5 to §1.8)
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
        # What standard clients ask first: who am I, which GitLab is this (docs/gitlab-api.md §1.12)
        add(Route("GET", r"/user", self.get_current_user, pat_scopes="user"))
        add(Route("GET", r"/version", self.get_metadata, pat_scopes="user"))
        add(Route("GET", r"/metadata", self.get_metadata, pat_scopes="user"))

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
                    authenticate_user(self.state, req, route)
                with self.state.lock:
                    return route.func(req)
            except ApiError as err:
                return err.status, err.body, err.headers
        if path_matched:
            return 405, {"error": "405 Not Allowed"}, {}
        return 404, {"error": "404 Not Found"}, {}

    # -- lookups -----------------------------------------------------------
    def get_runner(self, req):
        value = req.route_params["id"]
        if not re.match(r"^\d+$", value):
            raise grape_error(["id is invalid"])
        runner = self.state.runners.get(int(value))
        if runner is None:
            # ActiveRecord::RecordNotFound rescued by the API (docs/gitlab-api.md §1.6)
            raise message_error(404, "404 Not found")
        return runner

    @staticmethod
    def check_unmodified_since(req, resource):
        # destroy_conditionally! -> 412 when If-Unmodified-Since is older than the last update (docs/gitlab-api.md §1.5)
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
        # RegisterRunnerService: invalid token -> 403, disallowed -> 410 (docs/gitlab-api.md §1.2)
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
        return 201, registration_details(runner, token), {}

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
        runner = authenticate_runner(self.state, req)
        return 200, registration_details(runner, req.params["token"]), {}

    def delete_runner_by_token(self, req):
        self._runner_token_params(req).check()
        runner = authenticate_runner(self.state, req, ensure_manager=False)
        self.check_unmodified_since(req, runner)
        self.state.delete_runner(runner)
        return 204, None, {}

    def delete_manager_by_token(self, req):
        self._runner_token_params(req, "system_id").check()
        runner = authenticate_runner(self.state, req, ensure_manager=False)
        manager = runner["managers"].get(req.params["system_id"])
        if manager is None:
            raise not_found("Runner manager not found")
        self.check_unmodified_since(req, {"updated_at": manager["created_at"]})
        del runner["managers"][req.params["system_id"]]
        return 204, None, {}

    def reset_token_by_token(self, req):
        self._runner_token_params(req).check()
        runner = authenticate_runner(self.state, req)
        token = self.state.rotate_token(runner)
        return 201, reset_token_result(runner, token), {}

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
        # CreateRunnerService strategies (docs/gitlab-api.md §1.3): missing scope -> 400, no permission -> 403
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
        return 201, registration_details(runner, token), {}

    def get_runner_details(self, req):
        runner = self.get_runner(req)
        if not can_read_runner(self.state, req.user, runner):
            raise forbidden("No access granted")
        return 200, runner_details(self.state, req, runner), {}

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
        if not can_update_runner(self.state, req.user, runner):
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
        return 200, runner_details(self.state, req, runner), {}

    def delete_runner_by_id(self, req):
        runner = self.get_runner(req)
        if not req.user["admin"]:
            if len(runner["project_ids"]) > 1:
                raise forbidden("Runner associated with more than one project")
            if not can_update_runner(self.state, req.user, runner):
                raise forbidden("No access granted")
        self.check_unmodified_since(req, runner)
        self.state.delete_runner(runner)
        return 204, None, {}

    def list_managers(self, req):
        runner = self.get_runner(req)
        if not can_read_runner(self.state, req.user, runner):
            raise forbidden("No access granted")
        managers = sorted(runner["managers"].values(), key=lambda m: m["id"])
        return 200, [manager_entity(self.state, m) for m in managers], {}

    def reset_token_by_id(self, req):
        runner = self.get_runner(req)
        if not can_update_runner(self.state, req.user, runner):
            raise forbidden("No access granted")
        token = self.state.rotate_token(runner)
        return 201, reset_token_result(runner, token), {}

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
        # Offset pagination, ordered by id (docs/gitlab-api.md §1.0)
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
        return 200, [runner_entity(self.state, req, r) for r in items], headers

    def list_owned_runners(self, req):
        values = self.filter_params(req)
        runners = owned_runners(self.state, req.user)
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

    # -- user and instance -------------------------------------------------
    def get_current_user(self, req):
        return 200, current_user(self.state, req, req.user), {}

    @staticmethod
    def get_metadata(_req):
        return 200, metadata(), {}
