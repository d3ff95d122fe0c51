"""The served handler as the benchmark child sees it: ``inference.handler`` plus a model-only
throughput probe (the same ONNX predictor the handler holds)."""

from __future__ import annotations

import time
from typing import Any

import numpy as np

from inference import handler
from inference.handler import lambda_handler

__all__ = ["bench_domain_us", "bench_raw_rows_per_s", "lambda_handler"]


def bench_raw_rows_per_s(records: list[dict[str, Any]]) -> int:
    service = handler._service
    assert service is not None
    # The model's rows as serving builds them (calendar features included), outside the timing.
    X = service.validator.batch(records)[1].astype(np.float32)
    times = []
    for _ in range(5):
        t = time.perf_counter()
        service.predictor.raw(X)
        times.append(time.perf_counter() - t)
    return round(len(X) / sorted(times)[2])


def bench_domain_us(records: list[dict[str, Any]]) -> float:
    """The domain verdicts alone (inference/domain.py) for the batch's float32 matrix, in
    microseconds: the median of 25."""
    service = handler._service
    assert service is not None and service.predictor.domain is not None
    X = service.validator.batch(records)[1].astype(np.float32)
    times = []
    for _ in range(25):
        t = time.perf_counter()
        service.predictor.domain.check(X)
        times.append(time.perf_counter() - t)
    return round(sorted(times)[12] * 1e6, 1)
