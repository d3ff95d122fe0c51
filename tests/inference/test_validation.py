"""Each validation failure gets a 400, VALIDATION_ERROR and a field-level reason."""

from __future__ import annotations

import math
import random
from typing import Any

import numpy as np
import pytest
from fast_path import agreements
from serving_helpers import context
from synthetic import GOOD_READING

from inference import handler
from inference.validation import ValidationError, Validator

pytestmark = pytest.mark.usefixtures("served")


def reasons(event: Any) -> dict[str, str]:
    response = handler.lambda_handler(event, context())
    assert response["statusCode"] == 400, response
    assert response["error"]["code"] == "VALIDATION_ERROR"
    assert response["model"]["name"] == "wqi"
    return {d["field"]: d["reason"] for d in response["error"]["details"]}


def with_reading(**changes: Any) -> dict[str, Any]:
    readings = {**GOOD_READING, **changes}
    return {"deviceId": "d1", "readings": {k: v for k, v in readings.items() if v is not ...}}


def test_missing_field() -> None:
    assert reasons(with_reading(tds=...)) == {"readings.tds": "missing"}


@pytest.mark.parametrize("value", [True, False, "7.2", [7.2], {"v": 7}])
def test_wrong_type_including_bool(value: Any) -> None:
    assert reasons(with_reading(pH=value))["readings.pH"].startswith("must be a number")


@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf])
def test_nan_and_infinity(value: float) -> None:
    assert "finite" in reasons(with_reading(turbidity=value))["readings.turbidity"]


@pytest.mark.parametrize(
    ("field", "value"), [("pH", 14.01), ("pH", -0.1), ("temperature", 60), ("tds", 10**400)]
)
def test_out_of_range(field: str, value: float) -> None:
    assert reasons(with_reading(**{field: value}))[f"readings.{field}"].startswith("out of range")
    batch = {"records": [with_reading(), with_reading(**{field: value})]}  # the batch path too
    assert reasons(batch)[f"records[1].readings.{field}"].startswith("out of range")


def test_unknown_field_is_rejected() -> None:
    assert reasons(with_reading(ph=7.0)) == {"readings.ph": "unknown field"}
    event = {**with_reading(), "timestamp": "2026-11-27T00:00:00Z"}
    assert reasons(event) == {"timestamp": "unknown field"}


def test_null_only_where_nullable() -> None:
    assert reasons(with_reading(pH=None)) == {"readings.pH": "must not be null"}
    nullable = Validator({"fields": [{"name": "ph", "nullable": True}]}, 10)
    _, row = nullable.single({"readings": {"ph": None}})
    assert math.isnan(row[0])


def test_readings_must_be_an_object_and_device_a_string() -> None:
    assert reasons({"readings": [7.0]})["readings"].startswith("must be an object")
    assert "deviceId" in reasons({"deviceId": 42, "readings": GOOD_READING})


def test_every_problem_is_listed() -> None:
    got = reasons(with_reading(pH=True, tds=..., temperature=math.nan, extra=1))
    assert set(got) == {"readings.pH", "readings.tds", "readings.temperature", "readings.extra"}


def test_oversized_batch(monkeypatch: pytest.MonkeyPatch) -> None:
    handler._service.validator.max_batch = 3  # type: ignore[union-attr]
    got = reasons({"records": [with_reading()] * 4})
    assert got == {"records": "holds 4 records; at most 3 allowed"}


def test_batch_is_all_or_nothing_with_paths() -> None:
    got = reasons({"records": [with_reading(), with_reading(pH=99)]})
    assert list(got) == ["records[1].readings.pH"]
    assert reasons({"records": []}) == {"records": "must hold at least one record"}
    assert reasons({"records": {"a": 1}})["records"].startswith("must be an array")


def test_malformed_json_body_over_http() -> None:
    event = {"version": "2.0", "requestContext": {"domainName": "x"}, "body": "{not json"}
    response = handler.lambda_handler(event, context())
    assert response["statusCode"] == 400
    error = __import__("json").loads(response["body"])["error"]
    assert error["code"] == "VALIDATION_ERROR"
    assert error["details"][0]["field"] == "body"
    assert error["details"][0]["reason"].startswith("malformed JSON")


