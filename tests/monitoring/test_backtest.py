"""The label-free estimates against the realized metrics, on held-out windows of this
repository's data, by the committed script (monitoring/backtest.py)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from inference.bundle import loads
from monitoring import backtest

pytestmark = pytest.mark.integration


def test_the_estimates_meet_the_realized_metrics(trained: dict[str, Any]) -> None:
    bundles = {n: loads(Path(p).read_bytes()) for n, p in trained["bundles"].items()}
    found = backtest.backtest(bundles["wqi"], bundles["potability"])
    print("\n", found)
    cbpe = found["potability_cbpe"]
    for metric in ("roc_auc", "accuracy"):  # most 200-row windows within 0.03
        assert cbpe[metric]["windows"] == 400 and cbpe[metric]["within_tolerance"] > 0.5
        assert cbpe[metric]["interval_holds_realized"] >= 0.9
    day, week = found["wqi_dle"]
    assert day["windows"] >= 25 and week["windows"] >= 20
    period = day["whole_period"]  # the held-out month as one window: within 10 %
    assert abs(period["estimated"] / period["realized"] - 1) <= 0.10
    assert period["low"] <= period["realized"] <= period["high"]
    # The interval, widened by how far training's own windows strayed from the estimate,
    # holds the realized RMSE of most held-out windows (label noise alone: 27 % and 7 %).
    assert bundles["wqi"]["output"]["window_log_ratio"]["by_days"]["1"]["windows"] >= 100
    assert day["interval_holds_realized"] >= 0.8 and week["interval_holds_realized"] >= 0.8
