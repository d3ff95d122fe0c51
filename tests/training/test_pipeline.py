"""The real pipeline end to end: MLflow store, great-expectations, bundle, registry."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from inference import bundle as contract
from training import pipeline
from training.spec import available, load_spec

pytestmark = pytest.mark.integration


def client(trained: dict[str, Any]) -> Any:
    from mlflow import MlflowClient

    return MlflowClient(tracking_uri=trained["tracking_uri"])


@pytest.mark.parametrize("name", available())
def test_version_is_tagged_and_candidate(trained: dict[str, Any], name: str) -> None:
    result = trained["results"][name]
    mlflow = client(trained)
    version = mlflow.get_model_version(name, result.version)
    data = load_spec(name).data
    assert version.tags["artifact_sha256"] == result.artifact_sha256
    assert version.tags["data_sha256"] == data.sha256
    assert re.fullmatch(r"[0-9a-f]{40}(-dirty)?|unknown", version.tags["git_sha"])
    aliases = mlflow.get_registered_model(name).aliases
    # A shipped model meets its gates; a model being added may not, and then holds no alias.
    assert (str(aliases.get("candidate")) == result.version) == result.candidate
    assert result.candidate or name not in ("wqi", "potability")
    digest = contract.sha256_hex(trained["bundles"][name].read_bytes())
    assert digest == result.artifact_sha256


@pytest.mark.parametrize("name", available())
def test_run_logs_metrics_plots_validation_and_bundle(trained: dict[str, Any], name: str) -> None:
    mlflow = client(trained)
    run = mlflow.get_run(trained["results"][name].run_id)
    spec = load_spec(name)
    primary = spec.gates.primary
    assert primary in run.data.metrics and f"baseline_{primary}" in run.data.metrics
    assert spec.gates.better_or_equal(
        run.data.metrics[primary], run.data.metrics[f"baseline_{primary}"]
    )
    files = {f.path for d in ("plots", "validation", "bundle")
             for f in mlflow.list_artifacts(run.info.run_id, d)}  # fmt: skip
    expected_plots = (
        {"plots/confusion_matrix.png", "plots/roc.png"}
        if spec.task == "binary"
        else {"plots/residuals.png", "plots/confidence_calibration.png"}
    )
    assert expected_plots | {"plots/feature_importance.png", "validation/result.json"} <= files
    assert "bundle/model.joblib" in files


def test_wqi_confidence_is_calibrated_on_held_out_data(trained: dict[str, Any]) -> None:
    """The confidence means "probability that the band is right": on the held-out period it
    must track how often the band was right (measured: ECE 0.10, mean 0.55 vs 0.62)."""
    metrics = trained["results"]["wqi"].metrics
    assert metrics["confidence_ece"] < 0.2
    assert abs(metrics["confidence_mean"] - metrics["band_accuracy"]) < 0.15
    assert metrics["confidence_brier"] < 0.3


def test_two_make_train_runs_give_byte_identical_bundles(
    trained: dict[str, Any], tmp_path: Path
) -> None:
    """A second training in a fresh interpreter (another hash seed) writes the same bytes."""
    repo = Path(__file__).resolve().parents[2]
    env = os.environ | {
        "MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path / 'again.db'}",
        "PYTHONHASHSEED": "12345",
        "PYTHONPATH": str(repo),
    }
    out = subprocess.run(
        [sys.executable, "-m", "training", "--bundle-dir", str(tmp_path), "--json"],
        cwd=repo, env=env, capture_output=True, text=True,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    for name, first in trained["results"].items():
        again = (tmp_path / name / "model.joblib").read_bytes()
        assert again == trained["bundles"][name].read_bytes()
        assert contract.sha256_hex(again) == first.artifact_sha256


def test_gate_failure_registers_without_the_candidate_alias(
    trained: dict[str, Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'gates.db'}")
    spec = load_spec("potability")
    strict = type(spec.gates)(spec.gates.primary, True, minimum={"roc_auc": 0.99})
    from dataclasses import replace

    result = pipeline.run(replace(spec, gates=strict))
    assert not result.candidate
    from mlflow import MlflowClient

    mlflow = MlflowClient(tracking_uri=os.environ["MLFLOW_TRACKING_URI"])
    assert mlflow.get_registered_model("potability").aliases == {}


@pytest.mark.parametrize("name", available())
def test_bundle_serves_without_training_libraries(trained: dict[str, Any], name: str) -> None:
    """Unpickle and predict in a fresh interpreter where pandas, sklearn, xgboost and joblib
    cannot be imported."""
    script = f"""
import sys
for blocked in ("pandas", "sklearn", "xgboost", "joblib", "training", "scipy"):
    sys.modules[blocked] = None
import numpy as np
from inference import bundle
from inference.predictor import Predictor
data = open({str(trained["bundles"][name])!r}, "rb").read()
b = bundle.loads(data)
p = Predictor(b)
raw = p.raw(np.asarray(b["golden"]["inputs"], dtype=np.float32))
for k, want in b["golden"]["raw"].items():
    assert np.allclose(raw[k], want, rtol=b["golden"]["rtol"], atol=b["golden"]["atol"]), k
import json
print(json.dumps(list(p.answers(np.asarray(b["golden"]["inputs"][:1], dtype=np.float32))[0])))
"""
    repo = Path(__file__).resolve().parents[2]
    out = subprocess.run([sys.executable, "-c", script], cwd=repo, capture_output=True,
                         text=True, env=os.environ | {"PYTHONPATH": str(repo)})  # fmt: skip
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout) == answer_fields(load_spec(name).output)


def answer_fields(output: dict[str, Any]) -> list[str]:
    """An answer's fields, from the spec's [output] (training/README.md, "The spec, key by key")."""
    if output["kind"] == "banded_regression":
        named = [output["value_name"], output["band_name"]]
    else:
        named = [output["label_name"], "probability"]
    return [*named, "confidence", "domain"]


def test_bundle_refuses_code_in_pickles() -> None:
    import pickle

    class Evil:
        def __reduce__(self) -> tuple[Any, ...]:
            return (os.system, ("echo owned",))

    with pytest.raises(contract.BundleError, match="only plain data"):
        contract.loads(pickle.dumps({"x": Evil()}))
