# -*- coding: utf-8 -*-
# Copyright: dood.gitlab_runner contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Unit tests for plugins/module_utils/config_toml.py (and the vendored TOML parser fallback)."""

from __future__ import annotations

import copy
import datetime
import math
import os
import random
import re
import secrets
import string

import pytest

from ansible_collections.dood.gitlab_runner.plugins.module_utils import config_toml as ct
from ansible_collections.dood.gitlab_runner.plugins.module_utils import _tomli

FIXTURES = os.path.join(os.path.dirname(os.path.abspath(__file__)), 'fixtures')
FIXTURE_NAMES = ('register_shell.toml', 'dood_docker.toml', 'extended.toml')
# Fixtures carry markers where gitlab-runner writes credentials; tests put fresh random values there.
MARKER_RE = re.compile(r'\b(TOKEN|ACCESS_KEY|SECRET_KEY|PRIVATE_KEY|ACCOUNT_KEY|SENTRY_DSN)_\d+\b')
UTC = datetime.timezone.utc


def _random_value(marker):
    if marker.startswith('TOKEN'):
        return 'glrt-' + secrets.token_urlsafe(20)
    if marker.startswith('SENTRY_DSN'):
        return 'https://%s@sentry.example.com/1' % secrets.token_hex(16)
    return secrets.token_hex(20)


def load_fixture(name):
    """Fixture text with every credential marker replaced by a value generated now, and those values."""
    with open(os.path.join(FIXTURES, name), 'rb') as handle:
        text = handle.read().decode('utf-8')
    values = {}
    for marker in sorted(set(m.group(0) for m in MARKER_RE.finditer(text))):
        values[marker] = _random_value(marker)
    text = MARKER_RE.sub(lambda m: values[m.group(0)], text)
    return text, values


def headers(text):
    """Table headers of a rendered document, as (indent, header) pairs."""
    # split on \n only: TOML lines end there (str.splitlines would also split on U+2028 and friends)
    return [(len(line) - len(line.lstrip(' ')), line.strip()) for line in text.split('\n') if line.lstrip(' ').startswith('[')]


def minimal_runner(**extra):
    runner = {
        'name': 'build-01',
        'url': 'https://gitlab.example.com/',
        'id': 7,
        'token': 'glrt-' + secrets.token_urlsafe(20),
        'token_obtained_at': datetime.datetime(2025, 1, 2, 3, 4, 5, tzinfo=UTC),
        'token_expires_at': ct.ZERO_TIME,
        'executor': 'docker',
    }
    runner.update(extra)
    return runner


# ------------------------------------------------------------------------------------------------
# Round trip of files in the form gitlab-runner writes them
# ------------------------------------------------------------------------------------------------

@pytest.mark.parametrize('name', FIXTURE_NAMES)
def test_fixture_round_trips_byte_for_byte(name):
    text, values = load_fixture(name)
    assert values, 'fixture without credential markers'
    config = ct.parse(text)
    assert ct.render(config) == text
    assert ct.parse(text.encode('utf-8')) == config


@pytest.mark.parametrize('name', FIXTURE_NAMES)
def test_fixture_render_is_stable_after_reordering(name):
    text, dummy = load_fixture(name)
    config = ct.parse(text)

    def reverse(value):
        if isinstance(value, dict):
            return dict((k, reverse(value[k])) for k in reversed(list(value)))
        if isinstance(value, list):
            return [reverse(v) for v in value]
        return value

    scrambled = reverse(config)
    assert list(scrambled) != list(config)
    assert ct.render(scrambled) == text


def test_canonical_register_output_values():
    text, values = load_fixture('register_shell.toml')
    config = ct.parse(text)
    runner = config['runners'][0]
    assert runner['token'] == values['TOKEN_1']
    assert runner['token_obtained_at'] == datetime.datetime(2024, 1, 1, tzinfo=UTC)
    assert runner['token_obtained_at'].tzinfo is UTC
    assert runner['token_expires_at'] == ct.ZERO_TIME
    assert config['connection_max_age'] == '15m0s'
    assert runner['cache'] == {'MaxUploadedArchiveSize': 0, 's3': {'AssumeRoleMaxConcurrency': 0}, 'gcs': {}, 'azure': {}}


def test_dood_fixture_shape():
    text, values = load_fixture('dood_docker.toml')
    config = ct.parse(text)
    first, second = config['runners']
    assert first['docker']['volumes'][0] == '/var/run/docker.sock:/var/run/docker.sock'
    assert [s['alias'] for s in first['docker']['services']] == ['db', 'cache']
    assert first['docker']['sysctls'] == {'net.ipv4.ip_forward': '1'}
    assert first['cache']['s3']['SecretKey'] == values['SECRET_KEY_1']
    assert second['token'] == values['TOKEN_2']
    assert second['token_expires_at'] == datetime.datetime(2025, 6, 1, 8, 15, 31, tzinfo=UTC)


# ------------------------------------------------------------------------------------------------
# Vendored tomli (the parser used on Python 3.9 / 3.10)
# ------------------------------------------------------------------------------------------------

