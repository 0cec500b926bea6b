# Copyright: Contributors to the dood.gitlab_runner collection
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""GitLab's constants the fake follows: access levels, runner types and scopes, timeouts, token prefixes, settings."""

# Access levels (GitLab Gitlab::Access).
ROLES = {"guest": 10, "reporter": 20, "developer": 30, "maintainer": 40, "owner": 50}
GUEST, MAINTAINER, OWNER = 10, 40, 50

# Ci::Runner constants (docs/gitlab-api.md §1.6, §1.8, §1.9).
ONLINE_CONTACT_TIMEOUT = 2 * 3600
STALE_TIMEOUT = 7 * 24 * 3600
TAG_LIST_MAX_LENGTH = 50
RUNNER_TYPES = ("instance_type", "group_type", "project_type")
ACCESS_LEVELS = ("not_protected", "ref_protected")
STATUSES_INCL_DEPRECATED = ("active", "paused", "online", "offline", "never_contacted", "stale")
AVAILABLE_SCOPES = ("specific", "shared") + RUNNER_TYPES + STATUSES_INCL_DEPRECATED
LEGACY_SYSTEM_XID = "<legacy>"

# The GitLab release whose REST API this fake follows, as GET /version and GET /metadata report it.
GITLAB_VERSION = "18.7.0"
GITLAB_REVISION = "fake-gitlab"

# Token prefixes (docs/gitlab-api.md §1.1).
CREATED_RUNNER_TOKEN_PREFIX = "glrt-"
REGISTERED_RUNNER_TOKEN_PREFIX = "glrtr-"
REGISTRATION_TOKEN_PREFIX = "GR1348941"
PAT_PREFIX = "glpat-"
SECRET_PARAM_NAMES = ("token", "private_token", "access_token", "job_token", "registration_token")

DEFAULT_SETTINGS = {
    "allow_runner_registration_token": True,
    "valid_runner_registrars": ["project", "group"],
    "runner_token_expiration_interval": None,
    "group_runner_token_expiration_interval": None,
    "project_runner_token_expiration_interval": None,
}
