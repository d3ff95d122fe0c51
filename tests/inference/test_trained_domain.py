"""Readings from both sides of the real models' domains, through every event shape, served
from the loopback S3 by VersionId: the documented verdicts, the confidence outside never above
the model's own, and the metrics document."""

from __future__ import annotations

import base64
import copy
import io
import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from serving_helpers import context, s3_config, upload

from inference import handler
from inference.bundle import loads, sha256_hex
from inference.predictor import Predictor

EVENTS = Path(__file__).resolve().parents[2] / "inference" / "events"
# The sample events carry no timestamp: wqi's hour of day, never missing in training, is.
UNDATED = {"inside": True, "outside": [], "unusual": [], "missing": ["hour_of_day"]}
SHAPES = ["direct", "batch", "apigw-rest-v1", "http-api-v2", "function-url", "alb", "sqs"]
pytestmark = pytest.mark.integration


def sample(name: str) -> dict[str, Any]:
    return json.loads((EVENTS / f"{name}.json").read_text())


def with_readings(name: str, readings: dict[str, Any]) -> dict[str, Any]:
    """The sample event of shape ``name`` carrying ``readings`` in every record it holds."""
    event = sample(name)

    def swap(record: dict[str, Any]) -> dict[str, Any]:
        return record | {"readings": readings}

    if name == "direct":
        return swap(event)
    if name == "batch":
        return {"records": [swap(r) for r in event["records"]]}
    if name == "sqs":
        event["Records"] = event["Records"][:2]  # the third is the invalid pH 15.2
        for record in event["Records"]:
            record["body"] = json.dumps(swap(json.loads(record["body"])))
        return event
    raw = event["body"]
    body = json.loads(base64.b64decode(raw) if event.get("isBase64Encoded") else raw)
    body = {"records": [swap(r) for r in body["records"]]} if "records" in body else swap(body)
    text = json.dumps(body)
    event["body"] = base64.b64encode(text.encode()).decode() if event.get("isBase64Encoded") \
        else text  # fmt: skip
    return event


def answers(name: str, event: dict[str, Any], log: io.StringIO) -> list[Any]:
    """The answers of one event, from its response (SQS: its one log line)."""
    log.seek(0)
    log.truncate()
    response = handler.lambda_handler(event, context())
    if name == "sqs":
        assert response == {"batchItemFailures": []}
        line = next(x for x in log.getvalue().splitlines() if "sqs predictions" in x)
        return [{k: v for k, v in p.items() if k != "messageId"}
                for p in json.loads(line)["predictions"]]  # fmt: skip
    payload = json.loads(response["body"]) if "body" in response else response
    assert payload.get("statusCode", response.get("statusCode")) == 200, payload
    found = payload.get("predictions") or [payload["prediction"]]
    return json.loads(json.dumps(found))  # as the caller reads them


@pytest.fixture
def wqi(trained: dict[str, Any], s3_env: dict[str, str], cache_dir: Path) -> dict[str, Any]:
    data = Path(trained["bundles"]["wqi"]).read_bytes()
    handler.init(s3_config(s3_env, upload(s3_env, data), sha256_hex(data), cache_dir))
    return loads(data)


def test_the_sample_events_are_inside_and_the_seeds_fresh_water_is_not(
    wqi: dict[str, Any], log_lines: io.StringIO
) -> None:
    sqs_inside = json.loads(sample("sqs")["Records"][0]["body"])["readings"]
    for name in SHAPES:  # SQS's sample holds an invalid reading too: its two valid ones here
        event = sample(name) if name != "sqs" else with_readings(name, sqs_inside)
        for answer in answers(name, event, log_lines):
            assert answer["domain"] == UNDATED, name
    fresh = sample("freshwater")
    (answer,) = answers("direct", fresh, log_lines)
    # The seed's reading: TDS 410 mg/L is fresh water, and pH 7.4 is below the estuary's
    # 0.5 % quantile (7.86) too.
    assert answer["domain"] == UNDATED | {"inside": False, "outside": ["pH", "tds"]}
    prior = wqi["profile"]["outputs"]
    share = prior["label_shares"][prior["labels"].index(answer["quality"])]
    own = model_answer(wqi, fresh["readings"])
    assert answer["quality"] == own["quality"]
    assert answer["confidence"] == min(own["confidence"], round(share, 4))  # never above it
    for name in SHAPES:  # the same reading in every shape gets the same answer
        got = answers(name, with_readings(name, fresh["readings"]), log_lines)
        assert [{k: v for k, v in a.items() if k != "deviceId"} for a in got] == [
            {k: v for k, v in answer.items() if k != "deviceId"}] * len(got), name  # fmt: skip