@pytest.mark.parametrize('name', FIXTURE_NAMES)
def test_vendored_tomli_matches_tomllib(name):
    tomllib = pytest.importorskip('tomllib')
    text, dummy = load_fixture(name)
    assert _tomli.loads(text) == tomllib.loads(text)


@pytest.mark.parametrize('document', [
    'a = [1, 2.5, "x", true, 1979-05-27T07:32:00-08:00, 1979-05-27, 07:32:00]\n',
    'a = """multi\nline"""\nb = \'\'\'lit\\eral\'\'\'\nc = 0x1f\nd = 1_000\ne = inf\n',
    'x.y.z = 1\n[t]\ninline = { a = 1, b = { c = [] } }\n',
    '[[a.b]]\nc = 1\n[[a.b]]\nc = 2\n',
])
def test_vendored_tomli_matches_tomllib_on_syntax(document):
    tomllib = pytest.importorskip('tomllib')
    assert _tomli.loads(document) == tomllib.loads(document)


@pytest.mark.parametrize('document', ['a = 1\nb = \n', '[x]\n[x]\n', 'a = "unterminated\n', 'a = 1979-13-01T00:00:00Z\n'])
def test_vendored_tomli_errors_like_tomllib(document):
    tomllib = pytest.importorskip('tomllib')
    with pytest.raises(tomllib.TOMLDecodeError) as expected:
        tomllib.loads(document)
    with pytest.raises(_tomli.TOMLDecodeError) as got:
        _tomli.loads(document)
    assert str(got.value) == str(expected.value)


@pytest.mark.parametrize('name', FIXTURE_NAMES)
def test_parse_with_vendored_fallback(monkeypatch, name):
    text, dummy = load_fixture(name)
    monkeypatch.setattr(ct, '_toml_loads', _tomli.loads)
    config = ct.parse(text)
    assert ct.render(config) == text
    with pytest.raises(ct.ConfigTomlError) as err:
        ct.parse(text + '[[runners]]\nname = \n')
    assert err.value.line == text.count('\n') + 2


# ------------------------------------------------------------------------------------------------
# Errors
# ------------------------------------------------------------------------------------------------

def test_invalid_toml_reports_line_and_column():
    with pytest.raises(ct.ConfigTomlError) as err:
        ct.parse('concurrent = 1\n\n[[runners]]\n  name = "x\n')
    assert err.value.line == 4
    assert err.value.column is not None
    assert 'line 4' in str(err.value)


def test_duplicate_table_is_an_error():
    # The templating mistake gitlab-runner refuses ("has already been defined").
    document = '[[runners]]\n  name = "a"\n  [runners.feature_flags]\n    FF_A = true\n  [runners.feature_flags]\n    FF_B = true\n'
    with pytest.raises(ct.ConfigTomlError) as err:
        ct.parse(document)
    assert err.value.line == 5


def test_error_at_end_of_document_still_has_a_line():
    with pytest.raises(ct.ConfigTomlError) as err:
        ct.parse('a = 1\nb = [1,\n')
    assert err.value.line == 3
    assert 'line 3' in str(err.value)


def test_non_utf8_bytes_rejected_with_position():
    data = 'concurrent = 1\nname = "caf'.encode('utf-8') + b'\xe9"\n'
    with pytest.raises(ct.ConfigTomlError) as err:
        ct.parse(data)
    assert err.value.line == 2
    assert err.value.column == 12  # 'name = "caf' is 11 characters
    assert 'UTF-8' in str(err.value) and '0xe9' in str(err.value)


def test_utf8_bytes_and_bom_accepted():
    assert ct.parse(u'\ufeffname = "é"\n'.encode('utf-8')) == {'name': u'é'}


def test_parse_rejects_other_types():
    with pytest.raises(ct.ConfigTomlError):
        ct.parse(None)


def test_offset_datetimes_come_back_in_utc():
    config = ct.parse('a = 2024-05-01T12:00:00+02:00\nb = 2024-05-01T10:00:00.250Z\n')
    assert config['a'] == datetime.datetime(2024, 5, 1, 10, 0, tzinfo=UTC)
    assert config['a'].tzinfo is UTC
    assert ct.render(config) == 'a = 2024-05-01T10:00:00Z\nb = 2024-05-01T10:00:00.25Z\n'


# ------------------------------------------------------------------------------------------------
# Ordering and layout
# ------------------------------------------------------------------------------------------------

def test_top_level_order_plain_keys_then_tables():
    config = {
        'shutdown_timeout': 0,
        'runners': [minimal_runner()],
        'connection_max_age': '15m0s',
        'labels': {'b': '2', 'a': '1'},
        'session_server': {'session_timeout': 1800, 'listen_address': '[::]:8093'},
        'check_interval': 0,
        'concurrent': 1,
        'log_level': 'info',
        'listen_address': ':9252',
    }
    text = ct.render(config)
    assert text.startswith(
        'listen_address = ":9252"\nconcurrent = 1\ncheck_interval = 0\nlog_level = "info"\n'
        'connection_max_age = "15m0s"\nshutdown_timeout = 0\n\n'
        '[session_server]\n  listen_address = "[::]:8093"\n  session_timeout = 1800\n\n'
        '[labels]\n  a = "1"\n  b = "2"\n\n[[runners]]\n'
    )


