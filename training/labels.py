"""Label functions a spec can name in ``[label] function = ...``, with its parameters."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd


def ccme_wqi(
    frame: pd.DataFrame, guidelines: dict[str, dict[str, float]], window: int, min_tests: int
) -> pd.Series:
    """CCME Water Quality Index 1.0 (CCME 2001) over a trailing window of readings.

    For each reading, the index covers the ``window`` readings ending at it:
      F1 (scope)     = % of variables with at least one failed test,
      F2 (frequency) = % of individual tests that failed,
      F3 (amplitude) = nse / (0.01 nse + 0.01), where nse is the sum of excursions over all
                       tests (excursion = value/max - 1 above a maximum, min/value - 1 below a
                       minimum), divided by the number of tests;
      WQI = 100 - sqrt(F1^2 + F2^2 + F3^2) / 1.732.
    A reading whose window holds fewer than ``min_tests`` tests of any variable is left
    unlabelled (NaN): the index would describe too little data.
    """
    excursions = np.column_stack(
        [
            _excursion(frame[column].to_numpy(float), **bounds)
            for column, bounds in guidelines.items()
        ]
    )
    tested = ~np.isnan(excursions)
    tests = trailing_sum(tested.astype(float), window)
    failed = trailing_sum((np.nan_to_num(excursions) > 0).astype(float), window)
    amount = trailing_sum(np.nan_to_num(excursions), window)

    total_tests = tests.sum(axis=1)
    f1 = 100.0 * (failed > 0).sum(axis=1) / len(guidelines)
    f2 = 100.0 * failed.sum(axis=1) / np.maximum(total_tests, 1)
    nse = amount.sum(axis=1) / np.maximum(total_tests, 1)
    f3 = nse / (0.01 * nse + 0.01)
    wqi = 100.0 - np.sqrt(f1**2 + f2**2 + f3**2) / 1.732
    wqi[(tests < min_tests).any(axis=1)] = np.nan
    return pd.Series(wqi, index=frame.index, name="wqi")


def trailing_sum(values: np.ndarray, window: int) -> np.ndarray:
    """Per row, the sum of the ``window`` rows ending at it (fewer at the start), added in the
    same order for every row. A row's sum depends on its window alone, so an engine that
    computes the label on slices of the series, each with the ``window - 1`` rows before it
    (the Spark engine, per partition), gets the whole series' values bit for bit; pandas'
    rolling sum carries a running total whose rounding depends on where it started."""
    padded = np.concatenate([np.zeros((window - 1, *values.shape[1:])), values])
    out = np.zeros_like(values, dtype=np.float64)
    for start in range(window):
        out += padded[start : start + len(values)]
    return out


def _excursion(
    values: np.ndarray, min: float | None = None, max: float | None = None
) -> np.ndarray:
    out = np.zeros_like(values)
    if max is not None:
        out = np.where(values > max, values / max - 1.0, out)
    if min is not None:
        out = np.where(values < min, min / np.maximum(values, 1e-9) - 1.0, out)
    out[np.isnan(values)] = np.nan
    return out


@dataclass(frozen=True)
class LabelFunction:
    compute: Callable[..., pd.Series]
    # How many rows before a row its label reads (the frame is in the spec's order): an
    # engine that labels slices of the rows gives each slice that many rows before it.
    rows_before: Callable[[dict[str, Any]], int]


LABEL_FUNCTIONS = {"ccme_wqi": LabelFunction(ccme_wqi, lambda params: int(params["window"]) - 1)}


def _params(label: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in label.items() if k != "function"}


def make_label(frame: pd.DataFrame, label: dict[str, Any]) -> pd.Series:
    if "column" in label:
        return frame[label["column"]]
    return LABEL_FUNCTIONS[label["function"]].compute(frame, **_params(label))


def rows_before(label: dict[str, Any]) -> int:
    """How many preceding rows a row's label reads: 0 for a column."""
    if "column" in label:
        return 0
    return LABEL_FUNCTIONS[label["function"]].rows_before(_params(label))
