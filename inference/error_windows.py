"""How far a banded regression's label-free RMSE strays from the realized one over windows of
time: measured at training on out-of-fold predictions (``window_calibration``, kept in the
bundle as ``output["window_log_ratio"]``), read by the monitoring estimate to widen its
interval (``window_spread``; monitoring/estimate.py says why). Here because both stages use the
one format: training writes it, monitoring reads it, and both already depend on inference.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

DAY = 86_400
WINDOW_DAYS = (1, 7)  # the window lengths training calibrates the regression interval for
WINDOW_LEVELS = (0.025, 0.5, 0.975)  # quantiles of the log ratio it keeps
MIN_ROWS_PER_DAY = 12  # a window with fewer is mostly missing: not counted


def estimated(sigma: np.ndarray) -> dict[str, float]:
    """The RMSE and MAE expected of rows whose errors are normal with these sigmas."""
    return {"rmse": float(np.sqrt(np.mean(sigma**2))),
            "mae": float(np.mean(sigma) * math.sqrt(2 / math.pi))}  # fmt: skip


def window_spread(calibration: dict[str, Any] | None, days: float | None
                  ) -> dict[str, tuple[float, float]]:  # fmt: skip
    """Per metric, the 2.5 and 97.5 % quantiles of log(realized / estimated) over training's
    windows of the calibrated length nearest ``days`` (1 day when None); empty without a
    calibration."""
    if not calibration:
        return {}
    levels = [float(q) for q in calibration["levels"]]
    by_days = {float(d): found for d, found in calibration["by_days"].items() if found["windows"]}
    if not by_days or 0.025 not in levels or 0.975 not in levels:
        return {}
    target = 1.0 if days is None else days
    found = by_days[min(by_days, key=lambda d: (abs(d - target), d))]
    low, high = levels.index(0.025), levels.index(0.975)
    return {name: (float(found[name][low]), float(found[name][high]))
            for name in ("rmse", "mae") if name in found}  # fmt: skip


def windows(seconds: np.ndarray, days: int) -> list[np.ndarray]:
    """Every window of ``days`` days from the first reading, sliding by a day, as a mask of
    its rows; windows with fewer than ``MIN_ROWS_PER_DAY`` rows a day are left out."""
    found = []
    start, last = float(seconds.min()), float(seconds.max())
    while start + days * DAY <= last + DAY:
        rows = (seconds >= start) & (seconds < start + days * DAY)
        start += DAY
        if rows.sum() >= MIN_ROWS_PER_DAY * days:
            found.append(rows)
    return found


def window_calibration(
    seconds: np.ndarray, value: np.ndarray, truth: np.ndarray, abs_error: np.ndarray,
    sigma_scale: float,
) -> dict[str, Any]:  # fmt: skip
    """What the regression estimate's interval is widened by: over every window of each of
    ``WINDOW_DAYS`` (``windows``), the quantiles (``WINDOW_LEVELS``) of log(realized /
    estimated) RMSE and MAE, rounded. ``value`` and ``abs_error`` must be predictions of rows
    their models did not learn from (training passes out-of-fold ones)."""
    sigma = np.maximum(abs_error.astype(np.float64) * sigma_scale, 1e-9)
    error = value.astype(np.float64) - truth.astype(np.float64)
    by_days: dict[str, Any] = {}
    for days in WINDOW_DAYS:
        ratios: dict[str, list[float]] = {"rmse": [], "mae": []}
        for rows in windows(seconds, days) if len(seconds) else []:
            s, e = sigma[rows], error[rows]
            realized = {"rmse": np.sqrt(np.mean(e**2)), "mae": np.mean(np.abs(e))}
            expected = estimated(s)
            for name, logs in ratios.items():
                logs.append(math.log(max(float(realized[name]), 1e-12) / expected[name]))
        found: dict[str, Any] = {"windows": len(ratios["rmse"])}
        for name, logs in ratios.items():
            if logs:
                found[name] = [round(float(q), 4) for q in np.quantile(logs, WINDOW_LEVELS)]
        by_days[str(days)] = found
    return {"levels": list(WINDOW_LEVELS), "by_days": by_days}
