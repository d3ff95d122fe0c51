"""The second domain verdict (the nearest training row), the features training never saw
missing, and honest confidence outside the domain, on synthetic profiles built by training's
own code (training/profile.py, training/neighbours.py). The real models:
test_trained_domain.py and tests/training/test_neighbours.py."""

from __future__ import annotations

import io
import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import synthetic
from serving_helpers import local_config

from inference import domain as domain_mod
from inference import handler
from inference.domain import Domain, Verdict
from inference.outputs import BandedRegression, BinaryClassification
from training import neighbours
from training.profile import feature_profile, reference

NAMES = ["a", "b", "c", "d"]
# b follows a (b = a + noise): a high with b low never happened, though each alone is common.
RARE = [0.9, 0.1, 0.5, 0.5]
COMMON = [0.9, 0.9, 0.5, 0.5]


def training_rows(n: int = 3_000, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    a = rng.uniform(0, 1, n)
    return np.column_stack([a, a + rng.normal(0, 0.08, n), rng.uniform(0, 1, n),
                            rng.uniform(0, 1, n)]).astype(np.float32)  # fmt: skip


def grid_profile(X: np.ndarray, names: list[str]) -> dict[str, Any]:
    """A profile in the bundle's contract, built as training builds one (folds of rows: the
    synthetic rows have no times)."""
    profile = synthetic.profile({n: (0.0, 1.0) for n in names})
    profile["features"] = {n: feature_profile(X[:, j].astype(np.float64))
                           for j, n in enumerate(names)}  # fmt: skip
    every = np.arange(len(X))
    profile["reference"] = reference(X, None, names, every)
    folds = np.random.default_rng(1).permutation(len(X)) % 5
    profile["combination"] = neighbours.combination(X, folds, optional=(3,))
    return profile


@pytest.fixture(scope="module")
def profile() -> dict[str, Any]:
    return grid_profile(training_rows(), NAMES)


def test_a_rare_combination_is_named_though_each_value_is_inside(profile: dict[str, Any]) -> None:
    d = Domain(profile, NAMES)
    rows = np.array([COMMON, RARE, [0.9, 0.1, 0.5, 1.5]], dtype=np.float32)  # d above its bound
    verdicts = d.check(rows).verdicts
    assert verdicts[0] == Verdict(True, ())
    # Its nearest training row differs in a and b, not in c or d: those two are named.
    assert verdicts[1] == Verdict(False, (), ("a", "b"))
    # A value outside its bounds is the per-feature verdict's alone: the combination of a
    # reading already outside is not judged.
    assert verdicts[2] == Verdict(False, ("d",))
    assert [d.check(r[None, :]).verdicts[0] for r in rows] == verdicts  # one at a time too


def test_held_out_rows_stay_inside_and_the_radius_is_recorded(profile: dict[str, Any]) -> None:
    entry = profile["combination"]
    assert entry["method"] == "nearest" and entry["radius"] > 0
    assert 0.97 <= entry["held_out_inside"] <= 1.0 and entry["certified"] >= 0.9
    assert [g["features"] for g in entry["grids"]] == [[0, 1, 2, 3], [0, 1, 2]]
    held_out = training_rows(5_000, seed=7)  # the same process, rows the profile never saw
    checked = Domain(profile, NAMES).check(held_out)
    assert checked.unusual_rows / len(held_out) <= 0.03


def test_the_certificate_grid_answers_as_measuring_every_reading_would(
    profile: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Cells certified inside are inside by measure too; the grids only save the measuring."""
    rng = np.random.default_rng(3)
    rows = rng.uniform(-0.05, 1.05, (3_000, 4)).astype(np.float32)
    rows[rng.random(rows.shape) < 0.05] = np.nan
    gridded = Domain(profile, NAMES, tracked=["d"])
    assert gridded.neighbours is not None and len(gridded.neighbours.grids) == 2
    measured = Domain(profile, NAMES, tracked=["d"])
    assert measured.neighbours is not None
    monkeypatch.setattr(measured.neighbours, "grids", {})
    one, other = gridded.check(rows), measured.check(rows)
    assert one.verdicts == other.verdicts
    assert one.counts == other.counts and one.unusual_rows == other.unusual_rows > 0
    assert [bool(x) for x in one.outside_rows] == [not v["inside"] for v in one.verdicts]
    # Plain floats (a few rows) and numpy agree: verdicts, flags, counts per bit, unusual rows.
    small = [gridded.check(rows[i : i + 4]) for i in range(0, 3_000, 4)]
    assert [v for c in small for v in c.verdicts] == one.verdicts
    assert [bool(f) for c in small for f in c.outside_rows] == [bool(f) for f in one.outside_rows]
    assert [sum(n) for n in zip(*(c.counts for c in small), strict=True)] == one.counts
    assert sum(c.unusual_rows for c in small) == one.unusual_rows


def test_a_feature_training_never_saw_missing_is_named_not_outside(
    profile: dict[str, Any],
) -> None:
    d = Domain(profile, NAMES, tracked=["d"])
    rows = np.array([[0.5, 0.5, 0.5, math.nan], [0.5, 0.5, math.nan, 0.5]], dtype=np.float32)
    first, second = d.check(rows).verdicts
    assert first == Verdict(True, (), (), ("d",))  # inside, and says what it lacks
    assert second == Verdict(True, ())  # c is not tracked: its missing value is not news


def test_a_missing_timestamp_says_so_in_the_answer_and_the_metrics(
    cache_dir: Path, capfd: pytest.CaptureFixture[str], log_lines: io.StringIO
) -> None:
    bounds = synthetic.WQI_DOMAIN | {"hour_of_day": (0.0, 23.5)}
    bundle = synthetic.wqi_calendar_bundle(profile=synthetic.profile(bounds))
    handler.init(local_config(synthetic.dumps(bundle), cache_dir))
    capfd.readouterr()
    dated = {"timestamp": "2024-03-01T06:30:00+10:00", "readings": synthetic.GOOD_READING}
    undated = {"readings": synthetic.GOOD_READING}
    answers = handler.lambda_handler({"records": [dated, undated, undated]})["predictions"]
    assert answers[0]["domain"] == Verdict(True, ())
    assert answers[1]["domain"] == Verdict(True, (), (), ("hour_of_day",))
    doc = next(json.loads(x) for x in capfd.readouterr().out.splitlines() if '"Readings"' in x)
    assert doc["Missing.hour_of_day"] == [2.0] and doc["ReadingsOutOfDomain"] == [0.0]


def test_an_unusual_combination_is_counted_apart(
    profile: dict[str, Any], cache_dir: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    names = list(synthetic.WQI_DOMAIN)
    bundle = synthetic.wqi_profiled_bundle()
    # The synthetic rows' profile, renamed to the wqi features: pH "a", turbidity "b".
    renamed = {"features": dict(zip(names, profile["features"].values(), strict=True)),
               "reference": profile["reference"] | {"names": names},
               "combination": profile["combination"]}  # fmt: skip
    bundle["profile"] |= renamed
    handler.init(local_config(synthetic.dumps(bundle), cache_dir))
    capfd.readouterr()
    rare = dict(zip(names, map(float, RARE), strict=True))
    answer = handler.lambda_handler({"records": [{"readings": rare}] * 5})["predictions"][0]
    assert answer["domain"] == Verdict(False, (), ("pH", "turbidity"))
    doc = next(json.loads(x) for x in capfd.readouterr().out.splitlines() if '"Readings"' in x)
    assert doc["ReadingsUnusualCombination"] == [5.0] and doc["ReadingsOutOfDomain"] == [5.0]
    assert not any(k.startswith("OutOfDomain.") for k in doc)  # no feature beyond its bounds


# ---- honest confidence ------------------------------------------------------------------------
def test_outside_a_band_confidence_never_rises_above_the_models() -> None:
    rng = np.random.default_rng(5)
    out = BandedRegression(synthetic.WQI_OUTPUT | {"sigma_scale": 1.0},
                           prior=[0.05, 0.7, 0.2, 0.04, 0.01])  # fmt: skip
    raw = {"margin": rng.uniform(0, 100, 2_000), "abs_error": rng.uniform(0.5, 20, 2_000)}
    inside = out.answers(raw)
    checked = _all(2_000, outside=True)
    outside = out.answered(raw, None, checked).answers
    prior = dict(zip(out.labels, out.prior_list or [], strict=True))
    for a, b in zip(inside, outside, strict=True):
        assert b["quality"] == a["quality"] and b["wqi"] == a["wqi"]
        assert b["confidence"] == min(a["confidence"], round(prior[a["quality"]], 4))
    # The plain-float path for a few rows answers the same.
    few = {k: v[:3] for k, v in raw.items()}
    assert out.answered(few, None, _all(3, outside=True)).answers == outside[:3]


@pytest.mark.parametrize("threshold", [0.5, 0.3])
@pytest.mark.parametrize("positive_share", [0.39, 0.8])
def test_a_binary_answer_never_contradicts_itself(threshold: float, positive_share: float) -> None:
    """Label, probability and confidence agree, inside and outside; outside the label stays
    the model's and the confidence never rises above the model's own."""
    out = BinaryClassification({"label_name": "potable", "threshold": threshold},
                               prior=[1 - positive_share, positive_share])  # fmt: skip
    margins = np.concatenate([np.linspace(-6, 6, 4_001), [math.log(threshold / (1 - threshold))]])
    raw = {"margin": margins}
    inside = out.answers(raw)
    outside = out.answered(raw, None, _all(len(margins), outside=True)).answers
    for a, b in zip(inside, outside, strict=True):
        for answer in (a, b):
            p = answer["probability"]
            assert answer["potable"] == (p >= threshold)
            assert answer["confidence"] == round(p if answer["potable"] else 1 - p, 4)
        assert b["potable"] == a["potable"]
        assert b["confidence"] <= a["confidence"]
    # The example from the issue: potable true, probability 0.74, confidence 0.39, is gone.
    high = out.answered({"margin": np.array([math.log(0.74 / 0.26)])}, None,
                        _all(1, outside=True)).answers[0]  # fmt: skip
    assert high["potable"] and high["confidence"] == high["probability"] >= threshold


def _all(n: int, outside: bool) -> domain_mod.Checked:
    verdict = Verdict(not outside, ("a",) if outside else ())
    return domain_mod.Checked([verdict] * n, np.full(n, outside), [int(outside) * n], 0)
