"""Logs a training run to MLflow and registers its bundle as a model version."""

from __future__ import annotations

import logging
import os
import warnings
from dataclasses import dataclass
from importlib.metadata import version
from pathlib import Path
from typing import Any

from matplotlib.figure import Figure

from training.config import BUNDLE_ARTIFACT_DIR, local_store_dir, tracking_uri

CANDIDATE = "candidate"


@dataclass(frozen=True)
class Registered:
    version: str
    run_id: str
    candidate: bool
    gate_failures: list[str]


def _mlflow() -> Any:
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    warnings.filterwarnings("ignore", module="mlflow")
    import mlflow

    # After the import: mlflow configures its own logger (INFO lines about database set-up).
    logging.getLogger("mlflow").setLevel(logging.WARNING)

    store = local_store_dir()
    if store is not None:
        store.mkdir(parents=True, exist_ok=True)
    mlflow.set_tracking_uri(tracking_uri())
    return mlflow


def _tool_versions() -> dict[str, str]:
    """Versions of the tools around the model; the bundle records only what made its bytes."""
    return {f"version.{name}": version(name) for name in ("mlflow", "great-expectations")}


def experiment_id(mlflow: Any, name: str) -> str:
    existing = mlflow.get_experiment_by_name(name)
    if existing is not None:
        return str(existing.experiment_id)
    # With a SQLite store, artifacts live beside it instead of in ./mlruns of the caller's cwd;
    # a tracking server decides for itself.
    store = local_store_dir()
    location = (store / "artifacts" / name).as_uri() if store is not None else None
    return str(mlflow.create_experiment(name, artifact_location=location))


def log_failed_validation(name: str, validation: dict[str, Any], tags: dict[str, str]) -> str:
    """A run tagged ``validation_failed`` holding the great-expectations result; its id."""
    mlflow = _mlflow()
    with mlflow.start_run(
        experiment_id=experiment_id(mlflow, name), run_name=f"{name}-validation-failed"
    ) as run:
        mlflow.set_tags(tags | {"validation_failed": "true"})
        mlflow.log_dict(validation, "validation/result.json")
    return str(run.info.run_id)


def log_and_register(
    name: str,
    params: dict[str, Any],
    metrics: dict[str, float],
    figures: dict[str, Figure],
    validation: dict[str, Any],
    bundle_path: Path,
    tags: dict[str, str],
    gate_failures: list[str],
) -> Registered:
    mlflow = _mlflow()
    from mlflow import MlflowClient

    client = MlflowClient()
    with mlflow.start_run(
        experiment_id=experiment_id(mlflow, name), run_name=f"{name}-{tags['git_sha'][:7]}"
    ) as run:
        mlflow.log_params({k: str(v) for k, v in params.items()})
        mlflow.log_metrics(metrics)
        mlflow.set_tags(tags | _tool_versions())
        mlflow.log_dict(validation, "validation/result.json")
        for filename, figure in figures.items():
            mlflow.log_figure(figure, f"plots/{filename}")
        mlflow.log_artifact(str(bundle_path), BUNDLE_ARTIFACT_DIR)
        source = f"{run.info.artifact_uri}/{BUNDLE_ARTIFACT_DIR}"
    try:
        client.get_registered_model(name)
    except mlflow.exceptions.MlflowException:
        client.create_registered_model(name, description=f"waterml model {name!r}")
    version = client.create_model_version(name, source=source, run_id=run.info.run_id, tags=tags)
    candidate = not gate_failures
    if candidate:
        client.set_registered_model_alias(name, CANDIDATE, version.version)
    return Registered(str(version.version), run.info.run_id, candidate, gate_failures)
