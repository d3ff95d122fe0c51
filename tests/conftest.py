"""Shared fixtures: the loopback S3 server (real HTTP), isolated MLflow stores, and the
handler's log lines."""

from __future__ import annotations

import io
import logging
import os
import uuid
from collections.abc import Iterator

import pytest

from tools import local_s3
from training import openmp

os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
# As `python -m training` does, before anything loads OpenMP: how XGBoost's threads wait,
# so that a busy CPU does not slow the `trained` fixture tenfold (training/openmp.py).
openmp.choose()


@pytest.fixture(scope="session")
def s3_endpoint() -> Iterator[str]:
    """An S3 endpoint over HTTP: the one `make test` started, or a private moto server."""
    configured = os.environ.get("AWS_ENDPOINT_URL_S3")
    if configured:
        yield configured
        return
    server = local_s3.start()
    try:
        yield server.endpoint
    finally:
        local_s3.stop(server)


@pytest.fixture
def s3_env(s3_endpoint: str, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """Environment for one test: its own versioned bucket on the loopback server."""
    bucket = f"test-{uuid.uuid4().hex[:12]}"
    for key, value in local_s3.LOCAL_ENV.items():
        monkeypatch.setenv(key, os.environ.get(key, value))
    monkeypatch.setenv("AWS_ENDPOINT_URL_S3", s3_endpoint)
    monkeypatch.setenv("MODEL_BUCKET", bucket)
    local_s3.ensure_bucket(s3_endpoint, bucket)
    return {"endpoint": s3_endpoint, "bucket": bucket}


@pytest.fixture(scope="session")
def trained(tmp_path_factory: pytest.TempPathFactory) -> dict[str, object]:
    """Every model in training/specs/ trained once through the real pipeline into a private
    MLflow store.

    Returns {"tracking_uri": ..., "bundles": {name: path}, "results": {name: Result}}.
    """
    from training import pipeline
    from training.spec import available, load_spec

    root = tmp_path_factory.mktemp("mlflow")
    uri = f"sqlite:///{root / 'mlflow.db'}"
    bundles = root / "bundles"
    previous = os.environ.get("MLFLOW_TRACKING_URI")
    os.environ["MLFLOW_TRACKING_URI"] = uri
    try:
        results = {name: pipeline.run(load_spec(name), bundles) for name in available()}
    finally:
        if previous is None:
            os.environ.pop("MLFLOW_TRACKING_URI", None)
        else:
            os.environ["MLFLOW_TRACKING_URI"] = previous
    return {
        "tracking_uri": uri,
        "bundles": {name: bundles / name / "model.joblib" for name in results},
        "results": results,
    }


@pytest.fixture
def log_lines() -> Iterator[io.StringIO]:
    """The Powertools logger's JSON lines, as the function's log stream receives them (the
    serving tests read them; the drift tests feed them to `python -m monitoring.drift`)."""
    from inference.observability import logger

    buffer = io.StringIO()
    stream = logging.StreamHandler(buffer)
    stream.setFormatter(logger.registered_formatter)
    logger.addHandler(stream)
    try:
        yield buffer
    finally:
        logger.removeHandler(stream)
