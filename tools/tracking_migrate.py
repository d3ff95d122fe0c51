"""From solo to team: copy a SQLite tracking store (experiments, runs with their params, metric
histories, tags, dataset inputs and artifacts, logged models, registered models, versions with
their tags and aliases) into a tracking server, through MLflow's client, then verify it.

    python -m tools.tracking_migrate [--source sqlite:///mlruns/mlflow.db]
        # into MLFLOW_TRACKING_URI as MLFLOW_TRACKING_USERNAME (the admin: it sets release
        # tags and `champion`), e.g. tools.tracking_server run --user admin -- python -m ...

Idempotent: every copied run, logged model and version carries the tag ``waterml.migrated_from``
(the source store and the original id), and a second run copies only what is missing. The
server numbers versions itself: into a model the server does not have yet they keep their
numbers (approved.toml stays true); otherwise the report lists the new numbers. Verified by
counts per model and experiment, and by the SHA-256 of every artifact on both sides."""

from __future__ import annotations

import argparse
import hashlib
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from settings import DEFAULT_TRACKING_URI, tracking_uri
from training.mlflow_names import quiet_mlflow

MIGRATED = "waterml.migrated_from"


@dataclass
class Report:
    runs: dict[str, str] = field(default_factory=dict)  # source run id -> server run id
    models: dict[str, str] = field(default_factory=dict)  # source logged model -> server's
    versions: dict[tuple[str, str], str] = field(default_factory=dict)  # (name, v) -> server v
    copied: int = 0  # runs, logged models and versions copied this time (0 on a re-run)
    artifacts: dict[str, str] = field(default_factory=dict)  # "run/path" -> sha256, checked


def migrate(source: Any, dest: Any, label: str) -> Report:
    """Copy everything of ``source`` (MlflowClient) missing in ``dest``, then verify."""
    from mlflow.entities import ViewType

    report = Report()
    for experiment in source.search_experiments(view_type=ViewType.ALL):
        found = dest.get_experiment_by_name(experiment.name)
        target = found.experiment_id if found else dest.create_experiment(
            experiment.name, tags=dict(experiment.tags)
        )  # fmt: skip
        for run in _all_runs(source, experiment.experiment_id):
            report.runs[run.info.run_id] = _run(source, dest, run, target, label, report)
        for model in _all(lambda token, e=experiment: source.search_logged_models(
                [e.experiment_id], page_token=token)):  # fmt: skip
            report.models[model.model_id] = _logged_model(source, dest, model, target, label,
                                                          report)  # fmt: skip
    for registered in _all(lambda token: source.search_registered_models(page_token=token)):
        _registered(source, dest, registered, label, report)
    _verify(source, dest, report)
    return report


def _all(page: Any) -> list[Any]:
    out, token = [], None
    while True:
        got = page(token)
        out += list(got)
        token = got.token
        if not token:
            return out


def _all_runs(client: Any, experiment_id: str) -> list[Any]:
    from mlflow.entities import ViewType

    return _all(lambda token: client.search_runs([experiment_id], run_view_type=ViewType.ALL,
                                                 page_token=token))  # fmt: skip


def _found(dest: Any, experiment_id: str, key: str) -> Any | None:
    hits = dest.search_runs([experiment_id], filter_string=f"tags.`{MIGRATED}` = '{key}'")
    return hits[0] if hits else None


def _run(source: Any, dest: Any, run: Any, experiment_id: str, label: str, report: Report) -> str:
    from mlflow.entities import DatasetInput, Metric, Param

    key = f"{label}#run/{run.info.run_id}"
    existing = _found(dest, experiment_id, key)
    if existing is not None:
        return str(existing.info.run_id)
    tags = {k: v for k, v in run.data.tags.items() if not k.startswith("mlflow.log-model")}
    started = dest.create_run(experiment_id, start_time=run.info.start_time,
                              tags=tags | {MIGRATED: key}, run_name=run.info.run_name)  # fmt: skip
    new = started.info.run_id
    params = [Param(k, v) for k, v in run.data.params.items()]
    history = [m for k in run.data.metrics for m in source.get_metric_history(run.info.run_id, k)]
    metrics = [Metric(m.key, m.value, m.timestamp, m.step) for m in history]
    for start in range(0, max(len(params), len(metrics)), 100):
        dest.log_batch(
            new, metrics=metrics[start : start + 100], params=params[start : start + 100]
        )
    inputs = [DatasetInput(i.dataset, i.tags) for i in run.inputs.dataset_inputs]
    if inputs:
        dest.log_inputs(new, datasets=inputs)
    with tempfile.TemporaryDirectory() as tmp:
        if source.list_artifacts(run.info.run_id):
            local = source.download_artifacts(run.info.run_id, "", tmp)
            dest.log_artifacts(new, local)
    dest.set_terminated(new, run.info.status, run.info.end_time)
    report.copied += 1
    return str(new)


