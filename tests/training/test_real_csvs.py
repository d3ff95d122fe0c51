"""Specs for real CSVs (issue 10 §2): a cp1252 file with `NAN` markers and shifted older rows,
derivations that call functions, and `[output]` checked when the spec loads."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from inference.bundle import sha256_hex
from training import data, expressions, model
from training.__main__ import EXIT_DATA, EXIT_OK, EXIT_USAGE, EXIT_VALIDATION, main
from training.expectations import feature_ranges
from training.spec import SpecError, load_spec, load_spec_file

ROWS = 400
SHIFTED_PH = (430.0, 216.0, 352.0)  # the older rows carry another column's value in ph
REPO = Path(__file__).resolve().parents[2]
NUMBER = ["float64", "Float64", "float32", "int64", "Int64"]


def sensor_csv() -> bytes:
    """A lab export as a spreadsheet writes it: cp1252 (é, °, an en dash), `NAN` for a missing
    reading, and its three oldest rows shifted by one column."""
    rng = np.random.default_rng(7)
    ph = rng.uniform(5.0, 9.5, ROWS).round(2)
    turbidity = rng.uniform(0.1, 12.0, ROWS).round(2)
    conductivity = rng.uniform(50.0, 2000.0, ROWS).round(1)
    temperature = rng.uniform(5.0, 30.0, ROWS).round(1)
    potable = ((ph > 6.5) & (ph < 8.5) & (turbidity < 5.0)).astype(int)
    lines = ["Site,pH,Turbidité,Conductivity (µS/cm),Température (°C),Potable"]
    for i in range(ROWS):
        cells = [f"Brisbane \u2013 {'North' if i % 2 else 'South'}", f"{ph[i]}", f"{turbidity[i]}",
                 f"{conductivity[i]}", f"{temperature[i]}", f"{potable[i]}"]  # fmt: skip
        if i < len(SHIFTED_PH):
            cells[1] = f"{SHIFTED_PH[i]}"
        if i % 37 == 5:
            cells[1] = "NAN"
        if i % 53 == 7:
            cells[2] = "NAN"
        lines.append(",".join(cells))
    return ("\r\n".join(lines) + "\r\n").encode("cp1252")


def suite(ph_mostly: float | None = None) -> dict[str, Any]:
    def column(name: str, lo: float, hi: float, nulls: float = 1.0) -> list[dict[str, Any]]:
        between: dict[str, Any] = {"column": name, "min_value": lo, "max_value": hi}
        if name == "ph" and ph_mostly is not None:
            between["mostly"] = ph_mostly
        return [
            {"type": "expect_column_to_exist", "kwargs": {"column": name}},
            {"type": "expect_column_values_to_be_in_type_list",
             "kwargs": {"column": name, "type_list": NUMBER}},
            {"type": "expect_column_values_to_not_be_null",
             "kwargs": {"column": name, "mostly": nulls}},
            {"type": "expect_column_values_to_be_between", "kwargs": between},
        ]  # fmt: skip

    return {
        "name": "sensor",
        "expectations": [
            {"type": "expect_table_row_count_to_be_between", "kwargs": {"min_value": 100}},
            {"type": "expect_column_values_to_be_of_type",
             "kwargs": {"column": "site", "type_": "str"}},
            {"type": "expect_column_values_to_not_be_null", "kwargs": {"column": "site"}},
            *column("ph", 0.0, 14.0, nulls=0.9),
            *column("turbidity", 0.0, 100.0, nulls=0.9),
            *column("conductivity", 0.0, 10000.0),
            *column("log_conductivity", 0.0, 4.0),
            *column("temperature", -2.0, 45.0),
            {"type": "expect_column_values_to_be_in_set",
             "kwargs": {"column": "potable", "value_set": [0, 1]}},
        ],
    }  # fmt: skip


SPEC = """
[model]
name = "sensor"
task = "binary"
features = ["ph", "turbidity", "log_conductivity", "temperature"]
nullable_features = ["ph", "turbidity"]

