# Copyright: Contributors to the dood.gitlab_runner collection
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The runner listings: filters, scopes and GitLab's offset pagination (lib/api/ci/runners.rb)."""

from __future__ import annotations

import math
import time
from urllib.parse import urlencode

from .auth import owned_runners
from .constants import (AVAILABLE_SCOPES, GUEST, MAINTAINER, ONLINE_CONTACT_TIMEOUT, OWNER, RUNNER_TYPES, SECRET_PARAM_NAMES,
                        STALE_TIMEOUT, STATUSES_INCL_DEPRECATED)
from .entities import runner_entity
from .errors import forbidden, message_error, not_found
from .params import Params, pagination_params


class RunnerListing:
    """``GET /runners``, ``/runners/all``, ``/projects/:id/runners`` and ``/groups/:id/runners`` (docs/gitlab-api.md §1.8).

    Mixed into ``Api``, which provides ``state``.
    """

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
