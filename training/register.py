"""Logs a training run to MLflow and registers its bundle as a model version."""

from __future__ import annotations

import contextlib
import io
import logging
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import partial
from importlib.metadata import version
from pathlib import Path
from typing import Any, TypeVar

from matplotlib.figure import Figure

from settings import BUNDLE_ARTIFACT_DIR, REPO, local_store_dir, tracking_uri
from training import model_card
from training.locks import file_lock
from training.mlflow_names import (
    ARTIFACT_SHA256,
    CANDIDATE,
    DATA_SHA256,
    GIT_SHA,
    LINEAGE_TAGS,
    quiet_mlflow,
)
from training.model import Split
from training.spec import ModelSpec

MODEL_NAME = "model"  # the logged MLflow model's name within its run
DRY_RUN = "dry_run"  # the tag of a run that registered nothing (python -m training --dry-run)
DRY_RUN_NAME = "dry run"
REUSED_TAG = "reused_version"  # on a run that lost the race to register its bytes
MODEL_CODE = Path(__file__).with_name("mlflow_model.py")
# What the pyfunc model needs beyond MLflow itself (pandas comes with MLflow): serving's set.
MODEL_REQUIREMENTS = ("numpy", "onnxruntime", "aws-lambda-powertools")
T = TypeVar("T")


@dataclass(frozen=True)
class Registered:
    version: str
    run_id: str
    candidate: bool  # the version holds `candidate` now
    gate_failures: list[str]
    reused: bool = False  # an existing version already held these bytes
    candidate_version: str | None = None  # where `candidate` points afterwards


def _mlflow() -> Any:
    # The model's requirements are pinned explicitly (MODEL_REQUIREMENTS): MLflow must not
    # also copy whichever uv.lock sits in the caller's working directory into every model.
    os.environ.setdefault("MLFLOW_UV_AUTO_DETECT", "false")
    mlflow = quiet_mlflow()
    # uv venvs have no pip, and the model's conda.yaml then lists pip unpinned: not news.
    logging.getLogger("mlflow.utils.environment").setLevel(logging.ERROR)

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
    try:
        return str(mlflow.create_experiment(name, artifact_location=location))
    except mlflow.exceptions.MlflowException as exc:
        # Another trainer created it since the get (tests/team/test_ci_path.py).
        if exc.error_code != "RESOURCE_ALREADY_EXISTS":
            raise
        return str(mlflow.get_experiment_by_name(name).experiment_id)


def log_failed_validation(name: str, validation: dict[str, Any], tags: dict[str, str]) -> str:
    """A run tagged ``validation_failed`` holding the great-expectations result; its id."""
    mlflow = _mlflow()
    data = tags.get(DATA_SHA256, "")[:8]
    with mlflow.start_run(
        experiment_id=experiment_id(mlflow, name),
        run_name=f"{name} validation failed · data {data}",
    ) as run:
        mlflow.set_tags(tags | {"validation_failed": "true"})
        mlflow.log_dict(validation, "validation/result.json")
    return str(run.info.run_id)


def lift(metrics: dict[str, float], primary: str, greater_is_better: bool) -> dict[str, float]:
    """``<primary>_lift``: the model's relative improvement over its baseline, positive when
    better: (baseline - model) / |baseline| for a lower-is-better metric (rmse), (model -
    baseline) / |baseline| for a higher-is-better one (roc_auc). None when the baseline is 0."""
    model, baseline = metrics.get(primary), metrics.get(f"baseline_{primary}")
    if model is None or not baseline:
        return {}
    gain = model - baseline if greater_is_better else baseline - model
    return {f"{primary}_lift": round(gain / abs(baseline), 6)}


def run_name(name: str, version: str, tags: dict[str, str]) -> str:
    """Model, version, data and code: ``wqi v3 · data 2e3845cb · code 599179d``; a dry run's
    version is ``dry run``."""
    commit = tags.get(GIT_SHA, "unknown")
    code = commit[:7] + ("-dirty" if commit.endswith("-dirty") else "")
    made = version if version == DRY_RUN_NAME else f"v{version}"
    return f"{name} {made} · data {tags.get(DATA_SHA256, '')[:8]} · code {code}"


def _candidate(client: Any, name: str) -> str | None:
    """The version `candidate` names (MLflow gives alias targets as ints), or None."""
    holder = client.get_registered_model(name).aliases.get(CANDIDATE)
    return None if holder is None else str(holder)


def _once_more_if_raced(attempt: Callable[[], T]) -> T:
    """``attempt()``, tried a second time if it fails. MLflow's SQL store checks, then inserts
    (a dataset, an alias): two trainers doing it at the same moment on a team's server both
    miss in the check, and one fails on the unique key (BAD_REQUEST, seen in
    tests/team/test_ci_path.py). Its transaction is rolled back, so nothing is half-written,
    and the second try finds the winner's row."""
    from mlflow.exceptions import MlflowException

    try:
        return attempt()
    except MlflowException:
        return attempt()


