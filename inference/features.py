"""Feature matrix from the bundle's schema: the one place both training and serving build it."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np


def field_names(schema: Mapping[str, Any]) -> list[str]:
    return [field["name"] for field in schema["fields"]]


def matrix_from_columns(columns: Mapping[str, Any], schema: Mapping[str, Any]) -> np.ndarray:
    """Columns (a DataFrame or a dict of arrays) to the float32 matrix the model reads."""
    return np.column_stack(
        [np.asarray(columns[name], dtype=np.float32) for name in field_names(schema)]
    ).astype(np.float32, copy=False)


def matrix_from_records(
    records: Sequence[Mapping[str, float]], schema: Mapping[str, Any]
) -> np.ndarray:
    """Validated records (dicts of readings) to the float32 matrix the model reads."""
    names = field_names(schema)
    return np.array([[record[n] for n in names] for record in records], dtype=np.float32)
