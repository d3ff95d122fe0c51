"""S3 GetObject by VersionId over plain HTTP(S), signed with AWS Signature Version 4.

Why not boto3 here: importing boto3 and creating an S3 client costs ~0.2 s of a ~0.45 s cold
start (measured in benchmarks/). In Lambda the credentials are environment variables, so one
signed GET needs only the standard library. Other credential sources (profiles, SSO,
container or instance roles) are resolved by boto3 (``loader.fetch_s3``), and the GET is this
one all the same. Retries are bounded: ``ATTEMPTS`` tries with exponential backoff, for
connection errors, timeouts, 5xx and 429, all inside one total ``Deadline`` (``attempts``).
Socket timeouts bound each wait, not an answer: a server that trickles bytes could stretch one
far past them, so each attempt's connection is also cut when the deadline passes.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import http.client
import os
import random
import re
import socket
import threading
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from urllib.parse import quote, urlsplit

ATTEMPTS = 3
CONNECT_TIMEOUT = 2.0
READ_TIMEOUT = 10.0
EMPTY_SHA256 = hashlib.sha256(b"").hexdigest()
RETRY_STATUS = {429, 500, 502, 503, 504}
_CODE = re.compile(rb"<Code>([^<]+)</Code>")


@dataclass(frozen=True)
class Credentials:
    access_key: str
    secret_key: str
    token: str | None = None

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Credentials | None:
        env = os.environ if env is None else env
        access, secret = env.get("AWS_ACCESS_KEY_ID"), env.get("AWS_SECRET_ACCESS_KEY")
        if not access or not secret:
            return None
        return cls(access, secret, env.get("AWS_SESSION_TOKEN") or None)


class S3Error(Exception):
    def __init__(self, status: int, code: str) -> None:
        super().__init__(f"HTTP {status} {code}")
        self.status, self.code = status, code


class S3ConnectionError(Exception):
    """No answer after every attempt the deadline allowed."""

    def __init__(self, endpoint: str, attempts: int, elapsed: float, cause: object) -> None:
        super().__init__(f"{type(cause).__name__}: {cause}")
        self.endpoint, self.attempts, self.elapsed = endpoint, attempts, elapsed


class Deadline:
    """A total time budget for one fetch, every attempt and backoff pause included."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self._started = time.monotonic()

    def elapsed(self) -> float:
        return time.monotonic() - self._started

    def remaining(self) -> float:
        return self.seconds - self.elapsed()

    def timeout(self, cap: float) -> float:
        """One socket wait: at most ``cap``, this attempt's share of the budget and the time
        left, so a silent endpoint leaves time for the next attempt and never outlives the
        deadline."""
        return max(0.001, min(cap, self.seconds / ATTEMPTS, self.remaining()))


def attempts(deadline: Deadline) -> Iterator[int]:
    """Attempt numbers, at most ATTEMPTS, with exponential backoff between them; none starts
    once the deadline has passed, and no pause runs past it."""
    for attempt in range(ATTEMPTS):
        if attempt:
            pause = min(2.0, 0.1 * 2**attempt) * random.uniform(0.5, 1.0)
            if pause >= deadline.remaining():
                return
            time.sleep(pause)
        if deadline.remaining() <= 0:
            return
        yield attempt


def region(env: Mapping[str, str] | None = None) -> str:
    env = os.environ if env is None else env
    return env.get("AWS_REGION") or env.get("AWS_DEFAULT_REGION") or "us-east-1"


def object_url(endpoint_url: str | None, region_name: str, bucket: str, key: str) -> str:
    if endpoint_url:  # a custom endpoint (the loopback server): path-style addressing
        return f"{endpoint_url.rstrip('/')}/{bucket}/{key}"
    if "." in bucket:  # dotted names break the TLS wildcard of virtual-hosted style
        return f"https://s3.{region_name}.amazonaws.com/{bucket}/{key}"
    return f"https://{bucket}.s3.{region_name}.amazonaws.com/{key}"


def _hmac(key: bytes, message: str) -> bytes:
    return hmac.new(key, message.encode(), hashlib.sha256).digest()


def signed_headers(
    url: str, query: str, creds: Credentials, region_name: str, now: datetime
) -> dict[str, str]:
    """Headers for a SigV4-signed S3 GET of ``url`` + ``?query`` (query already canonical)."""
    parts = urlsplit(url)
    amz_date = now.strftime("%Y%m%dT%H%M%SZ")
    day = amz_date[:8]
    headers = {
        "host": parts.netloc,
        "x-amz-content-sha256": EMPTY_SHA256,
        "x-amz-date": amz_date,
    }
    if creds.token:
        headers["x-amz-security-token"] = creds.token
    names = sorted(headers)
    canonical = "\n".join([
        "GET",
        parts.path or "/",  # already URI-encoded once; S3 is not double-encoded
        query,
        "".join(f"{n}:{headers[n].strip()}\n" for n in names),
        ";".join(names),
        EMPTY_SHA256,
    ])  # fmt: skip
    scope = f"{day}/{region_name}/s3/aws4_request"
    to_sign = "\n".join([
        "AWS4-HMAC-SHA256", amz_date, scope, hashlib.sha256(canonical.encode()).hexdigest()
    ])  # fmt: skip
    key = _hmac(_hmac(_hmac(_hmac(f"AWS4{creds.secret_key}".encode(), day), region_name),
                      "s3"), "aws4_request")  # fmt: skip
    signature = hmac.new(key, to_sign.encode(), hashlib.sha256).hexdigest()
    headers["authorization"] = (
        f"AWS4-HMAC-SHA256 Credential={creds.access_key}/{scope}, "
        f"SignedHeaders={';'.join(names)}, Signature={signature}"
    )
    return headers


