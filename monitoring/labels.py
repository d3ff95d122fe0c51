"""Labels that arrive later (lab samples), joined to the logged answers, and live metrics.

A labels file is CSV (a header with ``device``, ``time``, ``label``) or JSONL (one object per
line with those keys). ``time`` is ISO-8601 with a UTC offset. Each label is joined to the
record of the same device whose reading time (the record's ``timestamp``, else the time it
was answered, ``time``) is nearest, within ``tolerance`` (default 30 minutes: the buoy reads
every half hour). A label with no such record is counted as unmatched.

Live metrics use the bundle's task: RMSE and MAE of the served value (regression), ROC AUC of
the served probability, accuracy and F1 of the served label (binary); beside them, what the
estimate (monitoring/estimate.py) said for the same records before their labels arrived.
"""

from __future__ import annotations

import csv
import io
import json
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from inference.calendar_features import TimestampError, parse
from monitoring.compare import Thresholds, category_key
from monitoring.errors import LabelsError

KEYS = ("device", "time", "label")
DEFAULT_TOLERANCE = timedelta(minutes=30)


def read(path: Path) -> pd.DataFrame:
    """device (str), time (UTC), label (float); LabelsError naming the row otherwise."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise LabelsError(f"cannot read labels {path}: {exc.strerror or exc}") from None
    except UnicodeDecodeError:
        raise LabelsError(f"labels {path} is not UTF-8 text") from None
    if not text.strip():
        raise LabelsError(f"labels {path} is empty")
    rows = _jsonl(text, path) if text.lstrip().startswith("{") else _csv(text, path)
    if not rows:
        raise LabelsError(f"labels {path} has a header but no rows")
    out = []
    for number, row in rows:
        missing = [k for k in KEYS if row.get(k) in (None, "")]
        if missing:
            raise LabelsError(f"{path}:{number}: no {', '.join(missing)}")
        try:
            moment = parse(str(row["time"]))
        except TimestampError as exc:
            raise LabelsError(f"{path}:{number}: time {exc.reason}") from None
        try:
            label = float(category_key(row["label"]))
        except ValueError:
            raise LabelsError(f"{path}:{number}: label {row['label']!r} is not a number") from None
        out.append((str(row["device"]), pd.Timestamp(moment).tz_convert("UTC"), label))
    return pd.DataFrame(out, columns=list(KEYS))


def _csv(text: str, path: Path) -> list[tuple[int, dict[str, Any]]]:
    reader = csv.DictReader(io.StringIO(text))
    absent = [k for k in KEYS if k not in (reader.fieldnames or [])]
    if absent:
        raise LabelsError(f"labels {path}: the CSV header lacks {', '.join(absent)} "
                          f"(it needs {', '.join(KEYS)})")  # fmt: skip
    return [(i, row) for i, row in enumerate(reader, 2)]


def _jsonl(text: str, path: Path) -> list[tuple[int, dict[str, Any]]]:
    rows = []
    for i, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except ValueError:
            raise LabelsError(f"{path}:{i}: not a JSON object") from None
        if not isinstance(row, dict):
            raise LabelsError(f"{path}:{i}: not a JSON object")
        rows.append((i, row))
    return rows


@dataclass(frozen=True)
class Joined:
    labels: int
    matched: int
    no_device: int  # records without a device cannot be joined
    truth: np.ndarray
    served: list[dict[str, Any]]  # the matched records' outputs, in the order of ``truth``
    indices: list[int]  # the matched records' positions in the log, in the same order


def join(labels: pd.DataFrame, records: list[dict[str, Any]], tolerance: timedelta) -> Joined:
    rows = []
    no_device = 0
    for i, record in enumerate(records):
        device = record.get("device")
        moment = _moment(record)
        if device is None or moment is None:
            no_device += device is None
            continue
        rows.append((str(device), moment, i))
    served = pd.DataFrame(rows, columns=["device", "time", "index"])
    if served.empty:
        return Joined(len(labels), 0, no_device, np.array([]), [], [])
    merged = pd.merge_asof(
        labels.sort_values("time"), served.sort_values("time"), on="time", by="device",
        direction="nearest", tolerance=pd.Timedelta(tolerance),
    ).dropna(subset=["index"])  # fmt: skip
    indices = merged["index"].astype(int).tolist()
    return Joined(
        len(labels), len(merged), no_device, merged["label"].to_numpy(np.float64),
        [records[i]["output"] for i in indices], indices,
    )  # fmt: skip


def _moment(record: dict[str, Any]) -> pd.Timestamp | None:
    for key in ("timestamp", "time"):
        text = record.get(key)
        if isinstance(text, str):
            try:
                return pd.Timestamp(parse(text)).tz_convert("UTC")
            except TimestampError:
                continue
    return None


@dataclass(frozen=True)
class LiveMetrics:
    joined: Joined
    live: dict[str, float]
    held_out: dict[str, float]  # the bundle's, same names
    baseline: dict[str, float]
    primary: str
    greater_is_better: bool
    status: str  # ok, degraded, too few labels
    reason: str = ""
    estimated: dict[str, tuple[float, float, float]] | None = None  # on the same records


def live_metrics(
    joined: Joined, bundle: dict[str, Any], primary: str, greater_is_better: bool, t: Thresholds,
    estimated: dict[str, tuple[float, float, float]] | None = None,
) -> LiveMetrics:  # fmt: skip
    from sklearn import metrics as skm

    output = bundle["output"]
    recorded = bundle["metadata"].get("metrics", {})
    y = joined.truth
    live: dict[str, float] = {}
    if joined.matched:
        if output["kind"] == "banded_regression":
            pred = np.array([float(o[output["value_name"]]) for o in joined.served])
            live = {"rmse": float(np.sqrt(np.mean((pred - y) ** 2))),
                    "mae": float(np.mean(np.abs(pred - y)))}  # fmt: skip
        else:
            prob = np.array([float(o["probability"]) for o in joined.served])
            label = prob >= float(output["threshold"])
            live = {"f1": float(skm.f1_score(y, label, zero_division=0)),
                    "accuracy": float(np.mean(label == (y >= 0.5)))}  # fmt: skip
            if len(set(y.tolist())) == 2:  # AUC needs both classes
                live["roc_auc"] = float(skm.roc_auc_score(y, prob))
    names = list(live)
    held = {k: float(recorded[k]) for k in names if k in recorded}
    base = {k: float(recorded[f"baseline_{k}"]) for k in names if f"baseline_{k}" in recorded}
    status, reason = "ok", ""
    if joined.matched < t.min_labels or primary not in live or primary not in held:
        status = "too few labels"
        reason = f"{joined.matched} joined labels (at least {t.min_labels} are judged)"
    else:
        change = (live[primary] - held[primary]) / abs(held[primary]) if held[primary] else 0.0
        worse = -change if greater_is_better else change
        if worse > t.max_degradation:
            status = "degraded"
            reason = (f"live {primary} {live[primary]:.4f} is {worse:.0%} worse than held-out "
                      f"{held[primary]:.4f} (tolerance {t.max_degradation:.0%})")  # fmt: skip
    return LiveMetrics(joined, live, held, base, primary, greater_is_better, status, reason,
                       estimated)  # fmt: skip
