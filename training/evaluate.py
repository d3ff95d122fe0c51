"""Held-out metrics beside the baseline's, the confidence's calibration, and the plots."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import matplotlib

matplotlib.use("Agg")  # headless: figures go to MLflow, never to a window

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.figure import Figure
from sklearn import metrics as skm

from inference.outputs import BandedRegression
from training.model import Fitted, Split
from training.spec import ModelSpec

CALIBRATION_BINS = 10


@dataclass(frozen=True)
class Evaluation:
    metrics: dict[str, float]
    figures: dict[str, Figure]


def evaluate(fitted: Fitted, parts: Split, spec: ModelSpec) -> Evaluation:
    """Held-out metrics (model and baseline) and the plots, from one pass of predictions."""
    X, y = parts.X_test, parts.y_test.to_numpy()
    figures = {"feature_importance.png": _importance(fitted, spec)}
    if spec.task == "binary":
        threshold = float(spec.output["threshold"])  # what serving answers with; spec.py checks it
        prob = fitted.model.predict_proba(X)[:, 1]
        out = _classification(y, prob, threshold, "")
        out |= _classification(y, fitted.baseline.predict_proba(X)[:, 1], threshold, "baseline_")
        figures["confusion_matrix.png"] = _confusion(y, prob, threshold)
        figures["roc.png"] = _roc(y, prob)
    else:
        pred = fitted.model.predict(X)
        out = _regression(y, pred, "")
        out |= _regression(y, fitted.baseline.predict(X), "baseline_")
        figures["residuals.png"] = _residuals(y, pred)
        if fitted.error_model is not None:
            conf, correct = band_confidence(fitted, parts, spec)
            out |= _calibration_metrics(conf, correct)
            figures["confidence_calibration.png"] = _calibration(conf, correct)
    return Evaluation({k: round(float(v), 6) for k, v in out.items()}, figures)


def _regression(y: np.ndarray, pred: np.ndarray, prefix: str) -> dict[str, float]:
    return {
        f"{prefix}rmse": float(np.sqrt(skm.mean_squared_error(y, pred))),
        f"{prefix}mae": skm.mean_absolute_error(y, pred),
        f"{prefix}r2": skm.r2_score(y, pred),
    }


def _classification(
    y: np.ndarray, prob: np.ndarray, threshold: float, prefix: str
) -> dict[str, float]:
    label = prob >= threshold
    return {
        f"{prefix}roc_auc": skm.roc_auc_score(y, prob),
        f"{prefix}accuracy": skm.accuracy_score(y, label),
        f"{prefix}f1": skm.f1_score(y, label, zero_division=0),
        f"{prefix}log_loss": skm.log_loss(y, prob),
        f"{prefix}brier": skm.brier_score_loss(y, prob),
    }


def band_confidence(fitted: Fitted, parts: Split, spec: ModelSpec) -> tuple[np.ndarray, np.ndarray]:
    """Per held-out row: the confidence served, and 1.0 where the served band was right."""
    assert fitted.error_model is not None
    output = BandedRegression(spec.output | {"sigma_scale": fitted.sigma_scale})
    X = parts.X_test
    values = np.clip(fitted.model.predict(X).astype(np.float64), output.lower, output.upper)
    conf = output.confidence(values, fitted.error_model.predict(X))
    truth = np.clip(parts.y_test.to_numpy(), output.lower, output.upper)
    correct = output.band_index(values) == output.band_index(truth)
    return conf, correct.astype(float)


def _bins(conf: np.ndarray) -> np.ndarray:
    return np.minimum((conf * CALIBRATION_BINS).astype(int), CALIBRATION_BINS - 1)


def _calibration_metrics(conf: np.ndarray, correct: np.ndarray) -> dict[str, float]:
    bins = _bins(conf)
    ece = sum(
        abs(conf[bins == b].mean() - correct[bins == b].mean()) * (bins == b).mean()
        for b in range(CALIBRATION_BINS)
        if (bins == b).any()
    )
    return {
        "band_accuracy": correct.mean(),
        "confidence_mean": conf.mean(),
        "confidence_ece": ece,
        "confidence_brier": np.mean((conf - correct) ** 2),
    }


def _importance(fitted: Fitted, spec: ModelSpec) -> Figure:
    gain: dict[str, Any] = fitted.model.get_booster().get_score(importance_type="gain")
    names = list(spec.features)
    values = [float(gain.get(n, 0.0)) for n in names]
    fig, ax = plt.subplots(figsize=(6, 0.4 * len(names) + 1.5))
    ax.barh(names, values)
    ax.set_xlabel("total gain")
    ax.set_title(f"{spec.name}: feature importance")
    fig.tight_layout()
    return fig


def _residuals(y: np.ndarray, pred: np.ndarray) -> Figure:
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 4))
    left.scatter(pred, y - pred, s=3, alpha=0.3)
    left.axhline(0, color="black", lw=0.8)
    left.set(xlabel="predicted", ylabel="residual (true - predicted)", title="residuals")
    right.hist(y - pred, bins=60)
    right.set(xlabel="residual", ylabel="rows", title="residual distribution")
    fig.tight_layout()
    return fig


def _confusion(y: np.ndarray, prob: np.ndarray, threshold: float) -> Figure:
    fig, ax = plt.subplots(figsize=(4.5, 4))
    skm.ConfusionMatrixDisplay.from_predictions(y, prob >= threshold, ax=ax, colorbar=False)
    ax.set_title(f"confusion matrix (threshold {threshold:g})")
    fig.tight_layout()
    return fig


def _roc(y: np.ndarray, prob: np.ndarray) -> Figure:
    fig, ax = plt.subplots(figsize=(4.5, 4))
    skm.RocCurveDisplay.from_predictions(y, prob, ax=ax)
    ax.plot([0, 1], [0, 1], "k--", lw=0.8, label="baseline")
    ax.set_title("ROC (held-out)")
    fig.tight_layout()
    return fig


def _calibration(conf: np.ndarray, correct: np.ndarray) -> Figure:
    idx = _bins(conf)
    edges = np.linspace(0, 1, CALIBRATION_BINS + 1)
    xs = [conf[idx == b].mean() for b in range(CALIBRATION_BINS) if (idx == b).any()]
    ys = [correct[idx == b].mean() for b in range(CALIBRATION_BINS) if (idx == b).any()]
    fig, ax = plt.subplots(figsize=(4.5, 4))
    ax.plot([0, 1], [0, 1], "k--", lw=0.8)
    ax.plot(xs, ys, "o-")
    ax.set(xlabel="served confidence", ylabel="observed band accuracy", xlim=(0, 1), ylim=(0, 1),
           xticks=edges[::2], title="confidence calibration (held-out)")  # fmt: skip
    fig.tight_layout()
    return fig