def get_object(
    bucket: str,
    key: str,
    version_id: str,
    creds: Credentials,
    endpoint_url: str | None = None,
    region_name: str | None = None,
    deadline: Deadline | None = None,
) -> bytes:
    """The object's bytes.

    Raises:
        S3Error: S3 refused the request (its code and status).
        S3ConnectionError: the attempts (or the deadline: none means ATTEMPTS x the timeouts)
            are spent without an answer.
    """
    region_name = region_name or region()
    deadline = deadline or Deadline(ATTEMPTS * (CONNECT_TIMEOUT + READ_TIMEOUT))
    url = object_url(endpoint_url, region_name, bucket, quote(key, safe="/-_.~"))
    query = f"versionId={quote(version_id, safe='-_.~')}"
    parts = urlsplit(url)
    endpoint = f"{parts.scheme}://{parts.netloc}"
    made = 0
    last: Exception = TimeoutError(f"no attempt fitted in the {deadline.seconds:g} s deadline")
    for _ in attempts(deadline):
        made += 1
        headers = signed_headers(url, query, creds, region_name, datetime.now(UTC))
        connection_cls = (
            http.client.HTTPSConnection if parts.scheme == "https" else http.client.HTTPConnection
        )
        connection = connection_cls(parts.netloc, timeout=deadline.timeout(CONNECT_TIMEOUT))
        cutoff: _Cutoff | None = None
        try:
            connection.connect()
            sock = connection.sock  # kept: the connection drops it when the response will close
            cutoff = _Cutoff(sock, deadline)
            # Each wait for the request, the status line and the headers is at most this; the
            # body is read against the deadline itself (_read_body), and the cutoff ends a
            # trickle anywhere.
            sock.settimeout(deadline.timeout(READ_TIMEOUT))
            connection.request("GET", f"{parts.path}?{query}", headers=headers)
            response = connection.getresponse()
            body = _read_body(response, sock, deadline)
            if cutoff.fired:  # the end of the body was the cutoff, not the server's
                raise TimeoutError("cut off by the deadline")
        except (OSError, http.client.HTTPException) as exc:
            last = cutoff.reason(exc) if cutoff else exc
            continue
        finally:
            if cutoff is not None:
                cutoff.cancel()
            connection.close()
        if response.status == 200:
            return body
        found = _CODE.search(body)
        error = S3Error(response.status, found.group(1).decode() if found else str(response.status))
        if response.status not in RETRY_STATUS:
            raise error
        last = error
    if isinstance(last, S3Error):
        raise last
    raise S3ConnectionError(endpoint, made, deadline.elapsed(), last)


class _Cutoff:
    """Shuts the attempt's socket when the deadline passes: a read blocked on a server that
    sends a byte now and then returns at once, whatever the socket timeout says."""

    def __init__(self, sock: socket.socket, deadline: Deadline) -> None:
        self.deadline = deadline
        self.fired = False
        self._sock = sock
        self._timer = threading.Timer(max(deadline.remaining(), 0.0), self._cut)
        self._timer.daemon = True
        self._timer.start()

    def _cut(self) -> None:
        self.fired = True
        with contextlib.suppress(OSError):  # already closed: the attempt ended on its own
            self._sock.shutdown(socket.SHUT_RDWR)

    def cancel(self) -> None:
        self._timer.cancel()

    def reason(self, exc: Exception) -> Exception:
        """What ended the attempt: the deadline when the cutoff fired, else ``exc``."""
        if self.fired:
            return TimeoutError(
                f"no complete answer within the {self.deadline.seconds:g} s deadline"
            )
        return exc


def _read_body(
    response: http.client.HTTPResponse, sock: socket.socket, deadline: Deadline
) -> bytes:
    """The body one socket read at a time (``read1``), each wait bounded anew by the time
    left: a server that trickles bytes cannot stretch the read past the deadline."""
    chunks: list[bytes] = []
    while True:
        if deadline.remaining() <= 0:
            raise TimeoutError(f"no complete answer within the {deadline.seconds:g} s deadline")
        sock.settimeout(deadline.timeout(READ_TIMEOUT))
        chunk = response.read1(1 << 16)
        if not chunk:
            if response.length:  # the connection ended before Content-Length bytes came
                raise http.client.IncompleteRead(b"".join(chunks), response.length)
            return b"".join(chunks)
        chunks.append(chunk)
