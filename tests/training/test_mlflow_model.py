"""Each version is an MLflow model (pyfunc, signature, input example) around the same bundle,
answered by the handler's own code; runs log their datasets, a lift metric and a readable
name; retraining the same code and data reuses the version instead of minting one."""

from __future__ import annotations

import json
import math
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from inference import handler
from inference.bundle import loads
from inference.domain import VERDICT_KEYS
from tests.inference.serving_helpers import local_config
from training import pipeline
from training.spec import available, load_spec

pytestmark = pytest.mark.integration
REPO = Path(__file__).resolve().parents[2]


def client(uri: str) -> Any:
    from mlflow import MlflowClient

    return MlflowClient(tracking_uri=uri)


def bundle_of(trained: dict[str, Any], name: str) -> dict[str, Any]:
    return loads(Path(trained["bundles"][name]).read_bytes())


def golden_frame(bundle: dict[str, Any]) -> pd.DataFrame:
    """The golden readings as pyfunc input: a reading per row, and the `timestamp` column of a
    model with calendar features (its last golden record has none)."""
    if "records" in bundle["golden"]:
        records = bundle["golden"]["records"]
        frame = pd.DataFrame([r["readings"] for r in records], dtype="float64")
        return frame.assign(timestamp=[r.get("timestamp") for r in records])
    names = [f["name"] for f in bundle["schema"]["fields"]]
    return pd.DataFrame(bundle["golden"]["inputs"], columns=names, dtype="float64")


def handler_answers(
    trained: dict[str, Any], name: str, frame: pd.DataFrame, cache: Path
) -> list[dict[str, Any]]:
    """What the Lambda handler answers for these readings as one batch event."""
    records: list[dict[str, Any]] = []
    for row in frame.to_dict("records"):
        stamp = row.pop("timestamp", None)  # a str, or missing (None or NaN)
        record = {"readings": {k: None if math.isnan(v) else v for k, v in row.items()}}
        records.append(record if pd.isna(stamp) else {**record, "timestamp": stamp})
    handler.reset()
    try:
        handler.init(local_config(Path(trained["bundles"][name]).read_bytes(), cache))
        response = handler.lambda_handler({"records": records})
    finally:
        handler.reset()
    assert response["statusCode"] == 200, response
    return list(response["predictions"])


def local_model(trained: dict[str, Any], name: str) -> str:
    """The registered version's MLflow model directory (a local path: a SQLite store)."""
    version = trained["results"][name].version
    uri = client(trained["tracking_uri"]).get_model_version_download_uri(name, version)
    return str(uri).removeprefix("file://")


@pytest.mark.parametrize("name", available())
def test_version_is_an_mlflow_model_of_the_same_bundle(trained: dict[str, Any], name: str) -> None:
    from mlflow.models import Model

    result = trained["results"][name]
    mv = client(trained["tracking_uri"]).get_model_version(name, result.version)
    model_dir = Path(local_model(trained, name))
    info = Model.load(str(model_dir))
    # Registered from the run's LoggedModel (MLflow 3), so its page has the MLmodel's schema.
    assert mv.source == f"models:/{info.model_id}" and info.run_id == result.run_id
    # The release unit, byte for byte, inside the MLflow model (and still in the run's bundle/).
    assert (model_dir / "artifacts" / "model.joblib").read_bytes() == Path(
        trained["bundles"][name]
    ).read_bytes()
    bundle = bundle_of(trained, name)
    fields = bundle["schema"]["fields"]
    inputs = info.signature.inputs.to_dict()
    dated = [{"type": "string", "name": "timestamp", "required": False}]
    assert inputs == [
        {"type": "double", "name": f["name"], "required": not f["nullable"]}
        for f in fields
        if "source" not in f  # calendar features come from the timestamp
    ] + (dated if "timestamp" in bundle["schema"] else []) + [
        {"type": "string", "name": "deviceId", "required": False}
    ]
    outputs = [c["name"] for c in info.signature.outputs.to_dict()]
    assert outputs == ["deviceId", *bundle["golden"]["answers"][0], "domain"]  # issue 11
    domain = info.signature.outputs.to_dict()[-1]
    assert (domain["type"], list(domain["properties"])) == ("object", sorted(VERDICT_KEYS))
    assert info.saved_input_example_info["type"] == "dataframe"
    from training.mlflow_model import SHA256_KEY  # the module sets itself as MLflow's model

    assert info.flavors["python_function"]["config"][SHA256_KEY] == result.artifact_sha256
    # No copy of the checkout's lock file: the model pins its serving requirements itself.
    assert not (model_dir / "uv.lock").exists()
    requirements = (model_dir / "requirements.txt").read_text().split()
    assert {r.split("==")[0] for r in requirements} >= {"mlflow", "numpy", "onnxruntime"}