def test_one_feature_outside_is_named_alone(wqi: dict[str, Any], log_lines: io.StringIO) -> None:
    inside = sample("direct")["readings"]
    tds_low = wqi["profile"]["features"]["tds"]["quantiles"]["0.005"]
    cases = {
        "tds": inside | {"tds": 410.0},
        "temperature": inside | {"temperature": 12.0},
        "turbidity": inside | {"turbidity": 250.0},
    }
    for feature, readings in cases.items():
        (answer,) = answers("direct", {"readings": readings}, log_lines)
        assert answer["domain"] == UNDATED | {"inside": False, "outside": [feature]}
    # On the bound itself (float32, as the model reads it) is inside.
    (answer,) = answers("direct", {"readings": inside | {"tds": float(tds_low) + 1.0}}, log_lines)
    assert answer["domain"]["inside"] is True
    # An hour of the day is derived from the timestamp; without one it is missing, not outside.
    (answer,) = answers("direct", {"readings": inside, "timestamp": "2024-03-01T06:30:00+10:00"},
                        log_lines)  # fmt: skip
    assert answer["domain"] == UNDATED | {"missing": []}


def test_a_large_batch_of_both_sides_reports_one_metrics_document(
    wqi: dict[str, Any], capfd: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("INFERENCE_BATCH_THREADS", "2")
    inside, fresh = sample("direct")["readings"], sample("freshwater")["readings"]
    records = [{"deviceId": f"d{i}", "readings": fresh if i % 4 == 0 else inside}
               for i in range(2_000)]  # fmt: skip
    capfd.readouterr()
    batch = handler.lambda_handler({"records": records}, context())["predictions"]
    out = capfd.readouterr().out
    docs = [json.loads(x) for x in out.splitlines() if x.startswith('{"_aws"') and "Readings" in x]
    assert len(docs) == 1
    (doc,) = docs
    assert doc["Readings"] == [2000.0] and doc["ReadingsOutOfDomain"] == [500.0]
    assert doc["OutOfDomain.tds"] == [500.0] and doc["OutOfDomain.pH"] == [500.0]
    bands = sum(doc[k][0] for k in doc if k.startswith("Answer."))
    assert bands == 2000.0
    mean = sum(a["confidence"] for a in batch) / len(batch)
    assert doc["MeanConfidence"] == [round(mean, 4)]
    assert batch[0]["domain"]["outside"] == ("pH", "tds")
    assert batch[1] == handler.lambda_handler(records[1], context())["prediction"]


def test_potability_nulls_are_not_outside_and_extremes_are(
    trained: dict[str, Any], s3_env: dict[str, str], cache_dir: Path, log_lines: io.StringIO,
) -> None:  # fmt: skip
    data = Path(trained["bundles"]["potability"]).read_bytes()
    bundle = loads(data)
    handler.init(s3_config(s3_env, upload(s3_env, data), sha256_hex(data), cache_dir))
    features = bundle["profile"]["features"]
    middle = {name: entry["quantiles"]["0.5"] for name, entry in features.items()}
    nullable = [f["name"] for f in bundle["schema"]["fields"] if f.get("nullable")]
    (answer,) = answers("direct", {"readings": middle | dict.fromkeys(nullable)}, log_lines)
    # Training saw those features missing: their nulls are no news.
    assert answer["domain"] == {"inside": True, "outside": [], "unusual": [], "missing": []}
    high = features["Solids"]["quantiles"]["1"] + 1.0  # above every training value
    readings = middle | {"Solids": high}
    (answer,) = answers("direct", {"readings": readings}, log_lines)
    assert answer["domain"] == {"inside": False, "outside": ["Solids"], "unusual": [],
                                "missing": []}  # fmt: skip
    own = model_answer(bundle, readings)
    assert answer["potable"] == own["potable"] and answer["confidence"] <= own["confidence"]
    p = answer["probability"]
    assert answer["confidence"] == round(p if answer["potable"] else 1 - p, 4)
    assert copy.deepcopy(answer) == answer


def model_answer(bundle: dict[str, Any], readings: dict[str, Any]) -> dict[str, Any]:
    """The model's own answer to ``readings`` (no domain), calendar features missing."""
    names = [f["name"] for f in bundle["schema"]["fields"]]
    row = np.array([[readings.get(n, math.nan) if readings.get(n) is not None else math.nan
                     for n in names]], dtype=np.float32)  # fmt: skip
    predictor = Predictor(bundle)
    return predictor.output.answers(predictor.raw(row))[0]