[data]
path = "{csv}"
sha256 = "{sha256}"
encoding = "{encoding}"
na_values = {na_values}
expectations = "{suite}"
{filter}

[data.rename]
"Site" = "site"
"pH" = "ph"
"Turbidité" = "turbidity"
"Conductivity (µS/cm)" = "conductivity"
"Température (°C)" = "temperature"
"Potable" = "potable"

[[data.derive]]
column = "log_conductivity"
expression = "{derive}"

[label]
column = "potable"

[split]
method = "stratified"
test_size = 0.25
seed = 1

[train.params]
n_estimators = 20
max_depth = 3

[output]
kind = "binary_classification"
label_name = "potable"
{threshold}

[gates]
primary = "roc_auc"
greater_is_better = true
min = {{ roc_auc = 0.6, f1 = 0.3 }}
"""


def write_spec(tmp_path: Path, **overrides: Any) -> Path:
    raw = sensor_csv()
    csv = tmp_path / "sensor.csv"
    csv.write_bytes(raw)
    suite_path = tmp_path / "sensor.json"
    suite_path.write_text(json.dumps(overrides.pop("suite", suite())))
    values = {
        "csv": csv, "sha256": sha256_hex(raw), "encoding": "cp1252",
        "na_values": '["", "NAN"]', "suite": suite_path, "filter": 'filter = "not ph > 14"',
        "derive": "log10(conductivity)", "threshold": "threshold = 0.5",
    } | overrides  # fmt: skip
    path = tmp_path / "sensor.toml"
    path.write_text(SPEC.format(**values), encoding="utf-8")
    return path


@pytest.fixture
def private_store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    return uri


def loaded(tmp_path: Path, **overrides: Any) -> data.Loaded:
    spec = load_spec_file(write_spec(tmp_path, **overrides))
    return data.load(spec.data, data.read_bytes(spec.data))


# -- reading the file -------------------------------------------------------------------------


def test_non_utf8_file_names_the_spec_key_that_fixes_it(tmp_path: Path) -> None:
    spec = load_spec_file(write_spec(tmp_path, encoding="utf-8"))
    with pytest.raises(data.DataError) as caught:
        data.load(spec.data, data.read_bytes(spec.data))
    message = str(caught.value)
    assert re.search(r"sensor\.csv is not UTF-8 \(byte 0x[0-9a-f]{2} at offset \d+\)", message)
    assert f'set [data] encoding = "cp1252" (or the file\'s encoding) in {spec.source}' in message
    assert "\n" not in message


def test_unknown_encoding_is_a_spec_error(tmp_path: Path) -> None:
    with pytest.raises(SpecError, match=r"encoding 'cp-1252x' is not an encoding Python knows"):
        load_spec_file(write_spec(tmp_path, encoding="cp-1252x"))


def test_na_values_replace_pandas_defaults(tmp_path: Path) -> None:
    """`NAN` is not one of pandas' default markers: only the spec's list counts."""
    frame = loaded(tmp_path).frame
    assert frame["ph"].dtype == "float64" and frame["ph"].isna().sum() == 11
    only_empty = loaded(tmp_path, na_values='[""]', filter="").frame
    assert not pd.api.types.is_numeric_dtype(only_empty["ph"])  # "NAN" stays text


# -- the row filter ---------------------------------------------------------------------------


def test_filter_removes_the_shifted_rows_and_keeps_the_gaps(tmp_path: Path) -> None:
    result = loaded(tmp_path)
    assert (result.rows_read, result.rows_filtered) == (ROWS, 3)
    assert len(result.frame) == ROWS - 3
    assert result.frame["ph"].max() <= 14 and result.frame["ph"].isna().sum() == 11
    assert data.load_frame(load_spec_file(tmp_path / "sensor.toml").data,
                           (tmp_path / "sensor.csv").read_bytes()).equals(result.frame)  # fmt: skip


@pytest.mark.parametrize(
    ("expression", "message"),
    [
        ("ph <=", r"\[data\] filter 'ph <=' cannot be evaluated: .*syntax"),
        ("colour > 3", r"\[data\] filter 'colour > 3' .*'colour'"),
        ("ph + 1", r"\[data\] filter 'ph \+ 1' .*true or false for each row"),
        # Python syntax pandas cannot evaluate: named when the spec loads, with what it takes
        # (it was "'PandasExprVisitor' object has no attribute 'visit_RShift'").
        (
            "ph >> 14",
            r"\[data\] filter 'ph >> 14' uses '>>', which a derivation or filter "
            r"cannot: it may use < <= > >= == != in, .* and the functions abs, ",
        ),
        ("ph is None", r"uses 'is', which a derivation or filter cannot"),
        ("ph = 7", r"cannot be evaluated: invalid syntax \(to compare, write ==\)"),
        (
            "colour > 3",
            r"filter 'colour > 3' names 'colour', which neither sensor\.csv nor its suite has: "
            r"fix \[data\] filter in .*sensor\.toml",
        ),
    ],
)
def test_a_bad_filter_is_a_spec_error(tmp_path: Path, expression: str, message: str) -> None:
    with pytest.raises(SpecError, match=message) as caught:
        loaded(tmp_path, filter=f'filter = "{expression}"')
    assert "\n" not in str(caught.value)


def test_a_filter_on_a_column_read_as_text_names_the_missing_marker(tmp_path: Path) -> None:
    """`NAN` not listed in na_values: ph is text, and the filter's comparison fails on it."""
    with pytest.raises(SpecError) as caught:
        loaded(tmp_path, na_values='[""]')
    message = str(caught.value)
    assert message.startswith("[data] filter 'not ph > 14' cannot be evaluated: ")
    assert ("column 'ph' holds numbers and text that is not a number: 'NAN' (11 cells). If that "
            "marks a missing value, add it to [data] na_values") in message  # fmt: skip


