"""Feature matrix from the bundle's schema, for training (serving builds its rows while
validating, in schema order: ``validation.Validator``)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np


def field_names(schema: Mapping[str, Any]) -> list[str]:
    return [field["name"] for field in schema["fields"]]


def matrix_from_columns(columns: Mapping[str, Any], schema: Mapping[str, Any]) -> np.ndarray:
    """Columns (a DataFrame or a dict of arrays) to the float32 matrix the model reads."""
    return np.column_stack(
        [np.asarray(columns[name], dtype=np.float32) for name in field_names(schema)]
    ).astype(np.float32, copy=False)
