# Copyright (c) dood.gitlab_runner contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Each option is declared once: the argument spec derived from the table matches the module's documentation."""

from __future__ import annotations

import yaml

from ansible_collections.dood.gitlab_runner.plugins.doc_fragments.gitlab import ModuleDocFragment
from ansible_collections.dood.gitlab_runner.plugins.module_utils._runner_config import options
from ansible_collections.dood.gitlab_runner.plugins.modules import runner_config


def documented(doc_options):
    """The parts of an argument spec that DOCUMENTATION states, per option."""
    found = {}
    for name, doc in doc_options.items():
        entry = {'type': doc.get('type', 'str')}
        for key in ('default', 'choices', 'elements'):
            if key in doc:
                entry[key] = doc[key]
        if doc.get('required'):
            entry['required'] = True
        if 'suboptions' in doc:
            entry['options'] = documented(doc['suboptions'])
        found[name] = entry
    return found


def specified(spec):
    found = {}
    for name, entry in spec.items():
        item = dict((k, v) for k, v in entry.items() if k in ('type', 'default', 'choices', 'elements', 'required'))
        if 'options' in entry:
            item['options'] = specified(entry['options'])
        found[name] = item
    return found


def test_argument_spec_matches_documentation():
    docs = yaml.safe_load(ModuleDocFragment.DOCUMENTATION)['options']
    docs.update(yaml.safe_load(runner_config.DOCUMENTATION)['options'])
    assert specified(options.argument_spec()) == documented(docs)


def test_groups_derive_from_the_table():
    assert options.SERVER_SETTINGS == ('description', 'tag_list', 'run_untagged', 'locked', 'paused', 'access_level',
                                       'maximum_timeout', 'maintenance_note')
    assert options.CREDENTIAL_OPTIONS == ('token', 'registration_token', 'runner_type')
    assert ('tls_ca_file', 'tls-ca-file') in options.LOCAL_SETTINGS
    assert options.RUNNER_SECRET_OPTIONS == ('token', 'registration_token', 'api_token')
    spec = options.argument_spec()
    assert spec['api_token']['no_log'] is True
    assert spec['runners']['options']['token']['no_log'] is True
    assert spec['sentry_dsn']['no_log'] is True
    assert spec['token_renewal_days']['no_log'] is False


def test_every_local_key_is_a_key_of_the_runner_table():
    from ansible_collections.dood.gitlab_runner.plugins.module_utils import config_toml
    keys = config_toml.table_keys('runners')
    assert [k for _o, k in options.LOCAL_SETTINGS if k not in keys] == []
    assert [k for k in options.GLOBAL_SETTINGS if k not in config_toml.table_keys()] == []
