"""Powertools structured logging and EMF metrics, configured once.

Measured cost (see inference/README.md): importing Logger + Metrics + the event source data
classes adds tens of milliseconds to a cold start. Per request: a level check for the DEBUG
lines, and one EMF document per invocation that answered readings (``AnswerMetrics``): a
log line, no call to CloudWatch.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from typing import Any

from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.metrics.functions import is_metrics_disabled

from inference.outputs import Tally

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


# ---- per invocation: what was answered (inference/README.md, "Metrics per invocation") -------
READINGS = "Readings"
OUT_OF_DOMAIN = "ReadingsOutOfDomain"
MEAN_CONFIDENCE = "MeanConfidence"
FEATURE_PREFIX = "OutOfDomain."
ANSWER_PREFIX = "Answer."
UNVERSIONED = "unversioned"  # a dimension value cannot be empty (MODEL_VERSION unset)


def metric_text(label: Any) -> str:
    """A label in a metric name: bands without spaces (``Very Poor`` -> ``VeryPoor``), classes
    as ``true`` / ``false``."""
    if isinstance(label, bool):
        return "true" if label else "false"
    return "".join(str(label).split())


class AnswerMetrics:
    """One EMF document per invocation, built by Powertools' serializer and printed as one
    line (Lambda's log agent turns it into metrics). Names are fixed per model at init, so an
    invocation only fills in numbers; counts that are zero are left out (a metric absent from
    a document is no data point, which a Sum reads as 0), except ``Readings`` and
    ``ReadingsOutOfDomain``, present in every document so the rate always has both terms
    (``ReadingsOutOfDomain`` is absent only for a bundle without a profile: unknown, not 0)."""

    def __init__(self, identity: dict[str, Any], labels: Sequence[Any],
                 features: Sequence[str]) -> None:  # fmt: skip
        self.dimensions = {
            "model": str(identity["name"]),
            "model_version": str(identity.get("version") or UNVERSIONED),
        }
        self.labels = [ANSWER_PREFIX + metric_text(label) for label in labels]
        self.features = [FEATURE_PREFIX + name for name in features]
        self.enabled = not is_metrics_disabled()

    def document(self, tally: Tally) -> dict[str, Any]:
        def count(value: float) -> dict[str, Any]:
            return {"Unit": "Count", "Value": [float(value)], "StorageResolution": 60}

        values = {READINGS: count(tally.rows)}
        if tally.outside is not None:  # without a profile the domain is unknown, not 0
            values[OUT_OF_DOMAIN] = count(tally.outside_rows)
            for name, n in zip(self.features, tally.outside.tolist(), strict=True):
                if n:
                    values[name] = count(n)
        for name, n in zip(self.labels, tally.labels.tolist(), strict=True):
            if n:
                values[name] = count(n)
        if tally.rows:
            values[MEAN_CONFIDENCE] = {
                "Unit": "None",
                "Value": [round(tally.confidence_sum / tally.rows, 4)],
                "StorageResolution": 60,
            }
        return dict(metrics.serialize_metric_set(metrics=values, dimensions=self.dimensions,
                                                 metadata={}))  # fmt: skip

    def publish(self, tally: Tally) -> None:
        if self.enabled and tally.rows:
            print(json.dumps(self.document(tally), separators=(",", ":")))