def test_runner_key_order_follows_go_structs():
    runner = minimal_runner(
        environment=['A=1'], limit=3, shell='bash', request_concurrency=2, unhealthy_interval='1h0m0s',
        feature_flags={'FF_B': True, 'FF_A': False}, cache={'Type': 's3', 's3': {'BucketName': 'b', 'AccessKey': 'k'}},
        docker={'image': 'docker:27', 'tls_verify': False, 'volumes': ['/cache']},
    )
    runner['tls-ca-file'] = '/ca.crt'
    keys = [line.split(' = ')[0].strip() for line in ct.render({'runners': [runner]}).splitlines() if ' = ' in line]
    assert keys == [
        'name', 'limit', 'request_concurrency', 'unhealthy_interval',
        'url', 'id', 'token', 'token_obtained_at', 'token_expires_at', 'tls-ca-file',
        'executor', 'environment', 'shell',
        'Type', 'AccessKey', 'BucketName',  # [runners.cache] then [runners.cache.s3] in CacheS3Config order
        'FF_A', 'FF_B',  # [runners.feature_flags], sorted
        'tls_verify', 'image', 'volumes',  # [runners.docker], embedded credentials first
    ]
    assert [h for dummy, h in headers(ct.render({'runners': [runner]}))] == [
        '[[runners]]', '[runners.cache]', '[runners.cache.s3]', '[runners.feature_flags]', '[runners.docker]']


def test_s3_and_docker_orders():
    s3 = dict((k, 'v') for k in reversed((
        'ServerAddress', 'AccessKey', 'SecretKey', 'SessionToken', 'BucketName', 'BucketLocation')))
    s3['Insecure'] = True
    text = ct.render({'runners': [{'name': 'r', 'cache': {'s3': s3, 'Shared': True, 'Type': 's3'}}]})
    keys = [line.split(' = ')[0].strip() for line in text.splitlines() if ' = ' in line]
    assert keys == ['name', 'Type', 'Shared', 'ServerAddress', 'AccessKey', 'SecretKey', 'SessionToken',
                    'BucketName', 'BucketLocation', 'Insecure']


def test_indentation_two_spaces_per_level():
    runner = minimal_runner(
        cache={'s3': {'BucketName': 'b'}},
        docker={'image': 'i', 'services': [{'name': 'svc'}], 'tmpfs': {'/t': 'rw'}},
    )
    text = ct.render({'concurrent': 1, 'session_server': {'session_timeout': 1800}, 'runners': [runner]})
    assert headers(text) == [
        (0, '[session_server]'), (0, '[[runners]]'), (2, '[runners.cache]'), (4, '[runners.cache.s3]'),
        (2, '[runners.docker]'), (4, '[[runners.docker.services]]'), (4, '[runners.docker.tmpfs]'),
    ]
    assert '\n  session_timeout = 1800\n' in text
    assert '\n  name = "build-01"\n' in text
    assert '\n      BucketName = "b"\n' in text
    assert '\n    image = "i"\n' in text
    assert '\n      name = "svc"\n' in text
    assert '\n      "/t" = "rw"\n' in text


def test_blank_lines_before_top_level_tables_and_table_array_elements_only():
    runner = minimal_runner(docker={'image': 'i', 'services': [{'name': 'a'}, {'name': 'b'}]}, cache={})
    text = ct.render({'concurrent': 1, 'runners': [runner, minimal_runner(name='second')]})
    assert '\n\n[[runners]]\n  name = "build-01"' in text
    assert '\n\n[[runners]]\n  name = "second"' in text
    assert '  executor = "docker"\n  [runners.cache]\n  [runners.docker]\n' in text
    assert text.count('\n\n    [[runners.docker.services]]\n') == 2
    assert not text.startswith('\n') and text.endswith('\n') and not text.endswith('\n\n')


def test_document_starting_with_a_table_has_no_leading_blank_line():
    assert ct.render({'runners': [{'name': 'a'}]}) == '[[runners]]\n  name = "a"\n'
    assert ct.render({}) == ''


def test_maps_sorted_like_go():
    runner = minimal_runner(
        feature_flags={'FF_Z': True, 'FF_A': True, 'FF_M': False},
        docker={'image': 'i', 'sysctls': {'net.b': '1', 'net.a': '2'}, 'ulimit': {'nproc': '1', 'nofile': '2'},
                'container_labels': {'z': '1', 'a': '2'}, 'log_options': {'max-size': '1m', 'max-file': '2'},
                'volume_driver_ops': {'y': '1', 'x': '2'}, 'services_devices': {'b*': ['/dev/b'], 'a*': ['/dev/a']}},
    )
    text = ct.render({'labels': {'zone': 'b', 'arch': 'a'}, 'runners': [runner]})
    for first, second in (('FF_A', 'FF_M'), ('FF_M', 'FF_Z'), ('"net.a"', '"net.b"'), ('nofile', 'nproc'),
                          ('max-file', 'max-size'), ('  x = ', '  y = '), ('"a*"', '"b*"'), ('arch', 'zone')):
        assert text.index(first) < text.index(second), (first, second)
    assert '    [runners.docker.sysctls]\n      "net.a" = "2"\n      "net.b" = "1"\n' in text


