import numpy as np
import pandas as pd
import pytest

from training.data import load_frame, read_bytes
from training.labels import ccme_wqi, make_label, rows_before
from training.spec import load_spec

GUIDE = {"a": {"max": 10.0}, "b": {"min": 5.0, "max": 8.0}}


def test_all_tests_pass_scores_100() -> None:
    frame = pd.DataFrame({"a": [1.0, 2.0, 3.0], "b": [6.0, 6.5, 7.0]})
    assert ccme_wqi(frame, GUIDE, window=3, min_tests=1).tolist() == [100.0] * 3


def test_formula_by_hand() -> None:
    # One reading, 'a' at 20 (excursion 1.0), 'b' fine: F1 = 50, F2 = 50,
    # nse = 1/2, F3 = 0.5 / 0.015 = 33.33; WQI = 100 - sqrt(50^2 + 50^2 + 33.33^2) / 1.732.
    frame = pd.DataFrame({"a": [20.0], "b": [6.0]})
    expected = 100 - np.sqrt(50**2 + 50**2 + (0.5 / 0.015) ** 2) / 1.732
    assert ccme_wqi(frame, GUIDE, window=1, min_tests=1).iloc[0] == pytest.approx(expected)


def test_below_minimum_uses_the_inverse_ratio() -> None:
    frame = pd.DataFrame({"a": [1.0], "b": [2.5]})  # b: 5 / 2.5 - 1 = 1.0, like the case above
    expected = 100 - np.sqrt(50**2 + 50**2 + (0.5 / 0.015) ** 2) / 1.732
    assert ccme_wqi(frame, GUIDE, window=1, min_tests=1).iloc[0] == pytest.approx(expected)


def test_too_few_tests_leave_the_row_unlabelled() -> None:
    frame = pd.DataFrame({"a": [1.0, 1.0, np.nan, 1.0], "b": [6.0] * 4})
    labels = ccme_wqi(frame, GUIDE, window=2, min_tests=2).tolist()
    assert np.isnan(labels[0]) and labels[1] == 100.0
    assert np.isnan(labels[2]) and np.isnan(labels[3])  # each window holds one test of 'a'


def test_real_labels_spread_over_the_bands() -> None:
    spec = load_spec("wqi")
    frame = load_frame(spec.data, read_bytes(spec.data))
    wqi = make_label(frame, spec.label).dropna()
    bands = pd.cut(wqi, [0, 25, 50, 70, 90, 100.01], right=False).value_counts(normalize=True)
    assert len(wqi) > 20_000
    assert (bands > 0.05).sum() >= 3, bands  # not a near-constant label
    assert wqi.std() > 5


def test_a_slice_with_the_rows_before_it_labels_as_the_whole_series() -> None:
    """What lets the Spark engine label partitions apart: a slice of the series, given the
    rows_before rows that precede it, gets the whole series' labels bit for bit (pandas'
    rolling sum did not: its running total rounds differently from where it starts)."""
    spec = load_spec("wqi")
    frame = load_frame(spec.data, read_bytes(spec.data))
    whole = make_label(frame, spec.label).to_numpy()
    before = rows_before(spec.label)
    assert before == spec.label["window"] - 1
    for start in range(1, len(frame), 997):
        first = max(0, start - before)
        part = frame.iloc[first : start + 997].reset_index(drop=True)
        got = make_label(part, spec.label).to_numpy()[start - first :]
        np.testing.assert_array_equal(got, whole[start : start + 997], err_msg=f"from {start}")
