# -*- coding: utf-8 -*-
# Copyright: dood.gitlab_runner contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Model of gitlab-runner's ``config.toml``: parse, render, normalize, mask.

Pure functions, no I/O, Python 3.9+ standard library only (this runs on managed hosts).

``render`` writes a configuration the way gitlab-runner itself saves it: gitlab-runner re-encodes
its whole ``Config`` struct with the BurntSushi/toml encoder (v1.6.0), so a file written here looks
like one written by ``gitlab-runner register`` and survives gitlab-runner's own rewrites (token
rotation, ``reset-token``) without spurious diffs. The encoder rules reproduced here:

* two spaces of indentation per key level: ``[[runners]]`` at column 0 with its keys at 2,
  ``[runners.cache]`` at 2 with its keys at 4, and so on (``Encoder.indentStr``);
* in every table, plain keys (scalars, inline arrays) first, then sub-tables and arrays of tables
  (``eStruct``/``eMap`` write ``fieldsDirect`` before ``fieldsSub``);
* struct fields in Go struct order (embedded structs inlined where they are declared), Go maps
  sorted by key;
* a blank line before every top-level table and before every ``[[array of tables]]`` element,
  none before nested ``[a.b]`` tables;
* strings as basic strings, escaped with the encoder's ``dblQuotedReplacer``; datetimes unquoted
  RFC 3339; durations as Go ``time.Duration.String()`` strings.

