# Copyright: Contributors to the dood.gitlab_runner collection
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The endpoints a runner calls with its own token or a registration token (lib/api/ci/runner.rb)."""

from __future__ import annotations

from .auth import authenticate_runner
from .constants import ACCESS_LEVELS
from .entities import registration_details, reset_token_result
from .errors import ApiError, forbidden, message_error, not_found
from .params import Params
from .state import validate_runner
from .util import sha256


class RunnerTokenEndpoints:
    """``POST /runners``, verify, delete, delete a manager and reset the token (docs/gitlab-api.md §1.2, §1.4, §1.5, §1.7).

    Mixed into ``Api``, which provides ``state`` and ``check_unmodified_since``.
    """

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
