# -*- coding: utf-8 -*-
# Copyright (c) dood.gitlab_runner contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations


class ModuleDocFragment:
    # Connection options shared by the modules that talk to GitLab.
    DOCUMENTATION = r'''
options:
  api_url:
    description:
      - Base URL of the GitLab instance, without C(/api/v4), for example C(https://gitlab.example.com).
      - If not set, the environment variable E(GITLAB_URL) is used.
    type: str
  api_token:
    description:
      - A personal, group or project access token, sent as C(PRIVATE-TOKEN).
      - Scopes C(create_runner) allow creating only; reconciling and deleting need C(manage_runner) (or C(api)).
      - If not set, the environment variable E(GITLAB_API_TOKEN) is used.
    type: str
  validate_certs:
    description:
      - Verify GitLab's TLS certificate. Only turn this off for a throwaway test instance.
    type: bool
    default: true
  ca_path:
    description:
      - PEM file with the CA certificate(s) that signed GitLab's certificate, for a private CA.
    type: path
  timeout:
    description:
      - Seconds to wait for each answer from GitLab.
    type: int
    default: 30
  allow_http:
    description:
      - Allow C(http://) URLs. Tokens then cross the network in clear text, so this is refused unless set.
    type: bool
    default: false
'''
