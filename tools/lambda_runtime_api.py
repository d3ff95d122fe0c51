"""A loopback Lambda Runtime API (2018-06-01) for running ``python -m awslambdaric`` for real,
in a process (tests/inference/test_runtime_client.py) or in the image (tools/lambda_sandbox.py).

It hands out the queued events one per ``GET .../invocation/next`` with the headers Lambda
sends, records what the runtime posts back, and holds ``next`` (bounded) once the queue is
empty so the test can stop the process. Loopback only; every wait has a timeout.
"""

from __future__ import annotations

import contextlib
import json
import queue
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from tools import loopback_http

PREFIX = "/2018-06-01/runtime"
FUNCTION_ARN = "arn:aws:lambda:us-east-1:123456789012:function:waterml-inference"
TRACE_ID = "Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8;Sampled=0"
HOLD_SECONDS = 30.0  # an idle `next` is held this long (the test stops the runtime first)


@dataclass
class Posted:
    kind: str  # "response", "error" or "init-error"
    request_id: str | None
    body: Any
    headers: dict[str, str]


@dataclass
class RuntimeApi:
    events: queue.Queue[tuple[str, Any]] = field(default_factory=queue.Queue)
    posted: queue.Queue[Posted] = field(default_factory=queue.Queue)
    server: ThreadingHTTPServer | None = None
    timeout_s: float = 30.0  # the function's timeout: each invocation's deadline

    @property
    def address(self) -> str:
        assert self.server is not None
        return loopback_http.address(self.server)

    def invoke(self, request_id: str, event: Any) -> None:
        self.events.put((request_id, event))

    def wait(self, timeout: float = 30.0) -> Posted:
        return self.posted.get(timeout=timeout)

    def start(self, host: str = "127.0.0.1") -> RuntimeApi:
        api = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:  # quiet
                pass

            def _send(self, status: int, body: bytes, headers: dict[str, str]) -> None:
                self.send_response(status)
                for name, value in headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                # The runtime may exit right after posting (an init error): not our failure.
                with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                    self.wfile.write(body)

            def do_GET(self) -> None:
                if self.path != f"{PREFIX}/invocation/next":
                    self._send(404, b"{}", {"Content-Type": "application/json"})
                    return
                try:
                    request_id, event = api.events.get(timeout=HOLD_SECONDS)
                except queue.Empty:
                    # Real Lambda would freeze the process; here the runtime gets an error.
                    self._send(500, b'{"errorMessage":"idle"}', {})
                    return
                deadline = int((time.time() + api.timeout_s) * 1000)
                self._send(200, json.dumps(event).encode(), {
                    "Content-Type": "application/json",
                    "Lambda-Runtime-Aws-Request-Id": request_id,
                    "Lambda-Runtime-Deadline-Ms": str(deadline),
                    "Lambda-Runtime-Invoked-Function-Arn": FUNCTION_ARN,
                    "Lambda-Runtime-Trace-Id": TRACE_ID,
                })  # fmt: skip

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length) if length else b""
                body = json.loads(raw) if raw else None
                parts = self.path[len(PREFIX) :].strip("/").split("/")
                if parts == ["init", "error"]:
                    posted = Posted("init-error", None, body, dict(self.headers))
                elif (
                    len(parts) == 3
                    and parts[0] == "invocation"
                    and parts[2] in ("response", "error")
                ):
                    posted = Posted(parts[2], parts[1], body, dict(self.headers))
                else:
                    self._send(404, b"{}", {})
                    return
                api.posted.put(posted)
                self._send(202, b'{"status":"OK"}', {"Content-Type": "application/json"})

        self.server = loopback_http.serve(Handler, host)
        return self

    def stop(self) -> None:
        loopback_http.stop(self.server)
