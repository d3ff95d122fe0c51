"""The training profile a bundle carries (its ``profile`` key): what the model was fitted on,
for serving's domain verdicts (inference/domain.py), drift reports and model cards.

Computed on the training rows the model was fit on, as the model reads them (float32), by a
fixed procedure (no clock, seeded choices), so the bundle stays byte-reproducible::

    {"rule": "...", "lower_q": 0.005, "upper_q": 0.995, "rows": 16658,
     "features": {name: {"quantiles": {"0": min, "0.005": ..., "1": max}, "mean", "std",
                         "missing_rate"}},
     "combination": {"method": "nearest", the radius and certificate grid:
                     training/neighbours.py},
     "reference": {"rows", "names", "values": float32 bytes, "seconds": int64 bytes or None,
                   "outside": bits: outside a domain built without the row's week},
     "inside_share": the training rows' share inside both verdicts,
     "held_out_inside_share": the same, each row judged by a domain built without its week,
     "outputs": {"kind": "bands" | "classes", "labels": [...], "shares": [...],
                 "label_shares": [...]}}

``reference`` holds the training rows (up to ``REFERENCE_ROWS``, every k-th in time order
beyond): serving's combination verdict measures a reading's distance to them, and drift
reports compare a live window with windows of training's own (monitoring/reference.py), so
each keeps its reading time (seconds since the epoch, UTC) when the data has timestamps, and
whether it was outside a domain built without its week.
``shares`` is the mix of the model's answers on the training rows; ``label_shares``
the mix of the training labels, which caps an out-of-domain reading's confidence
(inference/outputs.py).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import numpy as np

from inference.domain import Domain
from inference.predictor import Predictor
from training import neighbours
from training.model import Split
from training.spec import ModelSpec

LOWER_Q, UPPER_Q = 0.005, 0.995
QUANTILES = (0.0, 0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 0.75, 0.9, 0.95, 0.99, 0.995, 1.0)
REFERENCE_ROWS = 20_000  # training rows kept (wqi's 16,658: 466 KB with their times)
FOLDS = 5  # for every cross-fit: of whole weeks (interleaved) with timestamps, else of rows
WEEK = 7 * 86_400
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


def folds(seconds: np.ndarray | None, rows: int, seed: int) -> np.ndarray:
    """Each training row's fold for cross-fitting: its week (interleaved, so every fold spans
    the seasons) when the rows have reading times, else a seeded shuffle."""
    if seconds is not None and (seconds >= 0).all():
        return ((seconds - seconds.min()) // WEEK % FOLDS).astype(np.int64)
    return np.random.default_rng(seed).permutation(rows) % FOLDS


def _box(X: np.ndarray, names: list[str]) -> dict[str, Any]:
    """The profile's bounds (its feature entries) of rows ``X``."""
    return {"lower_q": LOWER_Q, "upper_q": UPPER_Q,
            "features": {name: feature_profile(X[:, j].astype(np.float64))
                         for j, name in enumerate(names)}}  # fmt: skip


def chosen_rows(seconds: np.ndarray | None, rows: int, seed: int) -> np.ndarray:
    """The reference rows: every k-th in time order when the rows have times (all of them up
    to REFERENCE_ROWS), else a seeded sample in row order."""
    if seconds is not None and (seconds >= 0).any():
        dated = np.flatnonzero(seconds >= 0)
        ordered = dated[np.argsort(seconds[dated], kind="stable")]
        return ordered[:: -(-len(ordered) // REFERENCE_ROWS)]  # ceiling: at most the cap
    size = min(REFERENCE_ROWS, rows)
    return np.sort(np.random.default_rng(seed).choice(rows, size=size, replace=False))


def reference(
    X: np.ndarray, seconds: np.ndarray | None, names: list[str], chosen: np.ndarray
) -> dict[str, Any]:
    """The profile's reference rows (``chosen``), with their reading times when there are."""
    dated = seconds is not None and bool((seconds[chosen] >= 0).all())
    return {
        "rows": len(chosen),
        "names": list(names),
        "values": np.ascontiguousarray(X[chosen], dtype="<f4").tobytes(),
        "seconds": seconds[chosen].astype("<i8").tobytes() if dated else None,  # type: ignore[index]
    }


def held_out_outside(
    X: np.ndarray, names: list[str], fold: np.ndarray, chosen: np.ndarray
) -> np.ndarray:
    """Per reference row, not inside a domain built (bounds, reference rows and radius) from
    the other folds: what a new week's readings meet. In-sample the bounds leave 1 % per
    feature outside by construction; a week the profile never saw has its own extremes."""
    out = np.zeros(len(chosen), dtype=bool)
    picked = np.zeros(len(X), dtype=bool)
    picked[chosen] = True
    for k in np.unique(fold):
        rest = fold != k
        ref = np.flatnonzero(rest & picked)
        sub = _box(X[rest], names)
        sub["reference"] = reference(X, None, names, ref)
        r, _ = neighbours.radius(X[ref], fold[ref])
        sub["combination"] = {"method": "nearest", "radius": r}
        held = fold[chosen] == k
        checked = Domain(sub, names).check(X[chosen[held]])
        out[held] = np.asarray(checked.outside_rows, dtype=bool)
    return out


def build(spec: ModelSpec, parts: Split, predictor: Predictor) -> dict[str, Any]:
    """The profile of ``parts.X_train``; ``predictor`` serves the bundle's graph and output
    (its answers on the training rows give ``shares``)."""
    names = list(spec.features)
    X = parts.X_train[names].to_numpy(np.float32)
    seed = int(spec.split["seed"])
    output = predictor.output
    answered = np.asarray(predictor.output.answered(predictor.raw(X), None, None).tally.labels)
    found: dict[str, Any] = {"rule": RULE, "rows": len(X), **_box(X, names)}
    stamps = parts.timestamps_train
    seconds = None if stamps is None else epoch_seconds(stamps)
    fold = folds(seconds, len(X), seed)
    chosen = chosen_rows(seconds, len(X), seed)
    found["reference"] = reference(X, seconds, names, chosen)
    calendar = tuple(j for j, name in enumerate(names) if name in spec.calendar_features)
    found["combination"] = neighbours.combination(X[chosen], fold[chosen], calendar)
    checked = Domain(found, names).check(X)
    found["inside_share"] = 1.0 - float(np.mean(checked.outside_rows))
    outside = held_out_outside(X, names, fold, chosen)
    found["reference"]["outside"] = np.packbits(outside).tobytes()
    found["held_out_inside_share"] = 1.0 - float(outside.mean())
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
