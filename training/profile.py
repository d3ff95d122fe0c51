"""The training profile a bundle carries (its ``profile`` key): what the model was fitted on,
for serving's domain verdicts (inference/domain.py), drift reports and model cards.

Computed on the training rows the model was fit on, as the model reads them (float32), by a
fixed procedure (no clock, seeded choices), so the bundle stays byte-reproducible::

    {"rule": "...", "lower_q": 0.005, "upper_q": 0.995, "rows": 16658,
     "features": {name: {"quantiles": {"0": min, "0.005": ..., "1": max}, "mean", "std",
                         "missing_rate"}},
     "combination": {the grid of every three features: training/combination.py},
     "reference": {"rows", "names", "values": float32 bytes, "seconds": int64 bytes or None},
     "inside_share": the training rows' share inside both verdicts,
     "outputs": {"kind": "bands" | "classes", "labels": [...], "shares": [...],
                 "label_shares": [...]}}

``reference`` is the drift reports' picture of the training rows (monitoring/compare.py): up
to ``REFERENCE_ROWS`` of them, every k-th in time order with its reading time (seconds since
the epoch, UTC) when the data has timestamps, so that a live window can be compared with
windows of training's own (its daily cycle, its seasons, its autocorrelation), else a seeded
sample. ``shares`` is the mix of the model's answers on the training rows; ``label_shares``
the mix of the training labels, the floor of an out-of-domain reading's confidence
(inference/outputs.py).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import numpy as np

from inference.domain import Domain
from inference.predictor import Predictor
from training import combination
from training.model import Split
from training.spec import ModelSpec

LOWER_Q, UPPER_Q = 0.005, 0.995
QUANTILES = (0.0, 0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 0.75, 0.9, 0.95, 0.99, 0.995, 1.0)
REFERENCE_ROWS = 4096  # training rows kept for drift reports (~100 KB with their times)
RULE = (
    "A reading is outside the domain when a feature's value is below the 0.5 % or above the "
    "99.5 % quantile of its training values (as float32), or when three of its features fall "
    "together in a cell of their rank grid that the training rows left rare; a missing value "
    "is never outside."
)


def quantile_key(level: float) -> str:
    """``0.005`` -> ``"0.005"``, ``0.0`` -> ``"0"``, ``1.0`` -> ``"1"``."""
    return f"{level:g}"


def feature_profile(values: np.ndarray) -> dict[str, Any]:
    """One feature's entry, from its training values (NaN: missing)."""
    missing = np.isnan(values)
    present = values[~missing]
    entry: dict[str, Any] = {"missing_rate": float(missing.mean()) if len(values) else 0.0}
    if not len(present):  # never observed: no domain to leave (serving flags nothing)
        return entry | {"quantiles": {quantile_key(q): None for q in QUANTILES},
                        "mean": None, "std": None}  # fmt: skip
    levels = np.quantile(present, QUANTILES)  # linear interpolation, numpy's default
    return entry | {
        "quantiles": {quantile_key(q): float(v) for q, v in zip(QUANTILES, levels, strict=True)},
        "mean": float(present.mean()),
        "std": float(present.std()),
    }


def epoch_seconds(stamps: list[str | None]) -> np.ndarray:
    """ISO-8601 texts with offsets as seconds since the epoch; -1 where there is none."""
    return np.array([-1 if s is None else int(datetime.fromisoformat(s).timestamp())
                     for s in stamps], dtype=np.int64)  # fmt: skip


def reference(X: np.ndarray, stamps: list[str | None] | None, seed: int,
              names: list[str]) -> dict[str, Any]:  # fmt: skip
    """Up to REFERENCE_ROWS training rows: every k-th in time order with its time when the
    rows have timestamps, else a seeded sample in row order."""
    seconds = None if stamps is None else epoch_seconds(stamps)
    if seconds is not None and (seconds >= 0).any():
        dated = np.flatnonzero(seconds >= 0)
        ordered = dated[np.argsort(seconds[dated], kind="stable")]
        step = -(-len(ordered) // REFERENCE_ROWS)  # ceiling: at most REFERENCE_ROWS rows
        chosen = ordered[::step]
    else:
        seconds = None
        size = min(REFERENCE_ROWS, len(X))
        chosen = np.sort(np.random.default_rng(seed).choice(len(X), size=size, replace=False))
    return {
        "rows": len(chosen),
        "names": list(names),
        "values": np.ascontiguousarray(X[chosen], dtype="<f4").tobytes(),
        "seconds": None if seconds is None else seconds[chosen].astype("<i8").tobytes(),
    }


def build(spec: ModelSpec, parts: Split, predictor: Predictor) -> dict[str, Any]:
    """The profile of ``parts.X_train``; ``predictor`` serves the bundle's graph and output
    (its answers on the training rows give ``shares``)."""
    names = list(spec.features)
    X = parts.X_train[names].to_numpy(np.float32)
    seed = int(spec.split["seed"])
    output = predictor.output
    answered = np.asarray(predictor.output.answered(predictor.raw(X), None, None).tally.labels)
    found: dict[str, Any] = {
        "rule": RULE,
        "lower_q": LOWER_Q,
        "upper_q": UPPER_Q,
        "rows": len(X),
        "features": {
            name: feature_profile(X[:, j].astype(np.float64)) for j, name in enumerate(names)
        },
    }
    found["combination"] = combination.grid(found, X, names, seed)
    checked = Domain(found, names).check(X)
    found["inside_share"] = 1.0 - float(np.mean(checked.outside_rows))
    found["reference"] = reference(X, parts.timestamps_train, seed, names)
    found["outputs"] = {
        "kind": "bands" if spec.output["kind"] == "banded_regression" else "classes",
        "labels": list(output.labels),
        "shares": (answered / answered.sum()).tolist(),
        "label_shares": label_shares(output, parts.y_train.to_numpy(np.float64)),
    }
    return found


def label_shares(output: Any, y: np.ndarray) -> list[float]:
    """The training labels' share per label of ``output`` (bands: the band the true value is
    in; classes: False, True)."""
    if hasattr(output, "band_index"):
        index = output.band_index(np.clip(y, output.lower, output.upper))
    else:
        index = (y >= 0.5).astype(np.int64)  # binary labels are 0/1
    counts = np.bincount(index, minlength=len(output.labels))
    return (counts / counts.sum()).tolist()
