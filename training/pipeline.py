"""The training flow for one spec: the engine's load, validate and train stages
(training/engines/), then evaluate, bundle and register, the same for every engine."""

from __future__ import annotations

import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import matplotlib.pyplot as plt

from inference.bundle import BUNDLE_FILENAME
from training import bundle, engines, evaluate, register
from training.engines.base import stage
from training.mlflow_names import ARTIFACT_SHA256, DATA_SHA256, GIT_SHA
from training.spec import ModelSpec


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


def run(spec: ModelSpec, out_dir: Path | None = None, dry_run: bool = False) -> Result:
    """Train ``spec`` and register its bundle; with ``dry_run``, log the run and register no
    version (an experiment to compare in MLflow)."""
    start = time.perf_counter()
    name = spec.name
    trained = engines.train(spec)
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
