# Copyright: Contributors to the dood.gitlab_runner collection
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Error answers in the shapes GitLab's API helpers render (docs/gitlab-api.md §1.0)."""

from __future__ import annotations


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
    # lib/api/helpers.rb forbidden!(reason) (docs/gitlab-api.md §1.0)
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
