# -*- coding: utf-8 -*-
# Copyright (c) dood.gitlab_runner contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""How a declaration meets what config.toml already holds. Pure: no file, no network.

By default the module manages what is declared and keeps everything else (a three-way merge, as ``kubectl apply``
does with its last applied configuration):

* a declared value is written, whatever the file had;
* a default (``runner_defaults``, ``global_defaults``, the built-in ``executor = "docker"``) is written where the file
  has no value, or where the file still holds the value the module itself wrote last time (so changing a default
  reaches the entries the module manages); a value someone set by hand is kept;
* a value the module wrote last time and that is no longer declared nor a default is removed, unless someone has
  changed it since;
* every other key stays as it is.

The journal keeps, for each key the module wrote, a digest of the value it wrote (never the value: it may be a
secret). With ``authoritative`` the declaration (with its defaults) is the whole table and every other key goes.
"""

from __future__ import annotations

import copy
import hashlib
import json

MISSING = object()


def digest(value):
    """A short one-way digest of a value, to recognise it later without keeping it."""
    text = json.dumps(value, sort_keys=True, default=str, separators=(',', ':'))
    return hashlib.sha256(b'dood.gitlab_runner.applied\0' + text.encode('utf-8')).hexdigest()[:16]


def path_key(path):
    return json.dumps(list(path), separators=(',', ':'))


def leaves(table, prefix=()):
    """(path, value) of every value that is not a non-empty table: scalars, lists, empty tables."""
    for key, value in table.items():
        path = prefix + (key,)
        if isinstance(value, dict) and value:
            yield from leaves(value, path)
        elif value is not None:
            yield path, value


def get(table, path):
    node = table
    for part in path:
        if not isinstance(node, dict) or part not in node:
            return MISSING
        node = node[part]
    return node


def put(table, path, value):
    node = table
    for part in path[:-1]:
        if not isinstance(node.get(part), dict):
            node[part] = {}
        node = node[part]
    node[path[-1]] = copy.deepcopy(value)


def drop(table, path):
    """Remove the value at ``path`` and the tables it leaves empty."""
    trail = []
    node = table
    for part in path[:-1]:
        trail.append((node, part))
        node = node[part]
    del node[path[-1]]
    for parent, part in reversed(trail):
        if parent[part]:
            break
        del parent[part]


def overlay(base, top):
    """``top`` over ``base``: tables merge key by key, anything else in ``top`` replaces."""
    result = copy.deepcopy(base)
    for key, value in top.items():
        if isinstance(value, dict) and isinstance(result.get(key), dict):
            result[key] = overlay(result[key], value)
        else:
            result[key] = copy.deepcopy(value)
    return result


def merge(current, declared, defaults, applied, authoritative=False, keep=()):
    """The new table, the digests of what the module wrote, and the paths removed that were not declared.

    ``current`` is the table the file holds (None for a new one); ``keep`` names top-level keys that are not the
    merge's business (a runner's identity and the fields gitlab-runner owns), carried over untouched.
    """
    current = current or {}
    declared_leaves = dict(leaves(declared))
    desired = overlay(defaults, declared)
    if authoritative:
        result = dict((k, copy.deepcopy(current[k])) for k in keep if k in current)
        for path, value in leaves(desired):
            put(result, path, value)
        removed = [path for path, _value in leaves(current) if path[0] not in keep and get(result, path) is MISSING]
        return result, dict((path_key(p), digest(v)) for p, v in leaves(desired)), removed
    result = copy.deepcopy(current)
    written = {}
    for path, value in leaves(defaults):
        if path in declared_leaves:
            continue
        have = get(result, path)
        mine = applied.get(path_key(path))
        if have is MISSING or digest(have) in (mine, digest(value)):
            put(result, path, value)
            written[path_key(path)] = digest(value)
    for path, value in declared_leaves.items():
        put(result, path, value)
        written[path_key(path)] = digest(value)
    for key, mark in applied.items():
        if key in written:
            continue
        path = tuple(json.loads(key))
        if path and path[0] not in keep and get(result, path) is not MISSING and digest(get(result, path)) == mark:
            drop(result, path)
    return result, written, []


def removed_names(paths):
    """The removed paths of an authoritative merge for a warning: ``docker.volumes, privileged``."""
    return ', '.join('.'.join(str(p) for p in path) for path in paths)
