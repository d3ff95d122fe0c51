"""The training profile a bundle carries (its ``profile`` key): what the model was fitted on,
for serving's domain verdict (inference/domain.py), drift reports and model cards.

Computed on the training rows the model was fit on, as the model reads them (float32), by a
fixed procedure (no clock, a seeded sample), so the bundle stays byte-reproducible::

    {"rule": "...", "lower_q": 0.005, "upper_q": 0.995, "rows": 16658,
     "features": {name: {"quantiles": {"0": min, "0.005": ..., "1": max}, "mean", "std",
                         "missing_rate", "sample": [<= 512 values]}},
     "outputs": {"kind": "bands" | "classes", "labels": [...], "shares": [...],
                 "label_shares": [...]}}

``shares`` is the mix of the model's answers on the training rows; ``label_shares`` the mix of
the training labels, the confidence of an out-of-domain reading (inference/outputs.py).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from inference.predictor import Predictor
from training.model import Split
from training.spec import ModelSpec

LOWER_Q, UPPER_Q = 0.005, 0.995
QUANTILES = (0.0, 0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 0.75, 0.9, 0.95, 0.99, 0.995, 1.0)
SAMPLE = 512  # training values kept per feature, for two-sample tests
RULE = (
    "A reading is outside the model's domain when any feature's value is below the 0.5 % "
    "quantile or above the 99.5 % quantile of that feature on the training rows (the model's "
    "float32 values); a missing value (a nullable feature's null, a calendar feature without "
    "a timestamp) is never outside."
)


def quantile_key(level: float) -> str:
    """``0.005`` -> ``"0.005"``, ``0.0`` -> ``"0"``, ``1.0`` -> ``"1"``."""
    return f"{level:g}"


def feature_profile(values: np.ndarray, rng: np.random.Generator) -> dict[str, Any]:
    """One feature's entry, from its training values (NaN: missing)."""
    missing = np.isnan(values)
    present = values[~missing]
    entry: dict[str, Any] = {"missing_rate": float(missing.mean()) if len(values) else 0.0}
    if not len(present):  # never observed: no domain to leave (serving flags nothing)
        return entry | {"quantiles": {quantile_key(q): None for q in QUANTILES},
                        "mean": None, "std": None, "sample": []}  # fmt: skip
    levels = np.quantile(present, QUANTILES)  # linear interpolation, numpy's default
    chosen = np.sort(rng.choice(len(present), size=min(SAMPLE, len(present)), replace=False))
    return entry | {
        "quantiles": {quantile_key(q): float(v) for q, v in zip(QUANTILES, levels, strict=True)},
        "mean": float(present.mean()),
        "std": float(present.std()),
        "sample": present[chosen].tolist(),
    }


def build(spec: ModelSpec, parts: Split, predictor: Predictor) -> dict[str, Any]:
    """The profile of ``parts.X_train``; ``predictor`` serves the bundle's graph and output
    (its answers on the training rows give ``shares``)."""
    X = parts.X_train[list(spec.features)].to_numpy(np.float32)
    rng = np.random.default_rng(int(spec.split["seed"]))
    features = {
        name: feature_profile(X[:, j].astype(np.float64), rng)
        for j, name in enumerate(spec.features)
    }
    output = predictor.output
    answered = np.asarray(predictor.output.answered(predictor.raw(X), None, None).tally.labels)
    return {
        "rule": RULE,
        "lower_q": LOWER_Q,
        "upper_q": UPPER_Q,
        "rows": len(X),
        "features": features,
        "outputs": {
            "kind": "bands" if spec.output["kind"] == "banded_regression" else "classes",
            "labels": list(output.labels),
            "shares": (answered / answered.sum()).tolist(),
            "label_shares": label_shares(output, parts.y_train.to_numpy(np.float64)),
        },
    }


def label_shares(output: Any, y: np.ndarray) -> list[float]:
    """The training labels' share per label of ``output`` (bands: the band the true value is
    in; classes: False, True)."""
    if hasattr(output, "band_index"):
        index = output.band_index(np.clip(y, output.lower, output.upper))
    else:
        index = (y >= 0.5).astype(np.int64)  # binary labels are 0/1
    counts = np.bincount(index, minlength=len(output.labels))
    return (counts / counts.sum()).tolist()
