# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""TEST DOUBLE of the gitlab-runner binary, for the molecule scenarios of dood.gitlab_runner.

It is not GitLab Runner and runs no jobs. It keeps the parts of the contract the collection relies on:

* config file ``/etc/gitlab-runner/config.toml`` (``-c``/``CONFIG_FILE`` override), ``.runner_system_id``
  next to it (kept when present, created as ``r_`` + 12 characters otherwise);
* ``run`` reloads config.toml when its mtime moves (polled every 3 s) or on SIGHUP, stops on SIGQUIT
  (graceful) / SIGTERM / SIGINT, serves ``/metrics`` when ``listen_address`` (config, ``--listen-address``
  or ``LISTEN_ADDRESS``) is set;
* ``verify`` exits non-zero when config.toml does not parse or GitLab answers 403 for a runner token.

In place of polling for jobs, ``run`` calls ``POST /api/v4/runners/verify`` with each configured runner's
own token and this host's system_id after every (re)load and then once a minute, so the fake GitLab
records a contact per runner and token. Tokens are never printed.
"""
from __future__ import annotations

import argparse
import http.server
import json
import os
import secrets
import signal
import string
import sys
import threading
import time
import tomllib
import urllib.error
import urllib.request

VERSION = os.environ.get("DOUBLE_VERSION", "v0")
DEFAULT_CONFIG = "/etc/gitlab-runner/config.toml"
RELOAD_INTERVAL = 3
HEARTBEAT_INTERVAL = 60
USER_AGENT = f"gitlab-runner {VERSION.lstrip('v')} (test-double; go1.0; linux/amd64)"


def log(level: str, message: str) -> None:
    sys.stderr.write(f"{level}: {message}\n")
    sys.stderr.flush()


def load_config(path: str) -> dict:
    if not os.path.exists(path):
        return {}
    with open(path, "rb") as handle:
        return tomllib.load(handle)


def system_id(config_path: str) -> str:
    path = os.path.join(os.path.dirname(config_path), ".runner_system_id")
    try:
        with open(path, encoding="utf-8") as handle:
            value = handle.read().strip()
        if value:
            return value
    except FileNotFoundError:
        pass
    alphabet = string.ascii_letters + string.digits
    value = "r_" + "".join(secrets.choice(alphabet) for dummy in range(12))
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write(value)
    return value


def verify(runner: dict, sid: str) -> int:
    """POST /api/v4/runners/verify for one runner; returns the HTTP status (0 when GitLab is unreachable)."""
    url = str(runner.get("url", "")).rstrip("/")
    if url.endswith("/ci"):
        url = url[:-3]
    body = json.dumps({
        "token": runner.get("token", ""),
        "system_id": sid,
        "info": {"name": "gitlab-runner", "version": VERSION.lstrip("v"), "platform": "linux",
                 "architecture": "amd64", "executor": runner.get("executor", "")},
    }).encode()
    request = urllib.request.Request(url + "/api/v4/runners/verify", data=body, method="POST", headers={
        "Content-Type": "application/json",
        "User-Agent": USER_AGENT,
        "RUNNER-TOKEN": runner.get("token", ""),
        "X-Request-Id": secrets.token_hex(16),
    })
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status
    except urllib.error.HTTPError as err:
        return err.code
    except (urllib.error.URLError, OSError) as err:
        log("ERROR", f"Verifying runner... runner={runner.get('name', '?')} error={err}")
        return 0


class Metrics(http.server.BaseHTTPRequestHandler):
    state: dict = {}

    def do_GET(self):  # noqa: N802 (http.server API)
        if self.path != "/metrics":
            self.send_error(404)
            return
        text = (f'gitlab_runner_version_info{{version="{VERSION}",double="true"}} 1\n'
                f"gitlab_runner_configured_runners {self.state.get('runners', 0)}\n").encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/plain; version=0.0.4")
        self.send_header("Content-Length", str(len(text)))
        self.end_headers()
        self.wfile.write(text)

    def log_message(self, *_args):
        return


def start_metrics(address: str) -> None:
    host, port = address.rsplit(":", 1) if ":" in address else (address, "9252")
    host = host.strip("[]") or "0.0.0.0"
    server = http.server.ThreadingHTTPServer((host, int(port or 9252)), Metrics)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    log("INFO", f"Metrics server listening address={address} builds=0")


def command_run(args) -> int:
    stop = threading.Event()
    reload_now = threading.Event()

    def on_stop(signum, _frame):
        log("INFO", f"Received {signal.Signals(signum).name}, stopping" + (" gracefully" if signum == signal.SIGQUIT else ""))
        stop.set()

    signal.signal(signal.SIGQUIT, on_stop)
    signal.signal(signal.SIGTERM, on_stop)
    signal.signal(signal.SIGINT, on_stop)
    signal.signal(signal.SIGHUP, lambda *args: reload_now.set())

    log("INFO", f"Starting multi-runner (test double {VERSION}) from {args.config} builds=0")
    sid = system_id(args.config)
    config: dict = {}
    loaded_mtime = None
    last_beat = 0.0
    metrics_started = False
    while not stop.is_set():
        try:
            mtime = os.stat(args.config).st_mtime_ns
        except FileNotFoundError:
            mtime = None
        if reload_now.is_set() or mtime != loaded_mtime:
            reload_now.clear()
            loaded_mtime = mtime
            try:
                config = load_config(args.config)
            except (tomllib.TOMLDecodeError, OSError) as err:
                log("ERROR", f"Failed to load config {args.config}: {err}")
            else:
                runners = config.get("runners", [])
                Metrics.state["runners"] = len(runners)
                log("INFO", f"Configuration loaded builds=0 runners={len(runners)}")
                last_beat = 0.0
            if not metrics_started:
                address = args.listen_address or os.environ.get("LISTEN_ADDRESS") or config.get("listen_address")
                if address:
                    start_metrics(address)
                metrics_started = True
        if time.monotonic() - last_beat >= HEARTBEAT_INTERVAL:
            last_beat = time.monotonic()
            for runner in config.get("runners", []):
                status = verify(runner, sid)
                state = {200: "is valid", 403: "is not valid"}.get(status, f"answered {status}")
                log("INFO", f"Checking runner... runner={runner.get('name', '?')} {state}")
        stop.wait(RELOAD_INTERVAL)
    log("INFO", "All workers stopped. Can exit now")
    return 0


def command_verify(args) -> int:
    try:
        config = load_config(args.config)
    except (tomllib.TOMLDecodeError, OSError) as err:
        log("FATAL", f"Failed to load config {args.config}: {err}")
        return 1
    sid = system_id(args.config)
    failed = False
    for runner in config.get("runners", []):
        if args.name and runner.get("name") != args.name:
            continue
        status = verify(runner, sid)
        if status == 403:
            failed = True
            log("ERROR", f"Verifying runner... runner={runner.get('name', '?')} is not valid")
        else:
            log("INFO", f"Verifying runner... runner={runner.get('name', '?')} is valid (status {status})")
    if failed:
        log("FATAL", "Failed to verify runners")
    return 1 if failed else 0


def command_list(args) -> int:
    try:
        config = load_config(args.config)
    except (tomllib.TOMLDecodeError, OSError) as err:
        log("WARNING", str(err))
        return 0
    log("INFO", f"Listing configured runners ConfigFile={args.config}")
    for runner in config.get("runners", []):
        log("INFO", f"{runner.get('name', '')} Executor={runner.get('executor', '')} URL={runner.get('url', '')}")
    return 0


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="gitlab-runner", description="gitlab-runner TEST DOUBLE")
    parser.add_argument("--version", "-v", action="store_true")
    parser.add_argument("--debug", action="store_true")
    sub = parser.add_subparsers(dest="command")
    for name in ("run", "verify", "list"):
        cmd = sub.add_parser(name)
        cmd.add_argument("-c", "--config", default=os.environ.get("CONFIG_FILE", DEFAULT_CONFIG))
        if name == "run":
            cmd.add_argument("--listen-address", default="")
            cmd.add_argument("--user", "-u", default="")
            cmd.add_argument("--working-directory", "-d", default="")
            cmd.add_argument("--service", "-n", default="")
        if name == "verify":
            cmd.add_argument("-n", "--name", default="")
            cmd.add_argument("--delete", action="store_true")
    args = parser.parse_args(argv)
    if args.version:
        print(f"Version:      {VERSION.lstrip('v')}\nGit revision: test-double\nOS/Arch:      linux/amd64")
        return 0
    handler = {"run": command_run, "verify": command_verify, "list": command_list}.get(args.command)
    if handler is None:
        parser.print_help()
        return 1
    return handler(args)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
