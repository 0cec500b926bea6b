# Copyright: Contributors to the dood.gitlab_runner collection
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Request parameters: Rack-style nesting of form and query pairs, and Grape-like validation and coercion."""

from __future__ import annotations

import re

from .errors import grape_error

TRUE_STRINGS = ("1", "on", "t", "true", "y", "yes")
FALSE_STRINGS = ("0", "off", "f", "false", "n", "no")


def nest_pairs(pairs):
    """Turn form/query pairs into Rack-style nested params (``a[]``, ``a[b]``)."""
    params = {}
    for key, value in pairs:
        match = re.match(r"^([^\[\]]+)((?:\[[^\[\]]*\])*)$", key)
        if not match:
            params[key] = value
            continue
        name, rest = match.group(1), match.group(2)
        parts = re.findall(r"\[([^\[\]]*)\]", rest)
        if not parts:
            params[name] = value
            continue
        target = params
        keys = [name] + parts
        for index, part in enumerate(keys[:-1]):
            nxt = keys[index + 1]
            if nxt == "":
                lst = target.get(part)
                if not isinstance(lst, list):
                    lst = []
                    target[part] = lst
                lst.append(value)
                break
            sub = target.get(part)
            if not isinstance(sub, dict):
                sub = {}
                target[part] = sub
            target = sub
        else:
            target[keys[-1]] = value
    return params


class Params:
    """Validates and coerces request params the way the Grape declarations do."""

    def __init__(self, raw):
        self.raw = raw
        self.values = {}
        self.errors = []

    def present(self, name):
        return name in self.raw

    def _fail(self, name, what="is invalid"):
        self.errors.append("%s %s" % (name, what))

    def string(self, name, required=False, values=None, regexp=None):
        if name not in self.raw:
            if required:
                self._fail(name, "is missing")
            return
        value = self.raw[name]
        if value is None:
            if required:
                self._fail(name, "is missing")
            elif values is not None:
                self._fail(name, "does not have a valid value")
            else:
                self.values[name] = None
            return
        if isinstance(value, (bool, dict, list)):
            self._fail(name)
            return
        value = str(value)
        if values is not None and value not in values:
            self._fail(name, "does not have a valid value")
            return
        if regexp is not None and not re.match(regexp, value):
            self._fail(name)
            return
        self.values[name] = value

    def boolean(self, name):
        if name not in self.raw:
            return
        value = self.raw[name]
        if isinstance(value, bool):
            self.values[name] = value
        elif isinstance(value, int) and value in (0, 1):
            self.values[name] = bool(value)
        elif isinstance(value, str) and value.strip().lower() in TRUE_STRINGS:
            self.values[name] = True
        elif isinstance(value, str) and value.strip().lower() in FALSE_STRINGS:
            self.values[name] = False
        else:
            self._fail(name)

    def integer(self, name, required=False):
        if name not in self.raw:
            if required:
                self._fail(name, "is missing")
            return
        value = self.raw[name]
        if isinstance(value, bool):
            self._fail(name)
        elif isinstance(value, int):
            self.values[name] = value
        elif isinstance(value, str) and re.match(r"^\s*[-+]?\d+\s*$", value):
            self.values[name] = int(value)
        elif value is None and not required:
            self.values[name] = None
        else:
            self._fail(name)

    def tag_list(self, name="tag_list"):
        # Array[String] with CommaSeparatedToArray coercion (docs/gitlab-api.md §1.2)
        if name not in self.raw:
            return
        value = self.raw[name]
        if value is None:
            value = []
        if isinstance(value, str):
            items = value.split(",")
        elif isinstance(value, list) and all(isinstance(i, (str, int, float)) and not isinstance(i, bool) for i in value):
            items = []
            for item in value:
                items.extend(str(item).split(","))
        else:
            self._fail(name)
            return
        tags = []
        for item in items:
            item = item.strip()
            if item and item not in tags:
                tags.append(item)
        self.values[name] = tags

    def hash(self, name):
        if name not in self.raw:
            return
        if isinstance(self.raw[name], dict):
            self.values[name] = self.raw[name]
        else:
            self._fail(name)

    def mutually_exclusive(self, *names):
        given = [n for n in names if n in self.raw]
        if len(given) > 1:
            self.errors.append("%s are mutually exclusive" % ", ".join(given))

    def at_least_one_of(self, *names):
        if not any(n in self.raw for n in names):
            self.errors.append("%s are missing, at least one parameter must be provided" % ", ".join(names))

    def check(self):
        if self.errors:
            raise grape_error(self.errors)
        return self.values


def pagination_params(params):
    params.integer("page")
    params.integer("per_page")
