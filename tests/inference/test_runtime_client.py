"""The handler under the real runtime interface client, as the image runs it.

``python -m awslambdaric inference.handler.lambda_handler`` talks to a loopback Runtime API;
the model comes from the loopback S3 by its pinned VersionId, as in Lambda.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import synthetic
from serving_helpers import upload

from inference.bundle import sha256_hex
from tools.lambda_runtime_api import RuntimeApi

REPO = Path(__file__).resolve().parents[2]
EVENTS = REPO / "inference" / "events"
pytestmark = pytest.mark.integration


@pytest.fixture
def runtime_api() -> Iterator[RuntimeApi]:
    api = RuntimeApi().start()
    yield api
    api.stop()


def start_runtime(api: RuntimeApi, env: dict[str, str], cache: Path) -> subprocess.Popen[bytes]:
    full_env = {
        **os.environ, **env,
        "AWS_LAMBDA_RUNTIME_API": api.address,
        "AWS_LAMBDA_FUNCTION_NAME": "waterml-inference",
        "MODEL_CACHE_DIR": str(cache),
        "PYTHONPATH": str(REPO),
    }  # fmt: skip
    return subprocess.Popen(
        [sys.executable, "-m", "awslambdaric", "inference.handler.lambda_handler"],
        cwd=REPO, env=full_env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
    )  # fmt: skip


def stop(process: subprocess.Popen[bytes]) -> str:
    if process.poll() is None:
        process.terminate()
    try:
        out, _ = process.communicate(timeout=10)
    except subprocess.TimeoutExpired:
        process.kill()
        out, _ = process.communicate(timeout=10)
    return out.decode(errors="replace")


def pinned_env(s3_env: dict[str, str], data: bytes) -> dict[str, str]:
    return {
        "MODEL_BUCKET": s3_env["bucket"], "MODEL_KEY": "models/wqi/model.joblib",
        "MODEL_VERSION_ID": upload(s3_env, data), "MODEL_SHA256": sha256_hex(data),
        "MODEL_VERSION": "3",
    }  # fmt: skip


def test_event_shapes_through_awslambdaric(
    runtime_api: RuntimeApi, s3_env: dict[str, str], tmp_path: Path
) -> None:
    data = synthetic.dumps(synthetic.wqi_bundle())
    process = start_runtime(runtime_api, pinned_env(s3_env, data), tmp_path)
    try:
        names = ["direct", "batch", "apigw-rest-v1", "http-api-v2", "function-url", "sqs",
                 "warmup", "alb"]  # fmt: skip
        for i, name in enumerate(names):
            runtime_api.invoke(f"req-{i}", json.loads((EVENTS / f"{name}.json").read_text()))
        posted = {}
        for _ in names:
            answer = runtime_api.wait(timeout=60)
            assert answer.kind == "response", answer
            posted[answer.request_id] = answer.body
        runtime_api.invoke("req-bad", {"readings": {"pH": "acid"}})
        bad = runtime_api.wait(timeout=30)
        broken = json.loads((EVENTS / "sqs.json").read_text())
        del broken["Records"][0]["messageId"]  # a whole-batch fault: the invocation must fail
        runtime_api.invoke("req-fault", broken)
        fault = runtime_api.wait(timeout=30)
    finally:
        log = stop(process)
    direct, batch, rest, v2, furl, sqs, warm, alb = (posted[f"req-{i}"] for i in range(len(names)))
    assert direct["prediction"]["quality"] == "Excellent"
    assert direct["model"]["version"] == "3" and direct["model"]["name"] == "wqi"
    assert len(batch["predictions"]) == 2
    for http in (rest, v2, furl, alb):
        assert http["statusCode"] == 200
        assert json.loads(http["body"])["model"]["name"] == "wqi"
    assert rest["headers"]["X-Request-Id"] == "req-2"  # the context's request id
    assert sqs["batchItemFailures"] == [{"itemIdentifier": "059f36b4-87a3-44ab-83d2-661975749003"}]
    assert warm["warm"] is True
    assert alb["statusDescription"] == "200 OK"
    assert bad.kind == "response" and bad.body["statusCode"] == 400
    assert fault.kind == "error", fault  # Lambda counts it failed: SQS keeps the batch
    assert fault.body["errorType"] == "InferenceError"
    assert fault.body["errorMessage"] == "INFERENCE_ERROR requestId=req-fault"
    assert '"message":"model loaded"' in log and '"ColdStart":[1.0]' in log


def test_bad_digest_is_an_init_error(
    runtime_api: RuntimeApi, s3_env: dict[str, str], tmp_path: Path
) -> None:
    data = synthetic.dumps(synthetic.wqi_bundle())
    env = {**pinned_env(s3_env, data), "MODEL_SHA256": "0" * 64}
    process = start_runtime(runtime_api, env, tmp_path)
    try:
        posted = runtime_api.wait(timeout=60)
        process.wait(timeout=30)
    finally:
        stop(process)
    assert posted.kind == "init-error"
    assert posted.body["errorType"] == "InitError"
    assert "DigestMismatch" in posted.body["errorMessage"]
    assert process.returncode != 0
    assert not list(tmp_path.glob("*.joblib"))  # nothing unverified was cached
