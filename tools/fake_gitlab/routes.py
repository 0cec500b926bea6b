# Copyright: Contributors to the dood.gitlab_runner collection
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The GitLab endpoints: the route table, dispatch, and the user-token endpoints on one runner."""

from __future__ import annotations

import re
import time
from email.utils import parsedate_to_datetime

from .auth import authenticate_user, can_read_runner, can_update_runner
from .constants import ACCESS_LEVELS, OWNER, RUNNER_TYPES
from .entities import current_user, manager_entity, metadata, registration_details, reset_token_result, runner_details
from .errors import ApiError, bad_request, forbidden, grape_error, message_error
from .listing import RunnerListing
from .params import Params, nest_pairs
from .runner_endpoints import RunnerTokenEndpoints
from .state import full_messages, validate_runner
from .util import to_sentence

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


class Api(RunnerTokenEndpoints, RunnerListing):
    """GitLab's REST API (``/api/v4``) over a ``State``, independent from the socket handling.

    The runner-token endpoints and the listings live in their own mixins; this class holds the route table, dispatch
    and the user-token endpoints on one runner.
    """

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

    # -- user and instance -------------------------------------------------
    def get_current_user(self, req):
        return 200, current_user(self.state, req, req.user), {}

    @staticmethod
    def get_metadata(_req):
        return 200, metadata(), {}
