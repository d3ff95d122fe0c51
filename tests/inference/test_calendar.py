"""Calendar features of a reading's timestamp (issue 10 §2, Time): one implementation for
training and serving (inference/calendar_features.py), the record's optional `timestamp`, and
the golden records that prove at load that serving derives the features as training did."""

from __future__ import annotations

import copy
import json
import math
import random
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import synthetic
from fast_path import agreements
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from serving_helpers import context, local_config
from synthetic import GOOD_READING

from inference import handler
from inference.bundle import BundleError, loads
from inference.calendar_features import FEATURES, Calendar, TimestampError, utc_offset_seconds
from inference.validation import Validator

ALL = list(FEATURES)
MORNING, AFTERNOON = 90.0, 78.0  # the synthetic calendar model's wqi before / from 12:00


@pytest.fixture
def dated(cache_dir: Path) -> handler.Service:
    """The handler serving the synthetic wqi model with hour_of_day (+10:00 clock)."""
    return handler.init(local_config(synthetic.dumps(synthetic.wqi_calendar_bundle()), cache_dir))


def answer(event: dict[str, Any]) -> dict[str, Any]:
    response = handler.lambda_handler(event, context())
    assert response["statusCode"] == 200, response
    return dict(response["prediction"])


def reasons(event: Any) -> dict[str, str]:
    response = handler.lambda_handler(event, context())
    assert response["statusCode"] == 400, response
    assert response["error"]["code"] == "VALIDATION_ERROR"
    return {d["field"]: d["reason"] for d in response["error"]["details"]}


# ---- the derivation ---------------------------------------------------------------------------
def test_features_are_the_wall_clock_of_the_models_offset() -> None:
    calendar = Calendar(ALL, "+10:00")
    friday = [6.5, math.sin(math.pi * 6.5 / 12), math.cos(math.pi * 6.5 / 12), 4.0, 61.0, 3.0]
    # One instant written in three offsets: the model's +10:00 clock reads 06:30 on 1 March.
    for text in ("2024-03-01T06:30:00+10:00", "2024-02-29T20:30:00Z", "2024-02-29T22:00+01:30"):
        assert calendar.row(text) == pytest.approx(friday, abs=1e-12), text
    assert calendar.row("2024-12-31T23:59:59+10:00")[3:] == [1.0, 366.0, 12.0]  # leap year
    assert calendar.row("2023-12-31T14:00:00Z")[3:] == [0.0, 1.0, 1.0]  # Monday 1 January
    assert Calendar(["hour_of_day"], "-03:30").row("2024-03-01T06:30:00.5Z") == [
        pytest.approx(3 + 0.5 / 3600)
    ]


def test_a_reading_gets_the_same_features_alone_in_a_batch_and_in_training() -> None:
    """`row` (one reading) and `columns` (a batch, and training's column) are one set of
    operations on floats or arrays: equal to the bit over a leap year of minutes written in
    offsets from -12:00 to +14:00, and at the ends of the calendar."""
    rng = random.Random(5)
    start = datetime(2024, 1, 1, tzinfo=UTC)
    offsets = [timezone(timedelta(minutes=m)) for m in (-720, -330, 0, 345, 600, 840)]
    texts = [
        (start + timedelta(minutes=m, seconds=rng.random() * 60))
        .astimezone(rng.choice(offsets))
        .isoformat()
        for m in range(0, 366 * 24 * 60, 7)
    ] + ["0001-01-01T00:00:00+10:00", "9999-12-31T23:59:59.999999-12:00", "1969-12-31T23:59Z"]
    calendar = Calendar(ALL, "+10:00")
    columns = calendar.columns(texts)
    alone = np.array([calendar.row(t) for t in texts])
    assert np.array_equal(columns, alone)
    # A batch written in one offset takes a shortcut (one shift for all): the same values.
    nepal = [datetime.fromisoformat(t).astimezone(offsets[3]).isoformat() for t in texts[:-3]]
    in_one_offset = calendar.columns(nepal)
    assert np.array_equal(in_one_offset, [calendar.row(t) for t in nepal])
    assert np.allclose(in_one_offset, columns[:-3], rtol=0, atol=1e-9)  # the same instants
    for text, row in zip(texts[::997], columns[::997], strict=True):  # the datetime fields agree
        local = datetime.fromisoformat(text).astimezone(timezone(timedelta(hours=10)))
        hour = local.hour + local.minute / 60 + (local.second + local.microsecond / 1e6) / 3600
        assert row[0] == pytest.approx(hour, abs=1e-9)
        assert row[3:].tolist() == [local.weekday(), local.timetuple().tm_yday, local.month]


