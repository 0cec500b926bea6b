# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Keep each role's meta/argument_specs.yml and defaults/main.yml in step.

Every public default has a typed, described spec entry whose documented default is the value in
defaults/main.yml, and every spec entry has a default (so ansible-doc shows what a variable is when unset).
"""

from __future__ import annotations

import os

import pytest
import yaml

COLLECTION_ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), '..', '..', '..'))
ROLES = {'docker': 'docker_', 'runner': 'gitlab_runner_'}
PYTHON_TYPES = {
    'str': str,
    'path': str,
    'bool': bool,
    'int': int,
    'list': list,
    'dict': dict,
}


class Loader(yaml.SafeLoader):  # pylint: disable=too-many-ancestors
    """SafeLoader that reads Ansible's !unsafe tag as plain data."""


def _unsafe(loader, node):
    if isinstance(node, yaml.SequenceNode):
        return loader.construct_sequence(node)
    return loader.construct_scalar(node)


Loader.add_constructor('!unsafe', _unsafe)


def load(role, *parts):
    path = os.path.join(COLLECTION_ROOT, 'roles', role, *parts)
    with open(path, encoding='utf-8') as handle:
        return yaml.load(handle, Loader=Loader) or {}  # nosec B506 - SafeLoader subclass


def options(role):
    return load(role, 'meta', 'argument_specs.yml')['argument_specs']['main']['options']


@pytest.mark.parametrize('role', sorted(ROLES))
def test_every_default_has_a_spec_and_back(role):
    defaults = set(load(role, 'defaults', 'main.yml'))
    specs = set(options(role))
    assert sorted(defaults - specs) == [], 'defaults without an argument spec'
    assert sorted(specs - defaults) == [], 'argument specs without a default'


@pytest.mark.parametrize('role', sorted(ROLES))
def test_public_names_carry_the_role_prefix(role):
    for name in load(role, 'defaults', 'main.yml'):
        assert name.startswith(ROLES[role]), name
    for name in load(role, 'vars', 'main.yml'):
        assert name.startswith('_' + ROLES[role]), name


@pytest.mark.parametrize('role', sorted(ROLES))
def test_spec_entries_are_typed_described_and_match_the_default(role):
    defaults = load(role, 'defaults', 'main.yml')
    for name, spec in options(role).items():
        assert spec.get('description'), '%s has no description' % name
        assert spec.get('type') in PYTHON_TYPES, '%s has no usable type' % name
        assert 'default' in spec, '%s documents no default' % name
        assert spec['default'] == defaults[name], '%s: documented default differs from defaults/main.yml' % name
        value = defaults[name]
        if value is None:
            continue  # documented as unset: the role then leaves the setting to the file (see its description)
        expected_type = PYTHON_TYPES[spec['type']]
        if spec['type'] == 'int':
            assert isinstance(value, int) and not isinstance(value, bool), name
        else:
            assert isinstance(value, expected_type), '%s: default is not a %s' % (name, spec['type'])
        if 'choices' in spec:
            assert value in spec['choices'], '%s: default is not among the choices' % name
        if spec['type'] == 'list' and value:
            assert 'elements' in spec, '%s: list without elements type' % name


def test_runner_image_is_pinned():
    tag = load('runner', 'defaults', 'main.yml')['gitlab_runner_image_tag']
    assert tag != 'latest' and tag[0] == 'v' and tag[1].isdigit()
