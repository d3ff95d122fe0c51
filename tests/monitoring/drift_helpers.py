"""Prediction logs and profiled bundles made in the test, in the contracts serving writes."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import numpy as np

from inference.predictor import Predictor
from tests.inference import synthetic
from training import neighbours
from training import profile as training_profile

FEATURES = ("pH", "turbidity", "tds", "temperature", "hour_of_day")
START = datetime(2026, 11, 1, tzinfo=UTC)
ZONE = timezone(timedelta(hours=10))


def estuary(n: int, seed: int = 0, tds_scale: float = 1.0) -> np.ndarray:
    """Readings like the Brisbane buoy's (rows x FEATURES); ``tds_scale`` 0.013 makes them
    fresh water (TDS about 410 mg/L)."""
    rng = np.random.default_rng(seed)
    return np.column_stack([
        rng.normal(7.8, 0.15, n),
        rng.lognormal(1.2, 0.5, n),
        rng.normal(31500.0, 2500.0, n) * tds_scale,
        rng.normal(23.0, 3.0, n),
        rng.integers(0, 48, n) / 2.0,
    ])  # fmt: skip


def stamps(n: int) -> list[str]:
    """Half-hourly reading times on the model's +10:00 clock from START, as serving gets them."""
    return [(START + timedelta(minutes=30 * i)).astimezone(ZONE).isoformat() for i in range(n)]


def profile(matrix: np.ndarray, answers: list[dict[str, Any]], band: str) -> dict[str, Any]:
    """A training profile of ``matrix`` built by training's own code (training/profile.py),
    its rows read half-hourly from START."""
    X = matrix.astype(np.float32)
    names = list(FEATURES)
    found: dict[str, Any] = {
        "rule": "outside the 0.5-99.5 % quantiles of the training rows", "lower_q": 0.005,
        "upper_q": 0.995, "rows": len(matrix),
        "features": {n: training_profile.feature_profile(X[:, j].astype(np.float64))
                     for j, n in enumerate(names)},
    }  # fmt: skip
    seconds = training_profile.epoch_seconds(list(stamps(len(X))))
    every = np.arange(len(X))
    found["reference"] = training_profile.reference(X, seconds, names, every)
    found["combination"] = neighbours.combination(X, training_profile.folds(seconds, len(X), 0))
    labels = [b["label"] for b in synthetic.WQI_OUTPUT["bands"]]
    served = [a[band] for a in answers]
    shares = [served.count(label) / len(served) for label in labels]
    found["outputs"] = {"kind": "bands", "labels": labels, "shares": shares,
                        "label_shares": shares}  # fmt: skip
    return found


def wqi_bundle(rows: int = 4000) -> dict[str, Any]:
    """The synthetic calendar bundle with a profile of ``estuary`` readings and held-out
    metrics to compare live ones with."""
    bundle = synthetic.wqi_calendar_bundle()
    training = estuary(rows, seed=1)
    answers = Predictor(bundle).answers(training.astype(np.float32))
    bundle["profile"] = profile(training, answers, "quality")
    bundle["metadata"]["metrics"] = {"rmse": 5.0, "mae": 4.0, "baseline_rmse": 9.0,
                                     "baseline_mae": 7.5}  # fmt: skip
    return bundle


def records(bundle: dict[str, Any], matrix: np.ndarray, device: str = "buoy-1",
            version: str = "3") -> list[dict[str, Any]]:  # fmt: skip
    """Prediction records as serving logs them, answered by the bundle itself."""
    answers = Predictor(bundle).answers(matrix.astype(np.float32))
    out = []
    for i, (row, answer) in enumerate(zip(matrix, answers, strict=True)):
        when = (START + timedelta(minutes=30 * i)).isoformat().replace("+00:00", "Z")
        out.append({
            "kind": "prediction", "time": when, "request_id": str(uuid.uuid4()),
            "model": {"name": bundle["name"], "version": version, "s3VersionId": "v-1"},
            "device": device,
            "inputs": {name: float(v) for name, v in zip(FEATURES[:4], row[:4], strict=True)},
            "timestamp": _hour_stamp(i, float(row[4])),
            "output": answer,
        })  # fmt: skip
    return out


def _hour_stamp(i: int, hour: float) -> str:
    """A reading time on the model's +10:00 clock whose hour of day is ``hour``."""
    day = START.date() + timedelta(days=i // 48)
    h, m = int(hour), round((hour - int(hour)) * 60)
    return f"{day.isoformat()}T{h:02d}:{m:02d}:00+10:00"


def write_jsonl(path: Path, rows: list[dict[str, Any]], extra_lines: list[str] = ()) -> Path:
    lines = [json.dumps(r) for r in rows] + list(extra_lines)
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path