def _move_candidate(client: Any, name: str, version: str) -> str:
    """Point `candidate` at ``version`` unless a newer version holds it (of two trainers, the
    one that registered first may finish last); where it points afterwards."""

    def attempt() -> str:
        holder = _candidate(client, name)
        if holder is not None and int(holder) > int(version):
            return holder
        client.set_registered_model_alias(name, CANDIDATE, version)
        return version

    return _once_more_if_raced(attempt)


def existing_version(client: Any, name: str, digest: str) -> Any | None:
    """The oldest version of ``name`` whose bundle has this SHA-256, or None."""
    # Both are safe inside quotes: the name matches MODEL_NAME, the digest is hex.
    found = client.search_model_versions(f"name = '{name}' and tags.{ARTIFACT_SHA256} = '{digest}'")
    return min(found, key=lambda mv: int(mv.version)) if found else None


def _datasets(mlflow: Any, run: TrainingRun) -> list[tuple[Any, str, dict[str, str]]]:
    """Both sides of the split as MLflow datasets (features and label), each tagged with the
    source file's SHA-256, its rows and how the split was made."""
    spec, parts = run.spec, run.parts
    path = spec.data.path
    # Relative to the checkout, so the record reads the same on every machine.
    source = path.relative_to(REPO).as_posix() if path.is_relative_to(REPO) else str(path)
    how = "{method}, test_size {test_size}, seed {seed}".format(**spec.split)
    sides = [
        ("train", "training", parts.X_train, parts.y_train, "rows_train"),
        ("held-out", "evaluation", parts.X_test, parts.y_test, "rows_held_out"),
    ]
    out = []
    for side, context, X, y, count in sides:
        frame = X.assign(**{spec.label_column: y.to_numpy()})
        dataset = mlflow.data.from_pandas(
            frame, source=source, targets=spec.label_column, name=f"{spec.name}-{side}"
        )
        rows = int(run.metrics.get(count, len(frame)))
        tags = {"sha256": run.data_sha256, "rows": str(rows), "split": f"{side}: {how}"}
        if len(frame) < rows:  # the Spark engine's driver holds a sample of a large side
            tags["sample"] = f"{len(frame)} rows (seeded), which the record's profile describes"
        out.append((dataset, context, tags))
    return out


def _log_model(mlflow: Any, run: TrainingRun, digest: str) -> Any:
    """The bundle as an MLflow pyfunc model (training/mlflow_model.py): same bytes, the
    handler's serving code, a signature and an input example."""
    from training import mlflow_model

    return mlflow.pyfunc.log_model(
        name=MODEL_NAME,
        python_model=str(MODEL_CODE),  # models from code: MLflow 3 refuses pickled models
        code_paths=[str(REPO / "inference")],
        artifacts={mlflow_model.BUNDLE: str(run.bundle_path)},
        model_config={mlflow_model.SHA256_KEY: digest},
        signature=mlflow_model.signature(run.bundle),
        input_example=mlflow_model.input_example(run.bundle),
        # Pinned, not inferred: inference loads the model in a subprocess (seconds).
        pip_requirements=[f"{dist}=={version(dist)}" for dist in MODEL_REQUIREMENTS],
        tags={k: v for k, v in run.tags.items() if k in LINEAGE_TAGS},
    )


def _with_lift(run: TrainingRun) -> dict[str, float]:
    gates = run.spec.gates
    return run.metrics | lift(run.metrics, gates.primary, gates.greater_is_better)


def _log_evidence(mlflow: Any, run: TrainingRun, tags: dict[str, str]) -> None:
    """What every training run records, registered or not: tags, params, validation, plots."""
    mlflow.set_tags(tags | _tool_versions())
    mlflow.log_params({k: str(v) for k, v in run.params.items()})
    mlflow.log_dict(run.validation, "validation/result.json")
    for filename, figure in run.figures.items():
        mlflow.log_figure(figure, f"plots/{filename}")


@dataclass(frozen=True)
class TrainingRun:
    """What the register stage records: the trained model's evidence and its bundle."""

    spec: ModelSpec
    parts: Split
    params: dict[str, Any]
    metrics: dict[str, float]
    figures: dict[str, Figure]
    validation: dict[str, Any]
    bundle: dict[str, Any]
    bundle_path: Path
    data_sha256: str
    tags: dict[str, str]


