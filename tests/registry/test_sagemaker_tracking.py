"""CI's MLflow on AWS (infra/waterml_infra/stacks/tracking.py): MLFLOW_TRACKING_URI is the stack's
TrackingServerArn, and the lock's `sagemaker-mlflow` plugin turns it into requests to the
server signed with the caller's AWS credentials (SigV4), with no MLflow password anywhere.

Nothing here reaches AWS: the plugin's own SAGEMAKER_MLFLOW_CUSTOM_ENDPOINT points it at a
loopback server that records what arrives."""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from training.mlflow_names import quiet_mlflow

ARN = "arn:aws:sagemaker:eu-west-1:123456789012:mlflow-tracking-server/waterml-dev"


@pytest.fixture
def server() -> Iterator[tuple[str, list[dict[str, Any]]]]:
    seen: list[dict[str, Any]] = []

    class Recorder(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            seen.append({"path": self.path, "headers": dict(self.headers)})
            body = json.dumps({"registered_models": []}).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: Any) -> None:
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Recorder)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_port}", seen
    httpd.shutdown()
    httpd.server_close()


def test_the_tracking_server_arn_is_a_signed_mlflow_client(
    server: tuple[str, list[dict[str, Any]]], monkeypatch: pytest.MonkeyPatch
) -> None:
    from mlflow import MlflowClient
    from mlflow.tracking._tracking_service.utils import _use_tracking_uri

    quiet_mlflow()  # as every MLflow client here imports it: the plugin still serves an ARN
    endpoint, seen = server
    monkeypatch.setenv("MLFLOW_TRACKING_URI", ARN)  # as promote.yml sets it from the secret
    monkeypatch.setenv("SAGEMAKER_MLFLOW_CUSTOM_ENDPOINT", endpoint)
    for name, value in {"AWS_ACCESS_KEY_ID": "AKIAWATERMLTEST00000",
                        "AWS_SECRET_ACCESS_KEY": "not-a-secret",
                        "AWS_SESSION_TOKEN": "a-session-token"}.items():  # fmt: skip
        monkeypatch.setenv(name, value)
    for name in ("MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD", "AWS_PROFILE"):
        monkeypatch.delenv(name, raising=False)

    # Both stores: promotion reads runs (tracking) and moves aliases and tags (registry).
    # The global URI too, which outranks the variable once an earlier test set one (the
    # plugin's header provider reads it).
    with _use_tracking_uri(ARN):
        assert MlflowClient(ARN, ARN).search_registered_models() == []
    (request,) = seen
    assert request["path"].startswith("/api/2.0/mlflow/registered-models/search")
    headers = {k.lower(): v for k, v in request["headers"].items()}
    # SigV4 for the ARN's region and the service the IAM actions name, with the caller's
    # credentials; no basic auth.
    assert headers["authorization"].startswith("AWS4-HMAC-SHA256 Credential=AKIAWATERMLTEST00000/")
    assert "/eu-west-1/sagemaker-mlflow/aws4_request" in headers["authorization"]
    assert headers["x-amz-security-token"] == "a-session-token"
    # The server it signs for, named in every request (IAM's resource).
    assert headers["x-mlflow-sm-tracking-server-arn"] == ARN


def test_a_plain_http_server_gets_no_sagemaker_header_and_no_warning(
    server: tuple[str, list[dict[str, Any]]],
) -> None:
    """The plugin's header provider is loaded by an entry point whatever the URI; for an
    http:// server it failed on every request and MLflow logged a WARNING each time (154
    lines in one training against the team's server)."""
    from mlflow import MlflowClient
    from mlflow.tracking._tracking_service.utils import _use_tracking_uri

    quiet_mlflow()
    endpoint, seen = server
    logged: list[logging.LogRecord] = []
    catcher = logging.Handler()
    catcher.emit = logged.append  # type: ignore[method-assign]
    logger = logging.getLogger("mlflow.tracking.request_header.registry")
    logger.addHandler(catcher)
    try:
        with _use_tracking_uri(endpoint):
            for _ in range(3):
                assert MlflowClient(endpoint, endpoint).search_registered_models() == []
    finally:
        logger.removeHandler(catcher)
    assert [r.getMessage() for r in logged] == []
    assert len(seen) == 3
    for request in seen:
        assert "x-mlflow-sm-tracking-server-arn" not in {k.lower() for k in request["headers"]}
