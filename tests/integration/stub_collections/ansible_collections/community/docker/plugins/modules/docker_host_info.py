# Copyright (c) dood.gitlab_runner contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Test stand-in for community.docker.docker_host_info (see module_utils/scripted.py)."""

from __future__ import annotations

from ansible_collections.community.docker.plugins.module_utils.scripted import run

if __name__ == '__main__':
    run('docker_host_info')