def test_unknown_keys_kept_after_known_keys_in_given_order():
    runner = minimal_runner(zz_future='b', aa_future='a', kubernetes={'namespace': 'ci', 'image': 'x'})
    runner['docker'] = {'zeta_option': 1, 'image': 'i', 'alpha_option': 2}
    config = {'new_global': True, 'runners': [runner], 'concurrent': 2, 'extra_table': {'b': 1, 'a': 2}}
    text = ct.render(config)
    assert text.startswith('concurrent = 2\nnew_global = true\n\n[[runners]]\n')
    assert text.index('executor = "docker"') < text.index('zz_future') < text.index('aa_future') < text.index('[runners.docker]')
    assert text.index('[runners.docker]') < text.index('[runners.kubernetes]')
    assert '  [runners.docker]\n    image = "i"\n    zeta_option = 1\n    alpha_option = 2\n' in text
    assert '  [runners.kubernetes]\n    namespace = "ci"\n    image = "x"\n' in text
    assert text.endswith('\n\n[extra_table]\n  b = 1\n  a = 2\n')
    assert ct.parse(text) == config


def test_none_values_are_omitted():
    config = {'concurrent': 1, 'log_level': None, 'runners': [minimal_runner(builds_dir=None, docker={'image': 'i', 'dns': None})]}
    text = ct.render(config)
    assert 'log_level' not in text and 'builds_dir' not in text and 'dns' not in text
    assert ct.semantic_equal(ct.parse(text), config)


def test_render_is_deterministic():
    text, dummy = load_fixture('extended.toml')
    config = ct.parse(text)
    assert ct.render(config) == ct.render(copy.deepcopy(config)) == ct.render(ct.parse(ct.render(config)))


# ------------------------------------------------------------------------------------------------
# Values, escaping, injection
# ------------------------------------------------------------------------------------------------

INJECTION_NAMES = [
    'plain',
    'with "double" quotes',
    "with 'single' quotes",
    'back\\slash\\',
    'new\nline',
    'new\nline\n[[runners]]\n  name = "evil"\n  token = "x"',
    '"\n[runners.docker]\nprivileged = true\n#',
    'closing ] bracket [ and ]]',
    '[[runners]]',
    'tab\tand\rcarriage\x0bvt\x00nul\x1bescape\x7fdel\x08bs\x0cff',
    u'unicode é ü 中文 \u2028 \U0001f680',
    '"""triple""" \'\'\'quotes\'\'\'',
    '# not a comment',
    '',
    ' ',
    '\\u0041 literal backslash-u',
]


@pytest.mark.parametrize('value', INJECTION_NAMES)
def test_strings_round_trip_without_creating_tables(value):
    runner = minimal_runner(name=value, environment=['X=' + value, value], docker={'image': value})
    runner['feature_flags'] = {value or 'empty': True}
    config = {'concurrent': 1, 'runners': [runner], value or 'k': value}
    text = ct.render(config)
    assert ct.parse(text) == config
    assert [h for dummy, h in headers(text)] == ['[[runners]]', '[runners.feature_flags]', '[runners.docker]']
    assert len(text.split('\n')) == len(ct.render({'concurrent': 1, 'runners': [minimal_runner(
        name='n', environment=['a', 'b'], docker={'image': 'i'}, feature_flags={'f': True})], 'k': 'v'}).split('\n'))


def test_string_escapes_match_burntsushi():
    text = ct.render({'s': 'q" b\\ \b\t\n\f\r \x00\x01\x0b\x1f\x7f é'})
    assert text == 's = "q\\" b\\\\ \\b\\t\\n\\f\\r \\u0000\\u0001\\u000b\\u001f\\u007f é"\n'


def test_unicode_kept_verbatim():
    text = ct.render({'name': u'Zürich 中文 \U0001f680'})
    assert text == u'name = "Zürich 中文 \U0001f680"\n'
    assert ct.parse(text.encode('utf-8')) == {'name': u'Zürich 中文 \U0001f680'}


@pytest.mark.parametrize('key, expected', [
    ('bare-key_1', 'bare-key_1'),
    ('net.ipv4.ip_forward', '"net.ipv4.ip_forward"'),
    ('', '""'),
    ('with space', '"with space"'),
    ('q"uote', '"q\\"uote"'),
    (u'ключ', u'"ключ"'),
    ('a]\n[b', '"a]\\n[b"'),
    ('trailing\n', '"trailing\\n"'),
    ('x\n[[runners]]\ntoken', '"x\\n[[runners]]\\ntoken"'),
])
def test_keys_quoted_when_not_bare(key, expected):
    text = ct.render({'t': {key: 1}})
    assert text == '[t]\n  %s = 1\n' % expected
    assert ct.parse(text) == {'t': {key: 1}}
    nested = {'t': {key: {'x': 1}}}
    assert ct.parse(ct.render(nested)) == nested
    assert ct.render(nested) == '[t]\n  [t.%s]\n    x = 1\n' % expected