@pytest.mark.parametrize("name", available())
def test_run_logs_datasets_lift_and_a_readable_name(trained: dict[str, Any], name: str) -> None:
    result = trained["results"][name]
    mlflow = client(trained["tracking_uri"])
    run = mlflow.get_run(result.run_id)
    spec = load_spec(name)
    tags = mlflow.get_model_version(name, result.version).tags
    assert run.info.run_name == (
        f"{name} v{result.version} · data {spec.data.sha256[:8]} · code {tags['git_sha'][:7]}"
        + ("-dirty" if tags["git_sha"].endswith("-dirty") else "")
    )
    metric, metrics = spec.gates.primary, run.data.metrics
    model, baseline = metrics[metric], metrics[f"baseline_{metric}"]
    gain = model - baseline if spec.gates.greater_is_better else baseline - model
    assert metrics[f"{metric}_lift"] == pytest.approx(gain / abs(baseline), abs=1e-6)
    assert metrics[f"{metric}_lift"] > 0

    inputs = {
        next(t.value for t in d.tags if t.key == "mlflow.data.context"): d
        for d in run.inputs.dataset_inputs
    }
    assert set(inputs) == {"training", "evaluation"}
    for context, side in (("training", "train"), ("evaluation", "held-out")):
        dataset = inputs[context].dataset
        extra = {t.key: t.value for t in inputs[context].tags}
        assert dataset.name == f"{name}-{side}"
        assert json.loads(dataset.source) == {"uri": f"data/{spec.data.path.name}"}
        assert extra["sha256"] == spec.data.sha256
        assert int(extra["rows"]) == json.loads(dataset.profile)["num_rows"] > 0
        assert extra["split"].startswith(f"{side}: {spec.split['method']}, test_size ")


@pytest.mark.parametrize("name", available())
def test_pyfunc_answers_golden_samples_as_the_handler(
    trained: dict[str, Any], name: str, tmp_path: Path
) -> None:
    import mlflow

    model = mlflow.pyfunc.load_model(local_model(trained, name))
    frame = golden_frame(bundle_of(trained, name))
    got = model.predict(frame).to_dict("records")
    assert got == handler_answers(trained, name, frame, tmp_path)
    with_devices = frame.assign(deviceId=[f"buoy-{i}" for i in range(len(frame))])
    devices = [a["deviceId"] for a in model.predict(with_devices).to_dict("records")]
    assert devices == list(with_devices["deviceId"])


def test_invalid_reading_is_refused_as_the_handler_refuses_it(trained: dict[str, Any]) -> None:
    import mlflow
    from mlflow.exceptions import MlflowException

    model = mlflow.pyfunc.load_model(local_model(trained, "wqi"))
    frame = golden_frame(bundle_of(trained, "wqi")).head(1).assign(pH=15.2)
    with pytest.raises(MlflowException, match=r"VALIDATION_ERROR: .*pH: .*must be between"):
        model.predict(frame)


def test_tampered_bundle_is_refused_before_unpickling(
    trained: dict[str, Any], tmp_path: Path
) -> None:
    import mlflow

    copy = tmp_path / "model"
    shutil.copytree(local_model(trained, "wqi"), copy)
    bundle = copy / "artifacts" / "model.joblib"
    data = bytearray(bundle.read_bytes())
    data[-2] ^= 0xFF
    bundle.write_bytes(bytes(data))
    with pytest.raises(Exception, match="SHA-256 mismatch"):
        mlflow.pyfunc.load_model(str(copy))


