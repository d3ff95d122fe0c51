"""What every engine shares: the stage lines, the data pin check, the validate stage, where the
rows went, and what an engine hands on (``Trained``) to the evaluate, bundle and register
stages (training/pipeline.py), which are the same for every engine."""

from __future__ import annotations

import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from training import data, expectations, model, register
from training.mlflow_names import DATA_SHA256
from training.spec import ModelSpec


class DataChanged(data.DataError):
    """The dataset's bytes are not the ones the spec pins."""


def check_pin(spec: ModelSpec, data_sha256: str) -> None:
    """Raises:
    DataChanged: the dataset's SHA-256 is not the one the spec pins."""
    if data_sha256 != spec.data.sha256:
        raise DataChanged(
            f"{spec.data.path.name} has SHA-256 {data_sha256}, but {spec.source.name} pins "
            f"{spec.data.sha256}; if the new data is intended, update [data] sha256"
        )


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
    failed result is evidence too) before the run stops.

    Raises:
        SpecError: a feature or label column neither the data nor the suite has (a typo),
            said before the suite runs.
        ValidationFailed: the data does not meet its suite.
    """
    with stage("validate", spec.name) as note:
        data.check_columns(spec, frame.columns)  # a misspelled name now, not after validation
        suite = expectations.load_suite(spec.data.expectations)
        report = expectations.validate(frame, suite)
        if not report.success:
            register.log_failed_validation(spec.name, report.result, {DATA_SHA256: data_sha256})
            raise expectations.ValidationFailed(spec.data.path.name, report.failures, report.causes)
        note.append(f"{report.evaluated} expectations met{where}")
    return report, expectations.feature_ranges(suite, list(spec.features))