def test_rows_outside_the_serving_ranges_are_never_fitted() -> None:
    """A suite may let a few out-of-range values through (`mostly`); serving would reject
    those rows, so training drops and counts them instead of learning from them."""
    spec = load_spec("potability")
    frame = pd.read_csv(spec.data.path)
    frame.loc[[0, 1, 2], "ph"] = list(SHIFTED_PH)
    frame.loc[3, "Hardness"] = -1.0
    frame.loc[4, "Solids"] = float("inf")
    ranges = feature_ranges(json.loads(spec.data.expectations.read_text()), list(spec.features))
    dataset = model.make_dataset(frame, frame["Potability"], spec, ranges)
    assert dataset.dropped["outside_serving_range"] == 5
    assert len(dataset.X) == len(frame) - 5
    for name, bounds in ranges.items():
        values = dataset.X[name].dropna()
        assert values.between(bounds["minimum"], bounds["maximum"]).all(), name


def test_make_dataset_reads_the_ranges_from_the_suite_when_not_given() -> None:
    spec = load_spec("potability")
    frame = pd.read_csv(spec.data.path)
    frame.loc[0, "ph"] = 430.0
    assert (
        model.make_dataset(frame, frame["Potability"], spec).dropped["outside_serving_range"] == 1
    )


@pytest.mark.integration
def test_filtered_file_trains_and_reports_what_was_removed(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], private_store: str
) -> None:
    code = main(["--spec", str(write_spec(tmp_path)), "--json"])
    out, err = capsys.readouterr()
    assert code == EXIT_OK, err
    load_line = next(line for line in err.splitlines() if "] load" in line)
    assert "397 rows x 7 columns (filter removed 3 of 400 rows)" in load_line
    assert 'NA markers "", "NAN"' in load_line
    assert "0 outside serving range" in err

    result = json.loads(out)
    from mlflow import MlflowClient

    logged = MlflowClient(tracking_uri=private_store).get_run(result["run_id"]).data.metrics
    assert logged["rows_read"] == 400 and logged["rows_filtered"] == 3
    assert logged["rows_outside_serving_range"] == 0
    assert logged["rows_train"] + logged["rows_held_out"] == 397
    assert result["metrics"]["rows_filtered"] == 3