def _logged_model(
    source: Any, dest: Any, model: Any, experiment_id: str, label: str, report: Report
) -> str:
    import mlflow

    key = f"{label}#model/{model.model_id}"
    hits = dest.search_logged_models([experiment_id], filter_string=f"tags.`{MIGRATED}` = '{key}'")
    if hits:
        return str(hits[0].model_id)
    created = dest.create_logged_model(
        experiment_id, name=model.name, source_run_id=report.runs.get(model.source_run_id or ""),
        tags=dict(model.tags) | {MIGRATED: key}, params=dict(model.params),
        model_type=model.model_type,
    )  # fmt: skip
    with tempfile.TemporaryDirectory() as tmp:
        local = mlflow.artifacts.download_artifacts(
            artifact_uri=model.artifact_location, dst_path=tmp, tracking_uri=source.tracking_uri
        )
        dest.log_model_artifacts(created.model_id, local)
    dest.finalize_logged_model(created.model_id, "READY")
    report.copied += 1
    return str(created.model_id)


def _registered(source: Any, dest: Any, registered: Any, label: str, report: Report) -> None:
    name = registered.name
    try:
        dest.get_registered_model(name)
    except Exception:  # MLflow raises RestException(RESOURCE_DOES_NOT_EXIST)
        dest.create_registered_model(name, tags=dict(registered.tags),
                                     description=registered.description)  # fmt: skip
    done = {v.tags.get(MIGRATED): str(v.version)
            for v in dest.search_model_versions(f"name = '{name}'")}  # fmt: skip
    versions = source.search_model_versions(f"name = '{name}'")
    for version in sorted(versions, key=lambda v: int(v.version)):
        key = f"{label}#version/{name}/{version.version}"
        if key in done:
            report.versions[(name, str(version.version))] = done[key]
            continue
        # The logged model a version was registered from (its source, models:/m-...).
        logged = version.model_id or version.source.removeprefix("models:/")
        model_id = report.models.get(logged)
        source_uri = f"models:/{model_id}" if model_id else version.source
        created = dest.create_model_version(
            name, source_uri, run_id=report.runs.get(version.run_id or ""),
            tags=dict(version.tags) | {MIGRATED: key}, description=version.description,
            model_id=model_id,
        )  # fmt: skip
        report.versions[(name, str(version.version))] = str(created.version)
        report.copied += 1
    for alias, number in registered.aliases.items():
        dest.set_registered_model_alias(name, alias, report.versions[(name, str(number))])


def _verify(source: Any, dest: Any, report: Report) -> None:
    """Raises:
    RuntimeError: a count or an artifact's SHA-256 differs between the two stores."""
    for old, new in report.runs.items():
        a, b = source.get_run(old), dest.get_run(new)
        if (a.data.params, a.data.metrics, len(a.inputs.dataset_inputs)) != (
            b.data.params, b.data.metrics, len(b.inputs.dataset_inputs)
        ):  # fmt: skip
            raise RuntimeError(f"run {old}: params, metrics or inputs differ on the server")
        mine, theirs = _digests(source, old), _digests(dest, new)
        if mine != theirs:
            raise RuntimeError(f"run {old}: artifacts differ on the server")
        report.artifacts |= {f"{old}/{path}": digest for path, digest in mine.items()}
    for (name, old_version), new_version in report.versions.items():
        a = source.get_model_version(name, old_version)
        b = dest.get_model_version(name, new_version)
        copied = {k: v for k, v in b.tags.items() if k != MIGRATED}
        if copied != a.tags or sorted(a.aliases) != sorted(b.aliases):
            raise RuntimeError(f"{name} version {old_version}: tags or aliases differ")


def _digests(client: Any, run_id: str) -> dict[str, str]:
    with tempfile.TemporaryDirectory() as tmp:
        if not client.list_artifacts(run_id):
            return {}
        root = Path(client.download_artifacts(run_id, "", tmp))
        return {p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
                for p in sorted(root.rglob("*")) if p.is_file()}  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m tools.tracking_migrate",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--source", default=DEFAULT_TRACKING_URI, help="the solo store's URI")
    args = parser.parse_args(argv)
    target = tracking_uri()
    if not target.startswith(("http://", "https://")) or not args.source.startswith("sqlite:"):
        print("error: set MLFLOW_TRACKING_URI to the team server (and its login); --source is "
              "a sqlite:/// store", file=sys.stderr)  # fmt: skip
        return 2
    quiet_mlflow()
    from mlflow import MlflowClient

    try:
        report = migrate(MlflowClient(args.source), MlflowClient(target), args.source)
    except RuntimeError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    renumbered = {f"{n} {v}->{w}" for (n, v), w in report.versions.items() if v != w}
    print(f"{len(report.runs)} runs, {len(report.models)} logged models and "
          f"{len(report.versions)} versions on {target} ({report.copied} copied now); "
          f"{len(report.artifacts)} artifacts verified by SHA-256"
          + (f"; renumbered: {', '.join(sorted(renumbered))}" if renumbered else ""))  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
