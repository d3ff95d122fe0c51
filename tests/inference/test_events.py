"""Every event shape, from the sample events in inference/events/, through lambda_handler."""

from __future__ import annotations

import base64
import copy
import json
from pathlib import Path
from typing import Any

import pytest
from serving_helpers import body, context

from inference import events, handler
from inference.contract import INVALID_METRIC

EVENTS = Path(__file__).resolve().parents[2] / "inference" / "events"
MODEL = {"name": "wqi", "version": "7", "s3VersionId": "v-local"}
HTTP_SAMPLES = ["apigw-rest-v1", "http-api-v2", "function-url", "alb"]

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
    assert response["prediction"] == {  # a bundle without a training profile: no verdict
        "deviceId": "buoy-01", "wqi": 90.0, "quality": "Excellent", "confidence": 0.5,
        "domain": None,
    }  # fmt: skip


def test_batch_is_one_predict_call(monkeypatch: pytest.MonkeyPatch) -> None:
    service = handler._service
    assert service is not None
    calls: list[int] = []
    original = service.predictor._run
    monkeypatch.setattr(service.predictor, "_run", lambda X: calls.append(len(X)) or original(X))
    response = handler.lambda_handler(sample("batch"), context())
    assert response["statusCode"] == 200
    carries_model(response)
    assert [p["deviceId"] for p in response["predictions"]] == ["buoy-01", "buoy-02"]
    # The synthetic stumps: pH >= 7 is +25, turbidity >= 10 is -20 (buoy-02: 65, Fair).
    assert [p["quality"] for p in response["predictions"]] == ["Excellent", "Fair"]
    assert calls == [2]


@pytest.mark.parametrize("name", HTTP_SAMPLES)
def test_http_shapes_answer_in_their_own_shape(name: str) -> None:
    response = handler.lambda_handler(sample(name), context("req-http"))
    assert response["statusCode"] == 200
    assert response["headers"]["Content-Type"] == "application/json"
    assert response["headers"]["X-Request-Id"] == "req-http"
    assert response["isBase64Encoded"] is False
    assert ("multiValueHeaders" in response) is (name == "apigw-rest-v1")
    assert ("statusDescription" in response) is (name == "alb")
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
    original = service.predictor._run
    monkeypatch.setattr(service.predictor, "_run", lambda X: calls.append(len(X)) or original(X))
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
    monkeypatch.setattr(service.predictor, "_run", lambda X: 1 / 0)
    response = handler.lambda_handler(sample("sqs"), context())
    assert len(response["batchItemFailures"]) == 3


def test_warmup_returns_at_once_without_predicting(monkeypatch: pytest.MonkeyPatch) -> None:
    service = handler._service
    assert service is not None
    monkeypatch.setattr(service.predictor, "_run", lambda X: pytest.fail("predicted"))
    response = handler.lambda_handler(sample("warmup"), context())
    assert response["statusCode"] == 200 and response["warm"] is True
    carries_model(response)


def boom(*args: Any) -> Any:
    raise RuntimeError("secret internal path /var/task/model.joblib")


