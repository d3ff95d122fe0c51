"""The statistics on their own: quantile bins, PSI, the answers' mix, binary live metrics."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from monitoring import compare, labels
from monitoring.compare import Thresholds

LEVELS = {"0": 0.0, "0.005": 1.0, "0.01": 2.0, "0.05": 3.0, "0.1": 4.0, "0.25": 5.0, "0.5": 6.0,
          "0.75": 7.0, "0.9": 8.0, "0.95": 9.0, "0.99": 10.0, "0.995": 11.0, "1": 12.0}  # fmt: skip


def test_quantile_bins_carry_the_training_shares_and_merge_ties() -> None:
    edges, shares = compare.quantile_bins(LEVELS)
    assert edges.tolist() == [1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0, 10.0, 11.0]
    assert np.allclose(shares, [0.005, 0.005, 0.04, 0.05, 0.15, 0.25, 0.25, 0.15, 0.05, 0.04,
                                0.005, 0.005])  # fmt: skip
    tied = LEVELS | {"0.005": 1.0, "0.01": 1.0, "0.05": 1.0}  # a value repeated in the tail
    edges, shares = compare.quantile_bins(tied)
    assert edges.tolist()[:2] == [1.0, 4.0] and math.isclose(shares[0], 0.05)
    assert math.isclose(float(shares.sum()), 1.0)
    # Right-closed: a value on an edge counts below it; beyond the extremes, the open tails.
    counts = compare.bin_counts(np.array([-5.0, 1.0, 1.5, 11.0, 99.0]), *compare.quantile_bins(
        LEVELS)[:1])  # fmt: skip
    assert counts.tolist() == [2, 1, 0, 0, 0, 0, 0, 0, 0, 0, 1, 1]


def test_psi_is_zero_for_the_training_shares_and_large_for_a_moved_mass() -> None:
    _, shares = compare.quantile_bins(LEVELS)
    assert compare.psi(shares, np.round(shares * 10_000)) < 1e-6
    moved = np.zeros(12)
    moved[0] = 100  # everything below the 0.5 % quantile
    assert compare.psi(shares, moved) > 5.0
    assert math.isnan(compare.psi(shares, np.zeros(12)))


def test_classes_match_however_the_label_is_written() -> None:
    outputs = {"kind": "classes", "labels": [False, True], "shares": [0.6, 0.4]}
    same = compare.output_drift(outputs, [False] * 60 + ["true"] * 40, Thresholds())
    assert same.counts == (60, 40) and same.status == "stable" and same.unknown == 0
    flipped = compare.output_drift(outputs, [1] * 90 + [0] * 10, Thresholds())
    assert flipped.counts == (10, 90) and flipped.status == "drift"
    odd = compare.output_drift(outputs, [False] * 60 + ["maybe"] * 2 + [True] * 38, Thresholds())
    assert odd.unknown == 2 and odd.status == "drift"


def binary_bundle() -> dict[str, object]:
    return {
        "output": {"kind": "binary_classification", "label_name": "potable", "threshold": 0.5},
        "metadata": {"metrics": {"roc_auc": 0.7, "f1": 0.45, "baseline_roc_auc": 0.5,
                                 "baseline_f1": 0.0}},
    }  # fmt: skip


def joined(truth: list[float], prob: list[float]) -> labels.Joined:
    served = [{"potable": p >= 0.5, "probability": p, "confidence": max(p, 1 - p)} for p in prob]
    return labels.Joined(len(truth), len(truth), 0, np.array(truth), served)


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
    from datetime import timedelta

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
    assert j.truth.tolist() == [81.0] and j.served == [{"wqi": 80.0}]