def test_mlflow_models_predict_on_champion_answers_as_the_handler(
    trained: dict[str, Any], tmp_path: Path
) -> None:
    """The CLI in a fresh process, from a directory outside the checkout (the model carries the
    `inference` package itself), against `models:/wqi@champion`."""
    db = tmp_path / "mlflow.db"
    shutil.copy(Path(trained["tracking_uri"].removeprefix("sqlite:///")), db)
    uri = f"sqlite:///{db}"
    client(uri).set_registered_model_alias("wqi", "champion", trained["results"]["wqi"].version)
    frame = golden_frame(bundle_of(trained, "wqi"))
    request = tmp_path / "golden.json"
    request.write_text(json.dumps({"dataframe_split": frame.to_dict("split") | {"index": None}}))
    work = tmp_path / "elsewhere"
    work.mkdir()
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "MODEL_SHA256")}
    out = subprocess.run(
        [str(Path(sys.executable).with_name("mlflow")), "models", "predict",
         "-m", "models:/wqi@champion", "-i", str(request), "-t", "json",
         "-o", str(tmp_path / "answers.json"), "--env-manager", "local"],
        cwd=work, env=env | {"MLFLOW_TRACKING_URI": uri, "MLFLOW_DISABLE_TELEMETRY": "true"},
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr[-3000:]
    answers = json.loads((tmp_path / "answers.json").read_text())["predictions"]
    expected = handler_answers(trained, "wqi", frame, tmp_path / "cache")
    print(json.dumps(answers[:2]))
    assert answers == json.loads(json.dumps(expected))  # the verdict's names: a JSON array


def readme_predict_command() -> str:
    """training/README.md's `mlflow models predict` example, as a person would paste it."""
    readme = (REPO / "training" / "README.md").read_text(encoding="utf-8")
    block = next(b for b in readme.split("```sh\n")[1:] if "mlflow models predict" in b)
    lines = [line for line in block.split("```")[0].splitlines() if not line.startswith("#")]
    return " ".join(line.rstrip("\\").strip() for line in lines)


def test_the_readmes_mlflow_models_predict_works_as_written(
    trained: dict[str, Any], tmp_path: Path
) -> None:
    """From a checkout where `make train` ran, without MLFLOW_TRACKING_URI set: the command
    names the store itself, its input example is shipped, and it leaves no ./mlflow.db."""
    command = readme_predict_command()
    checkout = tmp_path / "checkout"  # what the command reads, and nothing else
    (checkout / "mlruns").mkdir(parents=True)
    shutil.copy(Path(trained["tracking_uri"].removeprefix("sqlite:///")),
                checkout / "mlruns" / "mlflow.db")  # fmt: skip
    example = REPO / "training" / "examples" / "wqi.json"
    assert str(example.relative_to(REPO)) in command
    (checkout / "training" / "examples").mkdir(parents=True)
    shutil.copy(example, checkout / "training" / "examples" / "wqi.json")
    (checkout / ".venv").symlink_to(REPO / ".venv")
    before = sorted(p.relative_to(checkout) for p in checkout.rglob("*"))
    env = {k: v for k, v in os.environ.items()
           if k not in ("PYTHONPATH", "MODEL_SHA256", "MLFLOW_TRACKING_URI")}  # fmt: skip
    out = subprocess.run(["bash", "-c", command], cwd=checkout, env=env, capture_output=True,
                         text=True, timeout=300)  # fmt: skip
    assert out.returncode == 0, out.stderr[-3000:]
    answers = json.loads(out.stdout.strip().splitlines()[-1])["predictions"]
    request = json.loads(example.read_text())["dataframe_split"]
    frame = pd.DataFrame(request["data"], columns=request["columns"]).drop(columns="deviceId")
    # As JSON carries them: the domain verdict's features are an array.
    expected = json.loads(json.dumps(handler_answers(trained, "wqi", frame, tmp_path / "cache")))
    devices = [row[0] for row in request["data"]]
    assert answers == [{**a, "deviceId": d} for d, a in zip(devices, expected, strict=True)]
    assert sorted(p.relative_to(checkout) for p in checkout.rglob("*")) == before


def test_retraining_same_code_and_data_reuses_the_version(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Identical bytes are the same model: no version 2, no second run, `candidate` stays."""
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    # One commit for both trainings, whatever happens to the checkout meanwhile.
    monkeypatch.setattr(pipeline.bundle, "git_sha", lambda: "c" * 40)
    spec = load_spec("potability")
    first = pipeline.run(spec)
    second = pipeline.run(spec)
    assert not first.reused and second.reused
    assert (second.version, second.run_id) == (first.version, first.run_id) == ("1", first.run_id)
    assert second.artifact_sha256 == first.artifact_sha256 and second.candidate
    mlflow = client(uri)
    assert len(mlflow.search_model_versions("name = 'potability'")) == 1
    experiment = mlflow.get_experiment_by_name("potability").experiment_id
    assert len(mlflow.search_runs([experiment])) == 1
    assert mlflow.get_registered_model("potability").aliases == {"candidate": 1}
    lines = [line for line in capsys.readouterr().err.splitlines() if "register" in line]
    assert lines[-1].endswith("version 1 reused (same sha256, nothing logged), alias candidate")


def test_a_dataset_another_trainer_logged_at_that_moment_is_not_a_failure(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two trainers logging the same held-out split on a team's server both miss it in MLflow's
    check, and one fails on the unique key (BAD_REQUEST: exit 6 before the retry in
    training/register.py, seen in CI). Here the first log of each dataset fails as the server
    answers that loser; the run still logs both datasets, once each."""
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    log_inputs, lost = MlflowClient.log_inputs, []

    def race(self: Any, run_id: str, datasets: Any = None, models: Any = None) -> None:
        if datasets and datasets[0].dataset.name not in lost:
            lost.append(datasets[0].dataset.name)
            raise MlflowException(
                '(psycopg2.errors.UniqueViolation) duplicate key value violates unique'
                ' constraint "dataset_pk"', error_code="BAD_REQUEST"
            )  # fmt: skip
        log_inputs(self, run_id, datasets=datasets, models=models)

    monkeypatch.setattr(MlflowClient, "log_inputs", race)
    done = pipeline.run(load_spec("potability"))
    assert lost == ["potability-train", "potability-held-out"]
    inputs = client(uri).get_run(done.run_id).inputs.dataset_inputs
    assert sorted(i.dataset.name for i in inputs) == sorted(lost)