@pytest.mark.parametrize('value, expected', [
    (True, 'true'), (False, 'false'), (0, '0'), (-42, '-42'), (9223372036854775807, '9223372036854775807'),
    (1.5, '1.5'), (2.0, '2.0'), (0.1, '0.1'), (1e16, '10000000000000000.0'), (1.5e-7, '0.00000015'),
    (-0.0, '-0.0'), (float('inf'), 'inf'), (float('-inf'), '-inf'),
    ([], '[]'), (['a', 'b'], '["a", "b"]'), ([1, [2, 3]], '[1, [2, 3]]'),
    (datetime.datetime(1, 1, 1, tzinfo=UTC), '0001-01-01T00:00:00Z'),
    (datetime.datetime(2024, 5, 1, 10, 0, 0, 120000, tzinfo=UTC), '2024-05-01T10:00:00.12Z'),
    (datetime.datetime(2024, 5, 1, 12, 0, tzinfo=datetime.timezone(datetime.timedelta(hours=2))), '2024-05-01T10:00:00Z'),
    (datetime.datetime(2024, 5, 1, 12, 0), '2024-05-01T12:00:00'),
    (datetime.date(2024, 5, 1), '2024-05-01'),
    (datetime.time(7, 30, 0, 5000), '07:30:00.005'),
])
def test_scalar_values(value, expected):
    text = ct.render({'v': value})
    assert text == 'v = %s\n' % expected
    assert ct.parse(text)['v'] == value


def test_nan_round_trips():
    assert ct.render({'v': float('nan')}) == 'v = nan\n'
    assert math.isnan(ct.parse(ct.render({'v': float('nan')}))['v'])


def test_array_mixing_tables_and_scalars_is_written_inline():
    config = {'a': [{'x': 1}, 'y'], 'b': [[{'c': 'd'}]]}
    text = ct.render(config)
    assert text == 'a = [{x = 1}, "y"]\nb = [[{c = "d"}]]\n'
    assert ct.parse(text) == config


@pytest.mark.parametrize('config, where', [
    ({'runners': [{'name': 'ok', 'limit': 1 << 63}]}, 'runners[0].limit'),
    ({'runners': [{'docker': {'image': u'bad \ud800'}}]}, 'runners[0].docker.image'),
    ({'x': {'y': object()}}, 'x.y'),
    ({'x': [1, None]}, 'x[1]'),
    ({'x': {1: 'a'}}, 'x'),
    ({'t': datetime.time(1, 2, tzinfo=UTC)}, 't'),
])
def test_unrepresentable_values_raise_naming_the_key(config, where):
    with pytest.raises(ct.ConfigTomlError) as err:
        ct.render(config)
    assert where in str(err.value)


def test_render_error_does_not_leak_the_value():
    token = 'glrt-' + secrets.token_urlsafe(20)
    with pytest.raises(ct.ConfigTomlError) as err:
        ct.render({'runners': [{'token': token + u'\ud800'}]})
    assert token not in str(err.value)


def test_render_requires_a_mapping():
    with pytest.raises(ct.ConfigTomlError):
        ct.render(['not', 'a', 'dict'])


def _random_string(rng):
    alphabet = string.printable + u'é中\U0001f680"\\[]\x00\x7f'
    return ''.join(rng.choice(alphabet) for dummy in range(rng.randint(0, 12)))


def _random_scalar(rng):
    kind = rng.randint(0, 5)
    if kind == 0:
        return rng.randint(-(1 << 63), (1 << 63) - 1)
    if kind == 1:
        return rng.random() * 10 ** rng.randint(-20, 20)
    if kind == 2:
        return rng.choice([True, False])
    if kind == 3:
        return datetime.datetime(rng.randint(1, 9999), rng.randint(1, 12), rng.randint(1, 28), rng.randint(0, 23),
                                 rng.randint(0, 59), rng.randint(0, 59), rng.choice([0, rng.randint(0, 999999)]), tzinfo=UTC)
    if kind == 4:
        return [_random_string(rng) for dummy in range(rng.randint(0, 3))]
    return _random_string(rng)


def _random_table(rng, depth):
    known = ['name', 'token', 'image', 'docker', 'cache', 's3', 'services', 'feature_flags', 'volumes', 'runners']
    table = {}
    for dummy in range(rng.randint(0, 6)):
        key = rng.choice(known) if rng.random() < 0.5 else _random_string(rng)
        roll = rng.random()
        if depth < 3 and roll < 0.2:
            table[key] = _random_table(rng, depth + 1)
        elif depth < 3 and roll < 0.3:
            table[key] = [_random_table(rng, depth + 1) for dummy2 in range(rng.randint(1, 3))]
        else:
            table[key] = _random_scalar(rng)
    return table


def test_random_documents_round_trip():
    rng = random.Random(20250301)
    for dummy in range(400):
        config = _random_table(rng, 0)
        text = ct.render(config)
        assert ct.parse(text) == config, text
        assert ct.render(ct.parse(text)) == text


# ------------------------------------------------------------------------------------------------
# Durations
# ------------------------------------------------------------------------------------------------

