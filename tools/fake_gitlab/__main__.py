# Copyright: Contributors to the dood.gitlab_runner collection
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""``python3 -m fake_gitlab`` (with ``tools/`` on the path) is ``python3 tools/fake_gitlab/server.py``."""

import sys

from .server import main

sys.exit(main())
