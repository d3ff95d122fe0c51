"""End to end with the real trained wqi bundle: readings sampled from its training rows (and
the same readings as fresh water) answered by the Lambda handler with the prediction log on,
the handler's own log lines fed to `python -m monitoring.drift`."""

from __future__ import annotations

import io
import json
import shutil
from collections.abc import Iterator
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from inference import handler
from monitoring import drift
from monitoring.errors import DRIFT, OK
from tests.inference.serving_helpers import context, local_config
from training import data, labels, model
from training.spec import load_spec

READINGS = ("pH", "turbidity", "tds", "temperature")


@pytest.fixture(scope="module")
def training_rows() -> np.ndarray:
    """wqi's training rows (features in schema order), as the pipeline splits them."""
    spec = load_spec("wqi")
    frame = data.load(spec.data, data.read_bytes(spec.data)).frame
    dataset = model.make_dataset(frame, labels.make_label(frame, spec.label), spec)
    return model.split(dataset, spec).X_train[list(spec.features)].to_numpy(np.float64)


def requests(rows: np.ndarray, tds: float | None = None) -> list[dict[str, Any]]:
    """Serving records: the readings, and a timestamp on the buoy's clock giving the hour."""
    out = []
    for i, row in enumerate(rows):
        minutes = round(row[4] * 60)
        day = date(2026, 11, 1) + timedelta(days=i // 48)
        readings = {k: float(v) for k, v in zip(READINGS, row[:4], strict=True)}
        out.append({
            "deviceId": f"buoy-{i % 3}",
            "timestamp": f"{day}T{minutes // 60:02d}:{minutes % 60:02d}:00+10:00",
            "readings": readings | ({} if tds is None else {"tds": tds}),
        })  # fmt: skip
    return out


@pytest.fixture(autouse=True)
def _fresh_handler() -> Iterator[None]:
    """Each test loads the handler itself (``served_log``); none leaves it loaded."""
    yield
    handler.reset()


def served_log(
    trained: dict[str, Any], tmp_path: Path, lines: io.StringIO, batch: list[dict[str, Any]]
) -> Path:
    raw = Path(trained["bundles"]["wqi"]).read_bytes()
    cache = tmp_path / "cache"
    cache.mkdir()
    handler.init(local_config(raw, cache, model_version="1", prediction_log_rate=1.0,
                              prediction_log_seed=0))  # fmt: skip
    answer = handler.lambda_handler({"records": batch}, context("req-drift"))
    assert answer["statusCode"] == 200, answer
    path = tmp_path / "function.log"
    path.write_text(lines.getvalue(), encoding="utf-8")
    return path


def run(trained: dict[str, Any], log: Path, out: Path) -> int:
    bundle = str(trained["bundles"]["wqi"])
    digest = trained["results"]["wqi"].artifact_sha256
    return drift.main(["wqi", str(log), "--bundle", bundle, "--sha256", digest, "--out", str(out)])


def test_the_handlers_log_of_training_like_readings_shows_no_drift(
    trained: dict[str, Any], training_rows: np.ndarray, tmp_path: Path, log_lines: io.StringIO
) -> None:
    rng = np.random.default_rng(3)
    rows = training_rows[rng.choice(len(training_rows), 500, replace=False)]
    log = served_log(trained, tmp_path, log_lines, requests(rows))
    assert run(trained, log, tmp_path / "r") == OK
    summary = json.loads((tmp_path / "r" / "summary.json").read_text())
    assert summary["records"] == 500 and summary["other_lines"] >= 1  # "model loaded" etc.
    assert summary["alarms"] == [] and max(f["psi"] for f in summary["features"]) < 0.1
    assert summary["served_outside"] < 0.1  # the answers' own domain verdicts agree


def test_the_same_readings_from_fresh_water_drift_and_fail(
    trained: dict[str, Any], training_rows: np.ndarray, tmp_path: Path, log_lines: io.StringIO,
    capsys: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    rng = np.random.default_rng(4)
    rows = training_rows[rng.choice(len(training_rows), 300, replace=False)]
    log = served_log(trained, tmp_path, log_lines, requests(rows, tds=410.0))
    assert run(trained, log, tmp_path / "r") == DRIFT
    summary = json.loads((tmp_path / "r" / "summary.json").read_text())
    tds = next(f for f in summary["features"] if f["name"] == "tds")
    assert tds["status"] == "drift" and tds["outside_rate"] == 1.0
    assert summary["served_outside"] == 1.0 and summary["outside_rows"] == 1.0
    assert "DRIFT: tds" in capsys.readouterr().out
    assert (tmp_path / "r" / "feature-tds.png").is_file()


def test_the_bundle_comes_from_mlflow_by_champion_version_or_digest(
    trained: dict[str, Any], training_rows: np.ndarray, tmp_path: Path, log_lines: io.StringIO,
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    from mlflow import MlflowClient

    from registry.tracking import Tracking

    rows = training_rows[np.random.default_rng(5).choice(len(training_rows), 150, replace=False)]
    log = served_log(trained, tmp_path, log_lines, requests(rows))
    store = tmp_path / "mlflow.db"  # a copy (its artifacts stay put): this test moves aliases
    shutil.copy(trained["tracking_uri"].removeprefix("sqlite:///"), store)
    uri = f"sqlite:///{store}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    tracking = Tracking(uri)
    if tracking.champion("wqi") is not None:
        MlflowClient(tracking_uri=uri).delete_registered_model_alias("wqi", "champion")
    assert drift.main(["wqi", str(log), "--out", str(tmp_path / "none")]) == 4
    assert "wqi has no champion in MLflow" in capsys.readouterr().err
    version = trained["results"]["wqi"].version
    tracking.set_champion("wqi", version)
    assert drift.main(["wqi", str(log), "--out", str(tmp_path / "c")]) == OK
    report = (tmp_path / "c" / "report.md").read_text()
    assert f"Compared with: wqi version {version} (champion) (bundle sha256" in report
    assert drift.main(["wqi", str(log), "--version", version, "--out", str(tmp_path / "v")]) == OK
    assert drift.main(["wqi", str(log), "--version", "99"]) == 4
    assert "wqi version 99 is not in the MLflow registry" in capsys.readouterr().err
    # A bundle file with no --sha256 must be the bytes of a registered version.
    bundle = str(trained["bundles"]["wqi"])
    assert drift.main(["wqi", str(log), "--bundle", bundle, "--out", str(tmp_path / "b")]) == OK
    other = tmp_path / "other.joblib"
    other.write_bytes(Path(bundle).read_bytes() + b"\0")
    assert drift.main(["wqi", str(log), "--bundle", str(other)]) == 4
    assert "is no registered version of wqi" in capsys.readouterr().err
    assert drift.main(["potability", str(log), "--version", "1"]) == 3  # records of wqi only