@pytest.mark.parametrize('value, expected', [
    ('15m', '15m0s'), ('1h30m', '1h30m0s'), ('90s', '1m30s'), ('1.5h', '1h30m0s'), ('300ms', '300ms'),
    (900, '15m0s'), (3600, '1h0m0s'), (0, '0s'), ('0', '0s'), ('0s', '0s'), (1, '1s'), (-90, '-1m30s'),
    ('15m0s', '15m0s'), ('1h0m0s', '1h0m0s'), ('60m', '1h0m0s'), ('100h', '100h0m0s'), ('+5s', '5s'),
    ('-1.5s', '-1.5s'), ('1500ms', '1.5s'), ('61.5s', '1m1.5s'), ('.5s', '500ms'), ('1.s', '1s'),
    ('1us', u'1\u00b5s'), (u'2\u00b5s', u'2\u00b5s'), (u'3\u03bcs', u'3\u00b5s'), ('1000ns', u'1\u00b5s'), ('999ns', '999ns'),
    ('1.001ms', '1.001ms'), ('0.5ms', u'500\u00b5s'), ('1h1m1s1ms1us1ns', '1h1m1.001001001s'), ('2562047h', '2562047h0m0s'),
    ('2562047h47m16.854775807s', '2562047h47m16.854775807s'),
    (datetime.timedelta(minutes=90), '1h30m0s'), (datetime.timedelta(milliseconds=1), '1ms'),
])
def test_go_duration(value, expected):
    assert ct.go_duration(value) == expected


@pytest.mark.parametrize('value', [
    '1h30min', '3600 s', '3600', '', '-', 's', '.s', '1..5s', '1e3s', ' 15m', '15m ', '1d', '15M', '1h-30m',
    '2562048h', '9223372036854775808ns', 1 << 62, True, None, 1.5, ['15m'],
])
def test_go_duration_rejects(value):
    with pytest.raises(ct.ConfigTomlError) as err:
        ct.go_duration(value)
    assert repr(value) in str(err.value)


def test_normalize_durations_everywhere():
    config = {
        'connection_max_age': '15m',
        'runners': [
            minimal_runner(unhealthy_interval='60m', prepare_timeout=300, get_sources_timeout='1h30min',
                           artifact={'upload_timeout': '3600s', 'response_header_timeout': '10m'},
                           experimental={'boot_verify': {'enabled': True, 'timeout': '120s', 'acquire_min_backoff': '1000ms',
                                                         'acquire_max_backoff': '0.5m'}},
                           docker={'image': 'i', 'wait_for_services_timeout': 30}),
            minimal_runner(name='two', unhealthy_interval='90s', limit=None),
        ],
    }
    before = copy.deepcopy(config)
    result = ct.normalize(config)
    assert config == before
    assert result['connection_max_age'] == '15m0s'
    first, second = result['runners']
    assert first['unhealthy_interval'] == '1h0m0s'
    assert first['prepare_timeout'] == 300  # a bare integer is nanoseconds to gitlab-runner: not reinterpreted
    assert first['get_sources_timeout'] == '1h30min'  # invalid: left for the caller to notice
    assert first['artifact'] == {'upload_timeout': '1h0m0s', 'response_header_timeout': '10m0s'}
    assert first['experimental']['boot_verify'] == {'enabled': True, 'timeout': '2m0s', 'acquire_min_backoff': '1s',
                                                    'acquire_max_backoff': '30s'}
    assert first['docker']['wait_for_services_timeout'] == 30
    assert second['unhealthy_interval'] == '1m30s'
    assert 'limit' not in second


def test_duration_keys_cover_the_documented_fields():
    leaves = set(path[-1] for path in ct.DURATION_KEYS)
    assert {'connection_max_age', 'unhealthy_interval', 'prepare_timeout', 'get_sources_timeout', 'upload_timeout',
            'response_header_timeout', 'timeout', 'acquire_min_backoff', 'acquire_max_backoff'} <= leaves


# ------------------------------------------------------------------------------------------------
# Semantic comparison
# ------------------------------------------------------------------------------------------------

def test_semantic_equal_ignores_duration_spelling_and_key_order():
    text, dummy = load_fixture('dood_docker.toml')
    on_disk = ct.parse(text)
    wanted = copy.deepcopy(on_disk)
    wanted['connection_max_age'] = '15m'
    wanted['runners'][0]['unhealthy_interval'] = '3600s'
    on_disk['runners'][0]['unhealthy_interval'] = '1h'
    wanted['runners'][0] = dict(reversed(list(wanted['runners'][0].items())))
    assert ct.semantic_equal(on_disk, wanted)


@pytest.mark.parametrize('change', [
    lambda c: c['runners'][0].__setitem__('token', 'glrt-' + secrets.token_urlsafe(20)),
    lambda c: c['runners'][0]['docker'].__setitem__('privileged', 1),
    lambda c: c['runners'][0]['docker'].__setitem__('shm_size', 0.0),
    lambda c: c['runners'][0]['docker'].__setitem__('privileged', True),
    lambda c: c['runners'][0]['docker']['volumes'].reverse(),
    lambda c: c['runners'].reverse(),
    lambda c: c.__setitem__('connection_max_age', '16m'),
    lambda c: c.__setitem__('connection_max_age', '1h30min'),
    lambda c: c['runners'][0]['cache'].pop('s3'),
    lambda c: c['runners'][0]['cache'].__setitem__('MaxUploadedArchiveSize', 1),
    lambda c: c.__setitem__('concurrent', 2),
    lambda c: c.__setitem__('check_interval', 1),
    lambda c: c['runners'][0].__setitem__('token_obtained_at', c['runners'][0]['token_obtained_at'].replace(tzinfo=None)),
    lambda c: c['runners'][0].__setitem__('token_expires_at', ct.ZERO_TIME + datetime.timedelta(seconds=1)),
    lambda c: c['runners'][1].__setitem__('unhealthy_interval', 3600),
])
def test_semantic_equal_sees_real_changes(change):
    text, dummy = load_fixture('dood_docker.toml')
    before = ct.parse(text)
    after = copy.deepcopy(before)
    change(after)
    assert not ct.semantic_equal(before, after)
    assert ct.semantic_equal(before, copy.deepcopy(before))