@pytest.mark.integration
def test_without_a_filter_a_lenient_suite_lets_training_drop_the_shifted_rows(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], private_store: str
) -> None:
    spec_path = write_spec(tmp_path, filter="", suite=suite(ph_mostly=0.99))
    code = main(["--spec", str(spec_path), "--json"])
    out, err = capsys.readouterr()
    assert code == EXIT_OK, err
    assert "3 outside serving range" in err and "filter removed" not in err
    assert json.loads(out)["metrics"]["rows_outside_serving_range"] == 3


@pytest.mark.integration
def test_a_missing_na_marker_is_named_as_the_cause_before_the_failures(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], private_store: str
) -> None:
    """`NAN` not listed: ph and turbidity are read as text. The suite's failures follow from
    that; the message says so first, and never calls a present column missing."""
    code = main(["--spec", str(write_spec(tmp_path, na_values='[""]', filter=""))])
    err = capsys.readouterr().err
    assert code == EXIT_VALIDATION
    lines = err[err.index("error: ") :].splitlines()
    assert lines[0] == "error: sensor.csv fails 4 expectation(s):"
    assert lines[1] == (
        "  cause: column 'ph' holds numbers and text that is not a number: 'NAN' (11 cells). If "
        "that marks a missing value, add it to [data] na_values in the spec (the list replaces "
        "pandas' defaults, so only the cells it names are missing)"
    )
    assert lines[2].startswith("  cause: column 'turbidity' holds numbers and text")
    assert "expect_column_values_to_be_in_type_list" in lines[3] and "observed 'str'" in lines[3]
    assert lines[5].endswith("not evaluated: the column holds text (see the cause above)")
    assert "column is missing" not in err
    assert lines[-1] == ("training of sensor stopped: fix the data, its suite (sensor.json) or "
                         "sensor.toml")  # fmt: skip


@pytest.mark.integration
def test_without_a_filter_the_strict_suite_names_the_shifted_rows(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], private_store: str
) -> None:
    code = main(["--spec", str(write_spec(tmp_path, filter=""))])
    err = capsys.readouterr().err
    assert code == EXIT_VALIDATION
    assert "column 'ph': expect_column_values_to_be_between" in err and "430.0" in err


def test_a_feature_range_needs_both_bounds() -> None:
    """Serving enforces [minimum, maximum]: a one-sided range is a spec error, not a KeyError."""
    between = {"type": "expect_column_values_to_be_between",
               "kwargs": {"column": "ph", "min_value": 0.0}}  # fmt: skip
    with pytest.raises(SpecError, match=r"'ph'.*both min_value and max_value"):
        feature_ranges({"expectations": [between]}, ["ph"])


@pytest.mark.integration
def test_text_column_guidance_holds(tmp_path: Path) -> None:
    """data/README.md: a text column is checked with ..._to_be_of_type "str"; the type-list
    expectation fails on pandas' str dtype whatever the list (if that changes, so does the
    README)."""
    from training.expectations import validate

    frame = loaded(tmp_path).frame
    checks = [("expect_column_values_to_be_of_type", {"type_": "str"})] + [
        ("expect_column_values_to_be_in_type_list", {"type_list": names})
        for names in (["str"], ["object"], ["string"])
    ]
    results = validate(frame, {"name": "t", "expectations": [
        {"type": kind, "kwargs": {"column": "site"} | kwargs} for kind, kwargs in checks
    ]}).result["results"]  # fmt: skip
    assert [r["success"] for r in results] == [True, False, False, False]


# -- derivations ------------------------------------------------------------------------------


def test_derivation_may_call_a_function(tmp_path: Path) -> None:
    frame = loaded(tmp_path).frame
    assert np.allclose(frame["log_conductivity"], np.log10(frame["conductivity"]))


def test_every_documented_function_evaluates() -> None:
    frame = pd.DataFrame({"x": [0.25, 0.5, 0.75], "y": [1.0, 2.0, 3.0]})
    for name in expressions.DERIVE_FUNCTIONS:
        call = f"{name}(x, y)" if name == "arctan2" else f"{name}(x)"
        with np.errstate(invalid="ignore"):  # arccosh(0.25) is NaN: a value, not an error
            assert len(frame.eval(call, engine=expressions.EVAL_ENGINE)) == 3, name


