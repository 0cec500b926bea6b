# Copyright: Contributors to the dood.gitlab_runner collection
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Tests for the fake GitLab runner API server (tools/fake_gitlab)."""

from __future__ import annotations

import hashlib
import http.client
import json
import os
import re
import secrets
import shutil
import signal
import subprocess
import sys
import threading
import time
from email.utils import formatdate

import pytest

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..", ".."))
sys.path.insert(0, os.path.join(ROOT, "tools"))

from fake_gitlab import harness  # noqa: E402  pylint: disable=wrong-import-position


def sha(value):
    return hashlib.sha256(value.encode()).hexdigest()


@pytest.fixture(scope="module")
def server():
    with harness.FakeGitLabProcess() as fake:
        yield fake


@pytest.fixture
def gl(server):
    server.reset()
    server.clear_faults()
    return server


@pytest.fixture
def world(gl):
    """An admin, a group owner, a project maintainer and a developer, one group with one project."""
    admin = gl.new_user(admin=True)
    owner = gl.new_user()
    maintainer = gl.new_user()
    developer = gl.new_user()
    outsider = gl.new_user()
    group_id = gl.new_group(owner)
    project_id = gl.new_project(group_id=group_id, members={maintainer: "maintainer", developer: "developer"})
    return {"admin": admin, "owner": owner, "maintainer": maintainer, "developer": developer, "outsider": outsider,
            "group": group_id, "project": project_id}


def create(gl, token, runner_type="instance_type", **params):
    body = dict(params, runner_type=runner_type)
    status, _h, resp = gl.api("POST", "/user/runners", token, body)
    assert status == 201, resp
    return resp


def conn(gl):
    return http.client.HTTPConnection("127.0.0.1", gl.port, timeout=5)


# --------------------------------------------------------------------------
# POST /runners (legacy registration)
# --------------------------------------------------------------------------

@pytest.mark.parametrize("kind,runner_type", [("instance", "instance_type"), ("group", "group_type"), ("project", "project_type")])
def test_register_with_each_registration_token_kind(world, gl, kind, runner_type):
    target = {"instance": None, "group": world["group"], "project": world["project"]}[kind]
    reg = gl.registration_token(kind, target)
    request = {"token": reg, "description": "build-01", "tag_list": "docker, linux", "run_untagged": False, "info": {"name": "host-a"}}
    status, _h, body = gl.api("POST", "/runners", body=request)
    assert status == 201
    assert set(body) == {"id", "token", "token_expires_at"}
    assert body["token"].startswith("glrtr-")
    assert body["token_expires_at"] is None
    runner = gl.runner_by_id(body["id"])
    assert runner["runner_type"] == runner_type
    assert runner["tag_list"] == ["docker", "linux"]
    assert runner["run_untagged"] is False
    assert runner["name"] == "host-a"
    assert runner["registration_type"] == "registration_token"
    assert runner["token_sha256"] == sha(body["token"])
    assert runner["group_id"] == (world["group"] if kind == "group" else None)
    assert runner["project_ids"] == ([world["project"]] if kind == "project" else [])


def test_register_accepts_form_bodies_and_tag_arrays(gl):
    reg = gl.registration_token()
    request = {"token": reg, "tag_list[]": ["a", "b"], "paused": "true", "maximum_timeout": "3600", "access_level": "ref_protected",
               "locked": "1"}
    status, _h, body = gl.api("POST", "/runners", body=request, form=True)
    assert status == 201, body
    runner = gl.runner_by_id(body["id"])
    assert runner["tag_list"] == ["a", "b"]
    assert runner["active"] is False and runner["paused"] is True
    assert runner["maximum_timeout"] == 3600
    assert runner["access_level"] == "ref_protected"
    assert runner["locked"] is True
    status, _h, body = gl.api("POST", "/runners", body={"token": reg, "tag_list": ["x", "y,z"]})
    assert status == 201
    assert gl.runner_by_id(body["id"])["tag_list"] == ["x", "y", "z"]


def test_register_errors(gl):
    reg = gl.registration_token()
    assert gl.api("POST", "/runners", body={"token": "GR1348941" + secrets.token_urlsafe(15)})[2] == {
        "message": "403 Forbidden - invalid token supplied"}
    status, _h, body = gl.api("POST", "/runners", body={"description": "x"})
    assert (status, body) == (400, {"error": "token is missing"})
    status, _h, body = gl.api("POST", "/runners", body={"token": reg, "paused": True, "active": True})
    assert (status, body) == (400, {"error": "active, paused are mutually exclusive"})
    status, _h, body = gl.api("POST", "/runners", body={"token": reg, "access_level": "everything"})
    assert (status, body) == (400, {"error": "access_level does not have a valid value"})
    status, _h, body = gl.api("POST", "/runners", body={"token": reg, "run_untagged": False})
    assert status == 400
    assert body == {"message": {"tags_list": ["can not be empty when runner is not allowed to pick untagged jobs"]}}
    status, _h, body = gl.api("POST", "/runners", body={"token": reg, "maximum_timeout": 599})
    assert (status, body) == (400, {"message": {"maximum_timeout": ["needs to be at least 10 minutes"]}})
    status, _h, body = gl.api("POST", "/runners", body={"token": reg, "maximum_timeout": "soon"})
    assert (status, body) == (400, {"error": "maximum_timeout is invalid"})
    assert gl.runners() == []


def test_register_disallowed_gives_410(world, gl):
    reg = gl.registration_token()
    group_reg = gl.registration_token("group", world["group"])
    gl.settings(allow_runner_registration_token=False)
    for token in (reg, group_reg):
        status, _h, body = gl.api("POST", "/runners", body={"token": token})
        assert (status, body) == (410, {"message": "410 Gone - runner registration disallowed"})
    # an invalid token is still a 403, checked first
    status, _h, _b = gl.api("POST", "/runners", body={"token": "nope"})
    assert status == 403
    gl.settings(allow_runner_registration_token=True)
    assert gl.api("POST", "/runners", body={"token": group_reg})[0] == 201
    # registrars restricted to projects: group tokens become invalid, group owners may not create group runners
    gl.settings(valid_runner_registrars=["project"])
    assert gl.api("POST", "/runners", body={"token": group_reg})[:3:2] == (403, {"message": "403 Forbidden - invalid token supplied"})
    assert gl.api("POST", "/user/runners", world["owner"], {"runner_type": "group_type", "group_id": world["group"]})[0] == 403
    assert gl.api("POST", "/user/runners", world["admin"], {"runner_type": "group_type", "group_id": world["group"]})[0] == 201
    assert gl.api("POST", "/runners", body={"token": reg})[0] == 201


def test_register_disallowed_by_top_level_group_setting(gl):
    owner = gl.new_user()
    top = gl.new_group(owner, allow_runner_registration_token=False)
    sub = gl.new_group(parent_id=top)
    project = gl.new_project(group_id=sub)
    for kind, target in (("group", sub), ("project", project)):
        status, _h, _b = gl.api("POST", "/runners", body={"token": gl.registration_token(kind, target)})
        assert status == 410
    assert gl.api("POST", "/runners", body={"token": gl.registration_token()})[0] == 201


# --------------------------------------------------------------------------
# POST /user/runners
# --------------------------------------------------------------------------

def test_create_runner_of_each_type(world, gl):
    inst = create(gl, world["admin"], "instance_type", description="shared", tag_list=["a"], run_untagged=False)
    grp = create(gl, world["owner"], "group_type", group_id=world["group"], paused=True, maximum_timeout=600)
    proj_owner = gl.new_user()
    project = gl.new_project(owner_token=proj_owner)
    prj = create(gl, proj_owner, "project_type", project_id=project, locked=True, access_level="ref_protected",
                 maintenance_note="rack 4")
    for resp in (inst, grp, prj):
        assert set(resp) == {"id", "token", "token_expires_at"}
        assert resp["token"].startswith("glrt-") and not resp["token"].startswith("glrtr-")
    state = {r["id"]: r for r in gl.runners()}
    assert state[inst["id"]]["runner_type"] == "instance_type" and state[inst["id"]]["tag_list"] == ["a"]
    assert state[grp["id"]]["group_id"] == world["group"] and state[grp["id"]]["paused"] is True
    assert state[prj["id"]]["project_ids"] == [project] and state[prj["id"]]["locked"] is True
    assert state[prj["id"]]["maintenance_note"] == "rack 4"
    assert all(r["status"] == "never_contacted" for r in state.values())
    assert state[inst["id"]]["creator_id"] == gl.user_ids[world["admin"]]


def test_create_runner_auth_and_scopes(world, gl):
    body = {"runner_type": "group_type", "group_id": world["group"]}
    assert gl.api("POST", "/user/runners", None, body)[:3:2] == (401, {"message": "401 Unauthorized"})
    assert gl.api("POST", "/user/runners", harness.new_pat(), body)[:3:2] == (401, {"message": "401 Unauthorized"})
    expired = gl.add_token(world["owner"], expired=True)
    status, headers, resp = gl.api("POST", "/user/runners", expired, body)
    assert status == 401 and resp["error"] == "invalid_token" and "expired" in resp["error_description"]
    assert "WWW-Authenticate" in headers
    read_only = gl.add_token(world["owner"], scopes=("read_api",))
    status, _h, resp = gl.api("POST", "/user/runners", read_only, body)
    assert status == 403 and resp["error"] == "insufficient_scope"
    assert set(resp["scope"].split()) == {"api", "create_runner"}
    create_only = gl.add_token(world["owner"], scopes=("create_runner",))
    assert gl.api("POST", "/user/runners", create_only, body)[0] == 201
    bearer = {"Authorization": "Bearer " + world["owner"]}
    assert gl.request("POST", "/api/v4/user/runners", body=body, headers=bearer)[0] == 201
    # create_runner alone cannot read back what it created (docs/gitlab-api.md §1.3)
    assert gl.api("GET", "/runners", create_only)[0] == 403


def test_create_runner_param_and_permission_errors(world, gl):
    cases = [
        (world["owner"], {"runner_type": "group_type"}, 400, {"error": "group_id is missing"}),
        (world["owner"], {"runner_type": "project_type"}, 400, {"error": "project_id is missing"}),
        (world["owner"], {}, 400, {"error": "runner_type is missing"}),
        (world["owner"], {"runner_type": "cloud"}, 400, {"error": "runner_type does not have a valid value"}),
        (world["owner"], {"runner_type": "group_type", "group_id": "x"}, 400, {"error": "group_id is invalid"}),
        (world["owner"], {"runner_type": "group_type", "group_id": 999}, 400, {"message": "400 Bad request - Missing/invalid group"}),
        (world["owner"], {"runner_type": "project_type", "project_id": 999}, 400,
         {"message": "400 Bad request - Missing/invalid project"}),
        (world["owner"], {"runner_type": "instance_type"}, 403, {"message": "403 Forbidden - Insufficient permissions"}),
        (world["maintainer"], {"runner_type": "project_type", "project_id": world["project"]}, 403,
         {"message": "403 Forbidden - Insufficient permissions"}),
        (world["outsider"], {"runner_type": "group_type", "group_id": world["group"]}, 403,
         {"message": "403 Forbidden - Insufficient permissions"}),
        (world["owner"], {"runner_type": "group_type", "group_id": world["group"], "access_level": "all"}, 400,
         {"error": "access_level does not have a valid value"}),
    ]
    for token, body, status, expected in cases:
        got = gl.api("POST", "/user/runners", token, body)
        assert (got[0], got[2]) == (status, expected), body
    # the group owner owns the group's projects too
    assert gl.api("POST", "/user/runners", world["owner"], {"runner_type": "project_type", "project_id": world["project"]})[0] == 201


def test_create_runner_model_validation(world, gl):
    base = {"runner_type": "group_type", "group_id": world["group"]}
    cases = [
        ({"run_untagged": False}, "Tags list can not be empty when runner is not allowed to pick untagged jobs"),
        ({"tag_list": ["t%d" % i for i in range(51)]}, "Tags list Too many tags specified. Please limit the number of tags to 50"),
        ({"maximum_timeout": 10}, "Maximum timeout needs to be at least 10 minutes"),
        ({"description": "d" * 1025}, "Description is too long (maximum is 1024 characters)"),
        ({"maintenance_note": "n" * 1025}, "Maintenance note is too long (maximum is 1024 characters)"),
        ({"description": "d" * 1025, "maximum_timeout": 10},
         "Description is too long (maximum is 1024 characters) and Maximum timeout needs to be at least 10 minutes"),
    ]
    for extra, message in cases:
        status, _h, body = gl.api("POST", "/user/runners", world["owner"], dict(base, **extra))
        assert (status, body) == (400, {"message": "400 Bad request - " + message})
    assert gl.api("POST", "/user/runners", world["owner"], dict(base, tag_list=["t%d" % i for i in range(50)]))[0] == 201
    assert gl.api("POST", "/user/runners", world["owner"], dict(base, description="d" * 1024, maximum_timeout=600))[0] == 201
    assert len(gl.runners()) == 2


# --------------------------------------------------------------------------
# verify, delete, managers, reset
# --------------------------------------------------------------------------

def test_verify_heartbeats_and_creates_managers(world, gl):
    created = create(gl, world["owner"], "group_type", group_id=world["group"])
    token = created["token"]
    request = {"token": token, "system_id": "s_0123456789ab", "info": {"version": "17.5.0", "platform": "linux"}}
    status, _h, body = gl.api("POST", "/runners/verify", body=request)
    assert (status, body) == (200, {"id": created["id"], "token": token, "token_expires_at": None})
    status, _h, _b = gl.api("POST", "/runners/verify", body={"token": token})
    assert status == 200
    runner = gl.runner_by_id(created["id"])
    assert runner["contacted_at"] is not None and runner["status"] == "online"
    assert sorted(m["system_id"] for m in runner["managers"]) == ["<legacy>", "s_0123456789ab"]
    status, _h, managers = gl.api("GET", "/runners/%d/managers" % created["id"], world["owner"])
    assert status == 200 and len(managers) == 2
    first = [m for m in managers if m["system_id"] == "s_0123456789ab"][0]
    assert first["version"] == "17.5.0" and first["platform"] == "linux" and first["status"] == "online"
    assert set(first) >= {"id", "system_id", "version", "revision", "platform", "architecture", "created_at", "contacted_at",
                          "ip_address", "status"}
    details = gl.api("GET", "/runners/%d" % created["id"], world["owner"])[2]
    assert details["version"] in ("17.5.0", None)
    assert gl.api("POST", "/runners/verify", body={"token": "glrt-" + secrets.token_urlsafe(20)})[2] == {"message": "403 Forbidden"}
    assert gl.api("POST", "/runners/verify", body={})[:3:2] == (400, {"error": "token is missing"})
    assert gl.api("GET", "/runners/%d/managers" % created["id"], world["outsider"])[0] == 403


def test_delete_by_token_and_managers(world, gl):
    first = create(gl, world["owner"], "group_type", group_id=world["group"])
    second = create(gl, world["owner"], "group_type", group_id=world["group"])
    gl.api("POST", "/runners/verify", body={"token": first["token"], "system_id": "s_aaaaaaaaaaaa"})
    gl.api("POST", "/runners/verify", body={"token": first["token"], "system_id": "s_bbbbbbbbbbbb"})
    status, _h, body = gl.api("DELETE", "/runners/managers", body={"token": first["token"], "system_id": "s_aaaaaaaaaaaa"})
    assert (status, body) == (204, None)
    assert [m["system_id"] for m in gl.runner_by_id(first["id"])["managers"]] == ["s_bbbbbbbbbbbb"]
    assert gl.api("DELETE", "/runners/managers", body={"token": first["token"], "system_id": "s_aaaaaaaaaaaa"})[:3:2] == (
        404, {"message": "404 Runner manager not found Not Found"})
    assert gl.api("DELETE", "/runners/managers", body={"token": first["token"]})[:3:2] == (400, {"error": "system_id is missing"})
    assert gl.api("DELETE", "/runners/managers", body={"token": "bad", "system_id": "s_x"})[0] == 403
    # the runner token may also come as a query parameter on DELETE
    status, _h, _b = gl.request("DELETE", "/api/v4/runners?token=" + first["token"])
    assert status == 204
    assert gl.runner_by_id(first["id"]) is None and gl.runner_by_id(second["id"]) is not None
    assert gl.api("DELETE", "/runners", body={"token": first["token"]})[:3:2] == (403, {"message": "403 Forbidden"})
    assert gl.api("DELETE", "/runners", body={"token": second["token"]})[0] == 204
    assert gl.runners() == []


def test_reset_token_by_runner_token(world, gl):
    created = create(gl, world["owner"], "group_type", group_id=world["group"])
    status, _h, body = gl.api("POST", "/runners/reset_authentication_token", body={"token": created["token"]})
    assert status == 201 and set(body) == {"token"}  # no expiry configured -> no token_expires_at key
    assert body["token"].startswith("glrt-") and body["token"] != created["token"]
    assert gl.api("POST", "/runners/verify", body={"token": created["token"]})[0] == 403
    assert gl.api("POST", "/runners/verify", body={"token": body["token"]})[0] == 200
    assert gl.runner_by_id(created["id"])["token_sha256"] == sha(body["token"])
    assert gl.api("POST", "/runners/reset_authentication_token", body={"token": created["token"]})[0] == 403


def test_reset_token_by_id_with_pat(world, gl):
    gl.settings(group_runner_token_expiration_interval=3600)
    created = create(gl, world["owner"], "group_type", group_id=world["group"])
    assert gl.api("POST", "/runners/%d/reset_authentication_token" % created["id"], world["outsider"])[:3:2] == (
        403, {"message": "403 Forbidden - No access granted"})
    assert gl.api("POST", "/runners/999/reset_authentication_token", world["owner"])[:3:2] == (404, {"message": "404 Not found"})
    status, _h, body = gl.api("POST", "/runners/%d/reset_authentication_token" % created["id"], world["owner"])
    assert status == 201 and set(body) == {"token", "token_expires_at"}
    assert gl.api("POST", "/runners/verify", body={"token": created["token"]})[0] == 403
    assert gl.api("POST", "/runners/verify", body={"token": body["token"]})[0] == 200
    manage = gl.add_token(world["owner"], scopes=("manage_runner",))
    assert gl.api("POST", "/runners/%d/reset_authentication_token" % created["id"], manage)[0] == 201


# --------------------------------------------------------------------------
# GET / PUT / DELETE /runners/:id
# --------------------------------------------------------------------------

def test_get_runner_details_and_permissions(world, gl):
    inst = create(gl, world["admin"], "instance_type", description="shared", maintenance_note="note")
    grp = create(gl, world["owner"], "group_type", group_id=world["group"], tag_list="a,b", maximum_timeout=3600)
    prj = create(gl, world["owner"], "project_type", project_id=world["project"])
    status, _h, body = gl.api("GET", "/runners/%d" % grp["id"], world["owner"])
    assert status == 200
    expected_keys = {"id", "description", "ip_address", "active", "paused", "is_shared", "runner_type", "name", "online",
                     "created_by", "created_at", "status", "job_execution_status", "tag_list", "run_untagged", "locked",
                     "maximum_timeout", "access_level", "version", "revision", "platform", "architecture", "contacted_at",
                     "maintenance_note", "projects", "groups"}
    assert set(body) == expected_keys
    assert body["tag_list"] == ["a", "b"] and body["maximum_timeout"] == 3600 and body["is_shared"] is False
    assert body["status"] == "never_contacted" and body["online"] is False and body["contacted_at"] is None
    assert body["groups"][0]["id"] == world["group"] and body["created_by"]["id"] == gl.user_ids[world["owner"]]
    assert "token" not in body
    # instance runners are readable by anyone, but maintenance_note only for those who can update
    status, _h, body = gl.api("GET", "/runners/%d" % inst["id"], world["outsider"])
    assert status == 200 and body["is_shared"] is True and "maintenance_note" not in body
    assert gl.api("GET", "/runners/%d" % inst["id"], world["admin"])[2]["maintenance_note"] == "note"
    assert gl.api("GET", "/runners/%d" % grp["id"], world["outsider"])[:3:2] == (403, {"message": "403 Forbidden - No access granted"})
    assert gl.api("GET", "/runners/%d" % prj["id"], world["developer"])[0] == 403
    details = gl.api("GET", "/runners/%d" % prj["id"], world["maintainer"])[2]
    assert details["projects"][0]["id"] == world["project"]
    assert gl.api("GET", "/runners/424242", world["admin"])[:3:2] == (404, {"message": "404 Not found"})
    assert gl.api("GET", "/runners/abc", world["admin"])[:3:2] == (400, {"error": "id is invalid"})
    assert gl.api("GET", "/runners/%d" % grp["id"])[:3:2] == (401, {"message": "401 Unauthorized"})
    read_api = gl.add_token(world["owner"], scopes=("read_api",))
    assert gl.api("GET", "/runners/%d" % grp["id"], read_api)[0] == 200


def test_update_runner(world, gl):
    grp = create(gl, world["owner"], "group_type", group_id=world["group"])
    path = "/runners/%d" % grp["id"]
    update = {"description": "new", "tag_list": "x,y", "paused": True, "maximum_timeout": 7200, "access_level": "ref_protected",
              "locked": True, "run_untagged": False, "maintenance_note": "m"}
    status, _h, body = gl.api("PUT", path, world["owner"], update)
    assert status == 200
    assert (body["description"], body["tag_list"], body["paused"], body["active"]) == ("new", ["x", "y"], True, False)
    assert (body["maximum_timeout"], body["access_level"], body["locked"], body["run_untagged"]) == (7200, "ref_protected", True, False)
    assert body["maintenance_note"] == "m"
    state = gl.runner_by_id(grp["id"])
    assert state["description"] == "new" and state["tag_list"] == ["x", "y"] and state["active"] is False
    status, _h, body = gl.api("PUT", path, world["owner"], {"name": "ignored"})
    assert status == 400
    assert body == {"error": "description, active, paused, tag_list, run_untagged, locked, access_level, maximum_timeout, "
                             "maintenance_note are missing, at least one parameter must be provided"}
    assert gl.api("PUT", path, world["owner"], {"active": True, "paused": False})[:3:2] == (
        400, {"error": "active, paused are mutually exclusive"})
    assert gl.api("PUT", path, world["owner"], {"tag_list": []})[:3:2] == (
        400, {"message": {"tags_list": ["can not be empty when runner is not allowed to pick untagged jobs"]}})
    assert gl.api("PUT", path, world["owner"], {"maximum_timeout": 60})[:3:2] == (
        400, {"message": {"maximum_timeout": ["needs to be at least 10 minutes"]}})
    assert gl.api("PUT", path, world["owner"], {"active": True})[2]["paused"] is False
    assert gl.api("PUT", path, world["outsider"], {"description": "evil"})[:3:2] == (403, {"message": "403 Forbidden - No access granted"})
    maintainer_of_group = gl.new_user()
    gl.new_project(group_id=world["group"])
    assert gl.api("PUT", "/runners/9999", world["owner"], {"description": "x"})[0] == 404
    read_api = gl.add_token(world["owner"], scopes=("read_api",))
    status, _h, body = gl.api("PUT", path, read_api, {"description": "x"})
    assert status == 403 and body["error"] == "insufficient_scope"
    manage = gl.add_token(world["owner"], scopes=("manage_runner",))
    assert gl.api("PUT", path, manage, {"description": "via manage_runner"}, form=True)[0] == 200
    assert gl.runner_by_id(grp["id"])["description"] == "via manage_runner"
    assert gl.api("PUT", path, maintainer_of_group, {"description": "x"})[0] == 403


def test_delete_runner_by_id(world, gl):
    prj = create(gl, world["owner"], "project_type", project_id=world["project"])
    inst = create(gl, world["admin"], "instance_type")
    assert gl.api("DELETE", "/runners/%d" % prj["id"], world["developer"])[:3:2] == (403, {"message": "403 Forbidden - No access granted"})
    assert gl.api("DELETE", "/runners/%d" % inst["id"], world["owner"])[0] == 403
    assert gl.api("DELETE", "/runners/%d" % prj["id"], world["maintainer"])[:3:2] == (204, None)
    assert gl.api("DELETE", "/runners/%d" % prj["id"], world["maintainer"])[:3:2] == (404, {"message": "404 Not found"})
    assert gl.api("POST", "/runners/verify", body={"token": prj["token"]})[0] == 403
    old = formatdate(time.time() - 3600, usegmt=True)
    assert gl.api("DELETE", "/runners/%d" % inst["id"], world["admin"], headers={"If-Unmodified-Since": old})[:3:2] == (
        412, {"message": "412 Precondition Failed"})
    assert gl.api("DELETE", "/runners/%d" % inst["id"], world["admin"])[0] == 204


def test_delete_runner_with_several_projects(world, gl):
    other = gl.new_project(group_id=world["group"], members={world["maintainer"]: "maintainer"})
    rid = gl.seed(runners=[{"runner_type": "project_type", "project_ids": [world["project"], other]}])["runners"][0]
    assert gl.api("DELETE", "/runners/%d" % rid, world["maintainer"])[:3:2] == (
        403, {"message": "403 Forbidden - Runner associated with more than one project"})
    assert gl.api("DELETE", "/runners/%d" % rid, world["admin"])[0] == 204


# --------------------------------------------------------------------------
# Listing, filters, pagination
# --------------------------------------------------------------------------

def test_listings_and_filters(world, gl):
    inst = create(gl, world["admin"], "instance_type", tag_list="linux,docker")
    grp = create(gl, world["owner"], "group_type", group_id=world["group"], tag_list="linux", paused=True)
    prj = create(gl, world["owner"], "project_type", project_id=world["project"])
    gl.api("POST", "/runners/verify", body={"token": prj["token"]})
    other_owner = gl.new_user()
    foreign = create(gl, other_owner, "group_type", group_id=gl.new_group(other_owner))

    def ids(path, token):
        status, _h, body = gl.api("GET", path, token)
        assert status == 200, body
        return sorted(r["id"] for r in body)

    assert ids("/runners", world["owner"]) == [grp["id"], prj["id"]]
    assert ids("/runners", world["maintainer"]) == [prj["id"]]
    assert ids("/runners", world["developer"]) == []
    assert ids("/runners/all", world["admin"]) == sorted([inst["id"], grp["id"], prj["id"], foreign["id"]])
    assert gl.api("GET", "/runners/all", world["owner"])[:3:2] == (403, {"message": "403 Forbidden"})
    assert ids("/projects/%d/runners" % world["project"], world["maintainer"]) == [inst["id"], grp["id"], prj["id"]]
    assert ids("/groups/%d/runners" % world["group"], world["owner"]) == [inst["id"], grp["id"]]
    assert gl.api("GET", "/projects/%d/runners" % world["project"], world["developer"])[:3:2] == (403, {"message": "403 Forbidden"})
    assert gl.api("GET", "/projects/%d/runners" % world["project"], world["outsider"])[:3:2] == (404, {"message": "404 Project Not Found"})
    assert gl.api("GET", "/groups/%d/runners" % world["group"], world["outsider"])[:3:2] == (404, {"message": "404 Group Not Found"})
    # filters
    assert ids("/runners/all?type=group_type", world["admin"]) == sorted([grp["id"], foreign["id"]])
    assert ids("/runners/all?paused=true", world["admin"]) == [grp["id"]]
    assert ids("/runners/all?status=online", world["admin"]) == [prj["id"]]
    assert ids("/runners/all?status=never_contacted", world["admin"]) == sorted([inst["id"], grp["id"], foreign["id"]])
    assert ids("/runners/all?tag_list=linux", world["admin"]) == [inst["id"], grp["id"]]
    assert ids("/runners/all?tag_list=linux,docker", world["admin"]) == [inst["id"]]
    assert ids("/runners/all?scope=shared", world["admin"]) == [inst["id"]]
    assert ids("/groups/%d/runners?type=group_type" % world["group"], world["owner"]) == [grp["id"]]
    assert ids("/projects/%d/runners?type=project_type" % world["project"], world["owner"]) == [prj["id"]]
    assert gl.api("GET", "/runners?scope=shared", world["owner"])[:3:2] == (400, {"message": "Scope contains invalid value"})
    assert gl.api("GET", "/runners?type=cloud", world["owner"])[:3:2] == (400, {"error": "type does not have a valid value"})
    assert gl.api("GET", "/runners?status=sleepy", world["owner"])[:3:2] == (400, {"error": "status does not have a valid value"})
    entry = gl.api("GET", "/runners/all?type=instance_type", world["admin"])[2][0]
    assert set(entry) == {"id", "description", "ip_address", "active", "paused", "is_shared", "runner_type", "name", "online",
                          "created_by", "created_at", "status", "job_execution_status"}
    manage = gl.add_token(world["owner"], scopes=("manage_runner",))
    assert gl.api("GET", "/runners", manage)[0] == 403


def test_status_offline_and_stale(world, gl):
    online = create(gl, world["owner"], "group_type", group_id=world["group"])
    offline = create(gl, world["owner"], "group_type", group_id=world["group"])
    stale = create(gl, world["owner"], "group_type", group_id=world["group"])
    gl.api("POST", "/runners/verify", body={"token": online["token"]})
    gl.set_runner_times(offline["id"], contacted_at_seconds_ago=3 * 3600)
    gl.set_runner_times(stale["id"], created_at_seconds_ago=8 * 86400)
    statuses = {r["id"]: r["status"] for r in gl.api("GET", "/groups/%d/runners" % world["group"], world["owner"])[2]}
    assert statuses == {online["id"]: "online", offline["id"]: "offline", stale["id"]: "stale"}
    assert gl.api("GET", "/runners/%d" % offline["id"], world["owner"])[2]["online"] is False
    only = gl.api("GET", "/runners?status=stale", world["owner"])[2]
    assert [r["id"] for r in only] == [stale["id"]]


def test_pagination_headers(world, gl):
    gl.seed(runners=[{"runner_type": "group_type", "group_id": world["group"]} for _i in range(45)])
    status, headers, body = gl.api("GET", "/groups/%d/runners?per_page=20&page=2&type=group_type" % world["group"], world["owner"])
    assert status == 200 and len(body) == 20
    assert (headers["x-page"], headers["x-per-page"], headers["x-next-page"], headers["x-prev-page"]) == ("2", "20", "3", "1")
    assert (headers["x-total"], headers["x-total-pages"]) == ("45", "3")
    links = dict((part.split("; ")[1], part.split("; ")[0].strip("<>")) for part in headers["Link"].split(", "))
    assert set(links) == {'rel="prev"', 'rel="next"', 'rel="first"', 'rel="last"'}
    assert "page=3" in links['rel="next"'] and "per_page=20" in links['rel="next"'] and "type=group_type" in links['rel="next"']
    assert "page=3" in links['rel="last"'] and "page=1" in links['rel="first"']
    assert links['rel="next"'].startswith(gl.url + "/api/v4/groups/")
    status, headers, body = gl.api("GET", "/groups/%d/runners?page=3" % world["group"], world["owner"])
    assert len(body) == 5 and headers["x-next-page"] == "" and headers["x-prev-page"] == "2"
    assert 'rel="next"' not in headers["Link"]
    status, headers, body = gl.api("GET", "/groups/%d/runners" % world["group"], world["owner"])
    assert headers["x-per-page"] == "20" and headers["x-page"] == "1" and len(body) == 20
    assert 'rel="prev"' not in headers["Link"]
    status, headers, body = gl.api("GET", "/groups/%d/runners?per_page=500" % world["group"], world["owner"])
    assert headers["x-per-page"] == "100" and len(body) == 45 and headers["x-total-pages"] == "1"
    assert [r["id"] for r in body] == sorted(r["id"] for r in body)
    assert gl.api("GET", "/runners?page=x", world["owner"])[:3:2] == (400, {"error": "page is invalid"})
    status, headers, body = gl.api("GET", "/runners", world["developer"])
    assert body == [] and headers["x-total"] == "0" and headers["x-total-pages"] == "1"


# --------------------------------------------------------------------------
# Token expiry
# --------------------------------------------------------------------------

def _expires_in(value):
    moment = time.strptime(value[:19], "%Y-%m-%dT%H:%M:%S")
    return time.mktime(moment) - time.mktime(time.gmtime())


def test_token_expiry_settings(world, gl):
    gl.settings(runner_token_expiration_interval=7200, group_runner_token_expiration_interval=3600)
    inst = create(gl, world["admin"], "instance_type")
    assert 7100 < _expires_in(inst["token_expires_at"]) <= 7200
    grp = create(gl, world["owner"], "group_type", group_id=world["group"])
    assert 3500 < _expires_in(grp["token_expires_at"]) <= 3600
    prj = create(gl, world["owner"], "project_type", project_id=world["project"])
    assert prj["token_expires_at"] is None  # no project interval configured (docs/gitlab-api.md §1.7)
    reg = gl.api("POST", "/runners", body={"token": gl.registration_token()})[2]
    assert reg["token_expires_at"] is not None and reg["token"].startswith("glrtr-")
    verify = gl.api("POST", "/runners/verify", body={"token": inst["token"]})[2]
    assert verify["token_expires_at"] == inst["token_expires_at"]
    reset = gl.api("POST", "/runners/reset_authentication_token", body={"token": inst["token"]})[2]
    assert 7100 < _expires_in(reset["token_expires_at"]) <= 7200
    sub = gl.new_group(parent_id=world["group"], runner_token_expiration_interval=1800)
    sub_runner = create(gl, world["owner"], "group_type", group_id=sub)
    assert 1700 < _expires_in(sub_runner["token_expires_at"]) <= 1800


def test_expired_token_is_rejected_on_runner_endpoints(world, gl):
    created = create(gl, world["owner"], "group_type", group_id=world["group"])
    gl.api("POST", "/runners/verify", body={"token": created["token"], "system_id": "s_cccccccccccc"})
    gl.expire_runner_token(created["id"])
    state = gl.runner_by_id(created["id"])
    assert state["token_expired"] is True
    for method, path, extra in (("POST", "/runners/verify", {}), ("POST", "/runners/reset_authentication_token", {}),
                                ("DELETE", "/runners/managers", {"system_id": "s_cccccccccccc"}), ("DELETE", "/runners", {})):
        status, _h, body = gl.api(method, path, body=dict(extra, token=created["token"]))
        assert (status, body) == (403, {"message": "403 Forbidden"}), path
    assert gl.runner_by_id(created["id"]) is not None
    # recovery with a PAT (gitlab-runner reset-token --pat: docs/gitlab-api.md §1.7, §1.11)
    new = gl.api("POST", "/runners/%d/reset_authentication_token" % created["id"], world["owner"])[2]
    assert gl.api("POST", "/runners/verify", body={"token": new["token"]})[0] == 200


# --------------------------------------------------------------------------
# GET /user, GET /version, GET /metadata
# --------------------------------------------------------------------------

USER_PUBLIC_KEYS = {"id", "username", "name", "state", "locked", "avatar_url", "web_url", "created_at", "bio", "location",
                    "public_email", "linkedin", "twitter", "discord", "website_url", "organization", "job_title", "pronouns",
                    "bot", "work_information", "followers", "following", "local_time", "last_sign_in_at", "confirmed_at",
                    "last_activity_on", "email", "theme_id", "color_scheme_id", "projects_limit", "current_sign_in_at",
                    "identities", "can_create_group", "can_create_project", "two_factor_enabled", "external",
                    "private_profile", "commit_email"}
ADMIN_ONLY_KEYS = {"is_admin", "note", "namespace_id", "created_by", "email_reset_offered_at", "current_sign_in_ip",
                   "last_sign_in_ip"}


def test_current_user(gl):
    admin = gl.new_user(admin=True, username="root")
    member = gl.new_user(username="ci-owner", scopes=("create_runner", "manage_runner", "read_api"))
    status, _h, body = gl.api("GET", "/user", member)
    assert status == 200 and set(body) == USER_PUBLIC_KEYS
    assert (body["id"], body["username"], body["state"]) == (gl.user_ids[member], "ci-owner", "active")
    assert body["web_url"] == gl.url + "/ci-owner"  # python-gitlab's auth() compares it with the URL it was given
    assert body["email"] == "ci-owner@example.com" and body["created_at"].endswith("Z")
    status, _h, body = gl.api("GET", "/user", admin)
    assert status == 200 and set(body) == USER_PUBLIC_KEYS | ADMIN_ONLY_KEYS and body["is_admin"] is True
    # the same user behind another of its tokens; read_user is enough for GET
    status, _h, body = gl.api("GET", "/user", gl.add_token(member, scopes=("read_user",)))
    assert (status, body["id"]) == (200, gl.user_ids[member])
    assert gl.request("GET", "/api/v4/user", headers={"Authorization": "Bearer " + member})[0] == 200
    assert gl.request("HEAD", "/api/v4/user", headers={"PRIVATE-TOKEN": member})[:3:2] == (200, None)
    assert gl.api("POST", "/user", member)[:3:2] == (405, {"error": "405 Not Allowed"})
    seeded = harness.new_pat()
    gl.seed(users=[{"username": "ops", "email": "ops@corp.example", "tokens": [{"token": seeded, "scopes": ["read_user"]}]}])
    assert gl.api("GET", "/user", seeded)[2]["email"] == "ops@corp.example"
    assert {u["username"]: u["email"] for u in gl.state()["users"]}["ops"] == "ops@corp.example"


@pytest.mark.parametrize("path", ["/user", "/version", "/metadata"])
def test_user_and_version_need_a_valid_token(gl, path):
    owner = gl.new_user()
    assert gl.api("GET", path)[:3:2] == (401, {"message": "401 Unauthorized"})
    assert gl.api("GET", path, harness.new_pat())[:3:2] == (401, {"message": "401 Unauthorized"})
    status, headers, body = gl.api("GET", path, gl.add_token(owner, expired=True))
    assert (status, body["error"]) == (401, "invalid_token") and "WWW-Authenticate" in headers
    status, _h, body = gl.api("GET", path, gl.add_token(owner, scopes=("create_runner", "manage_runner")))
    assert (status, body["error"], body["scope"]) == (403, "insufficient_scope", "api read_api read_user")
    assert gl.api("GET", path, owner)[0] == 200
    assert [(e["path"], e["status"]) for e in gl.requests()][-1] == ("/api/v4" + path, 200)
    assert set(e["peer"] for e in gl.requests()) == {"127.0.0.1"}, "each request records the address it came from"


@pytest.mark.parametrize("path", ["/version", "/metadata"])
def test_version_is_the_metadata_body(gl, path):
    status, _h, body = gl.api("GET", path, gl.new_user(scopes=("read_user",)))
    assert status == 200
    assert set(body) == {"version", "revision", "kas", "enterprise"}
    assert re.match(r"^\d+\.\d+\.\d+$", body["version"]) and body["revision"] and body["enterprise"] is False
    assert body["kas"] == {"enabled": False, "externalUrl": None, "externalK8sProxyUrl": None, "version": None}


# --------------------------------------------------------------------------
# Fault injection
# --------------------------------------------------------------------------

def test_fault_status_with_body_times_and_order(world, gl):
    gl.add_fault(r"^/api/v4/user/runners$", method="POST", status=500, body={"message": "boom"}, times=1)
    gl.add_fault(r"^/api/v4/user/runners$", method="POST", status=502, body="bad gateway", times=1)
    body = {"runner_type": "group_type", "group_id": world["group"]}
    assert gl.api("POST", "/user/runners", world["owner"], body)[:3:2] == (500, {"message": "boom"})
    assert gl.api("POST", "/user/runners", world["owner"], body)[:3:2] == (502, "bad gateway")
    assert gl.api("POST", "/user/runners", world["owner"], body)[0] == 201
    assert len(gl.runners()) == 1
    assert [f["hits"] for f in gl.faults()] == [1, 1]
    # method filter and skip
    gl.add_fault(r"/runners/\d+$", method="GET", status=503, skip=1, times=1)
    rid = gl.runners()[0]["id"]
    assert gl.api("PUT", "/runners/%d" % rid, world["owner"], {"description": "x"})[0] == 200
    assert gl.api("GET", "/runners/%d" % rid, world["owner"])[0] == 200
    assert gl.api("GET", "/runners/%d" % rid, world["owner"])[0] == 503
    assert gl.api("GET", "/runners/%d" % rid, world["owner"])[0] == 200
    gl.add_fault(".*", status=500)
    assert gl.api("GET", "/runners/%d" % rid, world["owner"])[0] == 500
    assert gl.api("GET", "/runners/%d" % rid, world["owner"])[0] == 500  # unlimited
    gl.clear_faults()
    assert gl.faults() == []
    assert gl.api("GET", "/runners/%d" % rid, world["owner"])[0] == 200


def test_fault_backoff(gl):
    reg = gl.registration_token()
    gl.add_fault(r"^/api/v4/runners", kind="backoff", times=2)
    for _i in range(2):
        status, headers, body = gl.api("POST", "/runners", body={"token": reg})
        assert (status, body) == (429, {"message": "Executing database migrations. Please retry later."})
        assert headers["Retry-After"] == "60"
    assert gl.api("POST", "/runners", body={"token": reg})[0] == 201
    gl.add_fault(r"/verify$", kind="status", status=429, retry_after=5, times=1)
    assert gl.api("POST", "/runners/verify", body={"token": "x"})[1]["Retry-After"] == "5"
    log = gl.requests()
    assert [e["fault"] for e in log[:2]] == ["backoff", "backoff"] and log[2]["fault"] is None


def test_fault_delay(world, gl):
    gl.add_fault(r"^/api/v4/runners$", method="GET", kind="delay", delay=0.4, times=1)
    started = time.time()
    assert gl.api("GET", "/runners", world["owner"])[0] == 200
    assert time.time() - started >= 0.4
    started = time.time()
    assert gl.api("GET", "/runners", world["owner"])[0] == 200
    assert time.time() - started < 0.4
    gl.add_fault(r"^/api/v4/runners$", method="GET", status=500, delay=0.3, times=1)
    started = time.time()
    assert gl.api("GET", "/runners", world["owner"])[0] == 500
    assert time.time() - started >= 0.3


def test_fault_drop_connection(gl):
    gl.add_fault(r"^/api/v4/runners/verify$", kind="drop", times=1)
    connection = conn(gl)
    connection.request("POST", "/api/v4/runners/verify", body=json.dumps({"token": "x"}), headers={"Content-Type": "application/json"})
    with pytest.raises((http.client.RemoteDisconnected, ConnectionError)):
        connection.getresponse()
    connection.close()
    assert gl.api("POST", "/runners/verify", body={"token": "x"})[0] == 403
    assert gl.requests()[0]["fault"] == "drop" and gl.requests()[0]["status"] is None


def test_fault_reset_mid_response(gl):
    gl.add_fault(r"^/api/v4/runners$", method="POST", kind="reset", times=1)
    connection = conn(gl)
    connection.request("POST", "/api/v4/runners", body=json.dumps({"token": "x"}), headers={"Content-Type": "application/json"})
    response = connection.getresponse()
    assert response.status == 200
    with pytest.raises((http.client.IncompleteRead, ConnectionError)):
        response.read()
    connection.close()


def test_fault_non_json(gl):
    gl.add_fault(r"^/api/v4/runners/verify$", kind="non_json", times=1)
    status, headers, body = gl.api("POST", "/runners/verify", body={"token": "x"})
    assert status == 200 and headers["Content-Type"].startswith("text/html")
    with pytest.raises(ValueError):
        json.loads(body)
    gl.add_fault(r"^/api/v4/runners/verify$", kind="non_json", status=502, body="upstream down", times=1)
    assert gl.api("POST", "/runners/verify", body={"token": "x"})[:3:2] == (502, "upstream down")


def test_fault_spec_validation(gl):
    with pytest.raises(RuntimeError):
        gl.add_fault("(", status=500)
    with pytest.raises(RuntimeError):
        gl.add_fault(".*", kind="explode")


# --------------------------------------------------------------------------
# Secrets never leak; request log; control API
# --------------------------------------------------------------------------

def test_state_and_request_log_never_contain_raw_tokens(world, gl):
    secrets_seen = set(v for k, v in world.items() if isinstance(v, str))
    reg = gl.registration_token("group", world["group"])
    secrets_seen.add(reg)
    created = gl.api("POST", "/runners", body={"token": reg, "description": "d"})[2]
    secrets_seen.add(created["token"])
    mine = create(gl, world["owner"], "group_type", group_id=world["group"])
    secrets_seen.add(mine["token"])
    gl.api("POST", "/runners/verify", body={"token": mine["token"], "system_id": "s_dddddddddddd"})
    gl.api("POST", "/runners/verify", body={"token": mine["token"]}, form=True)
    gl.request("GET", "/api/v4/runners?private_token=" + world["owner"])
    gl.request("GET", "/api/v4/runners", headers={"Authorization": "Bearer " + world["maintainer"]})
    rotated = gl.api("POST", "/runners/reset_authentication_token", body={"token": mine["token"]})[2]
    secrets_seen.add(rotated["token"])
    gl.api("PUT", "/runners/%d" % mine["id"], world["owner"], {"description": rotated["token"]})  # a careless client
    # an un-prefixed legacy token is recognised by its hash, not by its shape
    legacy = secrets.token_hex(16)
    secrets_seen.add(legacy)
    legacy_id = gl.seed(runners=[{"runner_type": "instance_type", "token": legacy}])["runners"][0]
    gl.api("PUT", "/runners/%d" % legacy_id, world["admin"], {"description": legacy, "maintenance_note": "x"})
    gl.api("POST", "/runners/verify", body={"token": legacy, "system_id": legacy})
    dump = json.dumps(gl.state()) + json.dumps(gl.requests()) + json.dumps(gl.faults()) + gl.server_log()
    for secret in secrets_seen:
        assert secret not in dump
    log = gl.requests()
    kinds = [e["credential"]["kind"] for e in log if e["credential"]]
    assert {"registration_token", "runner_token", "private_token", "private_token_param", "bearer"} <= set(kinds)
    verify = [e for e in log if e["path"] == "/api/v4/runners/verify"][0]
    assert verify["credential"]["sha256"] == sha(mine["token"])
    assert verify["params"]["system_id"] == "s_dddddddddddd" and verify["params"]["token"] == "[FILTERED]"
    assert set(log[0]) >= {"time", "method", "path", "query", "status", "credential", "fault"}
    by_query = [e for e in log if e["credential"] and e["credential"]["kind"] == "private_token_param"][0]
    assert by_query["query"] == {"private_token": "[FILTERED]"} and by_query["status"] == 200
    assert gl.count_requests("POST", r"/verify$") == 3
    assert gl.count_requests(path_regex=r"^/api/v4/runners$") == 3
    assert gl.runner_by_id(mine["id"])["token_sha256"] == sha(rotated["token"])


def test_reset_clears_everything(world, gl):
    create(gl, world["owner"], "group_type", group_id=world["group"])
    gl.add_fault(".*", status=500)
    gl.reset()
    state = gl.state()
    assert state["runners"] == [] and state["users"] == [] and state["groups"] == []
    assert gl.faults() == [] and gl.requests() == []
    assert gl.api("GET", "/runners", world["owner"])[0] == 401


def test_unknown_routes_bad_bodies_and_keep_alive(world, gl):
    assert gl.api("GET", "/nothing/here", world["owner"])[:3:2] == (404, {"error": "404 Not Found"})
    assert gl.api("PATCH", "/runners/1", world["owner"])[:3:2] == (405, {"error": "405 Not Allowed"})
    status, _h, _b = gl.request("POST", "/api/v4/runners", body=None, headers={"Content-Type": "application/json"})
    assert status == 400
    connection = conn(gl)
    connection.request("POST", "/api/v4/runners", body="{not json", headers={"Content-Type": "application/json"})
    response = connection.getresponse()
    assert response.status == 400 and json.loads(response.read())["message"].startswith("400 Bad request")
    # same socket, second request: keep-alive
    sock = connection.sock
    connection.request("GET", "/api/v4/runners", headers={"PRIVATE-TOKEN": world["owner"]})
    response = connection.getresponse()
    assert response.status == 200 and response.getheader("Content-Length") == str(len(response.read()))
    assert connection.sock is sock
    connection.close()
    with pytest.raises(RuntimeError):
        gl.control("GET", "/no-such-control")


def test_seed_file_and_runner_seed():
    token = harness.new_pat()
    runner_token = "glrt-" + secrets.token_urlsafe(20)
    seed = {"settings": {"allow_runner_registration_token": False},
            "users": [{"username": "root", "admin": True, "tokens": [{"token": token, "scopes": ["read_api"]}]}],
            "runners": [{"runner_type": "instance_type", "token": runner_token, "description": "seeded", "tag_list": ["a"]}]}
    with harness.FakeGitLabProcess(seed=seed) as fake:
        status, _h, body = fake.api("GET", "/runners/all", token)
        assert status == 200 and [r["description"] for r in body] == ["seeded"]
        assert fake.api("POST", "/runners/verify", body={"token": runner_token})[0] == 200
        assert fake.api("POST", "/runners", body={"token": "anything"})[0] == 403
        assert fake.state()["settings"]["allow_runner_registration_token"] is False
    assert not os.path.exists(fake.url.replace("http://", "/nonexistent/"))  # harness cleaned up without error


@pytest.mark.skipif(shutil.which("openssl") is None, reason="openssl CLI not available")
def test_tls(tmp_path):
    cert, key = str(tmp_path / "cert.pem"), str(tmp_path / "key.pem")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", key, "-out", cert, "-days", "1",
                    "-subj", "/CN=localhost", "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1"],
                   check=True, capture_output=True)
    with harness.FakeGitLabProcess(tls_cert=cert, tls_key=key) as fake:
        assert fake.url.startswith("https://")
        admin = fake.new_user(admin=True)
        created = create(fake, admin, "instance_type")
        assert fake.api("POST", "/runners/verify", body={"token": created["token"]})[0] == 200
        status, headers, _b = fake.api("GET", "/runners/all", admin)
        assert status == 200 and headers["Link"].startswith("<https://")
        plain = http.client.HTTPConnection("127.0.0.1", fake.port, timeout=3)
        with pytest.raises((http.client.HTTPException, ConnectionError, OSError)):
            plain.request("GET", "/api/v4/runners")
            plain.getresponse()
        plain.close()
        # the server survives a client that failed the handshake
        assert fake.api("GET", "/runners/all", admin)[0] == 200


def test_requests_are_served_concurrently(world, gl):
    gl.add_fault(r"^/api/v4/runners$", method="GET", kind="delay", delay=0.5)
    results = []

    def call():
        results.append(gl.api("GET", "/runners", world["owner"])[0])

    threads = [threading.Thread(target=call) for _i in range(8)]
    started = time.time()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert results == [200] * 8
    assert time.time() - started < 2.0  # eight 0.5 s answers overlapped


# --------------------------------------------------------------------------
# Command lines: the file the harness, the README and the molecule image run, and the package
# --------------------------------------------------------------------------

@pytest.mark.parametrize("form", ["file", "package"])
def test_command_lines_run_on_the_standard_library_alone(tmp_path, form):
    """``python3 tools/fake_gitlab/server.py`` (from any directory) and ``python3 -m fake_gitlab`` (from tools/),
    with no site-packages (-S) and no PYTHON* variables (-E): the server needs nothing beyond the standard library."""
    python = os.environ.get("FAKE_GITLAB_PYTHON") or sys.executable
    port_file = str(tmp_path / "port")
    if form == "file":
        cmd, cwd = [python, "-E", "-S", harness.SERVER], str(tmp_path)
    else:
        cmd, cwd = [python, "-E", "-S", "-m", "fake_gitlab"], os.path.join(ROOT, "tools")
    cmd += ["--host", "127.0.0.1", "--port", "0", "--port-file", port_file]
    with subprocess.Popen(cmd, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT) as proc:
        try:
            deadline = time.time() + 15
            while not os.path.exists(port_file):
                assert proc.poll() is None, proc.stdout.read().decode()
                assert time.time() < deadline, "the server did not write its port file"
                time.sleep(0.02)
            with open(port_file, encoding="utf-8") as handle:
                port = int(handle.read())
            connection = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
            connection.request("GET", "/-/fake/health")
            response = connection.getresponse()
            assert (response.status, json.loads(response.read())) == (200, {"ok": True})
            connection.request("GET", "/api/v4/runners")
            response = connection.getresponse()
            assert (response.status, json.loads(response.read())) == (401, {"message": "401 Unauthorized"})
            connection.close()
        finally:
            proc.terminate()
            proc.wait(timeout=5)
        assert b"listening on http://127.0.0.1:%d" % port in proc.stdout.read()


def process_ended(pid):
    """True once ``pid`` has exited (gone, or a zombie its new parent has not reaped yet)."""
    try:
        with open("/proc/%d/status" % pid, encoding="utf-8") as handle:
            return any(line.startswith("State:") and "Z" in line.split()[1] for line in handle)
    except FileNotFoundError:
        return True


def test_server_started_with_parent_pid_ends_with_its_parent(tmp_path):
    """The harness starts the server with --parent-pid: when the process that started it ends without stopping it
    (a forked test worker), the server does not outlive it."""
    python = os.environ.get("FAKE_GITLAB_PYTHON") or sys.executable
    port_file = str(tmp_path / "port")
    launcher = ("import os, subprocess, sys; "
                "proc = subprocess.Popen([sys.argv[1], sys.argv[2], '--port', '0', '--port-file', sys.argv[3], "
                "'--parent-pid', str(os.getpid()), '--quiet'], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL); "
                "print(proc.pid)")
    out = subprocess.run([python, "-c", launcher, python, harness.SERVER, port_file], check=True, capture_output=True,
                         text=True, timeout=30)
    pid = int(out.stdout)
    try:
        deadline = time.time() + 15
        while not os.path.exists(port_file) and time.time() < deadline:
            time.sleep(0.02)
        assert os.path.exists(port_file), "the server did not start"
        deadline = time.time() + 10
        while not process_ended(pid) and time.time() < deadline:
            time.sleep(0.05)
        assert process_ended(pid), "the server outlived the process that started it"
    finally:
        if not process_ended(pid):
            os.kill(pid, signal.SIGKILL)