def test_missing_timestamps_are_nan_and_cost_nothing() -> None:
    calendar = Calendar(["hour_of_day", "month"], "Z")
    assert np.isnan(calendar.columns([None] * 3)).all()
    mixed = calendar.columns([None, "2024-03-01T06:30:00Z", None])
    assert np.isnan(mixed[[0, 2]]).all() and mixed[1].tolist() == [6.5, 3.0]


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("2024-03-01T06:30:00", "must carry a UTC offset (Z or ±HH:MM)"),
        ("2024-03-01", "must carry a UTC offset"),
        ("yesterday", "must be an ISO-8601 date and time, e.g. 2024-03-01T06:30:00+10:00"),
        ("2024-03-01T24:00:00Z", "must be an ISO-8601 date and time"),
        ("2024/03/01 06:30+10:00", "must be an ISO-8601 date and time"),
        ("2024-03-01T06:30:00Z" + " " * 60, "must be an ISO-8601 date and time of at most 64"),
        ("", "must be an ISO-8601 date and time"),
        ("2024-03-01T06:30:00\ud800", "must be an ISO-8601 date and time"),
    ],
)
def test_unreadable_timestamps_say_why(text: str, reason: str) -> None:
    calendar = Calendar(["hour_of_day"], "+10:00")
    with pytest.raises(TimestampError) as alone:
        calendar.row(text)
    assert alone.value.reason.startswith(reason)
    assert "isoformat" not in alone.value.reason  # Python's message, which echoes the text
    with pytest.raises(TimestampError) as batch:
        calendar.columns(["2024-03-01T06:30:00Z", None, text])
    assert (batch.value.reason, batch.value.index) == (alone.value.reason, 2)


def test_utc_offsets() -> None:
    assert [utc_offset_seconds(o) for o in ("Z", "+10:00", "-03:30", "+00:00")] == [
        0.0, 36000.0, -12600.0, 0.0
    ]  # fmt: skip
    for bad in ("+10", "10:00", "+24:00", "+10:60", "UTC", 10):
        with pytest.raises(ValueError, match="utc_offset must be Z or ±HH:MM"):
            utc_offset_seconds(bad)  # type: ignore[arg-type]


# ---- the record's timestamp through the handler ------------------------------------------------
@pytest.mark.usefixtures("dated")
def test_a_reading_is_answered_from_the_hour_of_its_timestamp() -> None:
    morning = answer({"timestamp": "2024-03-01T06:30:00+10:00", "readings": GOOD_READING})
    afternoon = answer({"timestamp": "2024-03-01T15:00:00+10:00", "readings": GOOD_READING})
    assert (morning["wqi"], afternoon["wqi"]) == (MORNING, AFTERNOON)
    # 05:00 UTC is 15:00 on the model's clock.
    assert answer({"timestamp": "2024-03-01T05:00:00Z", "readings": GOOD_READING}) == afternoon


@pytest.mark.usefixtures("dated")
def test_a_reading_without_a_timestamp_is_answered_with_the_hour_missing() -> None:
    """The seed's request shape keeps working: no timestamp (or null) is a missing hour, the
    model's learned missing-value branch (here the morning one)."""
    seed = answer({"deviceId": "buoy-01", "readings": GOOD_READING})
    assert seed["wqi"] == MORNING and seed["deviceId"] == "buoy-01"
    null = answer({"timestamp": None, "readings": GOOD_READING})
    assert null == answer({"readings": GOOD_READING})
    events = Path(__file__).resolve().parents[2] / "inference" / "events"
    direct = json.loads((events / "direct.json").read_text())
    assert handler.lambda_handler(direct, context())["statusCode"] == 200


@pytest.mark.usefixtures("dated")
@pytest.mark.parametrize(
    ("stamp", "reason"),
    [
        (1709238600, "must be a string (ISO-8601 with a UTC offset, e.g. 2024-03-01T06:30:00+10:00)"
                     ", not number"),
        (True, "must be a string"),
        ({"iso": "2024-03-01T06:30:00Z"}, "must be a string"),
        ("2024-03-01T06:30:00", "must carry a UTC offset"),
        ("01/03/2024 06:30", "must be an ISO-8601 date and time"),
    ],
)  # fmt: skip
def test_a_bad_timestamp_is_a_400_naming_timestamp(stamp: Any, reason: str) -> None:
    got = reasons({"timestamp": stamp, "readings": GOOD_READING})
    assert list(got) == ["timestamp"] and got["timestamp"].startswith(reason)
    good = {"timestamp": "2024-03-01T06:30:00Z", "readings": GOOD_READING}
    bad = {"timestamp": stamp, "readings": {**GOOD_READING, "pH": 99}}
    batch = reasons({"records": [good, bad]})
    assert list(batch) == ["records[1].timestamp", "records[1].readings.pH"]
    assert batch["records[1].timestamp"] == got["timestamp"]


