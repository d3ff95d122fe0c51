"""Powertools structured logging and EMF metrics, configured once.

Measured cost (see inference/README.md): importing Logger + Metrics + the event source data
classes adds tens of milliseconds to a cold start and nothing measurable per request, because
the hot path logs at DEBUG (a level check) and publishes metrics only once per cold start.
"""

from __future__ import annotations

import os
from typing import Any

from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.metrics import MetricUnit

SERVICE = os.environ.get("POWERTOOLS_SERVICE_NAME", "waterml-inference")
NAMESPACE = os.environ.get("POWERTOOLS_METRICS_NAMESPACE", "WaterML")

logger = Logger(service=SERVICE)
metrics = Metrics(namespace=NAMESPACE, service=SERVICE)


def debug_enabled() -> bool:
    return logger.log_level <= 10  # logging.DEBUG


def publish_cold_start(context: Any, model_name: str | None, load_ms: float | None) -> None:
    """One EMF document per execution environment: ColdStart and ModelLoadTime."""
    function = getattr(context, "function_name", None) or "local"
    metrics.add_dimension(name="function_name", value=str(function))
    if model_name:
        metrics.add_dimension(name="model", value=model_name)
    metrics.add_metric(name="ColdStart", unit=MetricUnit.Count, value=1)
    if load_ms is not None:
        metrics.add_metric(name="ModelLoadTime", unit=MetricUnit.Milliseconds, value=load_ms)
    metrics.flush_metrics()


def count_error(code: str) -> None:
    """Error paths only (never the hot path): one EMF document per error."""
    metrics.add_metric(name=code, unit=MetricUnit.Count, value=1)
    metrics.flush_metrics()
