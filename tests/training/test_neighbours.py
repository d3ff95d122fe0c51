"""The combination verdict on the real models: impossible combinations of wqi's readings are
flagged, held-out weeks stay inside, and a model whose grid cannot certify its readings has
no such verdict (training/neighbours.py)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
from scipy.spatial import cKDTree

from inference.bundle import loads
from inference.domain import Domain
from monitoring import calibration
from training import data, labels, model
from training.spec import load_spec

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
    assert d is not None and d.neighbours is not None
    rng = np.random.default_rng(0)
    box = X[np.all([(X[:, j] >= d.lower[j]) & (X[:, j] <= d.upper[j]) for j in range(5)], axis=0)]
    candidates = np.column_stack([rng.choice(box[:, j], 20_000) for j in range(5)])
    tree = cKDTree(ranks(X, X))
    own = tree.query(ranks(X, X), k=2)[0][:, 1].max()
    far = candidates[tree.query(ranks(X, candidates))[0] > own]
    assert len(far) > 1_000  # the construction finds plenty
    verdicts = d.check(far.astype(np.float32)).verdicts
    assert all(not v["outside"] for v in verdicts)  # each value is inside its own bounds
    flagged = np.mean([bool(v["unusual"]) for v in verdicts])
    print(f"\nwqi: {len(far)} of 20,000 combinations far from training; {flagged:.1%} flagged")
    assert flagged >= 0.95
    assert d.check(X).unusual_rows == 0  # no training row is far from itself


def test_held_out_weeks_stay_inside(trained: dict[str, Any]) -> None:
    """The profile built from two weeks in three (as training builds it), the third judged."""
    s = calibration.setting(loads(Path(trained["bundles"]["wqi"]).read_bytes()))
    entry = s.bundle["profile"]["combination"]
    assert entry["method"] == "nearest" and entry["held_out_inside"] >= 0.97
    checked = Domain.of_bundle(s.bundle).check(s.rows)  # type: ignore[union-attr]
    share = checked.unusual_rows / len(s.rows)
    print(f"\nwqi: {share:.1%} of {len(s.rows):,} held-out weeks' readings unusual")
    assert share <= 0.03


def test_a_grid_that_cannot_certify_its_readings_gives_no_verdict(
    trained: dict[str, Any],
) -> None:
    """potability: nine features, 4 cells each: almost no cell is certain, and measuring
    every reading would cost about a millisecond; no combination verdict, and it says why."""
    bundle = loads(Path(trained["bundles"]["potability"]).read_bytes())
    entry = bundle["profile"]["combination"]
    assert entry["method"] == "none" and entry["certified"] < 0.9 and entry["grids"] == []
    d = Domain.of_bundle(bundle)
    assert d is not None and d.neighbours is None
