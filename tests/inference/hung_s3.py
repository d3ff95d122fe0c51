"""An S3 endpoint that hangs: it takes every connection and never answers a byte."""

from __future__ import annotations

import socket
from types import TracebackType


class HungEndpoint:
    """A listening socket nobody reads from: the kernel completes each client's handshake into
    the backlog, so a connect succeeds and the request waits for an answer that never comes.
    ``connections()`` then accepts what queued up, which counts the attempts made."""

    def __init__(self) -> None:
        self._server = socket.create_server(("127.0.0.1", 0), backlog=64)
        self.url = f"http://127.0.0.1:{self._server.getsockname()[1]}"
        self._accepted: list[socket.socket] = []

    def connections(self) -> int:
        self._server.setblocking(False)
        while True:
            try:
                self._accepted.append(self._server.accept()[0])
            except BlockingIOError:
                return len(self._accepted)

    def close(self) -> None:
        for sock in self._accepted:
            sock.close()
        self._server.close()

    def __enter__(self) -> HungEndpoint:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()