@pytest.mark.usefixtures("dated")
def test_timestamp_belongs_beside_the_readings() -> None:
    inside = {"readings": {**GOOD_READING, "timestamp": "2024-03-01T06:30:00Z"}}
    assert reasons(inside) == {"readings.timestamp": "unknown field"}
    assert reasons({"readings": {**GOOD_READING, "hour_of_day": 6.5}}) == {
        "readings.hour_of_day": "unknown field"  # derived, never read
    }


@pytest.mark.usefixtures("dated")
def test_over_http_too() -> None:
    body = json.dumps({"timestamp": "2024-03-01T15:00:00+10:00", "readings": GOOD_READING})
    event = {"version": "2.0", "requestContext": {"domainName": "x"}, "body": body}
    response = handler.lambda_handler(event, context())
    assert response["statusCode"] == 200
    assert json.loads(response["body"])["prediction"]["wqi"] == AFTERNOON


def test_batch_answers_each_reading_as_alone(dated: handler.Service) -> None:
    rng = random.Random(8)
    start = datetime(2024, 3, 1, tzinfo=timezone(timedelta(hours=10)))

    def stamp() -> Any:
        when = start + timedelta(minutes=rng.randrange(0, 48 * 60))
        return rng.choice([None, when.isoformat(), when.astimezone(UTC).isoformat()])

    records = [{"deviceId": f"d{i}", "readings": GOOD_READING} for i in range(700)]
    for record in records[::2]:
        record["timestamp"] = stamp()
    dated.predictor.blocks.threads = 2  # row blocks on threads, as on a 2-vCPU function
    batch = handler.lambda_handler({"records": records}, context())
    assert batch["statusCode"] == 200
    alone = [answer(r) for r in records]
    assert batch["predictions"] == alone
    assert {a["wqi"] for a in alone} == {MORNING, AFTERNOON}


SCHEMA = {
    "fields": [
        {"name": "hour_of_day", "source": "timestamp", "nullable": True},
        {"name": "ph", "minimum": 0, "maximum": 14},
        {"name": "day_of_week", "source": "timestamp", "nullable": True},
        {"name": "n", "type": "integer", "minimum": -5, "nullable": True},
    ],
    "timestamp": {"utc_offset": "+10:00"},
}
STAMPS = ["2024-03-01T06:30:00+10:00", "2024-03-01T05:00:00Z", None, "2024-03-01T06:30:00",
          "x", 5, ["2024-03-01T06:30:00Z"], ...]  # fmt: skip  # ...: no timestamp key


def test_calendar_features_may_sit_anywhere_in_the_schema() -> None:
    validator = Validator(SCHEMA, 10)
    record = {"timestamp": "2024-03-01T06:30:00+10:00", "readings": {"ph": 7.0, "n": 2}}
    assert validator.single(record)[1] == [6.5, 7.0, 4.0, 2]
    _, matrix = validator.batch([record, {"readings": {"ph": 8.0, "n": 1}}])
    assert matrix[0].tolist() == [6.5, 7.0, 4.0, 2.0]
    assert np.isnan(matrix[1, [0, 2]]).all() and matrix[1, [1, 3]].tolist() == [8.0, 1.0]


def test_batch_fast_path_accepts_only_what_the_full_pass_accepts_with_timestamps() -> None:
    rng = random.Random(12)

    def record() -> dict[str, Any]:
        made: dict[str, Any] = {"readings": {"ph": rng.choice([7.0, 99, None]), "n": 1}}
        stamp = rng.choice(STAMPS)
        if stamp is not ...:
            made["timestamp"] = stamp
        if rng.random() < 0.05:
            made["deviceId"] = "d"
        return made

    batches = ([record() for _ in range(rng.randint(1, 3))] for _ in range(3000))
    assert agreements(Validator(SCHEMA, 10), batches) > 100


def test_a_model_without_calendar_features_keeps_the_seed_record_shape(
    served: handler.Service,
) -> None:
    assert served.validator.calendar is None
    event = {"timestamp": "2024-03-01T06:30:00Z", "readings": GOOD_READING}
    assert reasons(event) == {"timestamp": "unknown field"}


