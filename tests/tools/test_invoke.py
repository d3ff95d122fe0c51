"""`make invoke` (tools/invoke.py): the answer alone on stdout; every failure, a release whose
digest does not match included, is one clear line on stderr and a non-zero exit, no traceback."""

from __future__ import annotations

import io
import json
import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "inference"))  # the serving helpers
import synthetic
from serving_helpers import (
    KEY,
    SIGNATURE_KEY,
    SIGNER,
    signature_file,
    upload,
    upload_signature,
)

from inference import handler, loader
from inference.bundle import sha256_hex
from inference.config import Config
from inference.contract import SIGNING_PUBLIC_KEY
from registry.manifest import Release, parse_release, stored_metadata
from tools import invoke

EVENTS = Path(__file__).resolve().parents[2] / "inference" / "events"
BUCKET = "local-bucket"


@pytest.fixture(autouse=True)
def _env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setattr(invoke, "LOG_FILE", tmp_path / "invoke.log")  # not the checkout's
    saved = dict(os.environ)  # main() pins MODEL_* in os.environ, as a deploy would
    for name in ("MODEL_KEY", "MODEL_VERSION_ID", "MODEL_SHA256", "MODEL_VERSION", "MAX_BATCH"):
        os.environ.pop(name, None)
    os.environ.update(MODEL_BUCKET=BUCKET, MODEL_CACHE_DIR=str(tmp_path / "cache"))
    # The key the releases here are signed with (invoke pins the local signer's without it).
    os.environ[SIGNING_PUBLIC_KEY] = SIGNER.public_pem
    handler.reset()
    yield
    handler.reset()
    os.environ.clear()
    os.environ.update(saved)


def one_error_line(capsys: pytest.CaptureFixture[str], argv: list[str]) -> str:
    assert invoke.main(argv) == 1
    err = capsys.readouterr().err
    assert "Traceback" not in err
    lines = [line for line in err.strip().splitlines() if line.startswith("error: ")]
    assert len(lines) == 1, err
    return lines[0]


def manifest(data: bytes, **changes: Any) -> dict[str, Any]:
    fields = {
        "name": "wqi", "mlflow_version": "4", "bucket": BUCKET, "key": KEY, "version_id": "v1",
        "sha256": sha256_hex(data), "git_sha": "abc", "released_at": "2026-11-27T18:00:00Z",
        "previous": None, "signature_key": SIGNATURE_KEY, "signature_version_id": "s1",
    }  # fmt: skip
    return {**fields, **changes}


def cached(data: bytes, release: Release) -> None:
    """The bundle and its signature in the local /tmp cache, as GETs by the release's pins
    left them."""
    config = Config(
        bucket=release.bucket, key=release.key, version_id=release.version_id,
        sha256=release.sha256, signature_key=SIGNATURE_KEY,
        signature_version_id=str(release.extra["signature_version_id"]),
        public_key=SIGNER.public_pem, cache_dir=Path(os.environ["MODEL_CACHE_DIR"]),
    )  # fmt: skip
    loader.cache_verified(config, data)
    loader.signature_path(config).write_bytes(signature_file(data, release.mlflow_version))


class StoredRelease:
    """An S3 client holding one release.json with the user metadata given."""

    def __init__(self, body: bytes, metadata: dict[str, str] | None) -> None:
        self.body, self.metadata = body, metadata

    def get_object(self, **kwargs: Any) -> dict[str, Any]:
        assert kwargs == {"Bucket": BUCKET, "Key": "models/wqi/release.json"}
        answer: dict[str, Any] = {"Body": io.BytesIO(self.body)}
        if self.metadata is not None:
            answer["Metadata"] = self.metadata
        return answer


def serve_release(monkeypatch: pytest.MonkeyPatch, body: bytes, metadata: Any) -> None:
    import boto3

    monkeypatch.setattr(boto3, "client", lambda *a, **kw: StoredRelease(body, metadata))


def test_mistyped_event_path(capsys: pytest.CaptureFixture[str]) -> None:
    line = one_error_line(capsys, ["inference/events/drect.json"])
    assert "cannot read event file inference/events/drect.json" in line


def test_malformed_event_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text('{"readings": ')
    assert "is not valid JSON" in one_error_line(capsys, [str(bad)])


