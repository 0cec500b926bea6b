# Copyright: Contributors to the dood.gitlab_runner collection
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Small helpers shared by the modules: hashing, GitLab's time format, English lists."""

from __future__ import annotations

import datetime
import hashlib


def sha256(value):
    return hashlib.sha256(value.encode("utf-8")).hexdigest()


def iso(ts):
    """GitLab's JSON time format: UTC, milliseconds, ``Z``."""
    if ts is None:
        return None
    moment = datetime.datetime.fromtimestamp(ts, tz=datetime.timezone.utc)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + "%03dZ" % (moment.microsecond // 1000)


def parse_time(value):
    """Accept epoch seconds or an ISO 8601 string; return epoch seconds or None."""
    if value is None or isinstance(value, (int, float)):
        return value
    text = str(value).strip()
    if text.endswith("Z"):
        text = text[:-1] + "+00:00"
    moment = datetime.datetime.fromisoformat(text)
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=datetime.timezone.utc)
    return moment.timestamp()


def to_sentence(items):
    """ActiveSupport Array#to_sentence."""
    items = [str(i) for i in items]
    if len(items) <= 1:
        return "".join(items)
    if len(items) == 2:
        return "%s and %s" % (items[0], items[1])
    return "%s, and %s" % (", ".join(items[:-1]), items[-1])
