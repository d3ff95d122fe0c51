"""The combination verdict on the real models: impossible combinations of wqi's readings are
flagged, held-out training-like rows stay inside (training/combination.py)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
from scipy.spatial import cKDTree

from inference.bundle import loads
from inference.domain import Domain
from training import combination, data, labels, model
from training.profile import feature_profile
from training.spec import available, load_spec

pytestmark = pytest.mark.integration


def split(name: str) -> model.Split:
    spec = load_spec(name)
    frame = data.load_frame(spec.data, data.read_bytes(spec.data))
    return model.split(model.make_dataset(frame, labels.make_label(frame, spec.label), spec), spec)


def ranks(train: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """Each value's share of training values below it, per feature: the rank-scaled space."""
    columns = [np.searchsorted(np.sort(train[:, j]), rows[:, j]) / len(train)
               for j in range(train.shape[1])]  # fmt: skip
    return np.column_stack(columns)


def test_impossible_combinations_of_wqi_readings_are_flagged(trained: dict[str, Any]) -> None:
    """Readings whose every value is inside its own bounds, but whose nearest training row
    (rank-scaled) is farther than any training row's own nearest neighbour."""
    bundle = loads(Path(trained["bundles"]["wqi"]).read_bytes())
    names = [f["name"] for f in bundle["schema"]["fields"]]
    X = split("wqi").X_train[names].to_numpy(np.float32)
    d = Domain.of_bundle(bundle)
    assert d is not None
    rng = np.random.default_rng(0)
    inside = ~np.asarray(d.check(X).outside_rows)
    box = X[np.all([(X[:, j] >= d.lower[j]) & (X[:, j] <= d.upper[j]) for j in range(5)], axis=0)]
    candidates = np.column_stack([rng.choice(box[:, j], 20_000) for j in range(5)])
    tree = cKDTree(ranks(X, X))
    own = tree.query(ranks(X, X), k=2)[0][:, 1].max()
    far = candidates[tree.query(ranks(X, candidates))[0] > own]
    assert len(far) > 200  # the construction finds plenty
    verdicts = d.check(far.astype(np.float32)).verdicts
    assert all(not v["outside"] for v in verdicts)  # each value is inside its own bounds
    flagged = np.mean([bool(v["unusual"]) for v in verdicts])
    print(
        f"\nwqi: {len(far)} of 20,000 combinations far from training; {flagged:.1%} flagged; "
        f"training rows inside: {inside.mean():.1%}"
    )
    assert flagged >= 0.95


@pytest.mark.parametrize("name", available())
def test_held_out_training_like_rows_stay_inside(trained: dict[str, Any], name: str) -> None:
    bundle = loads(Path(trained["bundles"][name]).read_bytes())
    grid = bundle["profile"]["combination"]
    assert grid["held_out_inside"] >= 0.97  # cross-fitted at training
    names = [f["name"] for f in bundle["schema"]["fields"]]
    X = split(name).X_train[names].to_numpy(np.float32)
    # A grid from a random 80 % of the training rows, judged on the other 20 %.
    order = np.random.default_rng(1).permutation(len(X))
    fit, held = X[order[: len(X) * 4 // 5]], X[order[len(X) * 4 // 5 :]]
    profile = dict(bundle["profile"])
    profile["features"] = {n: feature_profile(fit[:, j].astype(np.float64))
                           for j, n in enumerate(names)}  # fmt: skip
    profile["combination"] = combination.grid(profile, fit, names, seed=3)
    checked = Domain(profile, names).check(held)
    assert checked.unusual_rows / len(held) <= 0.03
