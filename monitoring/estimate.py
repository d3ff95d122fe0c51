"""The live metric estimated before any label arrives, from the model's own outputs on the
logged inputs (the bundle's graph run again on them), with an interval. numpy only.

- **Binary** (confidence-based, as NannyML's CBPE): with calibrated probabilities p, a row's
  label is positive with probability p. The expected accuracy at the served threshold is the
  mean of p over rows answered positive and 1 - p over the others; the expected ROC AUC is the
  chance that a positive ranks above a negative, sum over pairs i above j of p_i (1 - p_j),
  over the expected pairs. XGBoost's logistic output is taken as calibrated: on the held-out
  rows of potability its Brier score is 0.214, and the backtest (monitoring/backtest.py) shows
  the estimates it gives.
- **Banded regression** (an error model, as NannyML's DLE): the bundle already carries a
  model of each reading's absolute error (``abs_error``) and the scale that turns it into the
  sigma of a normal error (``sigma_scale``, chosen at training on out-of-fold residuals). The
  expected squared error of a row is sigma squared: the estimated RMSE is the root of their
  mean, the MAE sigma * sqrt(2 / pi) on average.

The interval is the spread of the metric a window of these rows would realize if the model of
the labels above were right: labels drawn from it ``DRAWS`` times (seeded), the 2.5 % and
97.5 % quantiles of the metric. It says how much a metric on this many rows moves by chance.

For banded regression that is not the whole story: the error model misses how the model's
error rises and falls from one stretch of the record to the next, so a window's realized RMSE
strays from the estimate far more than label noise explains (monitoring/README.md,
"Calibration and backtest, measured"). Training measures that on its own period
(``inference.error_windows``, on out-of-fold residuals and error predictions): for every
window of 1 and of 7 days, the log of realized / estimated RMSE (and MAE), whose 2.5, 50 and
97.5 % quantiles the bundle keeps as ``output["window_log_ratio"]``. The interval is
then the estimate times exp of those 2.5 and 97.5 % quantiles, for the window length nearest
the log's time span (1 day when unknown), widened further where label noise alone reaches
farther (a log of few rows). The point estimate is left as it is: no label-free correction
measured on the training period did better on held-out windows. A bundle without the field
(older ones, or trained on the Spark engine's sample, which has no times) gets the label-noise
interval alone.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from inference.error_windows import DAY, estimated, window_spread, windows

__all__ = ["DAY", "Estimate", "estimate", "windows"]

DRAWS = 1000
MIN_ROWS = 30  # fewer rows: reported, not judged
Metric = tuple[float, float, float]  # the estimate, and its interval's low and high


@dataclass(frozen=True)
class Estimate:
    primary: str
    rows: int
    metrics: dict[str, Metric]  # by name
    held_out: dict[str, float]
    status: str  # ok, degraded, too few rows
    reason: str = ""
    greater_is_better: bool = True
    notes: list[str] = field(default_factory=list)


def sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


def _auc_expected(p: np.ndarray) -> float:
    """The expected ROC AUC of scores p when each row is positive with probability p: the
    expected count of (positive, negative) pairs the scores order right over the expected
    count of such pairs (ties count half)."""
    order = np.argsort(p, kind="stable")
    q = p[order]
    below = np.cumsum(1.0 - q) - (1.0 - q)  # expected negatives strictly below each row
    right = float(np.sum(q * below))
    pairs = float(q.sum() * (1.0 - q).sum() - np.sum(q * (1.0 - q)))
    return right / pairs if pairs > 0 else math.nan


def _auc_realized(scores_rank: np.ndarray, y: np.ndarray) -> np.ndarray:
    """ROC AUC of fixed scores (their ranks, 1-based, ties averaged) for each row of labels."""
    positives = y.sum(axis=1)
    negatives = y.shape[1] - positives
    rank_sum = y @ scores_rank
    with np.errstate(invalid="ignore", divide="ignore"):
        return (rank_sum - positives * (positives + 1) / 2) / (positives * negatives)


def _ranks(x: np.ndarray) -> np.ndarray:
    order = np.argsort(x, kind="stable")
    ranks = np.empty(len(x))
    ranks[order] = np.arange(1, len(x) + 1)
    _values, first, count = np.unique(x[order], return_index=True, return_counts=True)
    for start, n in zip(first[count > 1], count[count > 1], strict=True):  # ties: the mean
        ranks[order[start : start + n]] = start + (n + 1) / 2
    return ranks


def binary(margin: np.ndarray, threshold: float, seed: int = 0) -> dict[str, Metric]:
    """Estimated ROC AUC and accuracy (and their intervals) from the model's margins."""
    p = sigmoid(margin.astype(np.float64))
    positive = p >= threshold
    accuracy = float(np.mean(np.where(positive, p, 1.0 - p)))
    rng = np.random.default_rng(seed)
    y = (rng.random((DRAWS, len(p))) < p).astype(np.float64)
    realized_acc = np.mean(y == positive, axis=1)
    realized_auc = _auc_realized(_ranks(p), y)
    realized_auc = realized_auc[~np.isnan(realized_auc)]
    return {
        "roc_auc": (_auc_expected(p), *_interval(realized_auc)),
        "accuracy": (accuracy, *_interval(realized_acc)),
    }