def log_and_register(run: TrainingRun) -> Registered:
    """Log the run and register its bundle, unless a version already holds these bytes."""
    mlflow = _mlflow()
    from mlflow import MlflowClient

    name, digest = run.spec.name, run.tags[ARTIFACT_SHA256]
    gate_failures = run.spec.gates.failures(run.metrics)
    with _one_registration_at_a_time():  # from the first call: it may create a SQLite store
        client = MlflowClient()
        try:
            client.get_registered_model(name)
        except mlflow.exceptions.MlflowException:
            try:
                client.create_registered_model(name, description=f"waterml model {name!r}")
            except mlflow.exceptions.MlflowException as exc:
                # Another trainer created it since the get (two first trainings at once,
                # seen with a team's server: tests/team/test_ci_path.py).
                if exc.error_code != "RESOURCE_ALREADY_EXISTS":
                    raise
        same = existing_version(client, name, digest)
        if same is not None:
            return _reused(client, name, same, gate_failures)
        registered = _log_and_register(mlflow, client, run, gate_failures)
    if registered.reused:
        return registered
    candidate = not gate_failures
    number = registered.version
    holder = _move_candidate(client, name, number) if candidate else _candidate(client, name)
    return Registered(number, registered.run_id, candidate, gate_failures, False, holder)


@contextlib.contextmanager
def _one_registration_at_a_time() -> Iterator[None]:
    """Two trainers of the same bytes must end with one version. With a SQLite store the
    check and the registration run under a lock file beside the store (processes on this
    machine); a team server refuses the second version of the same bytes itself
    (tools/team_auth.py: RESOURCE_ALREADY_EXISTS), which ``_log_and_register`` turns into
    a reuse."""
    store = local_store_dir()
    if store is None:
        yield
        return
    with file_lock(store / "register.lock"):
        yield


def _reused(client: Any, name: str, same: Any, gate_failures: list[str]) -> Registered:
    """Same code and data give the same bytes: that version *is* this training's result.
    No alias moves (a retrain must not silently move `candidate`)."""
    holder = _candidate(client, name)
    version = str(same.version)
    return Registered(version, same.run_id or "", holder == version, gate_failures, True, holder)


def _log_and_register(
    mlflow: Any, client: Any, run: TrainingRun, gate_failures: list[str]
) -> Registered:
    """The run (params, metrics, plots, datasets, bundle, MLflow model), then its version and
    model card; ``reused`` when a server found these bytes registered meanwhile."""
    name, digest = run.spec.name, run.tags[ARTIFACT_SHA256]
    metrics = _with_lift(run)
    with mlflow.start_run(
        experiment_id=experiment_id(mlflow, name), run_name=run_name(name, "?", run.tags)
    ) as active:
        run_id = active.info.run_id
        _log_evidence(mlflow, run, run.tags)
        # The release unit, where promotion has always found it (registry/tracking.py).
        mlflow.log_artifact(str(run.bundle_path), BUNDLE_ARTIFACT_DIR)
        datasets = _datasets(mlflow, run)
        for dataset, context, dataset_tags in datasets:
            _once_more_if_raced(
                partial(mlflow.log_input, dataset, context=context, tags=dataset_tags)
            )
        model = _log_model(mlflow, run, digest)
        # Held-out metrics, linked to the logged model and the held-out dataset.
        mlflow.log_metrics(metrics, model_id=model.model_id, dataset=datasets[1][0])
        # The version's source is the MLflow model (its MLmodel gives the UI the schema);
        # `bundle/model.joblib` in the run stays what promotion downloads.
        try:
            with contextlib.redirect_stderr(io.StringIO()):  # MLflow: "Created version..."
                version = mlflow.register_model(f"models:/{model.model_id}", name, tags=run.tags)
        except mlflow.exceptions.MlflowException as exc:
            same = existing_version(client, name, digest)
            if exc.error_code != "RESOURCE_ALREADY_EXISTS" or same is None:
                raise
            # Another trainer registered these bytes first: this run stays, saying so.
            client.set_tag(run_id, REUSED_TAG, str(same.version))
            return _reused(client, name, same, gate_failures)
        client.update_run(run_id, name=run_name(name, str(version.version), run.tags))
        # The card (Markdown, HTML, its facts) with the run; the Markdown is the description.
        model_card.attach(client, run, str(version.version), run_id)
    return Registered(str(version.version), run_id, False, gate_failures)


def log_dry_run(run: TrainingRun) -> str:
    """A run of its own with what the training found (params, held-out metrics and the lift,
    plots, the validation result, lineage tags), tagged ``dry_run``; no model is logged and no
    version registered, so no alias moves and promotion never sees it. Its id.

    Raises:
        mlflow.exceptions.MlflowException: the tracking store failed.
    """
    mlflow = _mlflow()
    name = run.spec.name
    with mlflow.start_run(
        experiment_id=experiment_id(mlflow, name), run_name=run_name(name, DRY_RUN_NAME, run.tags)
    ) as active:
        _log_evidence(mlflow, run, run.tags | {DRY_RUN: "true"})
        mlflow.log_metrics(_with_lift(run))
    return str(active.info.run_id)
