# Copyright (c) dood.gitlab_runner contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The schema module is what the key tables in docs/gitlab-runner-schema/ give, and the codec's key order covers
only keys the schema knows."""

from __future__ import annotations

import os
import subprocess
import sys

from ansible_collections.dood.gitlab_runner.plugins.module_utils import config_schema
from ansible_collections.dood.gitlab_runner.plugins.module_utils import config_toml as ct

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), '..', '..', '..', '..'))


def test_schema_module_is_generated_from_the_tables():
    proc = subprocess.run([sys.executable, os.path.join(ROOT, 'scripts', 'gen_config_schema.py'), '--check'],
                          capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stderr


def test_rows_and_versions():
    assert config_schema.KEYS['runners[].docker.cpus'] == ('string', 'no', '18.10.1', True)
    assert config_schema.KEYS['runners[].docker.shm_size'][1] == 'yes'
    assert config_schema.KEYS['runners[].prepare_timeout'][2] == '19.3.0'
    assert config_schema.KEYS['runners[].docker.services[].suspend_data_path'][2] is None
    assert ct.known_at('18.10.1', '19.3.0') and not ct.known_at('19.3.0', '18.10.1') and not ct.known_at(None, '19.3.0')


def walk(node, prefix):
    for key in node.keys:
        yield prefix + (key,)
    for key, child in node.children.items():
        if not child.is_map:
            path = prefix + (key,)
            if config_schema.KEYS[ct.schema_key(path)][0] == 'tables':
                path += (0,)  # the elements of an array of tables
            yield from walk(child, path)


def test_every_key_the_codec_orders_is_in_the_schema():
    missing = [ct.schema_key(path) for path in walk(ct._CONFIG, ()) if ct.schema_key(path) not in config_schema.KEYS]
    assert missing == []
