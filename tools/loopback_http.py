"""A loopback HTTP server on a thread of its own: what the Runtime API, the control plane
stand-in and the IAM gate share."""

from __future__ import annotations

import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request: object, client_address: object) -> None:
        """A client gone mid-request (a container killed while its runtime waited for the
        next event) is expected here: no traceback for it; anything else as usual."""
        if isinstance(sys.exc_info()[1], ConnectionError):
            return
        super().handle_error(request, client_address)  # type: ignore[arg-type]


def serve(handler: type[BaseHTTPRequestHandler], host: str = "127.0.0.1") -> ThreadingHTTPServer:
    """Start serving on a free port of ``host``; each request on a daemon thread."""
    server = _Server((host, 0), handler)
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
