"""S3 endpoints that hang: one takes every connection and never answers a byte, one answers
a byte at a time."""

from __future__ import annotations

import socket
import threading
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


class TricklingEndpoint:
    """An S3 endpoint that answers a 200 one byte every ``interval`` seconds: its headers
    (``what="headers"``, the body then at once) or its body (``what="body"``). Each wait is
    short, so no socket timeout ever fires; only a deadline on the whole answer ends it.
    ``finished`` counts the answers whose trickled part was sent to its last byte."""

    def __init__(self, what: str = "body", interval: float = 0.1, size: int = 100) -> None:
        body = b"x" * size
        head = f"HTTP/1.1 200 OK\r\nContent-Length: {len(body)}\r\nx-amz-request-id: t\r\n\r\n"
        parts = (b"", head.encode(), body) if what == "headers" else (head.encode(), body, b"")
        self._before, self._trickled, self._after = parts
        self.interval = interval
        self._server = socket.create_server(("127.0.0.1", 0), backlog=64)
        self.url = f"http://127.0.0.1:{self._server.getsockname()[1]}"
        self._stop = threading.Event()
        self._accepted = 0
        self.finished = 0
        self._threads: list[threading.Thread] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self._server.accept()
            except OSError:  # closed
                return
            self._accepted += 1
            worker = threading.Thread(target=self._answer, args=(conn,), daemon=True)
            self._threads.append(worker)
            worker.start()

    def _answer(self, conn: socket.socket) -> None:
        with conn:
            request = b""
            while b"\r\n\r\n" not in request:
                chunk = conn.recv(4096)
                if not chunk:
                    return
                request += chunk
            try:
                conn.sendall(self._before)
                for i, byte in enumerate(self._trickled):
                    if self._stop.wait(self.interval):
                        return
                    if i == len(self._trickled) - 1:  # counted before the client can see it
                        self.finished += 1
                    conn.sendall(bytes([byte]))
                conn.sendall(self._after)
            except OSError:  # the client gave up
                return

    def connections(self) -> int:
        return self._accepted

    def stop(self) -> None:
        """Stop trickling: whatever is still being sent ends here."""
        self._stop.set()

    def close(self) -> None:
        self.stop()
        self._server.close()
        for worker in self._threads:
            worker.join(timeout=5)

    def __enter__(self) -> TricklingEndpoint:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()
