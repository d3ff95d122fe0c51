"""Both shipped specs with ``engine = "spark"`` on a real standalone cluster (a master and a
worker on loopback, tests/training/spark_cluster.py): the project's code reaches the executors
with the job, a label function (wqi's) runs on them, and the held-out rows are the pandas
engine's, as MLflow's record of the held-out dataset shows (the same digest)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from settings import REPO
from tests.training import spark_cluster
from training import data, expectations, labels, model
from training.spec import load_spec

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with spark_cluster.standalone(tmp_path_factory.mktemp("spark-cluster")) as url:
        yield url


def spark_spec(name: str, folder: Path) -> Path:
    """The shipped spec with ``[train] engine = "spark"``."""
    text = load_spec(name).source.read_text()
    assert "[train.params]" in text
    path = folder / f"{name}.toml"
    path.write_text(text.replace("[train.params]", '[train]\nengine = "spark"\n\n[train.params]'))
    return path


def pandas_held_out_digest(name: str) -> tuple[str, int]:
    """The MLflow digest of the pandas engine's held-out side (features and label), and its
    rows: what `python -m training` logs as `<name>-held-out`."""
    import mlflow

    spec = load_spec(name)
    frame = data.load_frame(spec.data, data.read_bytes(spec.data))
    suite = expectations.load_suite(spec.data.expectations)
    ranges = expectations.feature_ranges(suite, list(spec.features))
    dataset = model.make_dataset(frame, labels.make_label(frame, spec.label), spec, ranges)
    parts = model.split(dataset, spec)
    held = parts.X_test.assign(**{spec.label_column: parts.y_test.to_numpy()})
    return mlflow.data.from_pandas(held, targets=spec.label_column).digest, len(held)


@pytest.mark.parametrize("name", ["potability", "wqi"])
def test_trains_on_a_standalone_cluster_holding_out_the_pandas_rows(
    cluster: str, name: str, tmp_path: Path
) -> None:
    from mlflow import MlflowClient

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    env = os.environ | {"WATERML_SPARK_MASTER": cluster, "MLFLOW_TRACKING_URI": uri}
    done = subprocess.run(
        [sys.executable, "-m", "training", "--spec", str(spark_spec(name, tmp_path)), "--json"],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=1200,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    assert f"on Spark ({cluster})" in done.stderr  # the load line names the master
    result: dict[str, Any] = json.loads(done.stdout)
    assert result["candidate"] is True

    client = MlflowClient(tracking_uri=uri)
    run = client.get_run(result["run_id"])
    assert run.data.params["engine"] == "spark"
    inputs = {i.dataset.name: i for i in run.inputs.dataset_inputs}
    held = inputs[f"{name}-held-out"]
    digest, rows = pandas_held_out_digest(name)
    assert held.dataset.digest == digest  # the same rows, in the same order, with the same labels
    assert int(run.data.metrics["rows_held_out"]) == rows
