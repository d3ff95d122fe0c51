"""Calendar features from a timestamp column (issue 10 §2, Time): the spec's `[data] timestamp`,
training deriving the features with serving's code, the bundle's schema and golden records, and
the shipped wqi model that uses `hour_of_day`."""

from __future__ import annotations

import json
import math
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from inference import handler
from inference.bundle import loads, sha256_hex
from inference.calendar_features import Calendar
from tests.inference.serving_helpers import local_config
from training import data, model
from training.__main__ import EXIT_DATA, EXIT_OK, main
from training.expectations import feature_ranges
from training.spec import SpecError, load_spec, load_spec_file

ROWS = 480
NUMBER = ["float64", "Float64", "float32", "int64", "Int64"]


def buoy_csv(stamps: list[str] | None = None) -> bytes:
    """Ten days of half-hourly readings on a +10:00 clock, written without an offset as a
    logger writes local time; the label is worse in the afternoon, whatever the reading."""
    rng = np.random.default_rng(3)
    start = pd.Timestamp("2024-03-01 00:00")
    lines = ["When,Oxygen,Poor"]
    for i in range(ROWS):
        when = start + pd.Timedelta(minutes=30 * i)
        oxygen = round(float(rng.uniform(5, 9)), 2)
        poor = int(when.hour >= 12) if rng.random() > 0.1 else int(when.hour < 12)
        stamp = stamps[i] if stamps else f"{when.day}/{when.month}/{when.year} {when:%H:%M}"
        lines.append(f"{stamp},{oxygen},{poor}")
    return ("\n".join(lines) + "\n").encode()


SUITE = {
    "name": "buoy",
    "expectations": [
        {"type": "expect_column_values_to_be_of_type",
         "kwargs": {"column": "When", "type_": "str"}},
        {"type": "expect_column_values_to_be_in_type_list",
         "kwargs": {"column": "Oxygen", "type_list": NUMBER}},
        {"type": "expect_column_values_to_be_between",
         "kwargs": {"column": "Oxygen", "min_value": 0.0, "max_value": 20.0}},
    ],
}  # fmt: skip

SPEC = """
[model]
name = "buoy"
task = "binary"
features = {features}

[data]
path = "{csv}"
sha256 = "{sha256}"
expectations = "{suite}"
{timestamp}

[label]
column = "Poor"

[split]
method = "chronological"
test_size = 0.25

[train.params]
n_estimators = 20
max_depth = 2

[output]
kind = "binary_classification"
label_name = "poor"
threshold = 0.5

[gates]
primary = "roc_auc"
greater_is_better = true
min = {{ roc_auc = 0.5 }}
"""
TIMESTAMP = 'timestamp = { column = "When", format = "%d/%m/%Y %H:%M", utc_offset = "+10:00" }'


def write_spec(tmp_path: Path, raw: bytes | None = None, **overrides: Any) -> Path:
    raw = raw or buoy_csv()
    (tmp_path / "buoy.csv").write_bytes(raw)
    (tmp_path / "buoy.json").write_text(json.dumps(SUITE))
    values = {
        "features": '["Oxygen", "hour_of_day"]', "csv": tmp_path / "buoy.csv",
        "sha256": sha256_hex(raw), "suite": tmp_path / "buoy.json", "timestamp": TIMESTAMP,
    } | overrides  # fmt: skip
    path = tmp_path / "buoy.toml"
    path.write_text(SPEC.format(**values))
    return path


# ---- the spec ---------------------------------------------------------------------------------
def test_calendar_features_are_nullable_and_ranged_by_definition(tmp_path: Path) -> None:
    spec = load_spec_file(write_spec(tmp_path, features='["Oxygen", "hour_of_day", "month"]'))
    assert spec.calendar_features == ("hour_of_day", "month")
    assert spec.nullable == ("hour_of_day", "month")  # no timestamp: answered, as missing
    assert spec.data.timestamp is not None and spec.data.timestamp.utc_offset == "+10:00"
    ranges = feature_ranges(SUITE, list(spec.features))
    assert ranges["hour_of_day"] == {"minimum": 0.0, "maximum": 24.0}
    assert ranges["month"] == {"minimum": 1.0, "maximum": 12.0}


@pytest.mark.parametrize(
    ("timestamp", "message"),
    [
        ("", r"features \['hour_of_day'\] are calendar features of a timestamp: add \[data\] "
             r"timestamp = "),
        ('timestamp = "When"', r"\[data\] timestamp must be a table"),
        ('timestamp = { column = "When", utc_offset = "AEST" }',
         r"\[data\] timestamp utc_offset must be Z or ±HH:MM \(e.g. \+10:00\), not 'AEST'"),
        ('timestamp = { column = "When" }', r"\[data\] timestamp utc_offset is required"),
        ('timestamp = { column = "When", format = "DD/MM/YYYY", utc_offset = "Z" }',
         r'\[data\] timestamp format must be "ISO8601" or a strptime format'),
        ('timestamp = { column = "When", zone = "Z", utc_offset = "Z" }',
         r"\[data\] timestamp has unknown key\(s\) \['zone'\]"),
    ],
)  # fmt: skip
def test_timestamp_mistakes_are_spec_errors(tmp_path: Path, timestamp: str, message: str) -> None:
    with pytest.raises(SpecError, match=message):
        load_spec_file(write_spec(tmp_path, timestamp=timestamp))


