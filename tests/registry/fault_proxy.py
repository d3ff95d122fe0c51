"""A loopback HTTP proxy between the registry and the S3 server that misbehaves on cue.

Each request is matched against the proxy's ``rule``, which answers one of:

- ``"pass"``: forward it and relay the reply;
- ``"apply-drop"``: forward it (S3 applies it), then close the connection without a reply, as
  when a reply is lost on the way back;
- ``"apply-vanish"``: forward it, relay the reply, then stop listening: S3 has gone away;
- ``"apply-drop-vanish"``: both: the reply is lost and S3 is gone;
- ``"pass-then-refuse"``: forward it and relay the reply, then refuse every connection from
  now on (the listening socket closes, idle kept-alive connections too): the next request
  cannot leave the client at all;
- ``"hang"``: never forward it, never answer (the connection stays open until the proxy
  stops): S3 hangs before applying it;
- ``"apply-hang"``: forward it (S3 applies it), then never answer;
- ``"trickle"``: forward it, then relay the reply one byte every ``trickle_s`` seconds.

Imported as tests.registry.fault_proxy (importlib mode)."""

from __future__ import annotations

import contextlib
import http.client
import socket
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit

Rule = Callable[[str, str], str]  # (method, path with query) -> action


class FaultProxy:
    def __init__(self, upstream: str, rule: Rule, trickle_s: float = 0.2) -> None:
        target = urlsplit(upstream)
        self.upstream = (target.hostname or "127.0.0.1", target.port or 80)
        self.rule = rule
        self.trickle_s = trickle_s
        self.seen: list[tuple[str, str, str]] = []  # (method, path, action)
        self.gone = False
        self._stopping = threading.Event()
        self._connections: list[socket.socket] = []
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def setup(self) -> None:
                super().setup()
                proxy._connections.append(self.connection)

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
                if action == "hang":
                    proxy._stopping.wait()
                    self.close_connection = True
                    return
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
                if action == "apply-hang":
                    proxy._stopping.wait()
                    self.close_connection = True
                    return
                if action in ("apply-drop", "apply-drop-vanish"):
                    self.close_connection = True
                    if action == "apply-drop-vanish":
                        proxy.stop_listening()
                    self.connection.shutdown(socket.SHUT_RDWR)
                    return
                if action == "pass-then-refuse":  # no new connection, and not this one again
                    proxy.refuse(keep=self.connection)
                    self.close_connection = True
                self.send_response_only(reply.status, reply.reason)
                for key, value in reply.getheaders():
                    if key.lower() not in ("transfer-encoding", "content-length", "connection"):
                        self.send_header(key, value)
                self.send_header("Content-Length", str(len(data)))
                if action == "pass-then-refuse":
                    self.send_header("Connection", "close")
                if action == "trickle":
                    head = b"".join([*self._headers_buffer, b"\r\n"])
                    self._headers_buffer = []
                    self._trickle(head + (data if self.command != "HEAD" else b""))
                    self.close_connection = True
                    return
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(data)
                self.wfile.flush()
                if action == "apply-vanish":
                    self.close_connection = True
                    proxy.stop_listening()

            def _trickle(self, data: bytes) -> None:
                for i in range(len(data)):
                    if proxy._stopping.wait(proxy.trickle_s):
                        return
                    try:
                        self.wfile.write(data[i : i + 1])
                        self.wfile.flush()
                    except OSError:  # the client gave up
                        return

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

    def refuse(self, keep: socket.socket | None = None) -> None:
        """Connections are refused from now on: the listening socket closes, and so do the
        kept-alive ones but ``keep`` (a client checks those before it reuses them)."""
        self.gone = True
        self.server.shutdown()  # from a handler's thread: the serving loop is another one
        self.server.socket.close()
        for conn in self._connections:
            if conn is not keep:
                with contextlib.suppress(OSError):
                    conn.shutdown(socket.SHUT_RDWR)
        time.sleep(0.05)  # let the peers see the connections end before the next request

    def stop(self) -> None:
        if not self._stopped:
            self._stopped = True
            self._stopping.set()
            self.server.shutdown()
            self.server.server_close()
