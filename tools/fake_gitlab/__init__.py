# Copyright: Contributors to the dood.gitlab_runner collection
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""A fake GitLab implementing the runner REST API, for tests (see README.md beside this file).

Its behaviour follows docs/gitlab-api.md; comments name the section they rely on (``docs/gitlab-api.md §1.3``).

Modules, by concern:

- ``server``: command line and HTTP server (the entry point: ``python3 tools/fake_gitlab/server.py``);
- ``state``: what the fake knows (users, groups, projects, tokens, runners, managers) and the request log, with
  ``seed`` (filling it from test data) and ``constants`` (GitLab's access levels, scopes, timeouts, prefixes);
- ``routes``: the route table, dispatch and the user-token endpoints on one runner; ``runner_endpoints`` (the
  endpoints called with a runner or registration token) and ``listing`` (runner lists, filters, pagination) are
  its mixins; with ``params`` (Grape-like parameter checks), ``auth`` (tokens, scopes, permissions), ``entities``
  (JSON shapes) and ``errors`` (GitLab's error bodies);
- ``faults``: injected failures (5xx, 429 with Retry-After, delays, dropped or cut connections);
- ``control``: the test-facing control API under ``/-/fake``;
- ``harness``: runs the server as a subprocess for Python tests (``FakeGitLabProcess``).

Standard library only; the server runs on Python 3.9+.
"""
