"""The batch validator's vectorised path checked against its record-by-record pass."""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

from inference.validation import ValidationError, Validator


def agreements(validator: Validator, batches: Iterable[list[dict[str, Any]]]) -> int:
    """How many of ``batches`` the vectorised path took. On each batch it must either step
    aside (None) or return exactly what the record-by-record pass returns: the same devices,
    the same values (NaN where the full pass has NaN, never where it has None), and never
    accept a batch the full pass refuses."""
    taken = 0
    for batch in batches:
        fast = validator.fast_batch(batch)
        try:
            devices, rows = validator._slow_batch(batch, "records")
        except ValidationError:
            assert fast is None, batch
            continue
        if fast is None:
            continue
        taken += 1
        assert fast[0] == devices, batch
        assert _same(fast[1].tolist(), rows), batch
    return taken


def _same(fast: list[list[Any]], slow: list[list[Any]]) -> bool:
    def equal(a: Any, b: Any) -> bool:
        both_nan = isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b)
        return bool(a == b) or both_nan

    return len(fast) == len(slow) and all(
        len(f) == len(s) and all(equal(a, b) for a, b in zip(f, s, strict=True))
        for f, s in zip(fast, slow, strict=True)
    )