# ---- golden records: serving derives the features as training did -----------------------------
def refused(bundle: dict[str, Any], cache_dir: Path) -> str:
    with pytest.raises(handler.InitError) as info:
        handler.init(local_config(synthetic.dumps(bundle), cache_dir))
    return str(info.value)


def test_golden_records_prove_serving_derives_the_features_as_training_did(
    cache_dir: Path,
) -> None:
    """Training recorded 06:30 for this timestamp: serving code that derived another hour
    (here: the record says 07:30) must not serve."""
    bundle = synthetic.wqi_calendar_bundle()
    bundle["golden"]["records"][0] = {"timestamp": "2024-03-01T07:30:00+10:00",
                                      "readings": GOOD_READING}  # fmt: skip
    message = refused(bundle, cache_dir)
    assert "GoldenMismatch" in message
    assert "golden record 0 alone gives hour_of_day = 7.5, training recorded 6.5" in message


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda b: b["schema"]["fields"][4].update(name="moon_phase"),
         "unknown calendar feature(s) ['moon_phase']"),
        (lambda b: b["schema"].pop("timestamp"), "calendar features but no timestamp utc_offset"),
        (lambda b: b["schema"]["fields"][4].update(source="gps"), "a source this code does not"),
        (lambda b: b["golden"]["records"].pop(), "golden records 2 records for 3 inputs"),
        (lambda b: b["golden"]["records"][2].update(timestamp="noon"),
         "golden records fail validation"),
    ],
)  # fmt: skip
def test_a_calendar_bundle_this_code_cannot_serve_is_refused_at_load(
    cache_dir: Path, change: Any, message: str
) -> None:
    bundle = copy.deepcopy(synthetic.wqi_calendar_bundle())
    change(bundle)
    assert message in refused(bundle, cache_dir)


def test_bundle_formats() -> None:
    assert loads(synthetic.dumps(synthetic.wqi_calendar_bundle()))["format"] == "waterml-bundle/2"
    with pytest.raises(BundleError, match="'waterml-bundle/3' is not one of"):
        loads(synthetic.dumps(synthetic.wqi_bundle(format="waterml-bundle/3")))


# ---- fuzz ---------------------------------------------------------------------------------------
OFFSETS = st.integers(-23 * 60 - 59, 23 * 60 + 59).map(lambda m: timezone(timedelta(minutes=m)))
STAMP_VALUES = st.one_of(
    st.datetimes(timezones=OFFSETS).map(lambda d: d.isoformat()),
    st.datetimes().map(lambda d: d.isoformat()),  # no offset
    st.text(max_size=80),
    st.from_regex(r"\A\d{4}-\d\d-\d\dT\d\d:\d\d(:\d\d(\.\d{1,6})?)?([+-]\d\d:\d\d|Z)?\Z"),
    st.none(), st.integers(), st.floats(allow_nan=True), st.booleans(),
    st.lists(st.text(max_size=5), max_size=2), st.dictionaries(st.text(max_size=3), st.integers()),
)  # fmt: skip


def readable(stamp: Any) -> bool:
    """The policy, stated independently: absent, or ISO-8601 text (at most 64 characters)
    naming its UTC offset."""
    if stamp is None:
        return True
    if type(stamp) is not str or len(stamp) > 64:
        return False
    try:
        return datetime.fromisoformat(stamp).tzinfo is not None
    except ValueError:
        return False


@pytest.mark.usefixtures("dated")
@settings(max_examples=400, derandomize=True, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])  # fmt: skip
@given(stamps=st.lists(STAMP_VALUES, min_size=1, max_size=4))
def test_any_timestamp_value_is_answered_or_named(stamps: list[Any]) -> None:
    """Whatever a caller puts in `timestamp`: a 200, or a 400 whose details name exactly the
    timestamps that are not ISO-8601 with an offset; alone and in a batch."""
    records = [{"timestamp": s, "readings": GOOD_READING} for s in stamps]
    bad = set()
    for i, record in enumerate(records):
        response = handler.lambda_handler(record, context())
        if readable(record["timestamp"]):
            assert response["statusCode"] == 200, response
            assert response["prediction"]["wqi"] in (MORNING, AFTERNOON)
        else:
            assert response["statusCode"] == 400, response
            assert [d["field"] for d in response["error"]["details"]] == ["timestamp"]
            bad.add(f"records[{i}].timestamp")
    response = handler.lambda_handler({"records": records}, context())
    fields = {d["field"] for d in response.get("error", {}).get("details", [])}
    assert fields == bad and response["statusCode"] == (400 if bad else 200)