def test_numbers_in_a_derivation_are_not_column_names(tmp_path: Path) -> None:
    frame = loaded(tmp_path, derive="conductivity * 1e-3").frame
    assert np.allclose(frame["log_conductivity"], frame["conductivity"] / 1000)


def test_a_derivation_reading_a_misspelled_column_names_it_and_its_fix(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Stopped as the data loads; it was skipped, and the suite failed on the derived column."""
    code = main(["--spec", str(write_spec(tmp_path, derive="log10(conductivty)"))])
    err = capsys.readouterr().err
    assert code == EXIT_USAGE
    assert ("error: sensor: derivation 'log_conductivity' = 'log10(conductivty)' names "
            "'conductivty' (did you mean 'conductivity'?), which neither sensor.csv nor its suite "
            "has: fix "
            f"[[data.derive]] in {tmp_path / 'sensor.toml'}, or add a [data.rename] or "
            "[[data.derive]] for it (columns: site, ph, turbidity, conductivity, temperature, "
            "potable)") in err  # fmt: skip
    assert "validate" not in err


def test_a_misspelled_feature_is_reported_before_validation(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    path = write_spec(tmp_path)
    path.write_text(path.read_text().replace('"temperature"]', '"temprature"]'))

    def validated_anyway(*args: Any) -> None:
        raise AssertionError("the suite ran before the feature names were checked")

    monkeypatch.setattr("training.expectations.validate", validated_anyway)
    assert main(["--spec", str(path)]) == EXIT_USAGE
    err = capsys.readouterr().err
    assert (
        "error: sensor: [model] features names 'temprature' (did you mean "
        "'temperature'?), which neither sensor.csv nor its suite has: fix [model] features in"
    ) in err
    assert "Traceback" not in err


@pytest.mark.parametrize(
    ("expression", "message"),
    [
        ("cbrt(conductivity)", r"derivation 'log_conductivity' = 'cbrt\(conductivity\)': "
                               r"unknown function 'cbrt'; a derivation or filter may call abs, "),
        ("conductivity *", r"derivation 'log_conductivity' = 'conductivity \*' cannot be "
                           r"evaluated: .*syntax"),
    ],
)  # fmt: skip
def test_a_derivation_that_cannot_be_evaluated_is_a_one_line_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], expression: str, message: str
) -> None:
    code = main(["--spec", str(write_spec(tmp_path, derive=expression))])
    err = capsys.readouterr().err
    assert code == EXIT_USAGE
    assert re.search(message, err), err
    assert len(err.strip().splitlines()) <= 2 and "Traceback" not in err  # the stage + one line


# -- [output] and the gates -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("threshold", "message"),
    [
        ("", r"\[output\] threshold is required for binary_classification"),
        ("threshold = 1.5", r"\[output\] threshold must be a number between 0 and 1"),
        ('threshold = "0.5"', r"\[output\] threshold must be a number between 0 and 1"),
    ],
)
def test_output_is_checked_when_the_spec_loads(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], threshold: str, message: str
) -> None:
    with pytest.raises(SpecError, match=message):
        load_spec_file(write_spec(tmp_path, threshold=threshold))
    assert main(["--spec", str(tmp_path / "sensor.toml")]) == EXIT_USAGE
    assert "Traceback" not in capsys.readouterr().err


@pytest.mark.parametrize(
    ("old", "new", "message"),
    [
        ('value_name = "wqi"', "", r"\[output\] value_name is required"),
        ("clip = [0.0, 100.0]", "clip = [100.0, 0.0]", r"\[output\] clip must be \[low, high\]"),
        ('{ label = "Poor", min = 25.0 },', '{ label = "Poor" },', r"\[output\] bands\[3\]"),
    ],
)
def test_banded_output_is_checked_when_the_spec_loads(
    tmp_path: Path, old: str, new: str, message: str
) -> None:
    text = load_spec("wqi").source.read_text()
    assert old in text
    bad = tmp_path / "wqi.toml"
    bad.write_text(text.replace(old, new))
    with pytest.raises(SpecError, match=message):
        load_spec_file(bad)


def test_potability_gates_reject_a_model_that_never_predicts_potable() -> None:
    """ROC AUC ignores the threshold: a model whose probabilities never reach it (F1 0) keeps
    its AUC, so only a threshold-dependent gate (f1) stops it."""
    spec = load_spec("potability")
    frame = pd.read_csv(spec.data.path)
    parts = model.split(model.make_dataset(frame, frame["Potability"], spec), spec)
    fitted = model.fit(parts, spec)
    from training.evaluate import evaluate

    never = replace(spec, output=spec.output | {"threshold": 0.99})
    metrics = evaluate(fitted, parts, never).metrics
    assert metrics["f1"] == 0.0 and metrics["roc_auc"] > 0.6  # AUC alone would pass it
    assert spec.gates.failures(metrics) == [
        f"f1=0.0 is below the minimum {spec.gates.minimum['f1']}"
    ]
    assert spec.gates.failures(evaluate(fitted, parts, spec).metrics) == []


def test_data_error_exit_code_for_a_non_utf8_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["--spec", str(write_spec(tmp_path, encoding="utf-8"))]) == EXIT_DATA
    assert 'set [data] encoding = "cp1252"' in capsys.readouterr().err


def test_non_utf8_message_names_a_shipped_spec_by_its_repo_path() -> None:
    spec = load_spec("potability")
    raw = b"ph,Hardness\n7.1,h\x96rte\n"
    with pytest.raises(
        data.DataError, match=r'encoding = "cp1252" .* in training/specs/potability\.toml$'
    ):
        data.load(spec.data, raw)


# -- what a training registers ----------------------------------------------------------------


@pytest.mark.integration
def test_a_dry_run_logs_the_run_and_registers_nothing_then_a_retrain_says_reused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], private_store: str
) -> None:
    from mlflow import MlflowClient

    from training.register import DRY_RUN

    client = MlflowClient(tracking_uri=private_store)
    spec = str(write_spec(tmp_path))
    assert main(["--spec", spec, "--dry-run"]) == EXIT_OK
    out, err = capsys.readouterr()
    (run_id,) = re.findall(r"^sensor: dry run logged as run ([0-9a-f]{32}), no version "
                           r"registered, sha256 [0-9a-f]{64} \(", out, re.M)  # fmt: skip
    assert "no version registered (dry run)" in err  # the stage line
    run = client.get_run(run_id)
    assert run.data.tags[DRY_RUN] == "true" and run.info.run_name.startswith("sensor dry run · ")
    assert {"roc_auc", "baseline_roc_auc", "roc_auc_lift", "rows_train"} <= set(run.data.metrics)
    assert {a.path for a in client.list_artifacts(run_id)} == {"plots", "validation"}
    assert client.search_model_versions("name = 'sensor'") == []  # nothing to promote

    assert main(["--spec", spec]) == EXIT_OK
    first = capsys.readouterr().out
    assert re.match(r"sensor: registered version 1, sha256 [0-9a-f]{64} ", first), first
    assert main(["--spec", spec]) == EXIT_OK  # the same bytes again
    again = capsys.readouterr().out
    assert again.startswith("sensor: version 1 reused (the same bytes: nothing logged), sha256 ")
    assert len(client.search_model_versions("name = 'sensor'")) == 1


def test_make_train_passes_the_dry_run_on() -> None:
    make = [shutil.which("make") or "make", "-n", "-o", ".venv/.synced"]
    planned = subprocess.run([*make, "train", "MODEL=wqi", "DRY_RUN=1"], cwd=REPO,
                             capture_output=True, text=True, check=True).stdout  # fmt: skip
    assert re.search(r"-m training wqi --dry-run$", planned, re.M), planned
    plain = subprocess.run([*make, "train", "MODEL=wqi"], cwd=REPO, capture_output=True,
                           text=True, check=True).stdout  # fmt: skip
    assert "--dry-run" not in plain
