"""Each validation failure gets a 400, VALIDATION_ERROR and a field-level reason."""

from __future__ import annotations

import math
from typing import Any

import pytest
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


@pytest.mark.parametrize(("field", "value"), [("pH", 14.01), ("pH", -0.1), ("temperature", 60)])
def test_out_of_range(field: str, value: float) -> None:
    assert reasons(with_reading(**{field: value}))[f"readings.{field}"].startswith("out of range")


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


def test_batch_fast_path_and_full_pass_agree() -> None:
    validator = Validator(
        {
            "fields": [
                {"name": "ph", "nullable": True, "minimum": 0, "maximum": 14},
                {"name": "n", "type": "integer"},
            ]
        },
        10,
    )
    devices, rows = validator.batch([
        {"deviceId": "a", "readings": {"ph": 7.0, "n": 3.0}},
        {"readings": {"ph": None, "n": 2}},  # null where nullable: the full pass takes it
    ])  # fmt: skip
    assert devices == ["a", None]
    assert rows[0] == [7.0, 3.0] and math.isnan(rows[1][0]) and rows[1][1] == 2
    for bad, field in [
        ({"readings": {"ph": 7.0, "n": 1}, "extra": 1}, "records[0].extra"),
        ({"deviceId": 5, "readings": {"ph": 7.0, "n": 1}}, "records[0].deviceId"),
        ({"readings": {"ph": 7.0, "n": 1.5}}, "records[0].readings.n"),
    ]:
        with pytest.raises(ValidationError) as info:
            validator.batch([bad])
        assert [d["field"] for d in info.value.details] == [field]
