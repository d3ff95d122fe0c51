"""Which rows are held out, decided by the rows themselves, so every engine holds out the same
rows and the engines' held-out metrics compare row for row.

``chronological``: the last ``test_size`` of the rows in the frame's order (it is sorted).
``random`` and ``stratified``: each kept row has a key, a seeded hash of its feature and label
values (``row_keys``); in each stratum (the whole table, or each label class when stratified)
the rows whose key is at most the k-th smallest key of the stratum are held out, k its share
of ``test_size`` (``held_out_count``). No random generator and no row position is involved:
the Spark engine computes the same keys per partition and finds the same k-th key on the
cluster. Identical rows share a key, hence a side.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

KEY_BITS = 53  # a key is exact as a double: Spark's quantile sketch compares values as doubles
_MIX = (np.uint64(0xBF58476D1CE4E5B9), np.uint64(0x94D049BB133111EB))  # splitmix64's finalizer


def held_out_count(rows: int, test_size: float) -> int:
    """How many of ``rows`` are held out: the rows left after round(rows x (1 - test_size))
    training rows, as the chronological split has always cut."""
    return rows - round(rows * (1.0 - test_size))


def row_keys(X: pd.DataFrame, y: pd.Series, seed: int) -> np.ndarray:
    """A seeded 53-bit key per row (int64) from the bit patterns of its values as float64
    (features, then label): every missing value is the same NaN, -0.0 is 0.0."""
    values = np.column_stack([X.to_numpy(np.float64), y.to_numpy(np.float64)])
    values = np.where(np.isnan(values), np.nan, values) + 0.0
    bits = np.ascontiguousarray(values).view(np.uint64)
    with np.errstate(over="ignore"):  # uint64 arithmetic wraps: that is the hash
        key = _mix(np.full(len(values), np.uint64(seed & (2**64 - 1)), dtype=np.uint64))
        for column in bits.T:
            key = _mix(key ^ column)
    return (key >> np.uint64(64 - KEY_BITS)).astype(np.int64)


def _mix(z: np.ndarray) -> np.ndarray:
    z = (z ^ (z >> np.uint64(30))) * _MIX[0]
    z = (z ^ (z >> np.uint64(27))) * _MIX[1]
    return z ^ (z >> np.uint64(31))


def held_out(keys: np.ndarray, strata: np.ndarray | None, test_size: float) -> np.ndarray:
    """Per row, whether it is held out: in each stratum (all rows when ``strata`` is None),
    the rows whose key is at most the stratum's k-th smallest, k = held_out_count(...)."""
    mask = np.zeros(len(keys), dtype=bool)
    groups = [np.arange(len(keys))] if strata is None else [
        np.flatnonzero(strata == value) for value in np.unique(strata)
    ]  # fmt: skip
    for rows in groups:
        k = held_out_count(len(rows), test_size)
        if k:
            cut = np.partition(keys[rows], k - 1)[k - 1]
            mask[rows[keys[rows] <= cut]] = True
    return mask