def test_semantic_equal_ignores_what_gitlab_runner_writes_for_unset_settings():
    # A file gitlab-runner re-encoded (after rotating a token, docs/gitlab-runner-config.md §2.1) against what the module declared.
    declared = {'runners': [{'name': 'r', 'url': 'https://gitlab.example.com', 'id': 1, 'token': 'T',
                             'token_obtained_at': ct.ZERO_TIME, 'token_expires_at': ct.ZERO_TIME, 'executor': 'docker',
                             'docker': {'image': 'docker:27-cli'}}]}
    rewritten = copy.deepcopy(declared)
    rewritten.update({'concurrent': 1, 'check_interval': 0, 'connection_max_age': '15m0s', 'shutdown_timeout': 0,
                      'session_server': {'session_timeout': 1800}})
    rewritten['runners'][0]['cache'] = {'MaxUploadedArchiveSize': 0, 's3': {'AssumeRoleMaxConcurrency': 0}, 'gcs': {}, 'azure': {}}
    rewritten['runners'][0]['feature_flags'] = {}
    assert ct.semantic_equal(declared, rewritten)
    assert ct.semantic_equal(ct.parse(ct.render(rewritten)), declared)
    # Only the defaults themselves: a set value is a real difference.
    for key, value in (('concurrent', 4), ('check_interval', 3), ('connection_max_age', '30m0s'), ('shutdown_timeout', 30)):
        changed = copy.deepcopy(rewritten)
        changed[key] = value
        assert not ct.semantic_equal(declared, changed), key
    changed = copy.deepcopy(rewritten)
    changed['session_server']['session_timeout'] = 600
    assert not ct.semantic_equal(declared, changed)


# ------------------------------------------------------------------------------------------------
# Masking
# ------------------------------------------------------------------------------------------------

def test_mask_secret_keys_everywhere():
    text, values = load_fixture('extended.toml')
    config = ct.parse(text)
    masked = ct.mask(config)
    runner = masked['runners'][0]
    assert runner['token'] == ct.MASK
    assert runner['cache']['gcs']['PrivateKey'] == ct.MASK
    assert runner['cache']['azure']['AccountKey'] == ct.MASK
    assert masked['sentry_dsn'] == ct.MASK
    assert runner['cache']['gcs']['AccessID'] == config['runners'][0]['cache']['gcs']['AccessID']
    rendered = ct.render(masked)
    for value in values.values():
        assert value not in rendered
    assert config['runners'][0]['token'] == values['TOKEN_1']  # the input is not modified


def test_mask_s3_keys_and_given_secrets_inside_strings():
    text, values = load_fixture('dood_docker.toml')
    config = ct.parse(text)
    extra = 'pw-' + secrets.token_hex(8)
    config['runners'][0]['environment'].append('REGISTRY_PASSWORD=' + extra)
    config['runners'][0]['docker']['services'][0]['alias'] = extra
    config['runners'][0]['docker']['sysctls'][extra] = '1'
    masked = ct.mask(config, secrets=[extra, None, ''])
    s3 = masked['runners'][0]['cache']['s3']
    assert s3['AccessKey'] == ct.MASK and s3['SecretKey'] == ct.MASK
    assert masked['runners'][0]['environment'][-1] == 'REGISTRY_PASSWORD=' + ct.MASK
    assert masked['runners'][0]['docker']['services'][0]['alias'] == ct.MASK
    assert ct.MASK in masked['runners'][0]['docker']['sysctls']
    assert masked['runners'][1]['token'] == ct.MASK
    assert masked['runners'][0]['token_obtained_at'] == config['runners'][0]['token_obtained_at']
    rendered = ct.render(masked)
    assert extra not in rendered
    for value in values.values():
        assert value not in rendered


def test_mask_keeps_absent_and_none_values():
    assert ct.mask({'runners': [{'name': 'a', 'token': None}]}) == {'runners': [{'name': 'a', 'token': None}]}


def test_secret_keys_constant():
    assert {'token', 'AccessKey', 'SecretKey', 'SessionToken', 'PrivateKey', 'AccountKey', 'sentry_dsn'} <= set(ct.SECRET_KEYS)
    assert 'name' not in ct.SECRET_KEYS and 'id' not in ct.SECRET_KEYS


