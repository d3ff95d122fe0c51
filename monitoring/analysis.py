"""What a drift report holds, computed from the log, the bundle and the labels: the feature
matrix the records give, each feature and the answers against the profile, live metrics."""

from __future__ import annotations

import argparse
import math
from collections import Counter
from datetime import timedelta
from typing import Any

import numpy as np

from inference.calendar_features import SOURCE, Calendar, TimestampError
from monitoring import compare, labels, log, model, report


def inputs_matrix(records: list[dict[str, Any]], schema: dict[str, Any]) -> np.ndarray:
    """Rows x features in schema order, NaN where missing or not a number. A calendar feature
    the record's inputs lack is derived from its ``timestamp`` as serving derives it."""
    fields = [f["name"] for f in schema["fields"]]
    derived = [f["name"] for f in schema["fields"] if f.get("source") == SOURCE]
    calendar = Calendar(derived, schema["timestamp"]["utc_offset"]) if derived else None
    out = np.full((len(records), len(fields)), math.nan)
    for i, record in enumerate(records):
        inputs = record["inputs"]
        row = [_number(inputs.get(name)) for name in fields]
        if calendar is not None and any(math.isnan(row[fields.index(n)]) for n in derived):
            stamp = record.get("timestamp")
            try:
                values = calendar.row(stamp) if isinstance(stamp, str) else calendar.missing
            except TimestampError:
                values = calendar.missing
            for name, value in zip(derived, values, strict=True):
                j = fields.index(name)
                row[j] = row[j] if not math.isnan(row[j]) else value
        out[i] = row
    # As the model reads them and the profile was computed: float32. Compared in float64, a
    # reading of 8.05 would sit below the profile's 8.0500002 and shift every tie one way.
    return out.astype(np.float32).astype(np.float64)


def _number(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return math.nan
    return float(value)


def answers(records: list[dict[str, Any]], output: dict[str, Any]) -> list[Any]:
    """Each record's band (banded regression) or label (binary), as served."""
    key = output["band_name"] if output["kind"] == "banded_regression" else output["label_name"]
    return [r["output"].get(key) for r in records]


def served_outside(records: list[dict[str, Any]]) -> float | None:
    """The share of answers whose own domain verdict was ``inside: false``, when they carry one."""
    verdicts = [r["output"].get("domain") for r in records]
    known = [v.get("inside") for v in verdicts if isinstance(v, dict) and "inside" in v]
    return None if not known else sum(1 for v in known if v is False) / len(known)


def _primary(name: str, task: str) -> tuple[str, bool]:
    """The spec's gate metric, which live metrics are judged on."""
    from training.spec import SpecError, load_spec

    try:
        gates = load_spec(name).gates
        return gates.primary, gates.greater_is_better
    except SpecError:
        return ("rmse", False) if task == "banded_regression" else ("roc_auc", True)


def _period(records: list[dict[str, Any]]) -> tuple[str, str] | None:
    times = sorted(t for r in records if isinstance(t := r.get("time"), str))
    return (times[0], times[-1]) if times else None


def build(args: argparse.Namespace) -> tuple[report.Report, np.ndarray, dict[str, Any]]:
    t = compare.Thresholds(
        psi_drift=args.psi_drift, alpha=args.alpha, max_outside=args.max_outside,
        max_degradation=args.max_degradation,
    )  # fmt: skip
    label_rows = labels.read(args.labels) if args.labels else None  # fail fast on a bad file
    read = log.read(args.log)
    records = read.of_model(args.model)
    loaded = model.load(args.model, args.version, args.bundle, args.sha256)
    bundle, profile = loaded.bundle, loaded.bundle["profile"]
    schema = bundle["schema"]
    matrix = inputs_matrix(records, schema)
    rule = {"lower_q": float(profile["lower_q"]), "upper_q": float(profile["upper_q"])}
    names = [f["name"] for f in schema["fields"]]
    features = [
        compare.feature_drift(n, matrix[:, j], profile["features"][n], rule, len(names), t)
        for j, n in enumerate(names)
    ]
    lows = np.array([f.low for f in features])
    highs = np.array([f.high for f in features])
    outside = float(compare.outside_rows(matrix, lows, highs).mean())
    output = compare.output_drift(profile["outputs"], answers(records, bundle["output"]), t)
    live = None
    if label_rows is not None:
        joined = labels.join(label_rows, records, timedelta(minutes=args.tolerance_minutes))
        primary, greater = _primary(args.model, bundle["output"]["kind"])
        live = labels.live_metrics(joined, bundle, primary, greater, t)
    others = {m: n for m, n in read.models().most_common() if m != args.model}
    versions = Counter(str(r["model"].get("version")) for r in records)
    built = report.Report(
        args.model, loaded.where, loaded.sha256, args.log, len(records), read.lines,
        read.unreadable, read.other, others, dict(versions.most_common()), _period(records),
        features, output, outside, served_outside(records), t, read.examples, live,
    )  # fmt: skip
    return built, matrix, profile