def test_unrecognised_event() -> None:
    assert "event" in reasons({"hello": "world"})


MIXED_SCHEMA = {
    "fields": [
        {"name": "ph", "nullable": True, "minimum": 0, "maximum": 14},
        {"name": "n", "type": "integer", "minimum": -5},
    ]
}
# Every way a value, a reading set or a record can be off, or fine.
VALUES = [7.0, 0, 14, 3, 2.5, -1.0, 14.5, None, True, "7", math.nan, math.inf, -math.inf, 10**400]
DEVICES = ["a", "", "x" * 128, "x" * 129, None, 5, ["a"], ...]  # ...: no deviceId key


def random_record(rng: random.Random) -> Any:
    roll = rng.random()
    if roll < 0.02:
        return rng.choice([None, [], "record", 3])
    readings: Any = {"ph": rng.choice(VALUES), "n": rng.choice(VALUES)}
    if roll < 0.06:
        readings.pop(rng.choice(["ph", "n"]))
    elif roll < 0.09:
        readings["extra"] = 1.0
    elif roll < 0.11:
        readings = rng.choice([None, [7.0, 1], "readings"])
    record: dict[str, Any] = {"readings": readings}
    device = rng.choice(DEVICES)
    if device is not ...:
        record["deviceId"] = device
    if roll > 0.98:
        record["extra"] = 1
    elif roll > 0.96:
        record.pop("readings")
    return record


def test_batch_fast_path_accepts_only_what_the_full_pass_accepts() -> None:
    """The vectorised path is a shortcut, never a second opinion: on thousands of random
    batches it either steps aside or returns exactly what the record-by-record pass returns."""
    validator = Validator(MIXED_SCHEMA, 10)
    rng = random.Random(11)
    batches = ([random_record(rng) for _ in range(rng.randint(1, 3))] for _ in range(4000))
    assert agreements(validator, batches) > 100  # the shortcut really is taken on valid batches


def test_batch_fast_path_takes_every_valid_batch_without_nulls() -> None:
    validator = Validator(MIXED_SCHEMA, 10_000)
    records = [
        {"deviceId": f"d{i}", "readings": {"ph": 7.0 + (i % 7) / 10, "n": i % 4}}
        for i in range(10_000)
    ]
    records[5] = {"readings": {"ph": 7, "n": 2.0}}  # no deviceId; ints and whole floats
    records[6]["deviceId"] = None
    fast = validator.fast_batch(records)
    assert fast is not None
    devices, matrix = fast
    assert devices[:7] == ["d0", "d1", "d2", "d3", "d4", None, None]
    assert matrix.dtype == np.float64 and matrix.shape == (10_000, 2)
    assert matrix[5].tolist() == [7.0, 2.0]


def test_batch_with_nulls_goes_through_the_full_pass() -> None:
    validator = Validator(MIXED_SCHEMA, 10)
    devices, matrix = validator.batch([
        {"deviceId": "a", "readings": {"ph": 7.0, "n": 3.0}},
        {"readings": {"ph": None, "n": 2}},  # null where nullable: the full pass takes it
    ])  # fmt: skip
    assert devices == ["a", None]
    assert matrix[0].tolist() == [7.0, 3.0] and math.isnan(matrix[1, 0]) and matrix[1, 1] == 2
    for bad, field in [
        ({"readings": {"ph": 7.0, "n": 1}, "extra": 1}, "records[0].extra"),
        ({"deviceId": 5, "readings": {"ph": 7.0, "n": 1}}, "records[0].deviceId"),
        ({"readings": {"ph": 7.0, "n": 1.5}}, "records[0].readings.n"),
    ]:
        with pytest.raises(ValidationError) as info:
            validator.batch([bad])
        assert [d["field"] for d in info.value.details] == [field]