# ---- training derives the features with serving's code ----------------------------------------
def loaded(tmp_path: Path, raw: bytes | None = None, **overrides: Any) -> pd.DataFrame:
    spec = load_spec_file(write_spec(tmp_path, raw, **overrides))
    return data.load_frame(spec.data, data.read_bytes(spec.data))


def test_training_derives_them_from_the_timestamps_serving_would_receive(tmp_path: Path) -> None:
    spec = load_spec_file(write_spec(tmp_path, features='["Oxygen", "hour_of_day", "hour_sin"]'))
    frame = data.load_frame(spec.data, data.read_bytes(spec.data))
    stamps = data.iso_timestamps(spec.data, frame)
    assert stamps[:2] == ["2024-03-01T00:00:00+10:00", "2024-03-01T00:30:00+10:00"]
    served = Calendar(["hour_of_day", "hour_sin"], "+10:00").columns(stamps)
    assert np.array_equal(frame[["hour_of_day", "hour_sin"]].to_numpy(), served)
    assert frame["hour_of_day"].iloc[27] == 13.5
    dataset = model.make_dataset(frame, frame["Poor"], spec)
    assert dataset.timestamps == stamps and dataset.X["hour_of_day"].iloc[27] == np.float32(13.5)


@pytest.mark.parametrize("method", ["chronological", "random", "stratified"])
def test_the_held_out_timestamps_follow_their_rows_through_the_split(
    tmp_path: Path, method: str
) -> None:
    spec = load_spec_file(write_spec(tmp_path))
    spec = replace(spec, split=spec.split | {"method": method})
    frame = data.load_frame(spec.data, data.read_bytes(spec.data))
    dataset = model.make_dataset(frame, frame["Poor"], spec)
    parts = model.split(dataset, spec)
    assert parts.timestamps_test is not None and len(parts.timestamps_test) == len(parts.X_test)
    hours = Calendar(["hour_of_day"], "+10:00").columns(parts.timestamps_test)[:, 0]
    assert np.array_equal(parts.X_test["hour_of_day"].to_numpy(), hours.astype(np.float32))
    plain = model.split(replace(dataset, timestamps=None), spec)  # the same rows without them
    assert plain.X_test.index.equals(parts.X_test.index) and plain.timestamps_test is None


def test_iso_timestamps_keep_their_offset_and_empty_cells_are_missing(tmp_path: Path) -> None:
    start = pd.Timestamp("2024-03-01 00:00", tz="UTC")
    stamps = [(start + pd.Timedelta(minutes=30 * i)).isoformat() for i in range(ROWS)]
    stamps[3] = ""
    iso = 'timestamp = { column = "When", format = "ISO8601", utc_offset = "+10:00" }'
    frame = loaded(tmp_path, buoy_csv(stamps), timestamp=iso)
    assert frame["hour_of_day"].iloc[0] == 10.0  # midnight UTC is 10:00 on the +10:00 clock
    assert math.isnan(frame["hour_of_day"].iloc[3])


def test_a_timestamp_that_does_not_match_its_format_is_a_data_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    raw = buoy_csv().replace(b"1/3/2024 13:30", b"2024-03-01 13:30")
    assert main(["--spec", str(write_spec(tmp_path, raw))]) == EXIT_DATA
    err = capsys.readouterr().err
    assert (
        "buoy.csv: [data] timestamp column 'When' holds '2024-03-01 13:30', which is not in "
        "the format '%d/%m/%Y %H:%M'; fix the data or [data] timestamp format in"
    ) in err
    assert "Traceback" not in err


