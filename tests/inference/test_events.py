"""Every event shape, from the sample events in inference/events/, through lambda_handler."""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import pytest
from serving_helpers import body, context

from inference import handler

EVENTS = Path(__file__).resolve().parents[2] / "inference" / "events"
MODEL = {"name": "wqi", "version": "7", "s3VersionId": "v-local"}

pytestmark = pytest.mark.usefixtures("served")


def sample(name: str) -> dict[str, Any]:
    return json.loads((EVENTS / f"{name}.json").read_text())


def carries_model(payload: dict[str, Any]) -> None:
    assert {k: payload["model"][k] for k in MODEL} == MODEL
    assert len(payload["model"]["sha256"]) == 12


def test_direct_invocation() -> None:
    response = handler.lambda_handler(sample("direct"), context())
    assert response["statusCode"] == 200
    carries_model(response)
    assert response["prediction"] == {
        "deviceId": "buoy-01", "wqi": 90.0, "quality": "Excellent", "confidence": 0.5
    }  # fmt: skip


def test_batch_is_one_predict_call(monkeypatch: pytest.MonkeyPatch) -> None:
    service = handler._service
    assert service is not None
    calls: list[int] = []
    original = service.predictor.answers
    monkeypatch.setattr(service.predictor, "answers", lambda X: calls.append(len(X)) or original(X))
    response = handler.lambda_handler(sample("batch"), context())
    assert response["statusCode"] == 200
    carries_model(response)
    assert [p["deviceId"] for p in response["predictions"]] == ["buoy-01", "buoy-02"]
    assert [p["quality"] for p in response["predictions"]] == ["Excellent", "Poor"]
    assert calls == [2]


@pytest.mark.parametrize("name", ["apigw-rest-v1", "http-api-v2", "function-url"])
def test_http_shapes_answer_in_their_own_shape(name: str) -> None:
    response = handler.lambda_handler(sample(name), context("req-http"))
    assert response["statusCode"] == 200
    assert response["headers"]["Content-Type"] == "application/json"
    assert response["headers"]["X-Request-Id"] == "req-http"
    assert response["isBase64Encoded"] is False
    assert ("multiValueHeaders" in response) is (name == "apigw-rest-v1")
    payload = body(response)
    carries_model(payload)
    answers = payload["predictions"] if "predictions" in payload else [payload["prediction"]]
    assert answers[0]["wqi"] == 90.0


def test_function_url_base64_body_is_decoded() -> None:
    event = sample("function-url")
    assert event["isBase64Encoded"] is True
    assert json.loads(base64.b64decode(event["body"]))["deviceId"] == "buoy-01"
    assert body(handler.lambda_handler(event, context()))["prediction"]["deviceId"] == "buoy-01"


def test_http_validation_error_is_a_400_in_the_http_shape() -> None:
    event = sample("apigw-rest-v1")
    event["body"] = json.dumps({"readings": {"pH": 7}})
    response = handler.lambda_handler(event, context())
    assert response["statusCode"] == 400
    error = body(response)["error"]
    assert error["code"] == "VALIDATION_ERROR"
    assert {d["field"] for d in error["details"]} == {
        "readings.turbidity", "readings.tds", "readings.temperature"
    }  # fmt: skip


def test_http_without_body_is_a_400() -> None:
    event = sample("http-api-v2")
    event.pop("body")
    response = handler.lambda_handler(event, context())
    assert response["statusCode"] == 400
    assert body(response)["error"]["details"][0]["field"] == "body"


def test_sqs_reports_only_the_bad_message(monkeypatch: pytest.MonkeyPatch) -> None:
    service = handler._service
    assert service is not None
    calls: list[int] = []
    original = service.predictor.answers
    monkeypatch.setattr(service.predictor, "answers", lambda X: calls.append(len(X)) or original(X))
    event = sample("sqs")
    event["Records"].append({**event["Records"][0], "messageId": "bad-json", "body": "{oops"})
    response = handler.lambda_handler(event, context())
    assert response == {
        "batchItemFailures": [
            {"itemIdentifier": "059f36b4-87a3-44ab-83d2-661975749003"},  # pH 15.2
            {"itemIdentifier": "bad-json"},
        ]
    }
    assert calls == [2]  # the two valid messages, one vectorised call


def test_sqs_all_valid_reports_no_failure() -> None:
    event = sample("sqs")
    event["Records"] = event["Records"][:2]
    assert handler.lambda_handler(event, context()) == {"batchItemFailures": []}


def test_sqs_inference_fault_fails_the_valid_messages(monkeypatch: pytest.MonkeyPatch) -> None:
    service = handler._service
    assert service is not None
    monkeypatch.setattr(service, "predict_rows", lambda rows: 1 / 0)
    response = handler.lambda_handler(sample("sqs"), context())
    assert len(response["batchItemFailures"]) == 3


def test_warmup_returns_at_once_without_predicting(monkeypatch: pytest.MonkeyPatch) -> None:
    service = handler._service
    assert service is not None
    monkeypatch.setattr(service, "predict_rows", lambda rows: pytest.fail("predicted"))
    response = handler.lambda_handler(sample("warmup"), context())
    assert response["statusCode"] == 200 and response["warm"] is True
    carries_model(response)


def test_fault_is_a_500_with_request_id_and_no_internals(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    service = handler._service
    assert service is not None

    def boom(rows: Any) -> Any:
        raise RuntimeError("secret internal path /var/task/model.joblib")

    monkeypatch.setattr(service, "predict_rows", boom)
    response = handler.lambda_handler(sample("direct"), context("req-500"))
    assert response["statusCode"] == 500
    assert response["error"] == {
        "code": "INFERENCE_ERROR", "message": "inference failed", "requestId": "req-500"
    }  # fmt: skip
    assert "secret" not in json.dumps(response)
    http = handler.lambda_handler(sample("http-api-v2"), context("req-501"))
    assert http["statusCode"] == 500
    assert body(http)["error"]["requestId"] == "req-501"
    assert "secret" not in http["body"]
    assert "secret internal path" in caplog.text  # the cause is in the log


def test_every_sample_event_is_tested() -> None:
    assert {p.stem for p in EVENTS.glob("*.json")} == {
        "direct", "batch", "apigw-rest-v1", "http-api-v2", "function-url", "sqs", "warmup",
    }  # fmt: skip
