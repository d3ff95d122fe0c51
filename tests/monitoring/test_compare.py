"""The statistics on their own: quantile bins and PSI, the windows of training's own that
calibrate every test, the label-free estimates, binary live metrics and the label join."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta

import numpy as np
import pandas as pd
import pytest

from inference import error_windows
from monitoring import compare, estimate, labels, reference
from monitoring.compare import Thresholds

LEVELS = {"0": 0.0, "0.005": 1.0, "0.01": 2.0, "0.05": 3.0, "0.1": 4.0, "0.25": 5.0, "0.5": 6.0,
          "0.75": 7.0, "0.9": 8.0, "0.95": 9.0, "0.99": 10.0, "0.995": 11.0, "1": 12.0}  # fmt: skip
DAY = 86_400


def test_quantile_bins_carry_the_training_shares_and_merge_ties() -> None:
    edges, shares = compare.quantile_bins(LEVELS)
    assert edges.tolist() == [1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0, 10.0, 11.0]
    assert np.allclose(shares, [0.005, 0.005, 0.04, 0.05, 0.15, 0.25, 0.25, 0.15, 0.05, 0.04,
                                0.005, 0.005])  # fmt: skip
    tied = LEVELS | {"0.005": 1.0, "0.01": 1.0, "0.05": 1.0}  # a value repeated in the tail
    edges, shares = compare.quantile_bins(tied)
    assert edges.tolist()[:2] == [1.0, 4.0] and math.isclose(shares[0], 0.05)
    assert math.isclose(float(shares.sum()), 1.0)
    # Right-closed: a value on an edge counts below it; beyond the extremes, the open tails;
    # a missing value the code after the last bin.
    edges, _ = compare.quantile_bins(LEVELS)
    code = compare.codes(np.array([-5.0, 1.0, 1.5, 11.0, 99.0, math.nan]), edges)
    assert code.tolist() == [0, 0, 1, 10, 11, 12]
    assert compare.counts(code[None, :], 13)[0].tolist() == [2, 1] + [0] * 8 + [1, 1, 1]


def test_psi_is_zero_for_the_training_shares_and_large_for_a_moved_mass() -> None:
    _, shares = compare.quantile_bins(LEVELS)
    moved = np.zeros(12)
    moved[0] = 100  # everything below the 0.5 % quantile
    got = compare.psi(shares, np.array([np.round(shares * 10_000), moved, np.zeros(12)]))
    assert got[0] < 1e-6 and got[1] > 5.0 and math.isnan(got[2])


def test_a_window_keeps_each_records_time_of_day_its_season_and_its_device() -> None:
    """A day of one buoy draws days of training near the same day of the year, each record at
    its own time of day; two buoys draw their days independently."""
    start = datetime(2023, 8, 1, tzinfo=UTC).timestamp()
    seconds = start + np.arange(0, 300 * DAY, 1800, dtype=np.float64)  # half-hourly, 300 days
    ref = reference.Reference(["x"], np.zeros((len(seconds), 1)), seconds.astype(np.int64))
    day = datetime(2024, 12, 5, tzinfo=UTC).timestamp()  # a year later, in training's season
    times = [day + h * 3600 for h in range(24)] * 2
    log = reference.shape(times, ["a"] * 24 + ["b"] * 24)
    (index,) = reference.windows(ref, log, 200, seed=1)
    picked = seconds[index]
    assert np.allclose(picked % DAY, np.array(times) % DAY)  # the same hours of the day
    same_day = datetime(2023, 12, 5, tzinfo=UTC).timestamp()
    assert np.abs(picked - (same_day + np.array(times) % DAY)).max() <= 15 * DAY
    first, second = picked[:, 0], picked[:, 24]
    assert (first != second).mean() > 0.8  # the devices' days are drawn apart
    assert (np.ptp(picked[:, :24], axis=1) < DAY).all()  # a day stays a day
    # Without reading times, training rows are drawn independently.
    plain = next(reference.windows(ref, reference.shape([None] * 48, ["a"] * 48), 50, seed=1))
    assert len(np.unique(plain)) > 1_000


def test_a_season_training_never_saw_draws_any_training_day() -> None:
    start = datetime(2023, 8, 1, tzinfo=UTC).timestamp()
    seconds = start + np.arange(0, 200 * DAY, 3600, dtype=np.float64)  # Aug to mid-Feb
    ref = reference.Reference(["x"], np.zeros((len(seconds), 1)), seconds.astype(np.int64))
    july = datetime(2025, 7, 1, tzinfo=UTC).timestamp()
    log = reference.shape([july + h * 3600 for h in range(24)], ["a"] * 24)
    (index,) = reference.windows(ref, log, 100, seed=2)
    assert index.min() >= 0 and index.max() < len(ref)
    assert reference.Timeline(ref.seconds).uncovered(log.days, log.first[0]) == 1.0  # type: ignore[arg-type]


def test_a_p_value_counts_the_observation_and_is_never_zero() -> None:
    null = np.arange(1999.0)
    assert reference.p_value(5000.0, null) == 1 / 2000  # just beyond: the share's floor
    assert reference.p_value(1500.0, null) == pytest.approx(500 / 2000)
    assert reference.p_value(-1.0, null) == 1.0
    # Far beyond every window (a day of fresh water): the tail of their log-normal fit.
    assert reference.p_value(1e6, np.random.default_rng(0).gamma(2.0, 1.0, 1999)) < 1e-12
    assert math.isnan(reference.p_value(math.nan, null))


def test_classes_match_however_the_label_is_written() -> None:
    keys = [compare.category_key(v) for v in (True, 1, 1.0, "true", " True ", False, "0")]
    assert keys == ["1", "1", "1", "1", "1", "0", "0"]
    assert compare.category_key("Very Poor") == "Very Poor"


def test_cbpe_expects_what_calibrated_labels_realize() -> None:
    """Labels drawn from the model's own probabilities: the estimate is the mean of what
    they realize, and the interval holds 95 % of them."""
    rng = np.random.default_rng(0)
    margin = rng.normal(0.0, 1.5, 800)
    got = estimate.binary(margin, 0.5, seed=3)
    p = 1 / (1 + np.exp(-margin))
    y = rng.random((400, len(p))) < p
    accuracy = np.mean(y == (p >= 0.5), axis=1)
    auc = [pd.Series(p).rank().to_numpy()[row].sum() for row in y]
    positives = y.sum(axis=1)
    auc = (np.array(auc) - positives * (positives + 1) / 2) / (positives * (len(p) - positives))
    assert got["accuracy"][0] == pytest.approx(accuracy.mean(), abs=0.005)
    assert got["roc_auc"][0] == pytest.approx(auc.mean(), abs=0.005)
    for name, realized in (("accuracy", accuracy), ("roc_auc", auc)):
        _, low, high = got[name]
        assert 0.9 < np.mean((realized >= low) & (realized <= high)) <= 1.0


def test_dle_is_the_root_mean_of_the_error_models_variance() -> None:
    rng = np.random.default_rng(1)
    abs_error = rng.uniform(1.0, 10.0, 1_000)
    got = estimate.regression(np.full(1_000, 70.0), abs_error, 1.25, seed=2)
    sigma = abs_error * 1.25
    assert got["rmse"][0] == pytest.approx(float(np.sqrt(np.mean(sigma**2))))
    realized = [np.sqrt(np.mean((rng.standard_normal(1_000) * sigma) ** 2)) for _ in range(200)]
    _, low, high = got["rmse"]
    assert np.mean((np.array(realized) >= low) & (np.array(realized) <= high)) > 0.9


def test_an_estimate_is_degraded_when_worse_and_its_interval_leaves_held_out_out() -> None:
    bundle = {"output": {"kind": "banded_regression", "clip": [0.0, 100.0], "sigma_scale": 1.0},
              "metadata": {"metrics": {"rmse": 10.0, "mae": 8.0}}}  # fmt: skip
    raw = {"margin": np.full(500, 70.0), "abs_error": np.full(500, 10.5)}
    assert estimate.estimate(bundle, raw, "rmse", False, 0.2).status == "ok"  # 5 % worse
    raw["abs_error"] = np.full(500, 15.0)
    worse = estimate.estimate(bundle, raw, "rmse", False, 0.2)
    assert worse.status == "degraded" and "50% worse than held-out 10.0000" in worse.reason
    few = {"margin": raw["margin"][:10], "abs_error": raw["abs_error"][:10]}
    assert estimate.estimate(bundle, few, "rmse", False, 0.2).status == "too few rows"


def test_a_window_calibration_widens_the_regression_interval_by_the_nearest_window() -> None:
    rng = np.random.default_rng(3)
    days = 28
    seconds = np.arange(days * 48) * 1800.0  # half-hourly
    abs_error = np.full(len(seconds), 4.0)
    # Each day's error is off the error model by its own factor, as wqi's stretches are.
    factor = np.repeat(np.exp(rng.normal(0.0, 0.4, days)), 48)
    truth = 50.0 + rng.standard_normal(len(seconds)) * 4.0 * factor
    calibration = error_windows.window_calibration(seconds, np.full(len(seconds), 50.0), truth,
                                              abs_error, 1.0)  # fmt: skip
    assert calibration["levels"] == [0.025, 0.5, 0.975]
    day, week = calibration["by_days"]["1"], calibration["by_days"]["7"]
    assert day["windows"] == days and week["windows"] == days - 6
    assert day["rmse"][0] < -0.4 and day["rmse"][2] > 0.4  # the days' factors, not label noise
    assert week["rmse"][2] - week["rmse"][0] < day["rmse"][2] - day["rmse"][0]

    rows = abs_error[:48]
    plain = estimate.regression(np.full(48, 50.0), rows, 1.0, seed=1)
    widened = estimate.regression(np.full(48, 50.0), rows, 1.0, seed=1, calibration=calibration)
    assert widened["rmse"][0] == plain["rmse"][0]  # the point estimate is left as it is
    assert widened["rmse"][1] == pytest.approx(min(plain["rmse"][1], 4.0 * np.exp(day["rmse"][0])))
    assert widened["rmse"][2] == pytest.approx(max(plain["rmse"][2], 4.0 * np.exp(day["rmse"][2])))
    assert widened["rmse"][1] < plain["rmse"][1] and widened["rmse"][2] > plain["rmse"][2]
    week_long = estimate.regression(np.full(48, 50.0), rows, 1.0, seed=1,
                                    calibration=calibration, days=6.0)  # fmt: skip
    assert week_long["rmse"][2] == pytest.approx(max(plain["rmse"][2],
                                                     4.0 * np.exp(week["rmse"][2])))  # fmt: skip
    spread = error_windows.window_spread
    assert spread(calibration, 3.9) == spread(calibration, None)

    bundle = {"output": {"kind": "banded_regression", "clip": [0.0, 100.0], "sigma_scale": 1.0,
                         "window_log_ratio": calibration},
              "metadata": {"metrics": {"rmse": 4.0, "mae": 3.2}}}  # fmt: skip
    raw = {"margin": np.full(48, 50.0), "abs_error": np.full(48, 6.0)}  # 50 % worse than held-out
    assert estimate.estimate(bundle, raw, "rmse", False, 0.2).status == "ok"  # within the spread
    del bundle["output"]["window_log_ratio"]  # a bundle without it: label noise alone
    assert estimate.estimate(bundle, raw, "rmse", False, 0.2).status == "degraded"


def binary_bundle() -> dict[str, object]:
    return {
        "output": {"kind": "binary_classification", "label_name": "potable", "threshold": 0.5},
        "metadata": {"metrics": {"roc_auc": 0.7, "f1": 0.45, "baseline_roc_auc": 0.5,
                                 "baseline_f1": 0.0}},
    }  # fmt: skip


def joined(truth: list[float], prob: list[float]) -> labels.Joined:
    served = [{"potable": p >= 0.5, "probability": p, "confidence": max(p, 1 - p)} for p in prob]
    return labels.Joined(len(truth), len(truth), 0, np.array(truth), served,
                         list(range(len(truth))))  # fmt: skip


def test_binary_live_metrics_at_the_served_threshold() -> None:
    rng = np.random.default_rng(0)
    truth = rng.integers(0, 2, 200).astype(float)
    good = np.clip(truth * 0.3 + rng.uniform(0.1, 0.6, 200), 0, 1)  # informative
    live = labels.live_metrics(joined(truth.tolist(), good.tolist()), binary_bundle(), "roc_auc",
                               True, Thresholds())  # fmt: skip
    assert live.live["roc_auc"] > 0.7 and live.status == "ok"
    assert live.held_out == {"roc_auc": 0.7, "f1": 0.45}
    assert live.baseline == {"roc_auc": 0.5, "f1": 0.0}
    noise = rng.uniform(0, 1, 200)  # uninformative: AUC about 0.5, 29 % below 0.7
    worse = labels.live_metrics(joined(truth.tolist(), noise.tolist()), binary_bundle(),
                                "roc_auc", True, Thresholds())  # fmt: skip
    assert worse.status == "degraded" and "worse than held-out 0.7000" in worse.reason
    one_class = labels.live_metrics(joined([1.0] * 40, [0.8] * 40), binary_bundle(), "roc_auc",
                                    True, Thresholds())  # fmt: skip
    assert "roc_auc" not in one_class.live and one_class.status == "too few labels"


def test_a_label_joins_the_nearest_reading_of_its_device_within_the_tolerance() -> None:
    records = [
        {"device": "a", "timestamp": "2026-11-01T10:00:00+10:00", "output": {"wqi": 70.0}},
        {"device": "a", "timestamp": "2026-11-01T10:30:00+10:00", "output": {"wqi": 80.0}},
        {"device": "b", "timestamp": "2026-11-01T10:20:00+10:00", "output": {"wqi": 90.0}},
        {"device": None, "time": "2026-11-01T00:20:00Z", "output": {"wqi": 10.0}},
    ]
    table = pd.DataFrame(
        [("a", pd.Timestamp("2026-11-01T00:20:00Z"), 81.0),  # 10:20 local: 10:30 is nearer
         ("a", pd.Timestamp("2026-11-01T03:00:00Z"), 50.0),  # hours away: unmatched
         ("c", pd.Timestamp("2026-11-01T00:20:00Z"), 60.0)],  # no such device
        columns=list(labels.KEYS),
    )  # fmt: skip
    j = labels.join(table, records, timedelta(minutes=30))
    assert (j.labels, j.matched, j.no_device) == (3, 1, 1)
    assert j.truth.tolist() == [81.0] and j.served == [{"wqi": 80.0}] and j.indices == [1]
