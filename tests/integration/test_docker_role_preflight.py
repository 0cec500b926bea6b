# Copyright (c) dood.gitlab_runner contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The docker role's preflight: bad settings and unsupported hosts fail with a sentence that names the fix.

Only the role's preflight tasks run (`tasks_from: preflight`), on this machine, so that a check that wrongly passed
could not go on to change it. Settings come from the command line (`-e`), as a user types them.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

PEM = '-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----'

CASES = [
    ('valid settings pass', {'docker_http_proxy': 'http://proxy.example.com:3128', 'docker_https_proxy': 'http://10.0.0.1:3128/',
                             'docker_no_proxy': ['localhost', '.example.com', '10.0.0.0/8'],
                             'docker_registry_ca_certificates': {'registry.example.com:5050': PEM, 'old.example.com': ''},
                             'docker_prune_enabled': 'false', 'docker_prune_volumes': 'true'}, None, []),
    ('proxy without a scheme', {'docker_http_proxy': 'proxy.example.com:3128'}, None,
     ['docker_http_proxy and docker_https_proxy take a proxy URL such as http://proxy.example.com:3128']),
    ('no_proxy as one string', {'docker_no_proxy': ['localhost,.example.com']}, None,
     ["Each entry of docker_no_proxy is one host, domain or network without spaces or commas; got ['localhost,.example.com']."]),
    ('registry given as a URL', {'docker_registry_ca_certificates': {'https://registry.example.com/v2': PEM}}, None,
     ["The keys of docker_registry_ca_certificates name registries as in image names (host or host:port, no scheme or path)"]),
    ('no PEM', {'docker_registry_ca_certificates': {'registry.example.com': '/etc/ssl/ca.pem'}}, None,
     ["docker_registry_ca_certificates of ['registry.example.com'] hold no PEM certificate"]),
    ('relative socket and bad label', {'docker_socket': 'docker.sock', 'docker_prune_volume_labels': ['a label']}, None,
     ['docker_socket must be an absolute path, got docker.sock.',
      "Each entry of docker_prune_volume_labels reads key or key=value, got ['a label']."]),
    ('string booleans: prune with volumes and until', {'docker_prune_enabled': 'true', 'docker_prune_volumes': 'true'}, None,
     ['docker system prune refuses the "until" filter together with --volumes']),
    ('EL 8', {}, {'os_family': 'RedHat', 'distribution': 'Rocky', 'distribution_major_version': '8'},
     ['EL 8 is not supported: its system Python is 3.6, and the collection\'s modules need Python 3.9 or newer.']),
]


@pytest.mark.parametrize('settings,facts,messages', [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_docker_role_preflight(tmp_path, ansible_env, settings, facts, messages):
    pre_tasks = []
    command = [str(Path(sys.executable).with_name('ansible-playbook')), '-i', 'localhost,', '-c', 'local']
    if facts:
        library = tmp_path / 'library'
        library.mkdir()
        (library / 'host_facts.py').write_text(
            '#!/usr/bin/python\nfrom ansible.module_utils.basic import AnsibleModule\n'
            'module = AnsibleModule(argument_spec={})\n'
            'module.exit_json(ansible_facts=' + repr(facts) + ')\n')
        command += ['-M', str(library)]
        pre_tasks.append({'name': 'Report the facts of another host', 'host_facts': {}})
    play = [{'hosts': 'localhost', 'gather_facts': True, 'gather_subset': ['min'], 'pre_tasks': pre_tasks, 'tasks': [
        {'ansible.builtin.include_role': {'name': 'dood.gitlab_runner.docker', 'tasks_from': 'preflight'}},
        {'name': 'Preflight passed', 'ansible.builtin.debug': {'msg': 'preflight passed'}}]}]
    (tmp_path / 'play.yml').write_text(json.dumps(play))
    for key, value in settings.items():
        command += ['-e', '{0}={1}'.format(key, value) if isinstance(value, str) else json.dumps({key: value})]
    command.append(str(tmp_path / 'play.yml'))
    proc = subprocess.run(command, env=ansible_env, capture_output=True, text=True, timeout=300, check=False)
    # Older ansible-core prints the failure as JSON, with its quotes escaped.
    output = ' '.join((proc.stdout + proc.stderr).split()).replace('\\"', '"')
    if not messages:
        assert proc.returncode == 0, output[-3000:]
        assert 'preflight passed' in output
        return
    assert proc.returncode != 0
    assert 'preflight passed' not in output
    for message in messages:
        assert message in output, output[-3000:]
