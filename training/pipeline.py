"""The training flow for one spec: load, validate, train, evaluate, bundle, register."""

from __future__ import annotations

import json
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import matplotlib.pyplot as plt

from inference.bundle import BUNDLE_FILENAME, sha256_hex
from training import bundle, data, evaluate, expectations, labels, model, register
from training.mlflow_names import ARTIFACT_SHA256, DATA_SHA256, GIT_SHA
from training.spec import ModelSpec


class DataChanged(data.DataError):
    """The dataset's bytes are not the ones the spec pins."""


@dataclass(frozen=True)
class Result:
    name: str
    version: str
    run_id: str
    candidate: bool
    artifact_sha256: str
    bundle_bytes: int
    metrics: dict[str, float]
    seconds: float
    reused: bool = False  # an existing version held the same bytes: no new one was registered
    dry_run: bool = False  # a run was logged, no version registered (version is "")


@contextmanager
def stage(name: str, model_name: str) -> Iterator[list[str]]:
    """Prints `[model] stage ... seconds  detail` when the stage ends."""
    notes: list[str] = []
    start = time.perf_counter()
    print(f"[{model_name}] {name:<9}", end="", file=sys.stderr, flush=True)
    try:
        yield notes
    except BaseException:
        print(" failed", file=sys.stderr)
        raise
    took = time.perf_counter() - start
    print(f" {took:6.2f} s  {'; '.join(notes)}", file=sys.stderr)


def filtered(loaded: data.Loaded, spec: ModelSpec) -> str:
    """The load line's account of the spec's row filter, when it has one."""
    if spec.data.filter is None:
        return ""
    return f" (filter removed {loaded.rows_filtered:,} of {loaded.rows_read:,} rows)"


@dataclass(frozen=True)
class Rows:
    """Where the rows the spec's filter kept went: left out (by reason), trained on, held out.
    Counted over the whole table; an engine's ``Split`` may hold a sample of each side."""

    dropped: dict[str, int]
    train: int
    held_out: int

    def line(self) -> str:
        dropped = ", ".join(f"{v:,} {k.replace('_', ' ')}" for k, v in self.dropped.items())
        return f"{self.train:,} train / {self.held_out:,} held out ({dropped})"

    def metrics(self, read: int, filtered: int) -> dict[str, int]:
        """Where every row went, logged beside the metrics (MLflow) and kept in the bundle."""
        return (
            {"rows_read": read, "rows_filtered": filtered}
            | {f"rows_{reason}": count for reason, count in self.dropped.items()}
            | {"rows_train": self.train, "rows_held_out": self.held_out}
        )


@dataclass(frozen=True)
class Trained:
    """What an engine's load, validate and train stages hand on; evaluation, the bundle and
    the registration that follow are the same for every engine."""

    data_sha256: str
    report: expectations.ValidationReport
    ranges: dict[str, dict[str, float]]
    parts: model.Split
    fitted: model.Fitted
    rows: dict[str, int]  # where every row went


def validated(
    spec: ModelSpec, frame: Any, data_sha256: str, where: str = ""
) -> tuple[expectations.ValidationReport, dict[str, dict[str, float]]]:
    """The validate stage of either engine: the spec's suite against ``frame`` (pandas or
    Spark), and the feature ranges it declares; a failure is logged to a run of its own (the
    failed result is evidence too) before the run stops."""
    with stage("validate", spec.name) as note:
        data.check_columns(spec, frame.columns)  # a misspelled name now, not after validation
        suite = expectations.load_suite(spec.data.expectations)
        report = expectations.validate(frame, suite)
        if not report.success:
            register.log_failed_validation(spec.name, report.result, {DATA_SHA256: data_sha256})
            raise expectations.ValidationFailed(spec.data.path.name, report.failures, report.causes)
        note.append(f"{report.evaluated} expectations met{where}")
    return report, expectations.feature_ranges(suite, list(spec.features))


