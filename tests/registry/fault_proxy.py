"""A loopback HTTP proxy between the registry and the S3 server that misbehaves on cue.

Each request is matched against the proxy's ``rule``, which answers one of:

- ``"pass"``: forward it and relay the reply;
- ``"apply-drop"``: forward it (S3 applies it), then close the connection without a reply, as
  when a reply is lost on the way back;
- ``"apply-vanish"``: forward it, relay the reply, then stop listening: S3 has gone away;
- ``"apply-drop-vanish"``: both: the reply is lost and S3 is gone.

Imported as tests.registry.fault_proxy (importlib mode)."""

from __future__ import annotations

import http.client
import socket
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit

Rule = Callable[[str, str], str]  # (method, path with query) -> action


class FaultProxy:
    def __init__(self, upstream: str, rule: Rule) -> None:
        target = urlsplit(upstream)
        self.upstream = (target.hostname or "127.0.0.1", target.port or 80)
        self.rule = rule
        self.seen: list[tuple[str, str, str]] = []  # (method, path, action)
        self.gone = False
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *_: object) -> None:  # keep test output clean
                pass

            def _relay(self) -> None:
                if proxy.gone:
                    proxy.seen.append((self.command, self.path, "gone"))
                    self.close_connection = True
                    self.connection.shutdown(socket.SHUT_RDWR)
                    return
                action = proxy.rule(self.command, self.path)
                proxy.seen.append((self.command, self.path, action))
                body = self._body()
                conn = http.client.HTTPConnection(*proxy.upstream, timeout=30)
                headers = {
                    k: v for k, v in self.headers.items() if k.lower() != "transfer-encoding"
                }
                if body is not None:
                    headers["Content-Length"] = str(len(body))
                conn.request(self.command, self.path, body=body, headers=headers)
                reply = conn.getresponse()
                data = reply.read()
                conn.close()
                if action in ("apply-drop", "apply-drop-vanish"):
                    self.close_connection = True
                    if action == "apply-drop-vanish":
                        proxy.stop_listening()
                    self.connection.shutdown(socket.SHUT_RDWR)
                    return
                self.send_response_only(reply.status, reply.reason)
                for key, value in reply.getheaders():
                    if key.lower() not in ("transfer-encoding", "content-length", "connection"):
                        self.send_header(key, value)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(data)
                self.wfile.flush()
                if action == "apply-vanish":
                    self.close_connection = True
                    proxy.stop_listening()

            def _body(self) -> bytes | None:
                if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
                    out = b""
                    while True:
                        size = int(self.rfile.readline().split(b";")[0], 16)
                        chunk = self.rfile.read(size + 2)[:size]
                        if size == 0:
                            while self.rfile.readline() not in (b"\r\n", b""):
                                pass
                            return out
                        out += chunk
                length = self.headers.get("Content-Length")
                return self.rfile.read(int(length)) if length else None

            do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = _relay

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.endpoint = f"http://127.0.0.1:{self.server.server_address[1]}"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self._stopped = False

    def __enter__(self) -> FaultProxy:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.stop()

    def stop_listening(self) -> None:
        """Every request from now on has its connection closed unanswered: S3 is gone."""
        self.gone = True

    def stop(self) -> None:
        if not self._stopped:
            self._stopped = True
            self.server.shutdown()
            self.server.server_close()
