"""`python -m monitoring.calibration`: how often a drift report alarms when nothing changed,
and how often it sees a change that did happen, on wqi's own data. The figures in
monitoring/README.md come from it; tests/monitoring/test_calibration.py runs it with fewer
repetitions and holds the bounds.

Rows of wqi's training period are held out, and the profile (its bounds, reference rows and
radius) is built from the others by training's own code, as training builds it; the reports
read records of the held-out rows, which no part of the profile saw:

- **training-like samples**: a random fifth of the training rows held out; ``reps`` draws of
  n records at random from them, for n = 30, 100, 500 and 5,000: the share of reports that
  alarm (any section) is the false-alarm rate;
- **the +1 °C shift**: the same draws with every temperature 1 °C warmer: the share of
  reports in which temperature drifts;
- **windows**: every third week held out instead; each held-out day (48 half-hourly
  readings) and each held-out week, whole, as a buoy would send them: the share that alarm.
  A week's readings are alike (its weather), so a window of a week meets a week training
  never saw.

    python -m monitoring.calibration [--bundle PATH] [--reps 400] [--seed 0]

(default bundle: wqi's champion in MLflow). Prints one JSON object.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np

from inference.predictor import Predictor
from monitoring import analysis
from monitoring.compare import Thresholds

WEEK = 7 * 86_400
SIZES = (30, 100, 500, 5_000)
SHIFT_SIZES = (500, 5_000)
SHIFT = 1.0  # °C, on temperature


@dataclass
class Setting:
    bundle: dict[str, Any]  # the trained bundle, its profile built from the kept weeks
    rows: np.ndarray  # held-out rows (schema order, float32 values)
    stamps: list[str]  # their reading times, ISO-8601
    seconds: np.ndarray
    names: list[str]


def setting(bundle: dict[str, Any], by: str = "weeks") -> Setting:
    """wqi's training rows split (every third week, or a random fifth of the rows: ``by``),
    the profile rebuilt from the kept ones."""
    from training import data, labels, model, profile
    from training.spec import load_spec

    spec = load_spec(bundle["name"])
    frame = data.load_frame(spec.data, data.read_bytes(spec.data))
    parts = model.split(model.make_dataset(frame, labels.make_label(frame, spec.label), spec),
                        spec)  # fmt: skip
    if parts.timestamps_train is None or None in parts.timestamps_train:
        raise SystemExit(f"{spec.name}'s training rows have no timestamps: no weeks to hold out")
    stamps = [str(s) for s in parts.timestamps_train]
    seconds = np.array([datetime.fromisoformat(s).timestamp() for s in stamps])
    if by == "weeks":
        held = ((seconds - seconds.min()) // WEEK).astype(int) % 3 == 1
    else:
        held = np.random.default_rng(int(spec.split["seed"])).random(len(seconds)) < 0.2
    kept = model.Split(
        parts.X_train[~held], parts.X_test, parts.y_train[~held], parts.y_test,
        timestamps_train=[s for s, h in zip(stamps, held, strict=True) if not h],
    )  # fmt: skip
    predictor = Predictor(bundle)
    rebuilt = dict(bundle) | {"profile": profile.build(spec, kept, predictor)}
    names = list(spec.features)
    rows = parts.X_train[held][names].to_numpy(np.float32)
    return Setting(rebuilt, rows, [s for s, h in zip(stamps, held, strict=True) if h],
                   seconds[held], names)  # fmt: skip


def records(s: Setting, index: np.ndarray, rows: np.ndarray | None = None) -> list[dict[str, Any]]:
    """Prediction records of held-out rows as serving logs them (one buoy)."""
    matrix = s.rows[index] if rows is None else rows
    answers = Predictor(s.bundle).answered(matrix).answers
    return [
        {"inputs": dict(zip(s.names, map(float, row), strict=True)), "timestamp": s.stamps[i],
         "device": "buoy", "output": answer}
        for i, row, answer in zip(index, matrix, answers, strict=True)
    ]  # fmt: skip


def alarms(s: Setting, recs: list[dict[str, Any]], seed: int) -> dict[str, Any]:
    features, output, traffic, *_ = analysis.assess(recs, s.bundle, Thresholds(),
                                                    ("rmse", False), seed)  # fmt: skip
    drifted = [f.name for f in features if f.status == "drift"]
    return {"drift": bool(drifted) or output.status == "drift", "features": drifted,
            "domain": traffic.status == "alarm"}  # fmt: skip


def samples(s: Setting, n: int, reps: int, rng: np.random.Generator, shift: float = 0.0,
            ) -> dict[str, float]:  # fmt: skip
    """Random draws of n held-out records: the share of reports alarming, and (shifted) the
    share in which temperature drifts."""
    t = s.names.index("temperature")
    alarm = detected = 0
    for _ in range(reps):
        index = rng.choice(len(s.rows), n, replace=n > len(s.rows))
        rows = s.rows[index].copy()
        rows[:, t] += shift
        found = alarms(s, records(s, index, rows), int(rng.integers(2**31)))
        alarm += found["drift"] or found["domain"]
        detected += "temperature" in found["features"]
    return {"n": n, "reps": reps, "alarm": alarm / reps, "temperature_drift": detected / reps}


def windows(s: Setting, days: int, rng: np.random.Generator) -> dict[str, Any]:
    """Every whole held-out window of ``days`` days: the share of reports alarming."""
    start = np.floor(s.seconds / 86_400)
    blocks = (start - start.min()) // days
    out = []
    for block in np.unique(blocks):
        index = np.flatnonzero(blocks == block)
        if len(index) < 12 * days:  # most of the window missing: not a window
            continue
        found = alarms(s, records(s, index), int(rng.integers(2**31)))
        out.append(found["drift"] or found["domain"])
    return {"days": days, "windows": len(out), "alarm": float(np.mean(out)) if out else None}


def calibrate(
    bundle: dict[str, Any], reps: int, seed: int = 0, sizes: tuple[int, ...] = SIZES,
    shift_reps: int | None = None,
) -> dict[str, Any]:  # fmt: skip
    """Every figure of the module docstring, as one JSON-ready dict."""
    rng = np.random.default_rng(seed)
    started = time.perf_counter()
    rows, weeks = setting(bundle, "rows"), setting(bundle, "weeks")
    found: dict[str, Any] = {
        "held_out_rows": len(rows.rows),
        "held_out_week_rows": len(weeks.rows),
        "training_like": [samples(rows, n, reps, rng) for n in sizes],
        "shifted": [
            samples(rows, n, shift_reps or reps, rng, SHIFT) for n in SHIFT_SIZES if n in sizes
        ],
        "windows": [windows(weeks, 1, rng), windows(weeks, 7, rng)],
    }
    found["seconds"] = round(time.perf_counter() - started, 1)
    return found


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m monitoring.calibration", description=__doc__)
    p.add_argument("--bundle", type=Path, help="a bundle file (default: wqi's champion)")
    p.add_argument("--reps", type=int, default=400)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    from monitoring import model

    loaded = model.load("wqi", None, args.bundle, None)
    print(json.dumps(calibrate(loaded.bundle, args.reps, args.seed), indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