def train(spec: ModelSpec) -> Trained:
    """The pandas engine: load, validate and train in this process."""
    name = spec.name
    with stage("load", name) as note:
        raw = data.read_bytes(spec.data)
        data_sha256 = sha256_hex(raw)
        if data_sha256 != spec.data.sha256:
            raise DataChanged(
                f"{spec.data.path.name} has SHA-256 {data_sha256}, but {spec.source.name} pins "
                f"{spec.data.sha256}; if the new data is intended, update [data] sha256"
            )
        loaded = data.load(spec.data, raw)
        frame = loaded.frame
        note.append(f"{len(frame):,} rows x {frame.shape[1]} columns{filtered(loaded, spec)}, "
                    f"sha256 {data_sha256[:12]}")  # fmt: skip
        # The spec's list replaces pandas' defaults: say which cells became missing values.
        markers = ", ".join(json.dumps(v, ensure_ascii=False) for v in spec.data.na_values)
        note.append(f"NA markers {markers or 'none'}")

    report, ranges = validated(spec, frame, data_sha256)

    with stage("train", name) as note:
        label = labels.make_label(frame, spec.label)
        dataset = model.make_dataset(frame, label, spec, ranges)
        parts = model.split(dataset, spec)
        fitted = model.fit(parts, spec)
        counts = Rows(dataset.dropped, len(parts.X_train), len(parts.X_test))
        note.append(counts.line())
    rows = counts.metrics(loaded.rows_read, loaded.rows_filtered)
    return Trained(data_sha256, report, ranges, parts, fitted, rows)


def run(spec: ModelSpec, out_dir: Path | None = None, dry_run: bool = False) -> Result:
    """Train ``spec`` and register its bundle; with ``dry_run``, log the run and register no
    version (an experiment to compare in MLflow)."""
    start = time.perf_counter()
    name = spec.name
    if spec.engine == "spark":  # imported only here: the spark dependency group is optional
        from training.engines import spark

        trained = spark.train(spec)
    else:
        trained = train(spec)
    data_sha256, report, ranges = trained.data_sha256, trained.report, trained.ranges
    parts, fitted, rows = trained.parts, trained.fitted, trained.rows

    with stage("evaluate", name) as note:
        evaluation = evaluate.evaluate(fitted, parts, spec)
        metrics, figures = evaluation.metrics | rows, evaluation.figures
        metric = spec.gates.primary
        note.append(
            f"{metric} {metrics[metric]:.4f} vs baseline {metrics['baseline_' + metric]:.4f}"
        )

    with tempfile.TemporaryDirectory() as tmp:
        with stage("bundle", name) as note:
            commit = bundle.git_sha()
            content = bundle.build(spec, fitted, parts, ranges, metrics, data_sha256, commit)
            path = (out_dir or Path(tmp)) / name / BUNDLE_FILENAME
            digest = bundle.write(content, path)
            size = path.stat().st_size
            note.append(f"{size / 1024:.0f} KiB, sha256 {digest[:12]}, golden samples match")

        with stage("log" if dry_run else "register", name) as note:
            tags = {ARTIFACT_SHA256: digest, DATA_SHA256: data_sha256, GIT_SHA: commit}
            training_run = register.TrainingRun(
                spec, parts, fitted.params, metrics, figures, report.result, content, path,
                data_sha256, tags,
            )  # fmt: skip
            if dry_run:
                run_id = register.log_dry_run(training_run)
                plt.close("all")
                note.append(f"run {run_id[:8]}, no version registered (dry run)")
                registered = register.Registered("", run_id, False, [])
            else:
                registered = register.log_and_register(training_run)
                plt.close("all")
                note.append(register_note(registered))

    return Result(
        name, registered.version, registered.run_id, registered.candidate, digest, size,
        metrics, time.perf_counter() - start, registered.reused, dry_run,
    )  # fmt: skip


def register_note(registered: register.Registered) -> str:
    """The register stage's line: which version, whether it is new, where `candidate` is."""
    if registered.candidate:
        alias = "alias candidate"
    elif registered.gate_failures:
        alias = "NOT a candidate"
    else:
        alias = f"candidate is version {registered.candidate_version or 'unset'}"
    if registered.reused:
        return f"version {registered.version} reused (same sha256, nothing logged), {alias}"
    return f"version {registered.version}, {alias}"
