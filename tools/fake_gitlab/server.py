# Copyright: Contributors to the dood.gitlab_runner collection
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The fake GitLab's command line and HTTP server.

    python3 tools/fake_gitlab/server.py --host 127.0.0.1 --port 0 --port-file /tmp/port [--seed seed.json]
        [--tls-cert cert.pem --tls-key key.pem] [--max-threads 32] [--quiet]

Standard library only; runs on Python 3.9+.  This module reads requests off the socket, routes ``/-/fake/...`` to
the control API (control.py) and ``/api/v4/...`` through the fault injector (faults.py) to GitLab's endpoints
(routes.py), logs each API request (state.py) and writes the answer.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import ssl
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qsl, urlsplit

if __name__ == "__main__" and not __package__:
    # Run as a file (python3 tools/fake_gitlab/server.py): import the rest of the package relative to it (PEP 366).
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    __package__ = "fake_gitlab"  # pylint: disable=redefined-builtin

# pylint: disable=wrong-import-position
from . import faults  # noqa: E402
from .control import CONTROL_PREFIX, Control  # noqa: E402
from .errors import ApiError  # noqa: E402
from .faults import Faults  # noqa: E402
from .params import nest_pairs  # noqa: E402
from .routes import API_PREFIX, Api, Request  # noqa: E402
from .state import RequestLog, State  # noqa: E402
from .util import iso, sha256  # noqa: E402

MAX_BODY = 10 * 1024 * 1024


class FakeGitLab:
    """The fake GitLab without its sockets: state, request log, faults, the API and the control API."""

    def __init__(self):
        self.state = State()
        self.requests = RequestLog()
        self.faults = Faults()
        self.api = Api(self.state)
        self.control = Control(self)

    def reset(self):
        """Forget everything: state, request log, faults."""
        self.state.clear()
        self.requests.reset()
        self.faults.reset()


class Server(ThreadingHTTPServer):
    """Threaded HTTP server with a bound on concurrent handler threads."""

    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 64

    def __init__(self, address, app, max_threads=32, tls_context=None, quiet=False):
        self.app = app
        self.tls = tls_context is not None
        self.quiet = quiet
        self.slots = threading.BoundedSemaphore(max_threads)
        if address[0] and ":" in address[0]:
            self.address_family = socket.AF_INET6
        super().__init__(address, Handler)
        if tls_context is not None:
            self.socket = tls_context.wrap_socket(self.socket, server_side=True, do_handshake_on_connect=False)

    def process_request(self, request, client_address):
        self.slots.acquire()  # pylint: disable=consider-using-with
        try:
            super().process_request(request, client_address)
        except Exception:
            self.slots.release()
            raise

    def process_request_thread(self, request, client_address):
        try:
            super().process_request_thread(request, client_address)
        finally:
            self.slots.release()

    def handle_error(self, request, client_address):
        exc = sys.exc_info()[1]
        if not self.quiet:
            sys.stderr.write("fake-gitlab: connection error from %s: %s\n" % (client_address[0], type(exc).__name__))


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "fake-gitlab"
    sys_version = ""
    timeout = 30

    def setup(self):
        if isinstance(self.request, ssl.SSLSocket):
            # The handshake runs here, in the handler thread, so a slow client cannot stall accept().
            self.request.settimeout(self.timeout)
            self.request.do_handshake()
        super().setup()

    # Never let the base class log request lines: they may carry a private_token query parameter.
    def log_request(self, code="-", size="-"):
        return

    def log_message(self, format, *args):  # pylint: disable=redefined-builtin
        return

    def log_line(self, method, path, status, fault):
        if not self.server.quiet:
            sys.stderr.write("fake-gitlab: %s %s -> %s%s\n" % (method, path, status, " (fault %s)" % fault if fault else ""))

    def read_body(self):
        if "chunked" in (self.headers.get("Transfer-Encoding") or "").lower():
            chunks = []
            size = 0
            while True:
                line = self.rfile.readline(65537)
                length = int(line.split(b";")[0].strip() or b"0", 16)
                if length == 0:
                    while self.rfile.readline(65537) not in (b"\r\n", b"\n", b""):
                        pass
                    break
                size += length
                if size > MAX_BODY:
                    raise ApiError(413, {"message": "413 Request Entity Too Large"})
                chunks.append(self.rfile.read(length))
                self.rfile.readline(65537)
            return b"".join(chunks)
        length = int(self.headers.get("Content-Length") or 0)
        if length > MAX_BODY:
            raise ApiError(413, {"message": "413 Request Entity Too Large"})
        return self.rfile.read(length) if length > 0 else b""

    @staticmethod
    def parse_body(raw, content_type):
        if not raw:
            return {}
        content_type = (content_type or "").split(";")[0].strip().lower()
        text = raw.decode("utf-8", "replace")
        if content_type == "application/json" or (not content_type and text.lstrip().startswith(("{", "["))):
            try:
                data = json.loads(text)
            except ValueError:
                raise ApiError(400, {"message": "400 Bad request - invalid JSON body"}) from None
            if not isinstance(data, dict):
                raise ApiError(400, {"message": "400 Bad request - JSON body must be an object"})
            return data
        if content_type in ("application/x-www-form-urlencoded", ""):
            return nest_pairs(parse_qsl(text, keep_blank_values=True))
        return {}

    def send(self, status, body, headers=None, content_type="application/json"):
        headers = dict(headers or {})
        content_type = headers.pop("Content-Type", content_type)
        if body is None or status in (204, 304):
            payload = b""
        elif isinstance(body, (bytes, bytearray)):
            payload = bytes(body)
        elif isinstance(body, str):
            payload = body.encode("utf-8")
        else:
            payload = json.dumps(body).encode("utf-8")
        self.send_response(status)
        if status not in (204, 304):
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(payload)))
        for key, value in headers.items():
            self.send_header(key, str(value))
        if self.close_connection:
            self.send_header("Connection", "close")
        self.end_headers()
        if payload and self.command != "HEAD":
            self.wfile.write(payload)
        self.wfile.flush()

    def handle_any(self):
        app = self.server.app
        started = time.time()
        split = urlsplit(self.path)
        path = split.path
        query_pairs = parse_qsl(split.query, keep_blank_values=True)
        method = self.command
        try:
            raw = self.read_body()
        except ApiError as err:
            self.close_connection = True
            self.send(err.status, err.body, err.headers)
            return
        except (ValueError, OSError):
            self.close_connection = True
            self.send(400, {"message": "400 Bad request - malformed body"})
            return
        if path == CONTROL_PREFIX or path.startswith(CONTROL_PREFIX + "/"):
            self.send(*app.control.handle(method, path, query_pairs, raw))
            return

        fault = app.faults.take(method, path) if path.startswith(API_PREFIX) else None
        entry = {
            "time": iso(started),
            "method": method,
            "path": path,
            # Who sent it: tests check that a credential only comes from where it is supposed to be.
            "peer": self.client_address[0],
            "query": app.state.scrub(nest_pairs(query_pairs)),
            "status": None,
            "credential": None,
            "fault": fault["kind"] if fault else None,
        }
        if fault and fault["delay"]:
            time.sleep(fault["delay"])
        if fault and faults.answer(self, fault, entry, app.requests):
            return

        status, body, headers = 500, {"message": "500 Internal Server Error"}, {}
        req = None
        try:
            body_params = self.parse_body(raw, self.headers.get("Content-Type"))
            req = Request(self, method, path, query_pairs, body_params)
            entry["params"] = app.state.scrub(body_params)
            if path == API_PREFIX or path.startswith(API_PREFIX + "/"):
                status, body, headers = app.api.dispatch(req)
            else:
                status, body, headers = 404, {"error": "404 Not Found"}, {}
        except ApiError as err:
            status, body, headers = err.status, err.body, err.headers
        except Exception as exc:  # pylint: disable=broad-except
            sys.stderr.write("fake-gitlab: internal error on %s %s: %s\n" % (method, path, type(exc).__name__))
            status, body, headers = 500, {"message": "500 Internal Server Error"}, {}
        credential = req.credential if req is not None else None
        if credential:
            entry["credential"] = {"kind": credential[0], "sha256": credential[1]}
        if req is None and self.headers.get("PRIVATE-TOKEN"):
            entry["credential"] = {"kind": "private_token", "sha256": sha256(self.headers["PRIVATE-TOKEN"])}
        entry["status"] = status
        entry["duration_ms"] = int((time.time() - started) * 1000)
        app.requests.add(entry)
        self.log_line(method, path, status, None)
        self.send(status, body, headers)

    def abort_connection(self):
        try:
            self.wfile.flush()
        except OSError:
            pass
        try:
            self.connection.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self.connection.close()

    do_GET = handle_any
    do_POST = handle_any
    do_PUT = handle_any
    do_DELETE = handle_any
    do_PATCH = handle_any
    do_HEAD = handle_any


