# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""TEST DOUBLE of the gitlab-runner binary, for the molecule scenarios of dood.gitlab_runner.

It is not GitLab Runner and runs no jobs. It keeps the parts of the contract the collection relies on:

* config file ``/etc/gitlab-runner/config.toml`` (``-c``/``CONFIG_FILE`` override), ``.runner_system_id``
  next to it (kept when present, created as ``r_`` + 12 characters otherwise);
* ``run`` reloads config.toml when its mtime moves (polled every 3 s) or on SIGHUP, stops on SIGQUIT
  (graceful) / SIGTERM / SIGINT, serves ``/metrics`` when ``listen_address`` (config, ``--listen-address``
  or ``LISTEN_ADDRESS``) is set;
* ``verify`` exits non-zero when config.toml does not parse or GitLab answers 403 for a runner token;
* ``reset-token`` (``-n NAME`` or ``--all-runners``) and ``run``'s automatic rotation at 75 % of a token's lifetime
  rotate a runner's token with ``POST /api/v4/runners/reset_authentication_token`` and then SAVE THE WHOLE FILE THE
  WAY GITLAB-RUNNER DOES: re-encoded from its structs in their key order, the zero values its encoder always writes
  (``tls_verify = false``, ``shm_size = 0``, ...) added, string-or-array keys as arrays, omitempty falses dropped,
  written in place with mode 0600 (not atomically). The encoding is the collection's ``config_toml.resave``, which a
  unit test holds to a file gitlab-runner v18.10.1 saved, byte for byte (docs/gitlab-runner-config.md §2.0, §2.8).

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
from datetime import datetime, timezone

from ansible_collections.dood.gitlab_runner.plugins.module_utils import config_toml

VERSION = os.environ.get("DOUBLE_VERSION", "v0")
DEFAULT_CONFIG = "/etc/gitlab-runner/config.toml"
RELOAD_INTERVAL = 3
HEARTBEAT_INTERVAL = 60
USER_AGENT = f"gitlab-runner {VERSION.lstrip('v')} (test-double; go1.0; linux/amd64)"
# The gitlab-runner release whose encoder the double's saves follow.
SAVES_AS = os.environ.get("DOUBLE_SAVES_AS", "18.10.1")
ROTATE_AT = 0.75  # gitlab-runner renews a token at 75 % of its lifetime


def log(level: str, message: str) -> None:
    sys.stderr.write(f"{level}: {message}\n")
    sys.stderr.flush()


def load_config(path: str) -> dict:
    if not os.path.exists(path):
        return {}
    with open(path, "rb") as handle:
        return tomllib.load(handle)


def save_config(path: str, config: dict) -> None:
    """gitlab-runner's SaveConfig: the whole struct re-encoded and written with os.WriteFile(path, data, 0600)."""
    data = config_toml.render(config_toml.resave(config, SAVES_AS)).encode()
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)


def api_base(runner: dict) -> str:
    url = str(runner.get("url", "")).rstrip("/")
    return url[:-3] if url.endswith("/ci") else url


def reset_token(runner: dict) -> bool:
    """POST /api/v4/runners/reset_authentication_token with the runner's current token; update the runner in place."""
    request = urllib.request.Request(api_base(runner) + "/api/v4/runners/reset_authentication_token",
                                     data=json.dumps({"token": runner.get("token", "")}).encode(), method="POST",
                                     headers={"Content-Type": "application/json", "User-Agent": USER_AGENT})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            body = json.load(response)
    except (urllib.error.URLError, OSError, ValueError) as err:
        log("ERROR", f"Resetting runner token... runner={runner.get('name', '?')} failed: {getattr(err, 'code', err)}")
        return False
    runner["token"] = body["token"]
    runner["token_obtained_at"] = datetime.now(timezone.utc).replace(microsecond=0)
    expires = body.get("token_expires_at")
    runner["token_expires_at"] = (datetime.fromisoformat(expires.replace("Z", "+00:00")).replace(microsecond=0)
                                  if expires else config_toml.ZERO_TIME)
    log("INFO", f"Resetting runner token... runner={runner.get('name', '?')} succeeded")
    return True


def due_for_rotation(runner: dict, now: datetime) -> bool:
    expires, obtained = runner.get("token_expires_at"), runner.get("token_obtained_at")
    if not isinstance(expires, datetime) or expires <= config_toml.ZERO_TIME:
        return False
    if not isinstance(obtained, datetime) or obtained <= config_toml.ZERO_TIME:
        return True  # gitlab-runner computes a reset time in the past then (docs/gitlab-runner-config.md §2.8)
    return now >= obtained + (expires - obtained) * ROTATE_AT


def rotate_due(path: str) -> bool:
    """Run's automatic rotation: reload from disk, rotate every runner that is due, save the file if any was."""
    if not os.path.exists(path):
        return False
    with open(path, "rb") as handle:
        config = config_toml.parse(handle.read())
    now = datetime.now(timezone.utc)
    rotated = [r for r in config.get("runners", []) if due_for_rotation(r, now) and reset_token(r)]
    if rotated:
        save_config(path, config)
    return bool(rotated)


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
        try:
            if rotate_due(args.config):
                continue  # the saved file is reloaded at once, like gitlab-runner's own save does
        except (config_toml.ConfigTomlError, OSError) as err:
            log("ERROR", f"Token rotation skipped: {err}")
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


def command_reset_token(args) -> int:
    """gitlab-runner reset-token (-n NAME | --all-runners): rotate, then save the whole file like gitlab-runner."""
    try:
        with open(args.config, "rb") as handle:
            config = config_toml.parse(handle.read())
    except (config_toml.ConfigTomlError, OSError) as err:
        log("FATAL", f"Failed to load config {args.config}: {err}")
        return 1
    chosen = [r for r in config.get("runners", []) if args.all_runners or r.get("name") == args.name]
    if not chosen:
        log("FATAL", "No runner matches")
        return 1
    outcomes = [reset_token(runner) for runner in chosen]  # every runner, even after one failed
    if not all(outcomes):
        return 1
    save_config(args.config, config)
    return 0


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="gitlab-runner", description="gitlab-runner TEST DOUBLE")
    parser.add_argument("--version", "-v", action="store_true")
    parser.add_argument("--debug", action="store_true")
    sub = parser.add_subparsers(dest="command")
    for name in ("run", "verify", "list", "reset-token"):
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
        if name == "reset-token":
            cmd.add_argument("-n", "--name", default="")
            cmd.add_argument("--all-runners", action="store_true")
    args = parser.parse_args(argv)
    if args.version:
        print(f"Version:      {VERSION.lstrip('v')}\nGit revision: test-double\nOS/Arch:      linux/amd64")
        return 0
    handler = {"run": command_run, "verify": command_verify, "list": command_list,
               "reset-token": command_reset_token}.get(args.command)
    if handler is None:
        parser.print_help()
        return 1
    return handler(args)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