Struct orders and key names come from the gitlab-runner sources summarized in the collection's
docs/gitlab-runner-config.md §2.2, §2.3, §2.4 (``common/config.go``, ``cache/cacheconfig``, ``helpers/docker``).
Keys this model does not know are kept: they are written after the known keys of their table, in
the order given.
"""

from __future__ import annotations

import copy
import datetime
import decimal
import fnmatch
import math
import re

try:
    import tomllib as _toml
except ImportError:  # Python < 3.11: no TOML parser in the standard library
    from ansible_collections.dood.gitlab_runner.plugins.module_utils import _tomli as _toml

from ansible_collections.dood.gitlab_runner.plugins.module_utils import config_schema

_toml_loads = _toml.loads

__all__ = (
    'ConfigTomlError', 'DURATION_KEYS', 'MASK', 'RUNNER_OWNED_KEYS', 'SECRET_KEYS', 'ZERO_TIME',
    'go_duration', 'mask', 'mask_text', 'normalize', 'parse', 'render', 'runner_owned',
    'resave', 'save_normal_form', 'schema_key', 'secret_name', 'secret_values', 'semantic_equal', 'table_keys', 'utc_now_seconds',
)

MASK = '********'

# gitlab-runner writes a zero time.Time for "unknown" (token_expires_at of a token without expiry).
ZERO_TIME = datetime.datetime(1, 1, 1, tzinfo=datetime.timezone.utc)

# Fields of a [[runners]] entry that gitlab-runner itself writes back (register, token rotation,
# reset-token; docs/gitlab-runner-config.md §2.5): a config manager must carry them over rather than invent them.
RUNNER_OWNED_KEYS = ('id', 'token', 'token_obtained_at', 'token_expires_at')

# Key names whose value is a credential wherever they appear: the runner authentication token, the
# cache credentials (S3 keys and session token, GCS private key, Azure account key) and the Sentry DSN.
SECRET_KEYS = frozenset(('token', 'AccessKey', 'SecretKey', 'SessionToken', 'PrivateKey', 'AccountKey', 'sentry_dsn'))

# Keys holding a Go time.Duration (written as a Go duration string), as paths from the document root, from the
# schema; a list met on the way (``runners``) applies the rest of the path to each element.
DURATION_KEYS = frozenset(tuple(key.replace('[]', '').split('.'))
                          for key, row in config_schema.KEYS.items() if row[0] == 'duration')

_INT64_MIN = -(1 << 63)
_INT64_MAX = (1 << 63) - 1


class ConfigTomlError(Exception):
    """A config.toml could not be parsed, rendered, or a value is not valid for it.

    ``line`` and ``column`` are set (1-based) when the error points into a document.
    Messages never contain configuration values except the one being rejected by ``go_duration``.
    """

    def __init__(self, message, line=None, column=None):
        super().__init__(message)
        self.message = message
        self.line = line
        self.column = column


# --------------------------------------------------------------------------------------------
# Schema: key order of the Go structs gitlab-runner encodes (docs/gitlab-runner-config.md §2.2, §2.3, §2.4).
# --------------------------------------------------------------------------------------------

class _Node:
    """Key order of one TOML table; ``children`` gives the node of sub-tables (and of the elements of
    arrays of tables); ``is_map`` marks a Go map, whose keys the encoder sorts."""

    __slots__ = ('keys', 'children', 'is_map', '_index')

    def __init__(self, keys=(), children=None, is_map=False):
        self.keys = tuple(keys)
        self.children = children or {}
        self.is_map = is_map
        self._index = {k: i for i, k in enumerate(self.keys)}

    def child(self, key):
        return self.children.get(key)

    def order(self, keys):
        if self.is_map:
            return sorted(keys)
        known = sorted((k for k in keys if k in self._index), key=self._index.__getitem__)
        return known + [k for k in keys if k not in self._index]


_MAP = _Node(is_map=True)

_SESSION_SERVER = _Node(('listen_address', 'advertise_address', 'session_timeout'))

_BOOT_VERIFY = _Node(('enabled', 'timeout', 'acquire_min_backoff', 'acquire_max_backoff'))

_RUNNER_EXPERIMENTAL = _Node(('boot_verify',), {'boot_verify': _BOOT_VERIFY})

_CACHE = _Node(
    ('Type', 'Path', 'Shared', 'MaxUploadedArchiveSize', 's3', 'gcs', 'azure'),
    {
        's3': _Node((
            'ServerAddress', 'AccessKey', 'SecretKey', 'SessionToken', 'BucketName', 'BucketLocation', 'Insecure',
            'AuthenticationType', 'ServerSideEncryption', 'ServerSideEncryptionKeyID', 'DualStack', 'PathStyle',
            'Accelerate', 'RoleARN', 'UploadRoleARN', 'AssumeRoleMaxConcurrency', 'DisableAssumeRoleCredentialsCaching',
        )),
        # CacheGCSCredentials and CacheAzureCredentials are embedded first.
        'gcs': _Node(('AccessID', 'PrivateKey', 'CredentialsFile', 'BucketName', 'UniverseDomain')),
        'azure': _Node(('AccountName', 'AccountKey', 'ContainerName', 'StorageDomain')),
    },
)

_DOCKER_SERVICE = _Node(('name', 'alias', 'command', 'entrypoint', 'environment', 'suspend_data_path'))

_DOCKER = _Node(
    (
        # embedded docker.Credentials
        'host', 'tls_cert_path', 'tls_verify',
        # DockerConfig
        'hostname', 'image', 'runtime', 'memory', 'memory_swap', 'memory_reservation', 'cgroup_parent',
        'cpuset_cpus', 'cpuset_mems', 'cpus', 'cpu_shares', 'dns', 'dns_search', 'privileged',
        'services_privileged', 'disable_entrypoint_overwrite', 'user', 'allowed_users', 'group_add',
        'userns_mode', 'cap_add', 'cap_drop', 'oom_kill_disable', 'oom_score_adjust', 'security_opt',
        'services_security_opt', 'devices', 'device_cgroup_rules', 'gpus', 'services_devices',
        'disable_cache', 'volumes', 'volume_keep', 'volume_driver', 'volume_driver_ops', 'cache_dir',
        'extra_hosts', 'volumes_from', 'network_mode', 'pid_mode', 'ipcmode', 'mac_address', 'links',
        'services', 'services_limit', 'service_memory', 'service_memory_swap', 'service_memory_reservation',
        'service_cgroup_parent', 'service_slot_cgroup_template', 'service_cpuset_cpus', 'service_cpus',
        'service_cpu_shares', 'service_gpus', 'wait_for_services_timeout', 'allowed_images',
        'allowed_privileged_images', 'allowed_privileged_services', 'allowed_pull_policies',
        'allowed_services', 'pull_policy', 'isolation', 'shm_size', 'tmpfs', 'services_tmpfs', 'sysctls',
        'helper_image', 'helper_image_flavor', 'container_labels', 'enable_ipv6', 'ulimit', 'network_mtu',
        'log_options',
    ),
    dict(
        [('services', _DOCKER_SERVICE)]
        + [(k, _MAP) for k in ('services_devices', 'volume_driver_ops', 'tmpfs', 'services_tmpfs', 'sysctls',
                               'container_labels', 'ulimit', 'log_options')]
    ),
)

_RUNNER = _Node(
    (
        # RunnerConfig
        'name', 'limit', 'output_limit', 'request_concurrency', 'strict_check_interval',
        'unhealthy_requests_limit', 'unhealthy_interval', 'job_status_final_update_retry_limit', 'experimental',
        # embedded RunnerCredentials
        'url', 'id', 'token', 'token_obtained_at', 'token_expires_at', 'tls-ca-file', 'tls-cert-file',
        'tls-key-file',
        # embedded RunnerSettings
        'labels', 'executor', 'builds_dir', 'cache_dir', 'clone_url', 'environment', 'proxy_exec',
        'pre_get_sources_script', 'post_get_sources_script', 'pre_build_script', 'post_build_script',
        'prepare_timeout', 'get_sources_timeout', 'debug_trace_disabled', 'safe_directory_checkout',
        'clean_git_config', 'shell', 'custom_build_dir', 'referees', 'cache', 'artifact', 'feature_flags',
        'monitoring', 'use_slot_cgroups', 'slot_cgroup_template', 'instance', 'ssh', 'docker', 'parallels',
        'virtualbox', 'machine', 'kubernetes', 'custom', 'autoscaler', 'step_runner_image',
    ),
    {
        'experimental': _RUNNER_EXPERIMENTAL,
        'labels': _MAP,
        'custom_build_dir': _Node(('enabled',)),
        'cache': _CACHE,
        'artifact': _Node(('upload_timeout', 'response_header_timeout')),
        'feature_flags': _MAP,
        'docker': _DOCKER,
    },
)

_CONFIG = _Node(
    (
        'listen_address', 'session_server', 'labels', 'concurrent', 'check_interval', 'log_level', 'log_format',
        'user', 'runners', 'sentry_dsn', 'connection_max_age', 'machine', 'experimental', 'shutdown_timeout',
    ),
    {
        'session_server': _SESSION_SERVER,
        'labels': _MAP,
        'runners': _RUNNER,
    },
)


def table_keys(*path):
    """The keys gitlab-runner's struct declares for the table at ``path`` (``'runners', 'docker'``), as a frozenset;
    an array of tables (``runners``, ``services``) stands for its elements."""
    node = _CONFIG
    for part in path:
        node = node.child(part)
        if node is None:
            raise KeyError('no table at ' + '.'.join(path))
    return frozenset(node.keys)


# --------------------------------------------------------------------------------------------
# Parsing
# --------------------------------------------------------------------------------------------

_COORD_RE = re.compile(r'\(at line (\d+), column (\d+)\)')


def _line_col(text, index):
    line = text.count('\n', 0, index) + 1
    column = index - (text.rfind('\n', 0, index) + 1) + 1
    return line, column


def _decode(data):
    try:
        return data.decode('utf-8')
    except UnicodeDecodeError as exc:
        line, column = _line_col(data[:exc.start].decode('utf-8'), exc.start)
        raise ConfigTomlError(
            'config.toml is not valid UTF-8: byte 0x%02x at line %d, column %d cannot be decoded' % (data[exc.start], line, column),
            line, column,
        )


def _to_utc(value):
    """TOML offset datetimes are returned in UTC (gitlab-runner writes them with ``Z``)."""
    if isinstance(value, dict):
        return {k: _to_utc(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_to_utc(v) for v in value]
    if isinstance(value, datetime.datetime) and value.tzinfo is not None and value.tzinfo is not datetime.timezone.utc:
        try:
            return value.astimezone(datetime.timezone.utc)
        except OverflowError:  # outside datetime's range once shifted; keep the offset
            return value
    return value


def parse(text):
    """Parse a config.toml document (``str``, or ``bytes`` that must be UTF-8) into plain dicts/lists.

    Datetimes with an offset come back as tz-aware ``datetime.datetime`` in UTC. Raises
    ``ConfigTomlError`` with ``line``/``column`` on invalid UTF-8 or invalid TOML.
    """
    if isinstance(text, (bytes, bytearray)):
        text = _decode(bytes(text))
    if not isinstance(text, str):
        raise ConfigTomlError('config.toml content must be str or bytes, not %s' % type(text).__name__)
    if text.startswith('\ufeff'):
        text = text[1:]
    try:
        data = _toml_loads(text)
    except ValueError as exc:  # tomllib.TOMLDecodeError / _tomli.TOMLDecodeError
        message = str(exc)
        match = _COORD_RE.search(message)
        if match:
            line, column = int(match.group(1)), int(match.group(2))
        else:  # "(at end of document)"
            line, column = _line_col(text, len(text))
            message = '%s, line %d, column %d' % (message, line, column)
        raise ConfigTomlError('config.toml is not valid TOML: %s' % message, line, column)
    return _to_utc(data)


# --------------------------------------------------------------------------------------------
# Rendering
# --------------------------------------------------------------------------------------------

_INDENT = '  '
_BARE_KEY_RE = re.compile(r'\A[A-Za-z0-9_-]+\Z')  # not $: it would accept a trailing newline
# BurntSushi's dblQuotedReplacer: quote, backslash, short escapes for \b \t \n \f \r, \u00XX for
# the other C0 controls and DEL. Everything else (all of Unicode) is written as is.
_ESCAPES = {chr(c): '\\u%04x' % c for c in list(range(0x20)) + [0x7f]}
_ESCAPES.update({'"': '\\"', '\\': '\\\\', '\b': '\\b', '\t': '\\t', '\n': '\\n', '\f': '\\f', '\r': '\\r'})
_ESCAPE_RE = re.compile('[\\x00-\\x1f"\\\\\\x7f]')
_SURROGATE_RE = re.compile('[\ud800-\udfff]')


def _path_str(path):
    out = ''
    for part in path:
        if isinstance(part, int):
            out += '[%d]' % part
        else:
            out += ('.' if out else '') + part
    return out or '(document)'


def _quote(value, path):
    if _SURROGATE_RE.search(value):
        raise ConfigTomlError('%s: string contains a lone surrogate, which TOML (UTF-8) cannot represent' % _path_str(path))
    return '"%s"' % _ESCAPE_RE.sub(lambda m: _ESCAPES[m.group(0)], value)


def _key(key, path):
    if not isinstance(key, str):
        raise ConfigTomlError('%s: table keys must be strings, not %s' % (_path_str(path), type(key).__name__))
    if _BARE_KEY_RE.match(key):
        return key
    return _quote(key, path)


def _frac(microsecond):
    return ('.%06d' % microsecond).rstrip('0') if microsecond else ''


def _datetime(value):
    if value.tzinfo is not None and value.utcoffset() is not None:
        if value.utcoffset():
            try:
                value = value.astimezone(datetime.timezone.utc)
            except OverflowError:
                off = value.utcoffset()
                minutes = int(off.total_seconds()) // 60
                sign = '+' if minutes >= 0 else '-'
                return _local_datetime(value) + '%s%02d:%02d' % (sign, abs(minutes) // 60, abs(minutes) % 60)
        return _local_datetime(value) + 'Z'
    return _local_datetime(value)


def _local_datetime(value):
    return '%04d-%02d-%02dT%02d:%02d:%02d%s' % (
        value.year, value.month, value.day, value.hour, value.minute, value.second, _frac(value.microsecond))


def _float(value):
    if math.isnan(value):
        return '-nan' if math.copysign(1.0, value) < 0 else 'nan'
    if math.isinf(value):
        return '-inf' if value < 0 else 'inf'
    # strconv.FormatFloat(f, 'f', -1, 64): shortest round-tripping digits, never an exponent.
    text = format(decimal.Decimal(repr(value)), 'f')
    return text if '.' in text else text + '.0'


def _is_table_array(value):
    return isinstance(value, (list, tuple)) and len(value) > 0 and all(isinstance(v, dict) for v in value)


def _value(value, path):
    """One TOML value in inline form (what BurntSushi's eElement writes)."""
    if isinstance(value, bool):
        return 'true' if value else 'false'
    if isinstance(value, int):
        if not _INT64_MIN <= value <= _INT64_MAX:
            raise ConfigTomlError('%s: integer out of the 64-bit range gitlab-runner can read' % _path_str(path))
        return str(value)
    if isinstance(value, float):
        return _float(value)
    if isinstance(value, str):
        return _quote(value, path)
    if isinstance(value, datetime.datetime):
        return _datetime(value)
    if isinstance(value, datetime.date):
        return '%04d-%02d-%02d' % (value.year, value.month, value.day)
    if isinstance(value, datetime.time):
        if value.tzinfo is not None:
            raise ConfigTomlError('%s: TOML has no time of day with a time zone' % _path_str(path))
        return '%02d:%02d:%02d%s' % (value.hour, value.minute, value.second, _frac(value.microsecond))
    if isinstance(value, (list, tuple)):
        items = []
        for i, item in enumerate(value):
            if item is None:
                raise ConfigTomlError('%s: arrays cannot contain null values' % _path_str(path + (i,)))
            items.append(_value(item, path + (i,)))
        return '[%s]' % ', '.join(items)
    if isinstance(value, dict):
        items = ['%s = %s' % (_key(k, path), _value(v, path + (k,))) for k, v in value.items() if v is not None]
        return '{%s}' % ', '.join(items)
    raise ConfigTomlError('%s: cannot write a %s value to config.toml' % (_path_str(path), type(value).__name__))


def _render_table(lines, keypath, errpath, table, node):
    """Write the body of one table: plain keys first, then sub-tables (BurntSushi eStruct/eMap)."""
    keys = [k for k, v in table.items() if v is not None]
    for k in keys:
        _key(k, errpath)
    keys = node.order(keys) if node is not None else keys
    direct = [k for k in keys if not isinstance(table[k], dict) and not _is_table_array(table[k])]
    sub = [k for k in keys if k not in direct]
    indent = _INDENT * len(keypath)
    for k in direct:
        lines.append('%s%s = %s' % (indent, _key(k, errpath), _value(table[k], errpath + (k,))))
    for k in sub:
        value = table[k]
        child = node.child(k) if node is not None else None
        kp = keypath + (k,)
        header = '.'.join(_key(part, errpath) for part in kp)
        if isinstance(value, dict):
            if len(kp) == 1 and lines:
                lines.append('')
            lines.append('%s[%s]' % (indent, header))
            _render_table(lines, kp, errpath + (k,), value, child)
        else:
            for i, item in enumerate(value):
                if lines:
                    lines.append('')
                lines.append('%s[[%s]]' % (indent, header))
                _render_table(lines, kp, errpath + (k, i), item, child)


def render(config):
    """Encode ``config`` (the shape ``parse`` returns) exactly as gitlab-runner writes config.toml.

    ``None`` values are omitted. Deterministic; ``parse(render(c)) == c`` for every supported ``c``.
    Raises ``ConfigTomlError`` for values TOML cannot hold (naming the key, never the value).
    """
    if not isinstance(config, dict):
        raise ConfigTomlError('a config.toml document must be a mapping, not %s' % type(config).__name__)
    lines = []
    _render_table(lines, (), (), config, _CONFIG)
    return '\n'.join(lines) + '\n' if lines else ''


# --------------------------------------------------------------------------------------------
# Durations
# --------------------------------------------------------------------------------------------

_NS = {
    'ns': 1,
    'us': 1000,
    '\u00b5s': 1000,  # micro sign
    '\u03bcs': 1000,  # Greek small letter mu
    'ms': 1000 * 1000,
    's': 1000 * 1000 * 1000,
    'm': 60 * 1000 * 1000 * 1000,
    'h': 3600 * 1000 * 1000 * 1000,
}
_DIGITS = '0123456789'


def _parse_go_duration(text):
    """Nanoseconds for a Go duration string, following time.ParseDuration; None when invalid."""
    s = text
    neg = False
    if s and s[0] in '+-':
        neg = s[0] == '-'
        s = s[1:]
    if s == '0':
        return 0
    if not s:
        return None
    total = 0
    while s:
        if not (s[0] == '.' or s[0] in _DIGITS):
            return None
        i = 0
        whole = 0
        while i < len(s) and s[i] in _DIGITS:
            whole = whole * 10 + int(s[i])
            if whole > 1 << 63:
                return None
            i += 1
        pre = i > 0
        s = s[i:]
        frac, scale, post = 0, 1.0, False
        if s and s[0] == '.':
            s = s[1:]
            i = 0
            overflow = False
            while i < len(s) and s[i] in _DIGITS:
                if not overflow:
                    if frac > (_INT64_MAX - 9) // 10:
                        overflow = True  # Go's leadingFraction ignores digits beyond int64 precision
                    else:
                        frac = frac * 10 + int(s[i])
                        scale *= 10
                i += 1
            post = i > 0
            s = s[i:]
        if not pre and not post:
            return None
        i = 0
        while i < len(s) and s[i] != '.' and s[i] not in _DIGITS:
            i += 1
        unit = _NS.get(s[:i])
        if unit is None:
            return None
        s = s[i:]
        if whole > (1 << 63) // unit:
            return None
        value = whole * unit
        if frac > 0:
            value += int(float(frac) * (float(unit) / scale))
            if value > 1 << 63:
                return None
        total += value
        if total > 1 << 63:
            return None
    if neg:
        return -total
    if total > _INT64_MAX:
        return None
    return total


def _frac_digits(value, prec):
    """Go's fmtFrac: ``value / 10**prec`` split into integer part and a fraction without trailing zeros."""
    digits = ('%0*d' % (prec, value % 10 ** prec)).rstrip('0')
    return value // 10 ** prec, ('.' + digits) if digits else ''


def _duration_string(ns):
    """Go's time.Duration.String()."""
    if ns == 0:
        return '0s'
    neg = ns < 0
    u = -ns if neg else ns
    if u < 1000 * 1000 * 1000:
        if u < 1000:
            out = '%dns' % u
        elif u < 1000 * 1000:
            whole, frac = _frac_digits(u, 3)
            out = '%d%s\u00b5s' % (whole, frac)
        else:
            whole, frac = _frac_digits(u, 6)
            out = '%d%sms' % (whole, frac)
    else:
        seconds, frac = _frac_digits(u, 9)
        out = '%d%ss' % (seconds % 60, frac)
        minutes = seconds // 60
        if minutes:
            out = '%dm' % (minutes % 60) + out
            hours = minutes // 60
            if hours:
                out = '%dh' % hours + out
    return '-' + out if neg else out


def go_duration(value):
    """Normalize a duration to Go's ``time.Duration.String()`` form, as gitlab-runner writes it.

    ``value`` is an int (seconds), a ``datetime.timedelta``, or a Go duration string
    (``"15m"``, ``"1h30m"``, ``"1.5h"``, ``"300ms"``). ``"1h30min"`` or ``"3600 s"`` are not Go
    durations (docs/gitlab-runner-config.md §2.7) and raise ``ConfigTomlError`` naming the value.
    """
    if isinstance(value, bool):
        raise ConfigTomlError('invalid duration %r: expected seconds or a Go duration string such as "15m" or "1h30m"' % (value,))
    if isinstance(value, int):
        ns = value * 1000 * 1000 * 1000
    elif isinstance(value, datetime.timedelta):
        ns = (value.days * 86400 + value.seconds) * 1000 * 1000 * 1000 + value.microseconds * 1000
    elif isinstance(value, str):
        ns = _parse_go_duration(value)
        if ns is None:
            raise ConfigTomlError('invalid duration %r: expected a Go duration such as "90s", "15m" or "1h30m" '
                                  '(units ns, us, ms, s, m, h) or a number of seconds' % (value,))
    else:
        raise ConfigTomlError('invalid duration %r: expected seconds or a Go duration string such as "15m" or "1h30m"' % (value,))
    if not _INT64_MIN <= ns <= _INT64_MAX:
        raise ConfigTomlError('invalid duration %r: out of the range of a Go duration (about 292 years)' % (value,))
    return _duration_string(ns)


# --------------------------------------------------------------------------------------------
# Normalization and comparison
# --------------------------------------------------------------------------------------------

def _drop_none(value):
    if isinstance(value, dict):
        return {k: _drop_none(v) for k, v in value.items() if v is not None}
    if isinstance(value, (list, tuple)):
        return [_drop_none(v) for v in value]
    return value


def _normalize_path(node, path):
    if isinstance(node, list):
        for item in node:
            _normalize_path(item, path)
        return
    if not isinstance(node, dict) or path[0] not in node:
        return
    if len(path) > 1:
        _normalize_path(node[path[0]], path[1:])
        return
    value = node[path[0]]
    # Only strings: a bare TOML integer in a duration field is read by gitlab-runner as
    # nanoseconds, so treating it as seconds here would hide a real difference.
    if isinstance(value, str):
        try:
            node[path[0]] = go_duration(value)
        except ConfigTomlError:
            pass  # left as is: compares unequal to any valid duration


def normalize(config):
    """Deep copy of ``config`` with every duration key (``DURATION_KEYS``) in Go's canonical form
    and ``None`` values (never written) removed. Invalid durations are left untouched."""
    result = _drop_none(copy.deepcopy(config))
    for path in DURATION_KEYS:
        _normalize_path(result, path)
    return result


def _strict_equal(a, b):
    """Equality that keeps TOML types apart (Python has ``True == 1`` and ``1 == 1.0``)."""
    if isinstance(a, bool) or isinstance(b, bool):
        return type(a) is type(b) and a == b
    if isinstance(a, dict):
        return isinstance(b, dict) and set(a) == set(b) and all(_strict_equal(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)):
        return isinstance(b, (list, tuple)) and len(a) == len(b) and all(_strict_equal(x, y) for x, y in zip(a, b))
    if isinstance(a, (int, float)) or isinstance(b, (int, float)):
        return type(a) is type(b) and (a == b or (isinstance(a, float) and math.isnan(a) and math.isnan(b)))
    if isinstance(a, datetime.datetime) or isinstance(b, datetime.datetime):
        if not (isinstance(a, datetime.datetime) and isinstance(b, datetime.datetime)):
            return False
        if (a.tzinfo is None) != (b.tzinfo is None):
            return False
        return a == b
    return type(a) is type(b) and a == b


# Defaults gitlab-runner's loader puts into a file it re-saves although nobody set them (NewConfig and LoadConfig,
# docs/gitlab-runner-config.md §2.0, §2.2): a file with them means the same as one without.
_LOADER_DEFAULTS = {'concurrent': 1, 'connection_max_age': '15m0s', 'session_server': {'session_timeout': 1800}}
_LIST_KINDS = ('strings', 'floats', 'tables', 'string_or_strings')
_ZERO = {'string': '', 'integer': 0, 'boolean': False, 'float': 0.0, 'datetime': ZERO_TIME, 'duration': '0s'}


def schema_key(parts):
    """The schema's name of a key path: ``('runners', 0, 'docker', 'volumes')`` -> ``runners[].docker.volumes``."""
    out = ''
    for part in parts:
        if isinstance(part, int):
            out += '[]'
        else:
            out += ('.' if out else '') + part
    return out


def _is_zero(kind, value):
    """The value gitlab-runner decodes to its field's zero value (the TOML type must match the field's)."""
    zero = _ZERO.get(kind)
    if zero is None:
        return isinstance(value, (list, dict)) and not value
    return _strict_equal(value, zero) or (kind == 'duration' and isinstance(value, str) and _duration_or_none(value) == 0)


def _duration_or_none(value):
    try:
        return _parse_go_duration(value)
    except (TypeError, ValueError):
        return None


def _canonical_table(table, prefix):
    """One table in the form gitlab-runner's save gives it, without what its encoder adds or drops."""
    result = {}
    for key, value in table.items():
        path = prefix + (key,)
        row = config_schema.KEYS.get(schema_key(path))
        if row is None:
            result[key] = value  # a key gitlab-runner does not know: kept as it is, compared as it is
            continue
        kind, written = row[0], row[1]
        if kind == 'string_or_strings' and isinstance(value, str):
            value = [value]  # saved as an array (StringOrArray)
        if kind == 'duration' and isinstance(value, str):
            try:
                value = go_duration(value)
            except ConfigTomlError:
                pass
        if isinstance(value, dict) and kind in ('table', 'string_map', 'strings_map', 'boolean_map'):
            value = _canonical_table(value, path) if kind == 'table' else value
            if not value:
                continue  # an empty table decodes like an absent one
        elif isinstance(value, list):
            if kind == 'tables' or (kind == 'table' and value and all(isinstance(v, dict) for v in value)):
                value = [_canonical_table(v, path + (i,)) if isinstance(v, dict) else v for i, v in enumerate(value)]
            if not value and kind in _LIST_KINDS:
                continue
        elif written in ('yes', 'no') and _is_zero(kind, value):
            continue  # a plain (non-pointer) field: its zero value and no value decode alike
        result[key] = value
    return result


def save_normal_form(config):
    """``config`` as gitlab-runner holds it after loading: durations canonical, zero values of plain fields, empty
    tables and lists and the loader's defaults left out, string-or-array keys as arrays. Two configurations with the
    same normal form mean the same to gitlab-runner, whatever its encoder writes for unset values
    (docs/gitlab-runner-schema/README.md: the ``zero_written`` column)."""
    result = _canonical_table(_drop_none(copy.deepcopy(config)), ())
    for key, default in _LOADER_DEFAULTS.items():
        if isinstance(default, dict) and isinstance(result.get(key), dict):
            for sub, sub_default in default.items():
                if _strict_equal(result[key].get(sub), sub_default):
                    del result[key][sub]
            if not result[key]:
                del result[key]
        elif key in result and _strict_equal(result[key], default if key != 'connection_max_age' else go_duration(default)):
            del result[key]
    return result


def semantic_equal(a, b):
    """True when two configurations mean the same to gitlab-runner: compared in their ``save_normal_form``
    (duration spelling, zero values, empty tables, loader defaults); table key order does not matter, everything
    else does."""
    return _strict_equal(save_normal_form(a), save_normal_form(b))


def _version_key(version):
    return tuple(int(part) for part in version.split('.'))


def known_at(since, version):
    """True when a key first released in ``since`` (None: unreleased) exists in gitlab-runner ``version``."""
    return since is not None and _version_key(since) <= _version_key(version)


def _zero_of(kind):
    if kind in ('table',):
        return {}
    return copy.deepcopy(_ZERO.get(kind))


def resave(config, version):
    """``config`` re-encoded the way gitlab-runner ``version`` saves it after loading it (rotation, reset-token,
    unregister): every key its encoder writes for a zero value added, zero values it omits dropped, string-or-array
    keys as arrays, durations canonical, the loader's defaults present. Used by the runner test double and by the
    tests that prove the module stays quiet after gitlab-runner saved the file."""
    loaded = _drop_none(copy.deepcopy(config))
    for key, default in _LOADER_DEFAULTS.items():
        if isinstance(default, dict):
            table = loaded.setdefault(key, {})
            for sub, sub_default in default.items():
                table.setdefault(sub, sub_default)
        else:
            loaded.setdefault(key, default)
    return _resave_table(loaded, (), version)


def _children(prefix):
    """Schema rows directly inside the table ``prefix`` (a schema key)."""
    start = prefix + '.' if prefix else ''
    for key, row in config_schema.KEYS.items():
        if key.startswith(start) and '.' not in key[len(start):]:
            yield key[len(start):], row


def _resave_table(table, prefix, version):
    result = {}
    for key, value in table.items():
        path = prefix + (key,)
        row = config_schema.KEYS.get(schema_key(path))
        if row is None or not known_at(row[2], version):
            continue  # gitlab-runner drops what it does not know when it re-encodes its struct
        kind, written = row[0], row[1]
        if kind == 'string_or_strings' and isinstance(value, str):
            value = [value]
        elif kind == 'duration' and isinstance(value, str):
            value = go_duration(value)
        elif kind == 'table' and isinstance(value, dict):
            value = _resave_table(value, path, version)
        elif isinstance(value, list) and (kind == 'tables' or kind == 'table'):
            value = [_resave_table(v, path + (i,), version) for i, v in enumerate(value)]
        if written == 'no' and _is_zero(kind, value):
            continue
        if written == 'nil' and isinstance(value, (list, dict)) and not value and kind != 'table' and row[3]:
            continue  # omitempty leaves out an empty list or map; without it a non-nil empty list is written as []
        result[key] = value
    skey = schema_key(prefix)
    for key, row in _children(skey):
        if key in result or not known_at(row[2], version):
            continue
        if row[1] == 'yes':
            result[key] = _zero_of(row[0])
        elif row[1] == 'table' and any(True for _child in _children(schema_key(prefix + (key,)))):
            # A struct (not a named map type such as retry_limits, which has no fields of its own) is written as a
            # table even when empty.
            result[key] = _resave_table({}, prefix + (key,), version)
    return result


# --------------------------------------------------------------------------------------------
# Values checked against the schema of one gitlab-runner version
# --------------------------------------------------------------------------------------------

_EXPECTED = {
    'string': 'a string',
    'integer': 'an integer',
    'boolean': 'true or false',
    'float': 'a number',
    'datetime': 'a date-time',
    'duration': 'a Go duration such as "90s", "15m" or "1h30m" (or a number of seconds)',
    'table': 'a table',
    'tables': 'a list of tables',
    'strings': 'a list of strings',
    'floats': 'a list of numbers',
    'string_map': 'a table of strings',
    'strings_map': 'a table of string lists',
    'boolean_map': 'a table of true/false values',
    'string_or_strings': 'a string or a list of strings',
}
# What each element of a collection must be: (container type, element kind).
_ELEMENTS = {
    'strings': (list, 'string'),
    'floats': (list, 'float'),
    'tables': (list, 'table'),
    'string_or_strings': (list, 'string'),
    'string_map': (dict, 'string'),
    'strings_map': (dict, 'strings'),
    'boolean_map': (dict, 'boolean'),
}
# gitlab-runner's label rules (docs/gitlab-runner-schema/README.md): it refuses a file that breaks them.
LABEL_KEY_RE = re.compile(r'\A[a-zA-Z0-9_][a-zA-Z0-9._-]{2,64}\Z')
LABEL_VALUE_RE = re.compile(r'\A[a-zA-Z0-9._-]{1,256}\Z')
MAX_LABELS = 32


def _is_str(value):
    return isinstance(value, str)


def _is_int(value):
    return isinstance(value, int) and not isinstance(value, bool)


def _kind_ok(kind, value):
    if kind == 'string':
        return _is_str(value)
    if kind == 'integer':
        return _is_int(value)
    if kind == 'boolean':
        return isinstance(value, bool)
    if kind == 'float':
        return isinstance(value, float) or _is_int(value)
    if kind == 'datetime':
        return isinstance(value, datetime.datetime)
    if kind == 'duration':
        return _is_str(value) or _is_int(value)
    if kind == 'table':
        return isinstance(value, dict) or (isinstance(value, list) and all(isinstance(v, dict) for v in value))
    if kind == 'tables':
        return isinstance(value, list) and all(isinstance(v, dict) for v in value)
    if kind == 'strings':
        return isinstance(value, list) and all(_is_str(v) for v in value)
    if kind == 'floats':
        return isinstance(value, list) and all(isinstance(v, float) or _is_int(v) for v in value)
    if kind == 'string_map':
        return isinstance(value, dict) and all(_is_str(v) for v in value.values())
    if kind == 'strings_map':
        return isinstance(value, dict) and all(isinstance(v, list) and all(_is_str(i) for i in v) for v in value.values())
    if kind == 'boolean_map':
        return isinstance(value, dict) and all(isinstance(v, bool) for v in value.values())
    if kind == 'string_or_strings':
        return _is_str(value) or (isinstance(value, list) and all(_is_str(v) for v in value))
    return True


def describe_value(value, secret=False):
    """What a value is, for a message: its TOML type, and the value itself unless it may be a secret."""
    if isinstance(value, bool):
        kind = 'a boolean'
    elif _is_int(value):
        kind = 'an integer'
    elif isinstance(value, float):
        kind = 'a float'
    elif _is_str(value):
        kind = 'a string'
    elif isinstance(value, dict):
        return 'a table'
    elif isinstance(value, (list, tuple)):
        inner = set(describe_value(v, True) for v in value)
        return 'a list of ' + ('mixed values' if len(inner) > 1 else (inner.pop().split(' ', 1)[1] + 's' if inner else 'nothing'))
    else:
        return 'a ' + type(value).__name__
    if secret:
        return kind
    text = repr(value)
    return '{0} ({1})'.format(kind, text if len(text) <= 40 else text[:37] + '...')


def resolve_version(version):
    """(the schema version to check against, a note when it is not the one asked for). ``version`` is a gitlab-runner
    version or image tag (``v18.10.1``, ``alpine-v18.10.1``, ``18.10.1``) or None for the newest known release."""
    releases = config_schema.RELEASES
    newest = releases[-1]
    if not version:
        return newest, None
    match = re.search(r'(\d+)\.(\d+)\.(\d+)', str(version))
    if not match:
        return newest, ('gitlab-runner version {0!r} is not a release number; values were checked against {1}, the newest '
                        'release the collection knows.'.format(version, newest))
    wanted = '.'.join(match.groups())
    if wanted in releases:
        return wanted, None
    older = [r for r in releases if _version_key(r) <= _version_key(wanted)]
    chosen = older[-1] if older else releases[0]
    return chosen, ('gitlab-runner {0} is not a version the collection has key tables for; values were checked against '
                    '{1}, the nearest known release {2} it.'.format(wanted, chosen, 'before' if older else 'after'))


def check_values(table, prefix, version, secret_names=()):
    """Problems of the values in ``table`` (at key path ``prefix``) for gitlab-runner ``version``, in order:
    ``(path, problem, detail)`` with problem ``unknown`` (detail: the known keys there), ``version`` (detail: the
    first release with the key, or None), ``type`` (detail: what was expected, what was given), ``duration``,
    ``label`` (detail: a sentence)."""
    problems = []
    _check_table(table, prefix, version, tuple(secret_names), problems)
    return problems


def _known_children(skey, version):
    return sorted(key for key, row in _children(skey) if known_at(row[2], version))


def _check_table(table, prefix, version, secret_names, problems):
    skey = schema_key(prefix)
    for key, value in table.items():
        path = prefix + (key,)
        row = config_schema.KEYS.get(schema_key(path))
        if row is None:
            problems.append((path, 'unknown', _known_children(skey, version)))
            continue
        kind, since = row[0], row[2]
        if not known_at(since, version):
            problems.append((path, 'version', since))
            continue
        if value is None:
            continue
        if not _kind_ok(kind, value):
            element = _ELEMENTS.get(kind)
            if element and isinstance(value, element[0]):
                # The container is right; name the first element that is not.
                items = value.items() if isinstance(value, dict) else enumerate(value)
                for sub, item in items:
                    if not _kind_ok(element[1], item):
                        hidden = secret_name(key, secret_names) or secret_name(sub, secret_names)
                        problems.append((path + (sub,), 'type', (_EXPECTED[element[1]], describe_value(item, hidden))))
                        break
                continue
            problems.append((path, 'type', (_EXPECTED[kind], describe_value(value, secret_name(key, secret_names)))))
            continue
        if kind == 'duration' and _is_str(value) and _duration_or_none(value) is None:
            problems.append((path, 'duration', value))
        elif kind == 'string_map' and key == 'labels':
            problems.extend((path, 'label', sentence) for sentence in label_problems(value))
        elif kind == 'table' and any(True for _child in _children(schema_key(path))):
            for i, item in enumerate(value if isinstance(value, list) else [value]):
                _check_table(item, path + (i,) if isinstance(value, list) else path, version, secret_names, problems)
        elif kind == 'tables':
            for i, item in enumerate(value):
                _check_table(item, path + (i,), version, secret_names, problems)


def declared_durations(table, prefix):
    """Deep copy of a declared ``table`` (at ``prefix``) with every integer in a duration field written as that many
    seconds in Go's form: gitlab-runner itself would read a bare integer as nanoseconds (docs/gitlab-runner-config.md
    §2.7), which nobody means."""
    result = {}
    for key, value in table.items():
        path = prefix + (key,)
        row = config_schema.KEYS.get(schema_key(path))
        kind = row[0] if row else None
        if kind == 'duration' and _is_int(value):
            value = go_duration(value)
        elif isinstance(value, dict) and kind == 'table':
            value = declared_durations(value, path)
        elif isinstance(value, list) and kind in ('table', 'tables'):
            value = [declared_durations(v, path + (i,)) if isinstance(v, dict) else copy.deepcopy(v) for i, v in enumerate(value)]
        else:
            value = copy.deepcopy(value)
        result[key] = value
    return result


def label_problems(labels):
    """Sentences for each label gitlab-runner would refuse (docs/gitlab-runner-schema/README.md, label rules)."""
    found = []
    for key, value in labels.items():
        if not LABEL_KEY_RE.match(str(key)):
            found.append('label key {0!r} breaks gitlab-runner\'s label rules (3 to 65 letters, digits, "_", "." or "-", '
                         'not starting with "." or "-")'.format(key))
        elif not _is_str(value) or not LABEL_VALUE_RE.match(value):
            found.append('the value of label {0!r} breaks gitlab-runner\'s label rules (1 to 256 letters, digits, "_", '
                         '"." or "-")'.format(key))
    return found


# --------------------------------------------------------------------------------------------
# Secrets
# --------------------------------------------------------------------------------------------

def _secret_list(secrets):
    found = set()
    for secret in secrets or ():
        if secret is None:
            continue
        secret = secret if isinstance(secret, str) else str(secret)
        if secret:
            found.add(secret)
            escaped = _quote(secret, ())[1:-1] if not _SURROGATE_RE.search(secret) else secret
            found.add(escaped)  # the form the secret takes inside a rendered TOML string
    return sorted(found, key=lambda s: (-len(s), s))


def _mask_string(text, secrets):
    for secret in secrets:
        if secret in text:
            text = text.replace(secret, MASK)
    return text


def mask_text(text, secrets=()):
    """Replace every occurrence of each secret (also in its TOML-escaped form) in ``text`` by the mask."""
    return _mask_string(text, _secret_list(secrets))


# Names whose value is a credential, wherever they appear: a key of any table (kubernetes ``bearer_token``, ssh
# ``password``, the cache keys) or the name of an environment variable (``DOCKER_AUTH_CONFIG``, ``NPM_TOKEN``,
# ``AWS_SECRET_ACCESS_KEY``). Matched without regard to case, except the CamelCase ``...Key`` of the cache tables.
SECRET_NAME_PARTS = ('password', 'passwd', 'token', 'secret', 'credential', 'auth_config', 'apikey', 'api_key',
                     'private_key', 'privatekey', 'sentry_dsn')
SECRET_NAME_SUFFIXES = ('_key', '-key')


def secret_name(name, extra=()):
    """True when a key or environment variable called ``name`` holds a credential (see SECRET_NAME_PARTS), or when
    it matches one of ``extra`` (names or shell patterns such as ``*_CREDS``, compared without regard to case)."""
    if not isinstance(name, str) or not name:
        return False
    lower = name.lower()
    if name in SECRET_KEYS or name.endswith('Key') or lower == 'key' or lower.endswith(SECRET_NAME_SUFFIXES):
        return True
    if any(part in lower for part in SECRET_NAME_PARTS):
        return True
    return any(fnmatch.fnmatchcase(lower, pattern.lower()) for pattern in extra)


# The password of a URL's user information (a proxy URL in an environment variable, say): http://user:password@host
URL_PASSWORD_RE = re.compile(r'(?<=://)([^:/@\s]*):([^@\s/]+)@')


def _mask_url_passwords(text):
    return URL_PASSWORD_RE.sub(lambda m: m.group(1) + ':' + MASK + '@', text)


def _env_name(item):
    return item.split('=', 1)[0] if isinstance(item, str) and '=' in item else None


def secret_values(value, extra=(), key=None):
    """Every credential in a configuration or a declaration: string values of secret-named keys, and the values of
    secret-named ``KEY=value`` entries of any ``environment`` list."""
    found = []
    if isinstance(value, dict):
        for sub_key, sub_value in value.items():
            found.extend(secret_values(sub_value, extra, sub_key))
    elif isinstance(value, (list, tuple)):
        for item in value:
            if key == 'environment' and secret_name(_env_name(item), extra):
                found.append(item.split('=', 1)[1])
            else:
                found.extend(secret_values(item, extra, key if isinstance(item, (list, tuple)) else None))
    elif isinstance(value, (str, int, float)) and not isinstance(value, bool) and value != '' and secret_name(key, extra):
        found.append(str(value))  # a credential given as a number (a wrong type) is still a credential
    if isinstance(value, str):
        found.extend(m.group(2) for m in URL_PASSWORD_RE.finditer(value))
    elif isinstance(value, (list, tuple)) and key == 'environment':
        found.extend(m.group(2) for item in value if isinstance(item, str) for m in URL_PASSWORD_RE.finditer(item))
    return found


def _mask(value, secrets, key=None, extra=()):
    if isinstance(value, str) and value and secret_name(key, extra):
        return MASK
    if key in SECRET_KEYS and value is not None and not isinstance(value, (dict, list, tuple)):
        return MASK
    if isinstance(value, dict):
        return {(_mask_string(k, secrets) if isinstance(k, str) else k): _mask(v, secrets, k, extra) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        if key == 'environment':
            return [(_env_name(v) + '=' + MASK) if secret_name(_env_name(v), extra) else _mask(v, secrets, None, extra)
                    for v in value]
        return [_mask(v, secrets, key, extra) for v in value]
    if isinstance(value, str):
        return _mask_url_passwords(_mask_string(value, secrets))
    return copy.deepcopy(value)


def mask(config, secrets=(), extra_names=()):
    """Deep copy of ``config`` safe to show: values of secret-named keys (at any depth) and of secret-named
    environment variables become ``MASK``, and every occurrence of one of ``secrets`` in any string (keys included)
    is replaced by ``MASK``."""
    return _mask(config, _secret_list(secrets), None, tuple(extra_names))


# --------------------------------------------------------------------------------------------
# Runner-owned fields
# --------------------------------------------------------------------------------------------

def runner_owned(entry):
    """The fields of a ``[[runners]]`` entry that gitlab-runner owns (``RUNNER_OWNED_KEYS``) and that
    are present in ``entry``."""
    return {k: entry[k] for k in RUNNER_OWNED_KEYS if entry.get(k) is not None}


def utc_now_seconds():
    """Now in UTC truncated to whole seconds, like gitlab-runner's ``token_obtained_at``."""
    return datetime.datetime.now(datetime.timezone.utc).replace(microsecond=0)
