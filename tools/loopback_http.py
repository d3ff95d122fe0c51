"""A loopback HTTP server on a thread of its own: what the Runtime API, the control plane
stand-in and the IAM gate share."""

from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


def serve(handler: type[BaseHTTPRequestHandler], host: str = "127.0.0.1") -> ThreadingHTTPServer:
    """Start serving on a free port of ``host``; each request on a daemon thread."""
    server = ThreadingHTTPServer((host, 0), handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def address(server: ThreadingHTTPServer) -> str:
    """``host:port`` of a serving server."""
    host, port = (str(x) for x in server.server_address[:2])
    return f"{host}:{port}"


def stop(server: ThreadingHTTPServer | None) -> None:
    if server is not None:
        server.shutdown()
        server.server_close()
