"""Label functions a spec can name in ``[label] function = ...``, with its parameters."""

from __future__ import annotations

from collections.abc import Callable
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
    roll = lambda values: (  # noqa: E731 - a local shorthand for the trailing window sum
        pd.DataFrame(values).rolling(window, min_periods=1).sum().to_numpy()
    )
    tests = roll(tested.astype(float))
    failed = roll((np.nan_to_num(excursions) > 0).astype(float))
    amount = roll(np.nan_to_num(excursions))

    total_tests = tests.sum(axis=1)
    f1 = 100.0 * (failed > 0).sum(axis=1) / len(guidelines)
    f2 = 100.0 * failed.sum(axis=1) / np.maximum(total_tests, 1)
    nse = amount.sum(axis=1) / np.maximum(total_tests, 1)
    f3 = nse / (0.01 * nse + 0.01)
    wqi = 100.0 - np.sqrt(f1**2 + f2**2 + f3**2) / 1.732
    wqi[(tests < min_tests).any(axis=1)] = np.nan
    return pd.Series(wqi, index=frame.index, name="wqi")


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


LABEL_FUNCTIONS: dict[str, Callable[..., pd.Series]] = {"ccme_wqi": ccme_wqi}


def make_label(frame: pd.DataFrame, label: dict[str, Any]) -> pd.Series:
    if "column" in label:
        return frame[label["column"]]
    params = {k: v for k, v in label.items() if k != "function"}
    return LABEL_FUNCTIONS[label["function"]](frame, **params)