def build_server(host="127.0.0.1", port=0, seed=None, tls_cert=None, tls_key=None, max_threads=32, quiet=False):
    app = FakeGitLab()
    if seed:
        app.state.seed(seed)
    context = None
    if tls_cert:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(tls_cert, tls_key)
    return Server((host, port), app, max_threads=max_threads, tls_context=context, quiet=quiet)


def watch_parent(server, parent, interval=0.5):
    """Shut the server down once ``parent`` is no longer its parent process: it ended, and the server was re-parented
    (also when that happened before the server got here). A test process that ends without its teardown, such as a
    forked pytest worker, leaves no server behind."""
    def watch():
        while os.getppid() == parent:
            time.sleep(interval)
        server.shutdown()

    threading.Thread(target=watch, name="parent-watch", daemon=True).start()


def main(argv=None):
    parser = argparse.ArgumentParser(description="Fake GitLab runner REST API server for tests.")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port")
    parser.add_argument("--port-file", help="write the bound port to this file once listening")
    parser.add_argument("--seed", help="JSON seed file (see README)")
    parser.add_argument("--tls-cert", help="PEM certificate: serve HTTPS")
    parser.add_argument("--tls-key", help="PEM private key for --tls-cert")
    parser.add_argument("--max-threads", type=int, default=32)
    parser.add_argument("--quiet", action="store_true", help="do not log requests to stderr")
    parser.add_argument("--parent-pid", type=int,
                        help="stop when process PID, which started the server, ends (test harnesses whose teardown may "
                             "not run)")
    args = parser.parse_args(argv)
    if bool(args.tls_cert) != bool(args.tls_key):
        parser.error("--tls-cert and --tls-key go together")
    seed = None
    if args.seed:
        with open(args.seed, encoding="utf-8") as handle:
            seed = json.load(handle)
    server = build_server(args.host, args.port, seed, args.tls_cert, args.tls_key, args.max_threads, args.quiet)
    port = server.server_address[1]
    if args.port_file:
        tmp = args.port_file + ".tmp"
        with open(tmp, "w", encoding="utf-8") as handle:
            handle.write(str(port))
        os.replace(tmp, args.port_file)
    sys.stderr.write("fake-gitlab: listening on %s://%s:%d\n" % ("https" if server.tls else "http", args.host, port))
    if args.parent_pid:
        watch_parent(server, args.parent_pid)
    try:
        server.serve_forever(poll_interval=0.2)
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