# ---- the bundle and serving -------------------------------------------------------------------
@pytest.mark.integration
def test_a_timestamped_model_trains_bundles_and_serves_its_golden_records(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    code = main(["--spec", str(write_spec(tmp_path)), "--bundle-dir", str(tmp_path / "b")])
    assert code == EXIT_OK, capsys.readouterr().err
    raw = (tmp_path / "b" / "buoy" / "model.joblib").read_bytes()
    bundle = loads(raw)
    assert bundle["format"] == "waterml-bundle/2"
    assert bundle["schema"]["timestamp"] == {"utc_offset": "+10:00"}
    assert bundle["schema"]["fields"][1] == {
        "name": "hour_of_day", "type": "number", "minimum": 0.0, "maximum": 24.0,
        "nullable": True, "source": "timestamp",
    }  # fmt: skip
    records, inputs = bundle["golden"]["records"], bundle["golden"]["inputs"]
    assert len(records) == len(inputs) == 9  # 8 held-out readings, and the first undated
    assert all(r["timestamp"].endswith("+10:00") for r in records[:8])
    assert "timestamp" not in records[8] and math.isnan(inputs[8][1])
    handler.reset()
    try:
        handler.init(local_config(raw, tmp_path / "cache"))  # the golden check at load
        for record, expected in zip(records, bundle["golden"]["answers"], strict=True):
            answer = handler.lambda_handler(record)["prediction"]
            assert without_verdict(answer) == {"deviceId": None, **expected}
        # The model learned the afternoon: the same reading, two hours of one day.
        reading = {"readings": {"Oxygen": 7.0}}
        morning = handler.lambda_handler({**reading, "timestamp": "2024-04-01T08:00:00+10:00"})
        evening = handler.lambda_handler({**reading, "timestamp": "2024-04-01T08:00:00Z"})
        assert morning["prediction"]["poor"] is False and evening["prediction"]["poor"] is True
    finally:
        handler.reset()


def test_the_shipped_wqi_spec_uses_the_hour_of_day() -> None:
    spec = load_spec("wqi")
    assert spec.features == ("pH", "turbidity", "tds", "temperature", "hour_of_day")
    assert spec.calendar_features == ("hour_of_day",)
    stamp = spec.data.timestamp
    assert stamp is not None and (stamp.column, stamp.format, stamp.utc_offset) == (
        "Timestamp", "%Y/%m/%d %H:%M", "+10:00",
    )  # fmt: skip


@pytest.mark.integration
def without_verdict(answer: dict[str, Any]) -> dict[str, Any]:
    """The answer as the golden samples record it: golden rows are chosen inside the domain
    (their verdict is `inside`, and a missing calendar feature is never outside: a reading
    without its timestamp names it in `missing`, since training never saw it missing), and
    the recorded answers carry no verdict."""
    domain = answer["domain"]
    assert domain["inside"] is True and domain["outside"] == domain["unusual"] == (), answer
    assert set(domain["missing"]) <= {"hour_of_day"}, answer
    return {k: v for k, v in answer.items() if k != "domain"}


def test_trained_wqi_answers_the_seed_shape_and_a_timestamp(
    trained: dict[str, Any], tmp_path: Path
) -> None:
    raw = Path(trained["bundles"]["wqi"]).read_bytes()
    golden = loads(raw)["golden"]
    assert golden["records"][0]["timestamp"].endswith("+10:00")
    handler.reset()
    try:
        handler.init(local_config(raw, tmp_path))
        reading = golden["records"][0]["readings"]
        seed = handler.lambda_handler({"deviceId": "buoy-01", "readings": reading})
        # The last golden record is the first reading without its timestamp.
        assert without_verdict(seed["prediction"]) == {
            "deviceId": "buoy-01",
            **golden["answers"][-1],
        }
        stamp = golden["records"][0]["timestamp"]
        dated = handler.lambda_handler({"readings": reading, "timestamp": stamp})
        assert without_verdict(dated["prediction"]) == {"deviceId": None, **golden["answers"][0]}
    finally:
        handler.reset()


# ---- make bench -------------------------------------------------------------------------------
def test_bench_fits_the_seed_baseline_on_the_seeds_four_readings(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`make bench` fits the seed-style baseline on our training rows: only the four readings
    the seed's handler sends, not our calendar features (its handler could not supply them)."""
    from types import SimpleNamespace

    from benchmarks import bench

    def run(spec: Any, out: Path) -> Any:  # the bundle itself is not what this checks
        (out / "wqi").mkdir(parents=True)
        (out / "wqi" / "model.joblib").write_bytes(b"")
        return SimpleNamespace(version="1")

    monkeypatch.setattr(bench, "WORK", tmp_path)
    monkeypatch.setattr("training.pipeline.run", run)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "unused")
    _, info = bench.train_ours()
    X = np.load(tmp_path / "train.npz")["X_train"]
    assert X.shape == (info["train_rows"], len(bench.EVENT["readings"]))


def test_bench_model_only_probe_builds_rows_as_serving_does(tmp_path: Path) -> None:
    """The model-only figure feeds the graph the rows validation builds: with a calendar
    feature that is five columns for four readings."""
    from benchmarks import ours
    from tests.inference import synthetic

    handler.reset()
    try:
        handler.init(local_config(synthetic.dumps(synthetic.wqi_calendar_bundle()), tmp_path))
        records = [{"readings": synthetic.GOOD_READING}] * 300
        assert ours.bench_raw_rows_per_s(records) > 0
    finally:
        handler.reset()
