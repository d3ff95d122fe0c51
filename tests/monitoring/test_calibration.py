"""How often a drift report alarms when nothing changed, and how often it sees the +1 °C
shift, measured on wqi's own held-out rows by the committed script (monitoring/calibration.py,
with fewer repetitions than the README's figures)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from inference.bundle import loads
from monitoring import calibration

pytestmark = pytest.mark.integration


def test_false_alarms_stay_rare_at_every_size_and_in_every_window(
    trained: dict[str, Any],
) -> None:
    bundle = loads(Path(trained["bundles"]["wqi"]).read_bytes())
    found = calibration.calibrate(bundle, reps=40, seed=1, shift_reps=20)
    print("\n", found)
    for sample in found["training_like"]:  # n = 30, 100, 500, 5,000
        assert sample["alarm"] <= 0.05, sample
    day, week = found["windows"]
    assert day["windows"] >= 50 and week["windows"] >= 10
    assert day["alarm"] <= 0.10 and week["alarm"] <= 0.10
    at_500, at_5000 = found["shifted"]
    assert at_500["temperature_drift"] >= 0.7 and at_5000["temperature_drift"] >= 0.95
