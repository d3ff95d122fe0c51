"""End to end with the real trained bundles: served from the loopback S3 by VersionId, checked
against their own golden samples, answering every event shape. (`make invoke` reading a stored
release manifest: tests/tools/test_invoke.py.)"""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

import pytest
from serving_helpers import context, s3_config, upload

from inference import handler
from inference.bundle import loads, sha256_hex

EVENTS = Path(__file__).resolve().parents[2] / "inference" / "events"
pytestmark = pytest.mark.integration


def test_trained_wqi_bundle_serves_every_shape(
    trained: dict[str, Any], s3_env: dict[str, str], cache_dir: Path
) -> None:
    data = Path(trained["bundles"]["wqi"]).read_bytes()
    config = s3_config(s3_env, upload(s3_env, data), sha256_hex(data), cache_dir)
    service = handler.init(config)
    assert service.model.source == "s3"
    for name in ("direct", "batch", "apigw-rest-v1", "http-api-v2", "function-url"):
        response = handler.lambda_handler(json.loads((EVENTS / f"{name}.json").read_text()),
                                          context())  # fmt: skip
        payload = json.loads(response["body"]) if "body" in response else response
        assert response["statusCode"] == 200, (name, payload)
        answers = payload.get("predictions") or [payload["prediction"]]
        for answer in answers:
            assert 0 <= answer["wqi"] <= 100 and 0 <= answer["confidence"] <= 1
            assert answer["quality"] in {"Excellent", "Good", "Fair", "Poor", "Very Poor"}
    sqs = handler.lambda_handler(json.loads((EVENTS / "sqs.json").read_text()), context())
    assert len(sqs["batchItemFailures"]) == 1  # the pH 15.2 reading is out of the contract


def test_trained_wqi_large_batch_answers_each_reading_as_alone(
    trained: dict[str, Any], s3_env: dict[str, str], cache_dir: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    # Row blocks on two threads (inference/blocks.py), the real 300-tree model: every answer
    # is exactly the one the same reading gets as a direct invocation.
    monkeypatch.setenv("INFERENCE_BATCH_THREADS", "2")
    data = Path(trained["bundles"]["wqi"]).read_bytes()
    handler.init(s3_config(s3_env, upload(s3_env, data), sha256_hex(data), cache_dir))
    assert handler._service is not None and handler._service.predictor.blocks.threads == 2
    rng = random.Random(3)
    records = [
        {"deviceId": f"d{i}", "readings": {"pH": rng.uniform(6.5, 9), "turbidity":
         rng.uniform(0, 40), "tds": rng.uniform(100, 30000), "temperature": rng.uniform(15, 30)}}
        for i in range(1200)
    ]  # fmt: skip
    batch = handler.lambda_handler({"records": records}, context())
    assert batch["statusCode"] == 200
    alone = [handler.lambda_handler(r, context())["prediction"] for r in records]
    assert batch["predictions"] == alone
    records[1100]["readings"]["pH"] = 99  # in the second block
    response = handler.lambda_handler({"records": records}, context())
    assert response["statusCode"] == 400
    assert [d["field"] for d in response["error"]["details"]] == ["records[1100].readings.pH"]


def test_trained_potability_bundle_accepts_null_where_nullable(
    trained: dict[str, Any], cache_dir: Path, s3_env: dict[str, str]
) -> None:
    data = Path(trained["bundles"]["potability"]).read_bytes()
    bundle = loads(data)
    nullable = [f["name"] for f in bundle["schema"]["fields"] if f.get("nullable")]
    assert nullable
    handler.init(s3_config(s3_env, upload(s3_env, data), sha256_hex(data), cache_dir))
    readings = {f["name"]: (f.get("minimum", 0.0) + f.get("maximum", 1.0)) / 2
                for f in bundle["schema"]["fields"]}  # fmt: skip
    readings[nullable[0]] = None
    response = handler.lambda_handler({"deviceId": "lab-1", "readings": readings}, context())
    assert response["statusCode"] == 200, response
    assert isinstance(response["prediction"]["potable"], bool)
    # A large batch with a null takes the full validation pass, and answers it the same.
    records = [{"deviceId": f"lab-{i}", "readings": readings} for i in range(600)]
    batch = handler.lambda_handler({"records": records}, context())
    assert batch["statusCode"] == 200, batch
    assert batch["predictions"][599] == {**response["prediction"], "deviceId": "lab-599"}
