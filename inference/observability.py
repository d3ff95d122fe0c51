"""Powertools structured logging and EMF metrics, configured once.

Measured cost (see inference/README.md): importing Logger + Metrics + the event source data
classes adds tens of milliseconds to a cold start. Per request: a level check for the DEBUG
lines, and one EMF document per invocation that answered readings (``AnswerMetrics``): a
log line, no call to CloudWatch.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Collection, Sequence
from typing import Any

from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.metrics.functions import is_metrics_disabled

from inference.contract import (
    METRIC_NAMESPACE,
    MODEL_DIMENSION,
    MODEL_VERSION_DIMENSION,
    SERVICE_NAME,
)
from inference.outputs import Tally

# The `service` dimension of the error counts: the function's name, which infra sets.
SERVICE = os.environ.get(SERVICE_NAME, "waterml-inference")
NAMESPACE = METRIC_NAMESPACE  # code, not configuration: the alarms read this namespace

logger = Logger(service=SERVICE)
metrics = Metrics(
    namespace=NAMESPACE, service=SERVICE
)  # its dimension is contract.SERVICE_DIMENSION


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


def count_error(metric: str) -> None:
    """Error paths only (never the hot path): one EMF document per error, dimension
    `service` only (``contract.FAULT_METRIC``, ``contract.INVALID_METRIC``)."""
    metrics.add_metric(name=metric, unit=MetricUnit.Count, value=1)
    metrics.flush_metrics()


# ---- per invocation: what was answered (inference/README.md, "Metrics per invocation") -------
READINGS = "Readings"
OUT_OF_DOMAIN = "ReadingsOutOfDomain"  # not inside: a feature outside, or a combination
UNUSUAL = "ReadingsUnusualCombination"
MEAN_CONFIDENCE = "MeanConfidence"
FEATURE_PREFIX = "OutOfDomain."
MISSING_PREFIX = "Missing."  # a feature training never saw missing (a calendar feature)
ANSWER_PREFIX = "Answer."
UNVERSIONED = "unversioned"  # a dimension value cannot be empty (MODEL_VERSION unset)


def metric_text(label: Any) -> str:
    """A label in a metric name: bands without spaces (``Very Poor`` -> ``VeryPoor``), classes
    as ``true`` / ``false``."""
    if isinstance(label, bool):
        return "true" if label else "false"
    return "".join(str(label).split())


class AnswerMetrics:
    """One EMF document per invocation, printed as one line (Lambda's log agent turns it into
    metrics). Names are fixed per model at init, so an invocation only fills in numbers;
    counts that are zero are left out (a metric absent from a document is no data point,
    which a Sum reads as 0), except ``Readings`` and ``ReadingsOutOfDomain``, present in every
    document so the rate always has both terms (``ReadingsOutOfDomain`` is absent only for a
    bundle without a profile: unknown, not 0).

    Powertools' serializer (``serialize_metric_set``) builds each distinct set of metric names
    once; the JSON text it gives is kept as a template whose numbers are filled in per
    invocation. Serializing and encoding the document every time was 19 of the single
    reading's ~60 µs; the template takes ~3."""

    TEMPLATES = 256  # distinct metric-name sets kept (wqi: at most 2**10); beyond, built anew

    def __init__(self, identity: dict[str, Any], labels: Sequence[Any],
                 features: Sequence[str], missing: Sequence[str] = ()) -> None:  # fmt: skip
        """``features`` and ``missing`` in the order of the domain's verdict bits
        (``Domain.bits``: outside per feature, unusual per feature, missing per tracked one)."""
        self.dimensions = {
            MODEL_DIMENSION: str(identity["name"]),
            MODEL_VERSION_DIMENSION: str(identity.get("version") or UNVERSIONED),
        }
        self.labels = [ANSWER_PREFIX + metric_text(label) for label in labels]
        self.features = [FEATURE_PREFIX + name for name in features]
        self.missing = [MISSING_PREFIX + name for name in missing]
        self.enabled = not is_metrics_disabled()
        self._templates: dict[tuple[str, ...], str] = {}
        self._single: dict[tuple[Any, ...], str] = {}  # one reading's, by tally: see document

    def values(self, tally: Tally) -> dict[str, float]:
        """The invocation's metrics, by name, in the document's order."""
        values = {READINGS: float(tally.rows)}
        counts = tally.counts
        if counts is not None:  # without a profile the domain is unknown, not 0
            values[OUT_OF_DOMAIN] = float(tally.outside_rows)
            if tally.outside_rows:
                for name, n in zip(self.features, counts, strict=False):
                    if n:
                        values[name] = float(n)
                if tally.unusual_rows:
                    values[UNUSUAL] = float(tally.unusual_rows)
            if self.missing:
                tracked = counts[2 * len(self.features) :]
                for name, n in zip(self.missing, tracked, strict=True):
                    if n:
                        values[name] = float(n)
        for name, n in zip(self.labels, tally.labels, strict=True):
            if n:
                values[name] = float(n)
        if tally.rows:
            values[MEAN_CONFIDENCE] = round(tally.confidence_sum / tally.rows, 4)
        return values

    def serialized(self, values: dict[str, float]) -> dict[str, Any]:
        """The document as Powertools' serializer builds it."""
        metric_set = {
            name: {"Unit": "None" if name == MEAN_CONFIDENCE else "Count", "Value": [value],
                   "StorageResolution": 60}
            for name, value in values.items()
        }  # fmt: skip
        return dict(metrics.serialize_metric_set(metrics=metric_set, dimensions=self.dimensions,
                                                 metadata={}))  # fmt: skip

    def document(self, tally: Tally) -> str:
        """The invocation's EMF document, one line of JSON."""
        if tally.rows == 1:  # the request hot path
            return self._one_reading(tally)
        values = self.values(tally)
        names = tuple(values)
        template = self._templates.get(names)
        if template is None:
            template = self._template(values)
            if len(self._templates) < self.TEMPLATES:
                self._templates[names] = template
        now = int(time.time() * 1000)
        return template % (now, *values.values())

    def _one_reading(self, tally: Tally) -> str:
        """One reading's document. Its counts are 0 or 1, so it is one of a few (a label and a
        verdict pattern each), kept with every count written in: only the timestamp and the
        confidence are filled in (the counts' dict and their formatting were a tenth of a
        single reading's time)."""
        counts = tally.counts
        key = (counts is None, tally.outside_rows, tally.unusual_rows, *tally.labels,
               *(counts or ()))  # fmt: skip
        template = self._single.get(key)
        if template is None:
            values = self.values(tally)
            template = self._template(values, written=set(values) - {MEAN_CONFIDENCE})
            if len(self._single) < self.TEMPLATES:
                self._single[key] = template
        return template % (int(time.time() * 1000), round(tally.confidence_sum, 4))

    def _template(self, values: dict[str, float], written: Collection[str] = ()) -> str:
        """Powertools' document for these names, its numbers as %-placeholders (a float's repr
        is its JSON text, as Powertools' json.dumps writes it), except those of ``written``,
        written in."""
        marks = {name: f"@@{i}@@" for i, name in enumerate(values)}
        document = self.serialized(marks)  # type: ignore[arg-type]
        document["_aws"] = dict(document["_aws"], Timestamp="@@t@@")
        text = json.dumps(document, separators=(",", ":")).replace("%", "%%")
        text = text.replace('"@@t@@"', "%d")
        for name, mark in marks.items():
            text = text.replace(f'"{mark}"', repr(values[name]) if name in written else "%r")
        return text

    def publish(self, tally: Tally) -> None:
        if self.enabled and tally.rows:
            print(self.document(tally))