@pytest.mark.parametrize("name", ["direct", "batch"])
def test_fault_fails_the_invocation_with_only_code_and_request_id(
    name: str, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    # A returned {"statusCode": 500} would count as success: no async retry, nothing reaches
    # the on-failure destination, the Errors alarm never fires.
    service = handler._service
    assert service is not None
    monkeypatch.setattr(service.predictor, "_run", boom)  # onnxruntime fails, on any path
    with pytest.raises(handler.InferenceError) as info:
        handler.lambda_handler(sample(name), context("req-500"))
    assert str(info.value) == "INFERENCE_ERROR requestId=req-500"
    assert info.value.__cause__ is None and info.value.__suppress_context__
    assert "secret internal path" in caplog.text  # the cause is in the log


@pytest.mark.parametrize("name", HTTP_SAMPLES)
def test_http_fault_is_a_500_in_its_own_shape(
    name: str, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    service = handler._service
    assert service is not None
    monkeypatch.setattr(service.predictor, "_run", boom)  # onnxruntime fails, on any path
    http = handler.lambda_handler(sample(name), context("req-501"))
    assert http["statusCode"] == 500
    assert isinstance(http["body"], str) and http["headers"]["X-Request-Id"] == "req-501"
    assert ("multiValueHeaders" in http) is (name == "apigw-rest-v1")
    assert http.get("statusDescription") == ("500 Internal Server Error" if name == "alb" else None)
    assert body(http)["error"] == {
        "code": "INFERENCE_ERROR", "message": "inference failed", "requestId": "req-501"
    }  # fmt: skip
    assert "secret" not in http["body"]
    assert "secret internal path" in caplog.text


def _unloadable(monkeypatch: pytest.MonkeyPatch) -> None:
    """No model in memory and none configured: init fails at request time."""
    handler.reset()
    monkeypatch.delenv("MODEL_SHA256", raising=False)


@pytest.mark.parametrize("name", HTTP_SAMPLES)
def test_http_init_failure_is_a_503_in_its_own_shape(
    name: str, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    _unloadable(monkeypatch)
    http = handler.lambda_handler(sample(name), context("req-503"))
    assert http["statusCode"] == 503
    assert http.get("statusDescription") == ("503 Service Unavailable" if name == "alb" else None)
    assert isinstance(http["body"], str) and http["headers"]["X-Request-Id"] == "req-503"
    assert body(http)["error"]["requestId"] == "req-503"
    assert "MODEL_SHA256" not in http["body"]
    assert "missing environment variable" in caplog.text


@pytest.mark.parametrize("name", ["direct", "batch", "sqs"])
def test_init_failure_fails_non_http_invocations(
    name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # For SQS a returned answer without batchItemFailures would delete the whole batch.
    _unloadable(monkeypatch)
    with pytest.raises(handler.InferenceError, match=r"^INFERENCE_ERROR requestId=req-init$"):
        handler.lambda_handler(sample(name), context("req-init"))


def test_sqs_fault_on_one_message_reports_that_message(monkeypatch: pytest.MonkeyPatch) -> None:
    service = handler._service
    assert service is not None
    original = service.validator.single

    def flaky(record: Any) -> Any:
        if record.get("deviceId") == "buoy-02":
            raise RuntimeError("secret")
        return original(record)

    monkeypatch.setattr(service.validator, "single", flaky)
    event = sample("sqs")
    assert json.loads(event["Records"][1]["body"])["deviceId"] == "buoy-02"
    reported = {f["itemIdentifier"] for f in handler.lambda_handler(event, context())[
        "batchItemFailures"]}  # fmt: skip
    assert event["Records"][1]["messageId"] in reported
    assert event["Records"][0]["messageId"] not in reported


@pytest.mark.parametrize(
    "event",
    [
        {"Records": [1]},
        {"Records": []},
        {"Records": "x"},
        {"requestContext": 5},
        {},
        "text",
        [1, 2],
        None,
        7,
        {"detail-type": "Scheduled Event"},
    ],
)
def test_malformed_event_is_a_validation_error(event: Any) -> None:
    response = handler.lambda_handler(event, context())
    assert response["statusCode"] == 400
    assert response["error"]["code"] == "VALIDATION_ERROR"
    assert response["error"]["details"][0]["field"] == "event"


def test_detect_survives_non_dict_records() -> None:
    assert events.detect({"Records": [1]}) is events.Kind.UNKNOWN
    assert events.detect({"Records": [None, {"eventSource": "aws:sqs"}]}) is events.Kind.UNKNOWN


def request_body(event: dict[str, Any]) -> Any:
    text = event["body"]
    return json.loads(base64.b64decode(text) if event.get("isBase64Encoded") else text)


def check_shape(kind: events.Kind, event: dict[str, Any], response: dict[str, Any]) -> None:
    """The reply a sample event of ``kind`` must get: that kind's own success shape."""
    if kind is events.Kind.SQS:
        assert set(response) == {"batchItemFailures"}
        ids = {r["messageId"] for r in event["Records"]}
        assert all(f["itemIdentifier"] in ids for f in response["batchItemFailures"])
        assert len(response["batchItemFailures"]) < len(ids)  # some were answered
        return
    if kind in events.HTTP_KINDS:
        assert set(response) == {"statusCode", "headers", "body", "isBase64Encoded"} | (
            {"multiValueHeaders"} if kind is events.Kind.REST_V1 else set()
        ) | ({"statusDescription"} if kind is events.Kind.ALB else set())
        assert response["statusCode"] == 200 and response["isBase64Encoded"] is False
        assert response["headers"]["X-Request-Id"] == "req-sample"
        payload = body(response)
    else:
        payload = response
        assert payload["statusCode"] == 200
    carries_model(payload)
    if kind is events.Kind.WARMUP:
        assert payload["warm"] is True and "prediction" not in payload
    elif "predictions" in payload:  # a batch, directly or in an HTTP body
        sent = event if kind is events.Kind.BATCH else request_body(event)
        assert len(payload["predictions"]) == len(sent["records"])
    else:
        assert set(payload["prediction"]) >= {"deviceId", "wqi", "quality", "confidence"}


@pytest.mark.parametrize("path", sorted(EVENTS.glob("*.json")), ids=lambda p: p.stem)
def test_every_sample_event_gets_its_kinds_reply(path: Path) -> None:
    event = json.loads(path.read_text())
    kind = events.detect(event)
    assert kind is not events.Kind.UNKNOWN, f"{path.name} is not a recognised event shape"
    check_shape(kind, event, handler.lambda_handler(copy.deepcopy(event), context("req-sample")))


def test_the_samples_cover_every_kind() -> None:
    kinds = {events.detect(json.loads(p.read_text())) for p in EVENTS.glob("*.json")}
    assert kinds == set(events.Kind) - {events.Kind.UNKNOWN}


def test_powertools_classes_are_imported_once(monkeypatch: pytest.MonkeyPatch) -> None:
    import builtins

    http, sqs = sample("http-api-v2"), sample("sqs")
    events.http_json(events.Kind.HTTP_V2, http)  # the first use imports them
    events.sqs_messages(sqs)
    imported: list[str] = []
    original = builtins.__import__

    def spy(name: str, *args: Any, **kwargs: Any) -> Any:
        imported.append(name)
        return original(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", spy)
    events.http_json(events.Kind.HTTP_V2, http)
    events.sqs_messages(sqs)
    events.http_json(events.Kind.REST_V1, sample("apigw-rest-v1"))
    events.http_json(events.Kind.ALB, sample("alb"))
    assert not [n for n in imported if n.startswith("aws_lambda_powertools")]


# ---- bad input is a 400 or an item failure, never a 500 (issue 9 section 4) -------------------
def with_body(name: str, text: Any) -> dict[str, Any]:
    """Sample ``name`` carrying ``text`` as its body, base64 encoded where the sample is."""
    event = sample(name)
    encoded = event["isBase64Encoded"] and type(text) is str
    event["body"] = base64.b64encode(text.encode()).decode() if encoded else text
    return event


def is_400_on_body(response: dict[str, Any]) -> None:
    assert response["statusCode"] == 400
    error = body(response)["error"]
    assert error["code"] == "VALIDATION_ERROR"
    assert [d["field"] for d in error["details"]] == ["body"]
    assert all(type(d["reason"]) is str and d["reason"] for d in error["details"])


def errors_counted(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    counted: list[str] = []
    monkeypatch.setattr(handler, "count_error", counted.append)
    return counted


@pytest.mark.parametrize("opener", ["[", '{"readings":'])
@pytest.mark.parametrize("depth", [900, 1_000, 100_000])
@pytest.mark.parametrize("name", HTTP_SAMPLES)
def test_deeply_nested_body_is_a_400(
    name: str, depth: int, opener: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # json.loads recurses once per level: from about 1,000 it raised RecursionError, a 500.
    # 900 levels parse, and are refused as any other wrong shape is.
    inner, closer = ("", "]") if opener == "[" else ("{}", "}")
    text = opener * depth + inner + closer * depth
    counted = errors_counted(monkeypatch)
    response = handler.lambda_handler(with_body(name, text), None)
    if depth >= 1_000 or opener == "[":
        is_400_on_body(response)
    assert response["statusCode"] == 400
    assert body(response)["error"]["code"] == "VALIDATION_ERROR"
    assert counted == [INVALID_METRIC]


@pytest.mark.parametrize("value", [{"readings": {}}, 5, 1.5, [1], True])
@pytest.mark.parametrize("encoded", [True, False])
@pytest.mark.parametrize("name", HTTP_SAMPLES)
def test_body_that_is_not_a_string_is_a_400_on_body(name: str, encoded: bool, value: Any) -> None:
    # A base64 flag on a non-string body raised AttributeError in the decoding, a 500.
    event = sample(name)
    event.update(body=value, isBase64Encoded=encoded)
    response = handler.lambda_handler(event, context())
    is_400_on_body(response)
    assert "not" in body(response)["error"]["details"][0]["reason"]


@pytest.mark.parametrize("text", ["[]", "[{}]", "null", "5", '"buoy"', "true"])
@pytest.mark.parametrize("name", HTTP_SAMPLES)
def test_body_that_is_not_a_json_object_is_a_400_on_body(name: str, text: str) -> None:
    is_400_on_body(handler.lambda_handler(with_body(name, text), context()))


def sqs_with(record: Any) -> dict[str, Any]:
    """The SQS sample with ``record`` after its first (valid) record."""
    event = sample("sqs")
    event["Records"] = [event["Records"][0], record]
    return event


def test_sqs_record_without_body_is_that_records_item_failure(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    counted = errors_counted(monkeypatch)
    record = sample("sqs")["Records"][1]
    del record["body"]
    response = handler.lambda_handler(sqs_with(record), context())
    assert response == {"batchItemFailures": [{"itemIdentifier": record["messageId"]}]}
    assert counted == []  # invalid input, not a fault


@pytest.mark.parametrize("value", [None, 5, {"pH": 7}, ["x"]])
def test_sqs_body_that_is_not_a_string_is_that_records_item_failure(value: Any) -> None:
    record = {**sample("sqs")["Records"][1], "body": value}
    response = handler.lambda_handler(sqs_with(record), context())
    assert response == {"batchItemFailures": [{"itemIdentifier": record["messageId"]}]}


@pytest.mark.parametrize(
    "foreign",
    [
        {"messageId": "k-1", "eventSource": "aws:kinesis", "kinesis": {"data": "e30="}},
        {"messageId": "k-2", "body": "{}"},  # no eventSource
    ],
)
def test_sqs_foreign_record_is_that_records_item_failure(
    foreign: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    counted = errors_counted(monkeypatch)
    response = handler.lambda_handler(sqs_with(foreign), context())
    assert response == {"batchItemFailures": [{"itemIdentifier": foreign["messageId"]}]}
    assert counted == []


def test_sqs_deeply_nested_body_is_that_records_item_failure_not_a_fault(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    counted = errors_counted(monkeypatch)
    record = {**sample("sqs")["Records"][1], "body": "[" * 5_000 + "]" * 5_000}
    response = handler.lambda_handler(sqs_with(record), context())
    assert response == {"batchItemFailures": [{"itemIdentifier": record["messageId"]}]}
    assert counted == []  # it was counted as an INFERENCE_ERROR: a fault


def _without_id(record: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in record.items() if k != "messageId"}


UNNAMED = [
    pytest.param(lambda r: {**r, "messageId": None}, id="messageId-null"),
    pytest.param(lambda r: {**r, "messageId": 5}, id="messageId-number"),
    pytest.param(lambda r: {**r, "messageId": ""}, id="messageId-empty"),
    pytest.param(lambda r: {**r, "messageId": ["x"]}, id="messageId-array"),
    pytest.param(_without_id, id="messageId-missing"),
    pytest.param(lambda r: 1, id="record-number"),
    pytest.param(lambda r: "text", id="record-string"),
    pytest.param(lambda r: None, id="record-null"),
    pytest.param(lambda r: [r], id="record-array"),
]


@pytest.mark.parametrize("make", UNNAMED)
def test_sqs_record_that_cannot_be_named_fails_the_whole_batch(
    make: Any, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    # batchItemFailures names a record by its messageId; AWS treats a null or empty
    # itemIdentifier as the failure of the whole batch, and a record left out would be deleted
    # with the batch. So the invocation fails: SQS retries the batch, nothing is deleted.
    service = handler._service
    assert service is not None
    calls: list[int] = []
    monkeypatch.setattr(service.predictor, "_run", lambda X: calls.append(len(X)))
    event = sqs_with(make(sample("sqs")["Records"][1]))
    with pytest.raises(handler.InferenceError, match=r"^INFERENCE_ERROR requestId=req-sqs$"):
        handler.lambda_handler(event, context("req-sqs"))
    assert calls == []  # checked before anything is predicted (and logged as answered)
    logs = [vars(r) for r in caplog.records if r.getMessage().startswith("SQS batch failed")]
    logged = [log["details"] for log in logs]
    assert [[d["field"] for d in details] for details in logged] == [["Records[1].messageId"]]


def test_alb_multi_value_request_is_answered_in_multi_value_headers() -> None:
    # With multi-value headers on, ALB reads only multiValueHeaders (and sends only those).
    event = sample("alb")
    event["multiValueHeaders"] = {k: [v] for k, v in event.pop("headers").items()}
    event["multiValueQueryStringParameters"] = event.pop("queryStringParameters")
    response = handler.lambda_handler(event, context("req-alb"))
    assert response["statusCode"] == 200 and response["statusDescription"] == "200 OK"
    assert response["multiValueHeaders"] == {
        "Content-Type": ["application/json"], "X-Request-Id": ["req-alb"]
    }  # fmt: skip
    assert "headers" not in response
    assert body(response)["prediction"]["deviceId"] == "buoy-01"


def test_alb_answers_in_single_value_headers_with_a_status_description() -> None:
    response = handler.lambda_handler(sample("alb"), context("req-alb"))
    assert response["statusDescription"] == "200 OK"
    assert response["headers"] == {"Content-Type": "application/json", "X-Request-Id": "req-alb"}
    assert "multiValueHeaders" not in response
    invalid = handler.lambda_handler(with_body("alb", "{oops"), context())
    assert invalid["statusCode"] == 400 and invalid["statusDescription"] == "400 Bad Request"


def test_unknown_keys_are_named_readably_and_briefly() -> None:
    # An empty key was named "" (or "readings."); a long one was echoed whole, so a 400 could
    # outgrow ALB's 1 MB response limit (a 502 at the load balancer).
    event = sample("direct")
    event["readings"][""] = 1
    event["k" * 10_000] = 1
    response = handler.lambda_handler(event, context())
    assert response["statusCode"] == 400
    assert {d["field"] for d in response["error"]["details"]} == {'readings.""', "k" * 256 + "..."}
    batch = {**sample("batch"), "": 1}
    assert handler.lambda_handler(batch, context())["error"]["details"] == [
        {"field": '""', "reason": "unknown field"}
    ]
