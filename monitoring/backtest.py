"""`python -m monitoring.backtest`: the label-free estimates (monitoring/estimate.py) against
what the labels realize, on held-out windows of this repository's data. The figures in
monitoring/README.md come from it; tests/monitoring/test_backtest.py runs it.

- **wqi** (DLE): its held-out rows are the latest 20 % of the record, in time order. Every
  window of ``days`` days (sliding by a day) is estimated from the model's outputs alone and
  measured with its labels: the estimated RMSE against the realized one. The interval is the
  report's: widened by the bundle's window calibration (``window_log_ratio``, measured on the
  training period) for the window's time span; also the median of its bounds over the
  estimate, how wide it is.
- **potability** (CBPE): its held-out rows are a stratified random fifth, without times.
  ``draws`` windows of ``rows`` rows drawn from them (seeded): the estimated ROC AUC and
  accuracy against the realized ones.

For each: how often the estimate is within the tolerance the issue sets (10 % of the RMSE;
0.03 of the AUC and accuracy), the quantiles of the error, and how often the estimate's
95 % interval holds the realized value.

    python -m monitoring.backtest [--wqi PATH] [--potability PATH]

(default bundles: each model's champion in MLflow). Prints one JSON object.
"""

from __future__ import annotations

import argparse
import json
import sys
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np

from inference.features import matrix_from_columns
from inference.predictor import Predictor
from monitoring import estimate

DAY = estimate.DAY
QUANTILES = (0.1, 0.25, 0.5, 0.75, 0.9)


def held_out(name: str) -> Any:
    from training import data, labels, model
    from training.spec import load_spec

    spec = load_spec(name)
    frame = data.load_frame(spec.data, data.read_bytes(spec.data))
    return model.split(model.make_dataset(frame, labels.make_label(frame, spec.label), spec),
                       spec)  # fmt: skip


def _summary(errors: np.ndarray, tolerance: float, covered: np.ndarray) -> dict[str, Any]:
    return {
        "windows": len(errors),
        "within_tolerance": float(np.mean(np.abs(errors) <= tolerance)),
        "error_quantiles": dict(
            zip(map(str, QUANTILES), np.quantile(errors, QUANTILES).round(4).tolist(), strict=True)
        ),
        "interval_holds_realized": float(np.mean(covered)),
    }


def regression(bundle: dict[str, Any], days: int) -> dict[str, Any]:
    """Sliding windows of ``days`` days of wqi's held-out period: estimated RMSE against the
    realized, as a relative error."""
    parts = held_out(bundle["name"])
    X = matrix_from_columns(parts.X_test, bundle["schema"])
    y = parts.y_test.to_numpy(np.float64)
    raw = Predictor(bundle).raw(X)
    output = bundle["output"]
    value = np.clip(raw["margin"], *output["clip"])
    seconds = np.array([datetime.fromisoformat(s).timestamp() for s in parts.timestamps_test])
    scale, calibration = float(output["sigma_scale"]), output.get("window_log_ratio")
    errors, covered, bounds = [], [], []
    for rows in estimate.windows(seconds, days):  # not those with most of the window missing
        span = float(np.ptp(seconds[rows])) / DAY  # what the report reads off the records
        got = estimate.regression(value[rows], raw["abs_error"][rows], scale,
                                  calibration=calibration, days=span)["rmse"]  # fmt: skip
        realized = float(np.sqrt(np.mean((value[rows] - y[rows]) ** 2)))
        errors.append(got[0] / realized - 1.0)
        covered.append(got[1] <= realized <= got[2])
        bounds.append((got[1] / got[0], got[2] / got[0]))
    whole = estimate.regression(value, raw["abs_error"], scale, calibration=calibration,
                                days=float(np.ptp(seconds)) / DAY)["rmse"]  # fmt: skip
    realized = float(np.sqrt(np.mean((value - y) ** 2)))
    period = {"estimated": whole[0], "low": whole[1], "high": whole[2], "realized": realized}
    low, high = np.median(np.array(bounds), axis=0).round(3).tolist()
    found = {"metric": "rmse", "days": days, "whole_period": period}
    return found | _summary(np.array(errors), 0.10, np.array(covered)) | {
        "interval_over_estimate_median": {"low": low, "high": high}}  # fmt: skip


def binary(bundle: dict[str, Any], rows: int, draws: int, seed: int = 0) -> dict[str, Any]:
    """Random windows of potability's held-out rows: estimated ROC AUC and accuracy against
    the realized, as differences."""
    parts = held_out(bundle["name"])
    X = matrix_from_columns(parts.X_test, bundle["schema"])
    y = parts.y_test.to_numpy(np.float64)
    margin = Predictor(bundle).raw(X)["margin"]
    threshold = float(bundle["output"]["threshold"])
    rng = np.random.default_rng(seed)
    found: dict[str, list[Any]] = {"roc_auc": [], "accuracy": [], "roc_auc_in": [],
                                   "accuracy_in": []}  # fmt: skip
    for _ in range(draws):
        index = rng.choice(len(y), rows, replace=False)
        got = estimate.binary(margin[index], threshold, seed=int(rng.integers(2**31)))
        p = estimate.sigmoid(margin[index].astype(np.float64))
        truth = y[index]
        positive = p >= threshold
        realized = {"accuracy": float(np.mean(positive == (truth >= 0.5))),
                    "roc_auc": _auc(p, truth)}  # fmt: skip
        for name in ("roc_auc", "accuracy"):
            found[name].append(got[name][0] - realized[name])
            found[f"{name}_in"].append(got[name][1] <= realized[name] <= got[name][2])
    return {
        name: {"metric": name, "rows": rows}
        | _summary(np.array(found[name]), 0.03, np.array(found[f"{name}_in"]))
        for name in ("roc_auc", "accuracy")
    }


def _auc(scores: np.ndarray, truth: np.ndarray) -> float:
    positive = truth >= 0.5
    ranks = estimate._ranks(scores)
    n_pos = int(positive.sum())
    n_neg = len(truth) - n_pos
    return float((ranks[positive].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def backtest(wqi: dict[str, Any], potability: dict[str, Any]) -> dict[str, Any]:
    return {
        "wqi_dle": [regression(wqi, days) for days in (1, 7)],
        "potability_cbpe": binary(potability, rows=200, draws=400),
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m monitoring.backtest", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    p.add_argument("--wqi", type=Path, help="wqi's bundle file (default: its champion)")
    p.add_argument("--potability", type=Path, help="potability's bundle (default: champion)")
    args = p.parse_args(argv)
    from monitoring import model

    bundles = {name: model.load(name, None, path, None).bundle
               for name, path in (("wqi", args.wqi), ("potability", args.potability))}  # fmt: skip
    print(json.dumps(backtest(bundles["wqi"], bundles["potability"]), indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