def test_s3_connection_error(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import boto3
    from botocore.exceptions import EndpointConnectionError

    class Unreachable:
        def get_object(self, **kwargs: Any) -> Any:
            raise EndpointConnectionError(endpoint_url="http://127.0.0.1:9")

    monkeypatch.setattr(boto3, "client", lambda *args, **kwargs: Unreachable())
    line = one_error_line(capsys, [str(EVENTS / "direct.json")])
    assert "cannot reach S3" in line and "127.0.0.1:9" in line


@pytest.mark.parametrize(
    ("metadata", "problem"),
    [
        ("original", "SHA-256 mismatch for s3://local-bucket/models/wqi/release.json"),
        (None, "s3://local-bucket/models/wqi/release.json has no sha256 metadata"),
    ],
)
def test_release_edited_without_its_metadata_is_refused(
    metadata: str | None,
    problem: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    data = synthetic.dumps(synthetic.wqi_bundle())
    original = json.dumps(manifest(data), indent=2).encode()
    cached(data, parse_release(manifest(data, version_id="v2")))  # the edit is servable
    edited = original.replace(b'"v1"', b'"v2"')  # by hand, metadata left as it was
    serve_release(monkeypatch, edited, stored_metadata(original) if metadata else None)
    line = one_error_line(capsys, [str(EVENTS / "direct.json")])
    assert line.startswith("error: release refused: ") and problem in line, line


def test_a_release_of_another_model_is_refused(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    body = json.dumps(manifest(b"x", name="potability", key="models/potability/model.joblib"))
    serve_release(monkeypatch, body.encode(), stored_metadata(body.encode()))
    assert "is a release of 'potability'" in one_error_line(capsys, [str(EVENTS / "direct.json")])


def test_init_error(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    bundle = synthetic.wqi_bundle()
    bundle["golden"]["raw"]["margin"][1] += 0.5  # loads from the cache, fails its check
    data = synthetic.dumps(bundle)
    release = parse_release(manifest(data))
    cached(data, release)
    monkeypatch.setattr(invoke, "release", lambda bucket, model: release)
    line = one_error_line(capsys, [str(EVENTS / "direct.json")])
    assert "model failed to load" in line and "golden check failed for 'margin'" in line


def test_the_answer_alone_on_stdout(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    data = synthetic.dumps(synthetic.wqi_bundle())
    body = json.dumps(manifest(data)).encode()
    cached(data, parse_release(manifest(data)))
    serve_release(monkeypatch, body, stored_metadata(body))
    assert invoke.main([str(EVENTS / "direct.json")]) == 0
    out, err = capsys.readouterr()
    answer = json.loads(out)  # nothing but the answer, and nothing else at all
    assert answer["statusCode"] == 200 and answer["model"]["version"] == "4"
    assert answer["model"]["s3VersionId"] == "v1"
    assert err == ""
    logged = invoke.LOG_FILE.read_text()  # the handler's log lines and metrics, kept
    assert '"message":"model loaded"' in logged and "ColdStart" in logged

    handler.reset()
    assert invoke.main([str(EVENTS / "direct.json"), "--logs", "-"]) == 0
    out, err = capsys.readouterr()
    assert json.loads(out)["statusCode"] == 200
    assert '"message":"model loaded"' in err and "ColdStart" in err


@pytest.mark.parametrize("event", sorted(EVENTS.glob("*.json")), ids=lambda path: path.name)
def test_every_sample_event_answers_with_exit_0(
    event: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # tools/demo.py runs each of them and stops at the first non-zero exit.
    data = synthetic.dumps(synthetic.wqi_bundle())
    release = parse_release(manifest(data))
    cached(data, release)
    monkeypatch.setattr(invoke, "release", lambda bucket, model: release)
    assert invoke.main([str(event)]) == 0, capsys.readouterr().err
    json.loads(capsys.readouterr().out)


def test_a_4xx_answer_is_printed_and_exits_non_zero(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    data = synthetic.dumps(synthetic.wqi_bundle())
    release = parse_release(manifest(data))
    cached(data, release)
    monkeypatch.setattr(invoke, "release", lambda bucket, model: release)
    event = tmp_path / "bad-reading.json"
    event.write_text(json.dumps({"readings": {**synthetic.GOOD_READING, "pH": "seven"}}))
    assert invoke.main([str(event)]) == 1
    out, err = capsys.readouterr()
    assert json.loads(out)["statusCode"] == 400  # the answer still printed, alone
    assert "error: the handler answered statusCode 400 (the handler's log: " in err
    assert "Traceback" not in err


@pytest.mark.integration
def test_reads_the_stored_release_from_s3(
    s3_env: dict[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    import boto3

    data = synthetic.dumps(synthetic.wqi_bundle())
    version = upload(s3_env, data)
    os.environ["MODEL_BUCKET"] = s3_env["bucket"]
    signed = upload_signature(s3_env, version, "4")
    body = json.dumps(manifest(data, bucket=s3_env["bucket"], version_id=version,
                               signature_version_id=signed)).encode()  # fmt: skip
    s3 = boto3.client("s3", endpoint_url=s3_env["endpoint"])
    key = "models/wqi/release.json"
    s3.put_object(Bucket=s3_env["bucket"], Key=key, Body=body, Metadata=stored_metadata(body))
    assert invoke.main([str(EVENTS / "direct.json")]) == 0
    answer = json.loads(capsys.readouterr().out)
    assert answer["statusCode"] == 200
    assert answer["model"]["version"] == "4" and answer["model"]["s3VersionId"] == version

    handler.reset()
    edited = body.replace(b'"mlflow_version": "4"', b'"mlflow_version": "5"')
    s3.put_object(Bucket=s3_env["bucket"], Key=key, Body=edited, Metadata=stored_metadata(body))
    line = one_error_line(capsys, [str(EVENTS / "direct.json")])
    assert "SHA-256 mismatch" in line


@pytest.mark.parametrize("name", ["../potability", "wqi/../potability", "WQI"])
def test_an_invalid_model_name_is_refused_before_any_request(
    name: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Before: `make invoke MODEL=../potability` sent GET .../models/../potability/release.json
    and only then refused. A loopback S3 that answers 404 records every request made."""
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
    from threading import Thread

    asked: list[str] = []

    class NoSuchKey(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            asked.append(self.path)
            body = b"<Error><Code>NoSuchKey</Code></Error>"
            self.send_response(404)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *_: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), NoSuchKey)
    Thread(target=server.serve_forever, daemon=True).start()
    try:
        monkeypatch.setenv("AWS_ENDPOINT_URL_S3", f"http://127.0.0.1:{server.server_address[1]}")
        for key, value in {"AWS_ACCESS_KEY_ID": "t", "AWS_SECRET_ACCESS_KEY": "t",
                           "AWS_DEFAULT_REGION": "us-east-1"}.items():  # fmt: skip
            monkeypatch.setenv(key, value)
        line = one_error_line(capsys, [str(EVENTS / "direct.json"), "--model", name])
    finally:
        server.shutdown()
        server.server_close()
    assert "invalid model name" in line and asked == []
