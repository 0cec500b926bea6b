# Copyright: Contributors to the dood.gitlab_runner collection
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Fault injection: faults a test registers through the control API, matched against each API request, and the
broken answers they produce (an error status, GitLab's 429 backoff, a delay, a dropped or half-sent answer, HTML).

A fault spec: ``{"method": "POST"|"*", "path": "<regex searched in the path>", "kind": ..., "times": N|null,
"skip": N, "delay": seconds, "status": ..., "body": ..., "headers": {...}, "retry_after": 60}``.  Faults are tried
in the order they were added; one that is used up, or that still has ``skip`` left, lets the request pass on to
the next.
"""

from __future__ import annotations

import json
import re
import threading

KINDS = ("status", "backoff", "delay", "drop", "reset", "non_json")
# The kinds that answer instead of the API; "delay" only waits, then the API answers.
ANSWERING_KINDS = ("status", "backoff", "non_json", "reset")


class Faults:
    """The registered faults, in the order they were added."""

    def __init__(self):
        self.lock = threading.Lock()
        self.entries = []
        self.seq = 0

    def add(self, spec):
        kind = spec.get("kind", "status")
        if kind not in KINDS:
            raise ValueError("fault kind must be one of %s" % ", ".join(KINDS))
        re.compile(spec.get("path", ".*"))
        fault = {
            "method": str(spec.get("method", "*")).upper(),
            "path": spec.get("path", ".*"),
            "kind": kind,
            "status": int(spec.get("status", {"backoff": 429, "non_json": 200, "reset": 200}.get(kind, 500))),
            "body": spec.get("body"),
            "headers": dict(spec.get("headers") or {}),
            "retry_after": spec.get("retry_after", 60),
            "delay": float(spec.get("delay", 0) or 0),
            "times": spec.get("times"),
            "skip": int(spec.get("skip", 0) or 0),
            "hits": 0,
        }
        if fault["times"] is not None:
            fault["times"] = int(fault["times"])
        with self.lock:
            self.seq += 1
            fault["id"] = self.seq
            self.entries.append(fault)
        return fault

    def take(self, method, path):
        """The first fault that applies to this request (counted as a hit), or None."""
        with self.lock:
            for fault in self.entries:
                if fault["method"] not in ("*", method):
                    continue
                if not re.search(fault["path"], path):
                    continue
                if fault["times"] is not None and fault["hits"] >= fault["times"]:
                    continue
                if fault["skip"] > 0:
                    fault["skip"] -= 1
                    continue
                fault["hits"] += 1
                return dict(fault)
        return None

    def list(self):
        with self.lock:
            return [dict(f) for f in self.entries]

    def clear(self):
        """Forget the faults; numbering goes on."""
        with self.lock:
            self.entries = []

    def reset(self):
        with self.lock:
            self.entries = []
            self.seq = 0


def answer(handler, fault, entry, request_log):
    """Answer ``handler``'s request as ``fault`` says and log ``entry``; return False when the API should answer.

    ``handler`` is the server's request handler (``send``, ``send_response``, ``abort_connection``, ``log_line``).
    """
    kind = fault["kind"]
    if kind == "drop":
        entry["status"] = None
        request_log.add(entry)
        handler.log_line(entry["method"], entry["path"], "dropped", "drop")
        handler.close_connection = True
        handler.abort_connection()
        return True
    if kind not in ANSWERING_KINDS:
        return False
    headers = dict(fault["headers"])
    status = fault["status"]
    entry["status"] = status
    if kind == "backoff":
        # check_if_backoff_required! -> too_many_requests! (docs/gitlab-api.md §1.0)
        headers.setdefault("Retry-After", str(int(fault["retry_after"])))
        body = fault["body"] if fault["body"] is not None else {"message": "Executing database migrations. Please retry later."}
        handler.send(status, body, headers)
    elif kind == "non_json":
        body = fault["body"] if fault["body"] is not None else "<html><body><h1>502 Bad Gateway</h1></body></html>"
        if not isinstance(body, str):
            body = json.dumps(body)
        handler.send(status, body, headers, content_type="text/html; charset=utf-8")
    elif kind == "reset":
        body = fault["body"] if fault["body"] is not None else {"id": 0, "token": "", "token_expires_at": None, "padding": "x" * 256}
        payload = (body if isinstance(body, str) else json.dumps(body)).encode("utf-8")
        handler.send_response(status)
        handler.send_header("Content-Type", "application/json")
        handler.send_header("Content-Length", str(len(payload)))
        for key, value in headers.items():
            handler.send_header(key, str(value))
        handler.end_headers()
        handler.wfile.write(payload[:max(1, len(payload) // 2)])
        handler.close_connection = True
        handler.abort_connection()
    else:
        if "Retry-After" not in headers and status == 429 and fault.get("retry_after") is not None:
            headers["Retry-After"] = str(int(fault["retry_after"]))
        body = fault["body"] if fault["body"] is not None else {"message": "%d Fault injected" % status}
        if isinstance(body, str):
            handler.send(status, body, headers, content_type="text/plain; charset=utf-8")
        else:
            handler.send(status, body, headers)
    handler.log_line(entry["method"], entry["path"], status, kind)
    request_log.add(entry)
    return True
