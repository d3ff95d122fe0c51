"""Broken copies of the real data stop training with a clear message and a non-zero exit."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pandas as pd
import pytest

from training.__main__ import EXIT_DATA, EXIT_VALIDATION, main
from training.spec import load_spec

pytestmark = pytest.mark.integration


@pytest.fixture(autouse=True)
def private_store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """Failed validations are logged to MLflow: keep them out of the checkout's store."""
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    return uri


def broken_spec(tmp_path: Path, model: str, data: bytes) -> Path:
    """A copy of the model's spec that points at ``data`` (and pins its digest)."""
    spec = load_spec(model)
    csv = tmp_path / spec.data.path.name
    csv.write_bytes(data)
    text = spec.source.read_text()
    text = text.replace(f'path = "{spec.data.path.name}"', f'path = "{csv}"')
    text = text.replace(spec.data.sha256, hashlib.sha256(data).hexdigest())
    text = text.replace(f'expectations = "{spec.data.expectations.name}"',
                        f'expectations = "{spec.data.expectations}"')  # fmt: skip
    out = tmp_path / f"{model}.toml"
    out.write_text(text)
    return out


def potability_frame() -> pd.DataFrame:
    return pd.read_csv(load_spec("potability").data.path)


def run(tmp_path: Path, frame_or_bytes: pd.DataFrame | bytes, capsys: pytest.CaptureFixture[str],
        model: str = "potability") -> tuple[int, str]:  # fmt: skip
    data = (
        frame_or_bytes
        if isinstance(frame_or_bytes, bytes)
        else frame_or_bytes.to_csv(index=False).encode()
    )
    code = main(["--spec", str(broken_spec(tmp_path, model, data))])
    return code, capsys.readouterr().err


def test_missing_column(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, err = run(tmp_path, potability_frame().drop(columns=["Sulfate"]), capsys)
    assert code == EXIT_VALIDATION
    assert "column 'Sulfate': expect_column_to_exist" in err
    assert "training of potability stopped" in err and "Traceback" not in err


def test_ph_out_of_range_is_counted_and_logged(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], private_store: str
) -> None:
    frame = potability_frame()
    frame.loc[[3, 10, 20], "ph"] = 15.0
    code, err = run(tmp_path, frame, capsys)
    assert code == EXIT_VALIDATION
    assert "column 'ph': expect_column_values_to_be_between" in err
    assert "3 of 3276 rows unexpected" in err and "15.0" in err

    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=private_store)
    experiment = client.get_experiment_by_name("potability")
    runs = client.search_runs([experiment.experiment_id], "tags.validation_failed = 'true'")
    assert len(runs) == 1
    result = client.download_artifacts(runs[0].info.run_id, "validation/result.json")
    assert '"success": false' in Path(result).read_text()
    assert client.search_registered_models() == []  # nothing was registered


def test_wrong_type(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    frame = potability_frame()
    frame["Hardness"] = frame["Hardness"].astype(str) + " mg/L"
    code, err = run(tmp_path, frame, capsys)
    assert code == EXIT_VALIDATION
    assert "column 'Hardness': expect_column_values_to_be_in_type_list" in err


def test_all_null_column(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    frame = potability_frame()
    frame["Turbidity"] = float("nan")
    code, err = run(tmp_path, frame, capsys)
    assert code == EXIT_VALIDATION
    assert "column 'Turbidity': expect_column_values_to_not_be_null" in err
    assert "3276 of 3276 rows unexpected" in err


def test_empty_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, err = run(tmp_path, b"", capsys)
    assert code == EXIT_DATA
    assert "water_potability.csv is empty" in err


def test_header_only_file_fails_the_row_count(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, err = run(tmp_path, potability_frame().head(0), capsys)
    assert code == EXIT_VALIDATION
    assert "expect_table_row_count_to_be_between" in err


def test_not_utf8(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = potability_frame().to_csv(index=False).encode()
    data = data.replace(b"Hardness", "Härtegrad".encode("latin-1"), 1)
    code, err = run(tmp_path, data, capsys)
    assert code == EXIT_DATA
    assert "water_potability.csv is not UTF-8 (byte 0xe4 at offset 4)" in err
    assert 'set [data] encoding = "cp1252" (or the file\'s encoding) in ' in err


def test_changed_data_without_a_new_digest(capsys: pytest.CaptureFixture[str],
                                           tmp_path: Path) -> None:  # fmt: skip
    spec_path = broken_spec(tmp_path, "potability", b"ph,Potability\n7,1\n")
    text = spec_path.read_text()
    spec_path.write_text(
        text.replace(hashlib.sha256(b"ph,Potability\n7,1\n").hexdigest(), "0" * 64)
    )
    assert main(["--spec", str(spec_path)]) == EXIT_DATA
    assert "update [data] sha256" in capsys.readouterr().err


def test_wqi_missing_source_column_is_reported_not_crashed(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    frame = pd.read_csv(load_spec("wqi").data.path).drop(columns=["Specific Conductance"])
    code, err = run(tmp_path, frame, capsys, model="wqi")
    assert code == EXIT_VALIDATION
    assert "column 'conductance_ms_cm': expect_column_to_exist" in err
    assert "column 'tds': expect_column_to_exist" in err


def test_every_model_is_tried_and_the_first_failure_is_the_exit_code(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    without_sulfate = potability_frame().drop(columns=["Sulfate"]).to_csv(index=False).encode()
    missing = broken_spec(tmp_path / "a", "potability", without_sulfate)
    empty = broken_spec(tmp_path / "b", "potability", b"")
    code = main(["--spec", str(missing), "--spec", str(empty)])
    err = capsys.readouterr().err
    assert code == EXIT_VALIDATION
    assert "expect_column_to_exist" in err and "water_potability.csv is empty" in err


def test_unknown_model_exit_code(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["nope"]) == 2
    assert "unknown model 'nope'" in capsys.readouterr().err