def test_mask_text_plain_and_toml_escaped():
    secret = 'glrt-' + secrets.token_urlsafe(20)
    weird = 'p"w\\' + secrets.token_hex(4)
    text = 'token: %s and again %s; rendered: %s' % (secret, secret, ct.render({'x': weird}))
    out = ct.mask_text(text, [secret, weird])
    assert secret not in out
    assert weird not in out and ct.render({'x': weird}).strip()[5:-1] not in out
    assert out.count(ct.MASK) == 3
    assert ct.mask_text('nothing here', [secret]) == 'nothing here'
    assert ct.mask_text('abcdef', ['abc', 'abcdef']) == ct.MASK


# ------------------------------------------------------------------------------------------------
# Runner-owned fields and time helpers
# ------------------------------------------------------------------------------------------------

def test_runner_owned():
    runner = minimal_runner(limit=2)
    owned = ct.runner_owned(runner)
    assert owned == {'id': 7, 'token': runner['token'], 'token_obtained_at': runner['token_obtained_at'],
                     'token_expires_at': ct.ZERO_TIME}
    assert ct.runner_owned({'name': 'new'}) == {}
    assert ct.RUNNER_OWNED_KEYS == ('id', 'token', 'token_obtained_at', 'token_expires_at')


def test_zero_time_and_now():
    assert ct.ZERO_TIME == datetime.datetime(1, 1, 1, tzinfo=UTC)
    assert ct.render({'t': ct.ZERO_TIME}) == 't = 0001-01-01T00:00:00Z\n'
    now = ct.utc_now_seconds()
    assert now.microsecond == 0 and now.utcoffset() == datetime.timedelta(0)
    assert abs((datetime.datetime.now(UTC) - now).total_seconds()) < 5
    assert re.match(r'^t = \d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ\n$', ct.render({'t': now}))


# ------------------------------------------------------------------------------------------------
# What gitlab-runner writes when it saves the file itself (token rotation, reset-token, unregister)
# ------------------------------------------------------------------------------------------------

def test_resave_reproduces_a_file_gitlab_runner_saved_byte_for_byte():
    text, dummy = load_fixture('saved_by_v18.10.1.toml')
    body = ''.join(line for line in text.splitlines(True) if not line.startswith('#'))
    assert ct.render(ct.resave(ct.parse(text), '18.10.1')) == body


def test_resave_adds_zero_values_arrays_and_loader_defaults_and_drops_omitempty_falses():
    declared = {'runners': [{'name': 'r', 'url': 'https://gitlab.example.com', 'id': 1, 'token': 'T', 'executor': 'docker',
                             'cache': {'Type': 's3', 'Shared': False, 's3': {'BucketName': 'b', 'Insecure': False}},
                             'docker': {'image': 'alpine', 'pull_policy': 'always', 'cap_add': []}}]}
    saved = ct.resave(declared, '18.10.1')
    runner = saved['runners'][0]
    assert saved['concurrent'] == 1 and saved['session_server'] == {'session_timeout': 1800}
    assert runner['docker']['pull_policy'] == ['always']
    assert runner['docker']['tls_verify'] is False and runner['docker']['shm_size'] == 0
    assert runner['docker']['cap_add'] == [], 'a list without omitempty is written even when empty'
    assert 'Shared' not in runner['cache'] and 'Insecure' not in runner['cache']['s3']
    assert runner['cache']['MaxUploadedArchiveSize'] == 0
    assert 'AssumeRoleMaxConcurrency' not in runner['cache']['s3'], 'not a key of 18.10.1'
    assert ct.resave(declared, '19.3.0')['runners'][0]['cache']['s3']['AssumeRoleMaxConcurrency'] == 0
    assert ct.semantic_equal(declared, saved)


@pytest.mark.parametrize('change', [
    lambda r: r['docker'].__setitem__('privileged', True),
    lambda r: r['docker'].__setitem__('pull_policy', ['if-not-present']),
    lambda r: r['cache'].__setitem__('Shared', True),
    lambda r: r['docker'].__setitem__('services_privileged', False),
    lambda r: r.__setitem__('proxy_exec', False),
])
def test_normal_form_keeps_what_gitlab_runner_reads_differently(change):
    base = {'runners': [{'name': 'r', 'executor': 'docker', 'cache': {'Type': 's3'}, 'docker': {'image': 'alpine'}}]}
    changed = copy.deepcopy(base)
    change(changed['runners'][0])
    assert not ct.semantic_equal(base, changed)
    assert not ct.semantic_equal(ct.resave(base, '18.10.1'), ct.resave(changed, '18.10.1'))


def test_duration_keys_come_from_the_schema():
    assert ('runners', 'monitoring', 'job_queuing_durations', 'threshold') in ct.DURATION_KEYS
    assert ('runners', 'docker', 'wait_for_services_timeout') not in ct.DURATION_KEYS


def test_url_passwords_are_masked_and_found():
    password = secrets.token_urlsafe(12)
    env = ['HTTPS_PROXY=http://ci:{0}@proxy.internal:3128'.format(password), 'NO_PROXY=.internal']
    masked = ct.mask({'runners': [{'environment': env}]})
    assert masked['runners'][0]['environment'] == ['HTTPS_PROXY=http://ci:********@proxy.internal:3128', 'NO_PROXY=.internal']
    assert password in ct.secret_values({'environment': env})
    assert ct.mask({'clone_url': 'https://gitlab.example.com'}) == {'clone_url': 'https://gitlab.example.com'}