def regression(
    value: np.ndarray, abs_error: np.ndarray, sigma_scale: float, seed: int = 0,
    calibration: dict[str, Any] | None = None, days: float | None = None,
) -> dict[str, Metric]:  # fmt: skip
    """Estimated RMSE and MAE (and their intervals) from the error model's predictions;
    with ``calibration`` (the bundle's ``window_log_ratio``) the intervals also hold what
    windows of about ``days`` days (1 when None) strayed from the estimate in training."""
    sigma = np.maximum(abs_error.astype(np.float64) * sigma_scale, 1e-9)
    rng = np.random.default_rng(seed)
    errors = rng.standard_normal((DRAWS, len(sigma))) * sigma
    point = estimated(sigma)
    metrics = {
        "rmse": (point["rmse"], *_interval(np.sqrt(np.mean(errors**2, 1)))),
        "mae": (point["mae"], *_interval(np.mean(np.abs(errors), axis=1))),
    }
    spread = window_spread(calibration, days)
    for name, (low_q, high_q) in spread.items():
        if name in metrics and len(sigma):
            got, low, high = metrics[name]
            low, high = min(low, got * math.exp(low_q)), max(high, got * math.exp(high_q))
            metrics[name] = (got, low, high)
    return metrics


def _interval(values: np.ndarray) -> tuple[float, float]:
    if not len(values):
        return math.nan, math.nan
    low, high = np.quantile(values, [0.025, 0.975])
    return float(low), float(high)


def estimate(
    bundle: dict[str, Any], raw: dict[str, np.ndarray], primary: str, greater_is_better: bool,
    max_degradation: float, seed: int = 0, days: float | None = None,
) -> Estimate:  # fmt: skip
    """The estimate for these rows' raw outputs, judged against the bundle's held-out metric:
    degraded when the estimate is more than ``max_degradation`` worse than held-out and its
    interval leaves the held-out value out. ``days``: the time the rows span (None when
    unknown), which picks the window calibration of a regression's interval."""
    output = bundle["output"]
    rows = len(raw["margin"])
    if output["kind"] == "banded_regression":
        value = np.clip(raw["margin"], *output["clip"])
        metrics = regression(value, raw["abs_error"], float(output["sigma_scale"]), seed,
                             output.get("window_log_ratio"), days)  # fmt: skip
    else:
        metrics = binary(raw["margin"], float(output["threshold"]), seed)
    recorded = bundle["metadata"].get("metrics", {})
    held = {k: float(recorded[k]) for k in metrics if k in recorded}
    if rows < MIN_ROWS or primary not in metrics or primary not in held:
        return Estimate(primary, rows, metrics, held, "too few rows",
                        f"{rows} rows (at least {MIN_ROWS} are judged)",
                        greater_is_better)  # fmt: skip
    value, low, high = metrics[primary]
    reference = held[primary]
    change = (value - reference) / abs(reference) if reference else 0.0
    worse = -change if greater_is_better else change
    beyond = high < reference if greater_is_better else low > reference
    if worse > max_degradation and beyond:
        return Estimate(primary, rows, metrics, held, "degraded",
                        f"estimated {primary} {value:.4f} ({low:.4f}-{high:.4f}) is {worse:.0%} "
                        f"worse than held-out {reference:.4f} (tolerance "
                        f"{max_degradation:.0%})", greater_is_better)  # fmt: skip
    return Estimate(primary, rows, metrics, held, "ok", "", greater_is_better)
