# Copyright (c) dood.gitlab_runner contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Benchmark stand-in for the community.docker modules only the runner role's self-check uses.

docker_container_info, docker_container_exec and docker_host_info are routed here (meta/runtime.yml). The role
imports its self-check statically, so they must resolve; the benchmark's no-op run never reaches them, and a run that
does fails loudly instead of measuring something that did not happen.
"""

from __future__ import annotations

from ansible.module_utils.basic import AnsibleModule


def main():
    module = AnsibleModule(argument_spec={}, bypass_checks=True, supports_check_mode=True)
    module.fail_json(msg='The runner role\'s self-check is not available in the benchmark: switch it off (gitlab_runner_selfcheck: false).')


if __name__ == '__main__':
    main()
