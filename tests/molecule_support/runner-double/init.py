# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Minimal PID 1 for the gitlab-runner TEST DOUBLE (the official image uses dumb-init).

Starts its arguments as a child, forwards the usual signals to it, reaps orphans and exits with the
child's status, so that `docker stop` (SIGQUIT) reaches gitlab-runner as it does in the official image.
"""
from __future__ import annotations

import os
import signal
import sys

FORWARDED = (signal.SIGQUIT, signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGUSR1, signal.SIGUSR2)


def main() -> int:
    if len(sys.argv) < 2:
        sys.stderr.write("usage: dumb-init COMMAND [ARG...]\n")
        return 2
    child = os.fork()
    if child == 0:
        for signum in FORWARDED:
            signal.signal(signum, signal.SIG_DFL)
        os.execvp(sys.argv[1], sys.argv[1:])

    def forward(signum, _frame):
        try:
            os.kill(child, signum)
        except ProcessLookupError:
            pass

    for signum in FORWARDED:
        signal.signal(signum, forward)
    while True:
        try:
            pid, status = os.wait()
        except ChildProcessError:
            return 0
        except InterruptedError:
            continue
        if pid == child:
            code = os.waitstatus_to_exitcode(status)
            return 128 - code if code < 0 else code


if __name__ == "__main__":
    sys.exit(main())
