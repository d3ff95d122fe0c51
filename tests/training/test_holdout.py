"""training/holdout.py: a split decided by each row's values, so every engine holds out the
same rows (the Spark engine's side: tests/training/test_spark_engine.py)."""

from __future__ import annotations

import numpy as np
import pandas as pd

from training import holdout, model
from training.spec import load_spec


def frame(rows: int, seed: int = 0) -> tuple[pd.DataFrame, pd.Series]:
    rng = np.random.default_rng(seed)
    X = pd.DataFrame({"a": rng.normal(size=rows), "b": rng.normal(size=rows)}, dtype="float32")
    X.loc[::7, "b"] = np.nan
    return X, pd.Series((rng.random(rows) < 0.3).astype("float64"))


def test_a_rows_key_depends_on_its_values_only() -> None:
    X, y = frame(500)
    keys = holdout.row_keys(X, y, 42)
    order = np.random.default_rng(1).permutation(len(X))
    shuffled = holdout.row_keys(X.iloc[order].reset_index(drop=True), y.iloc[order], 42)
    assert (shuffled == keys[order]).all()  # not its position: any partitioning gives it
    assert (keys >= 0).all() and (keys < 2**holdout.KEY_BITS).all()
    assert len(set(keys.tolist())) == len(keys)
    assert (holdout.row_keys(X, y, 43) != keys).mean() > 0.99  # the seed is a parameter


def test_missing_values_and_signed_zeros_hash_alike() -> None:
    X = pd.DataFrame({"a": [np.nan, -0.0]}, dtype="float64")
    other = pd.DataFrame({"a": [-np.nan, 0.0]})  # another NaN bit pattern (the sign bit)
    y = pd.Series([1.0, 1.0])
    assert (holdout.row_keys(X, y, 0) == holdout.row_keys(other, y, 0)).all()


def test_a_stratified_split_holds_out_each_class_share_exactly() -> None:
    X, y = frame(1001)
    held = holdout.held_out(holdout.row_keys(X, y, 7), y.to_numpy(), 0.2)
    for value in (0.0, 1.0):
        rows = int((y == value).sum())
        assert int(held[(y == value).to_numpy()].sum()) == holdout.held_out_count(rows, 0.2)
    random = holdout.held_out(holdout.row_keys(X, y, 7), None, 0.2)
    assert int(random.sum()) == holdout.held_out_count(1001, 0.2) == 200


def test_identical_rows_share_a_side() -> None:
    X, y = frame(300)
    twice = pd.concat([X, X.iloc[:50]], ignore_index=True)
    labels = pd.concat([y, y.iloc[:50]], ignore_index=True)
    held = holdout.held_out(holdout.row_keys(twice, labels, 3), None, 0.25)
    assert (held[:50] == held[300:]).all()


def test_potability_holds_out_the_same_rows_whatever_the_file_order() -> None:
    """The pandas engine's held-out side is a set of rows, not the positions a shuffle drew:
    reordering the table holds out the same readings."""
    from training import data, labels

    spec = load_spec("potability")
    table = data.load_frame(spec.data, data.read_bytes(spec.data))
    backwards = table[::-1].reset_index(drop=True)
    first, second = (
        model.split(model.make_dataset(t, labels.make_label(t, spec.label), spec), spec)
        for t in (table, backwards)
    )
    assert (len(first.X_test), len(first.X_train)) == (656, 2620)

    def rows(X: pd.DataFrame) -> list[tuple[float, ...]]:
        return sorted(tuple(np.nan_to_num(r, nan=-1.0)) for r in X.to_numpy(np.float64))

    assert rows(first.X_test) == rows(second.X_test)
