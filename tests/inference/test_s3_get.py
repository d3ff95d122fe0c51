"""The stdlib S3 GET: signatures identical to botocore's, bounded retries, typed refusals."""

from __future__ import annotations

import socket
from datetime import UTC, datetime
from typing import Any

import pytest
from hung_s3 import HungEndpoint

from inference import s3_get

CREDS = s3_get.Credentials("AKIDEXAMPLE", "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY", "tok/en+=")
NOW = datetime(2026, 11, 27, 18, 0, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("endpoint", "bucket", "key", "version"),
    [
        ("http://127.0.0.1:5000", "waterml-models", "models/wqi/model.joblib", "v1"),
        (None, "waterml-models", "models/wqi/model.joblib", "3HL4kqtJlcpXroDTDmJ+rmSpXd3dIbrHY"),
        (None, "dotted.bucket", "models/a b/ü+model.joblib", "null"),
    ],
)
def test_signature_equals_botocore(
    endpoint: str | None, bucket: str, key: str, version: str
) -> None:
    from urllib.parse import quote

    from botocore.auth import S3SigV4Auth
    from botocore.awsrequest import AWSRequest
    from botocore.credentials import Credentials

    url = s3_get.object_url(endpoint, "eu-west-1", bucket, quote(key, safe="/-_.~"))
    query = f"versionId={quote(version, safe='-_.~')}"
    ours = s3_get.signed_headers(url, query, CREDS, "eu-west-1", NOW)

    request = AWSRequest(method="GET", url=f"{url}?{query}", headers={
        "x-amz-content-sha256": s3_get.EMPTY_SHA256, "X-Amz-Date": ours["x-amz-date"],
        "X-Amz-Security-Token": CREDS.token,
    })  # fmt: skip
    request.context["timestamp"] = ours["x-amz-date"]
    auth = S3SigV4Auth(Credentials(CREDS.access_key, CREDS.secret_key, CREDS.token), "s3",
                       "eu-west-1")  # fmt: skip
    canonical = auth.canonical_request(request)
    signature = auth.signature(auth.string_to_sign(request, canonical), request)
    assert ours["authorization"].endswith(f"Signature={signature}")


def test_credentials_come_from_the_environment() -> None:
    assert s3_get.Credentials.from_env({}) is None
    creds = s3_get.Credentials.from_env({"AWS_ACCESS_KEY_ID": "a", "AWS_SECRET_ACCESS_KEY": "b"})
    assert creds == s3_get.Credentials("a", "b", None)


def test_unreachable_is_retried_a_bounded_number_of_times(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    tries: list[Any] = []
    original = s3_get.http.client.HTTPConnection.connect

    def counting(self: Any) -> None:
        tries.append(1)
        original(self)

    monkeypatch.setattr(s3_get.http.client.HTTPConnection, "connect", counting)
    monkeypatch.setattr(s3_get.time, "sleep", lambda seconds: None)
    with pytest.raises(s3_get.S3ConnectionError, match="ConnectionRefused"):
        s3_get.get_object("b", "k", "v", CREDS, f"http://127.0.0.1:{port}")
    assert len(tries) == s3_get.ATTEMPTS


def test_a_hung_endpoint_costs_the_deadline_not_attempts_times_read_timeout() -> None:
    # Each attempt waits at most its share of the time left (not READ_TIMEOUT = 10 s), so a
    # silent endpoint fails when the total deadline is spent, after a bounded number of tries.
    with HungEndpoint() as hung:
        with pytest.raises(s3_get.S3ConnectionError) as caught:
            s3_get.get_object("b", "k", "v", CREDS, hung.url, deadline=s3_get.Deadline(0.6))
        made = hung.connections()
    error = caught.value
    assert 1 <= made <= s3_get.ATTEMPTS
    assert error.attempts == made and error.endpoint == hung.url
    assert "timed out" in str(error)


def test_no_attempt_starts_once_the_deadline_has_passed(monkeypatch: pytest.MonkeyPatch) -> None:
    connects: list[Any] = []
    monkeypatch.setattr(s3_get.http.client.HTTPConnection, "connect", connects.append)
    with pytest.raises(s3_get.S3ConnectionError) as caught:
        s3_get.get_object("b", "k", "v", CREDS, "http://127.0.0.1:9", deadline=s3_get.Deadline(0))
    assert connects == [] and caught.value.attempts == 0
