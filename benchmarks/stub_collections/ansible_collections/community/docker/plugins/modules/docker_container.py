# Copyright (c) dood.gitlab_runner contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Benchmark stand-in for community.docker.docker_container: reports an unchanged running container.

The benchmark simulates hundreds of hosts on one machine, where no runner container can run; this stand-in keeps
the role's container step in the task count without touching a Docker daemon.
"""

from __future__ import annotations

from ansible.module_utils.basic import AnsibleModule

# Every option the runner role passes; accepted as they come.
OPTIONS = ('name', 'docker_host', 'image', 'pull', 'state', 'restart_policy', 'stop_signal', 'stop_timeout', 'volumes', 'published_ports', 'env',
           'labels', 'log_driver', 'log_options', 'command', 'network_mode', 'detach', 'cleanup')


def main():
    module = AnsibleModule(argument_spec=dict((option, dict(type='raw')) for option in OPTIONS), supports_check_mode=True)
    module.exit_json(changed=False, container={'Name': '/' + str(module.params['name']), 'State': {'Running': True}})


if __name__ == '__main__':
    main()
