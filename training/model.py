"""Fits the spec's XGBoost model, its trivial baseline and (for banded regression) the error
model behind the confidence. A fixed, seeded procedure: same data, same bytes."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import numpy as np
import pandas as pd
import xgboost as xgb
from sklearn.dummy import DummyClassifier, DummyRegressor
from sklearn.model_selection import KFold

from inference.error_windows import window_calibration
from inference.outputs import BandedRegression
from training import expectations, holdout
from training.data import calendar_columns, iso_timestamps
from training.progress import Progress
from training.spec import ModelSpec

# Fixed, not os.cpu_count(): histogram sums are reduced per thread, so the thread count is a
# parameter of the bytes. 2 is the cores of the machine the figures come from. On a shared CPU
# the cost is not the count but how waiting threads wait: `python -m training` (and the tests)
# choose that before OpenMP loads (training/openmp.py).
THREADS = 2
ERROR_MODEL_PARAMS = {"n_estimators": 60, "max_depth": 3, "learning_rate": 0.1}  # held-out ECE 0.10
ERROR_MODEL_FOLDS = 20  # contiguous blocks of ~2.5 weeks: residuals of unseen weeks
SIGMA_SCALES = tuple(round(0.25 + 0.05 * i, 2) for i in range(56))  # 0.25 .. 3.0


@dataclass
class Dataset:
    X: pd.DataFrame
    y: pd.Series
    dropped: dict[str, int]  # why rows were left out, and how many
    timestamps: list[str | None] | None = None  # per row of X, as serving receives them
    rows: np.ndarray | None = None  # the position in the frame of each row of X


# Why a row is left out of training, in the order the checks run.
DROPPED = ("unlabelled", "missing_required_feature", "outside_serving_range")


@dataclass
class Split:
    X_train: pd.DataFrame
    X_test: pd.DataFrame
    y_train: pd.Series
    y_test: pd.Series
    timestamps_test: list[str | None] | None = None  # per row of X_test (golden records)
    timestamps_train: list[str | None] | None = None  # per row of X_train (the profile's times)


@dataclass
class Fitted:
    model: xgb.XGBModel
    baseline: Any
    error_model: xgb.XGBRegressor | None  # predicts |residual|, for the confidence
    sigma_scale: float
    params: dict[str, Any]
    # How far the label-free RMSE of 1- and 7-day windows strays from the realized one, on
    # out-of-fold predictions (monitoring/estimate.py); None without an error model or times.
    window_log_ratio: dict[str, Any] | None = None


def xgb_params(spec: ModelSpec) -> dict[str, Any]:
    objective = "binary:logistic" if spec.task == "binary" else "reg:squarederror"
    return {
        "objective": objective,
        "tree_method": "hist",
        "random_state": int(spec.split["seed"]),
        "n_jobs": THREADS,
        **spec.params,
    }


def make_dataset(
    frame: pd.DataFrame,
    label: pd.Series,
    spec: ModelSpec,
    ranges: dict[str, dict[str, float]] | None = None,
) -> Dataset:
    """The labelled rows serving would accept: every required feature present, every value
    finite and within the serving schema's ranges (``ranges``, read from the suite when not
    given). Each left-out row is counted under its first reason."""
    features = list(spec.features)
    stamps = None
    if spec.calendar_features:  # the timestamps as serving receives them, for golden records
        stamps = iso_timestamps(spec.data, frame)
        frame = frame.assign(**calendar_columns(spec.data, stamps))  # as serving derives them
    if ranges is None:
        suite = expectations.load_suite(spec.data.expectations)
        ranges = expectations.feature_ranges(suite, features)
    required = [f for f in features if f not in spec.nullable]
    no_label = label.isna()
    missing = frame[required].isna().any(axis=1) & ~no_label
    # A suite may let some out-of-range values pass (`mostly`); serving rejects such a row,
    # so the model must not learn from it. NaN passes here: it is missing, handled above.
    values = frame[features].astype("float64")
    lows = pd.Series({f: ranges[f]["minimum"] for f in features})
    highs = pd.Series({f: ranges[f]["maximum"] for f in features})
    outside = ((values < lows) | (values > highs)).any(axis=1) & ~no_label & ~missing
    keep = ~(no_label | missing | outside)
    dropped = dict(zip(DROPPED, (int(no_label.sum()), int(missing.sum()), int(outside.sum())),
                       strict=True))  # fmt: skip
    X = frame.loc[keep, features].astype("float32").reset_index(drop=True)
    y = label[keep].astype("float64").reset_index(drop=True)
    kept = None if stamps is None else [s for s, k in zip(stamps, keep, strict=True) if k]
    return Dataset(X, y, dropped, kept, np.flatnonzero(keep.to_numpy()))


def split(data: Dataset, spec: ModelSpec) -> Split:
    """The training and held-out rows (training/holdout.py: by position for a chronological
    split, else by each row's key), each side in the frame's order."""
    method, size, seed = spec.split["method"], float(spec.split["test_size"]), spec.split["seed"]
    if method == "chronological":  # the frame is already in time order
        test = np.arange(len(data.X)) >= len(data.X) - holdout.held_out_count(len(data.X), size)
    else:
        strata = data.y.to_numpy() if method == "stratified" else None
        test = holdout.held_out(holdout.row_keys(data.X, data.y, int(seed)), strata, size)
    stamps = data.timestamps
    test_stamps = train_stamps = None
    if stamps is not None:
        test_stamps = [s for s, t in zip(stamps, test, strict=True) if t]
        train_stamps = [s for s, t in zip(stamps, test, strict=True) if not t]
    X_train, X_test, y_train, y_test = (
        part.reset_index(drop=True)
        for part in (data.X[~test], data.X[test], data.y[~test], data.y[test])
    )  # numbered from 0, as the Spark engine's sides: the same rows are the same frames
    return Split(X_train, X_test, y_train, y_test, test_stamps, train_stamps)


def planned_trees(params: dict[str, Any], banded: bool) -> int:
    """Boosting rounds of every fit below (one tree each for these objectives)."""
    rounds = int(params.get("n_estimators") or xgb.sklearn.DEFAULT_N_ESTIMATORS)
    if not banded:
        return rounds
    error_rounds = int(ERROR_MODEL_PARAMS["n_estimators"])
    return rounds + ERROR_MODEL_FOLDS * (rounds + error_rounds) + error_rounds


def fit(parts: Split, spec: ModelSpec) -> Fitted:
    params = xgb_params(spec)
    banded = spec.output["kind"] == "banded_regression"
    # Passed beside the params, never in them: they are logged and bundled, the callback is not.
    progress: list[xgb.callback.TrainingCallback] = [
        Progress(spec.name, planned_trees(params, banded))
    ]
    model_cls = xgb.XGBClassifier if spec.task == "binary" else xgb.XGBRegressor
    model = model_cls(**params, callbacks=progress).fit(parts.X_train, parts.y_train)
    if spec.task == "binary":
        baseline: Any = DummyClassifier(strategy="prior").fit(parts.X_train, parts.y_train)
    else:
        baseline = DummyRegressor(strategy="mean").fit(parts.X_train, parts.y_train)
    error_model, sigma_scale, windows = None, 1.0, None
    if banded:
        error_model, sigma_scale, windows = fit_error_model(parts, params, spec.output, progress)
    return Fitted(model, baseline, error_model, sigma_scale, params, windows)


def fit_error_model(
    parts: Split,
    params: dict[str, Any],
    output: dict[str, Any],
    callbacks: list[xgb.callback.TrainingCallback] | None = None,
) -> tuple[xgb.XGBRegressor, float, dict[str, Any] | None]:
    """Learn |residual| from out-of-fold residuals, then pick the scale that turns it into the
    normal sigma whose band probabilities best match how often the band was right (lowest
    Brier score). Both the residuals and the error predictions the scale is chosen on are
    out of fold, so neither model grades its own training rows. With the training rows'
    times, also how far the estimated RMSE of 1- and 7-day windows strays from the realized
    one on those same out-of-fold predictions (``window_log_ratio``; else None)."""
    X, y = parts.X_train, parts.y_train.to_numpy()
    folds = list(KFold(ERROR_MODEL_FOLDS).split(X))  # contiguous blocks: no shuffle
    error_params = params | ERROR_MODEL_PARAMS
    oof = np.empty(len(y))
    for train_idx, val_idx in folds:
        fold = xgb.XGBRegressor(**params, callbacks=callbacks).fit(X.iloc[train_idx], y[train_idx])
        oof[val_idx] = fold.predict(X.iloc[val_idx])
    abs_residual = np.abs(y - oof)
    oof_error = np.empty(len(y))
    for train_idx, val_idx in folds:
        fold = xgb.XGBRegressor(**error_params, callbacks=callbacks)
        fold.fit(X.iloc[train_idx], abs_residual[train_idx])
        oof_error[val_idx] = fold.predict(X.iloc[val_idx])
    error_model = xgb.XGBRegressor(**error_params, callbacks=callbacks).fit(X, abs_residual)

    bands = BandedRegression(output | {"sigma_scale": 1.0})
    values, truth = np.clip(oof, bands.lower, bands.upper), np.clip(y, bands.lower, bands.upper)
    correct = bands.band_index(values) == bands.band_index(truth)

    def brier(scale: float) -> float:
        conf = bands.confidence(values, oof_error * scale)
        return float(np.mean((conf - correct) ** 2))

    sigma_scale = min(SIGMA_SCALES, key=brier)
    return error_model, sigma_scale, _window_log_ratio(parts, values, y, oof_error, sigma_scale)


def _window_log_ratio(
    parts: Split, values: np.ndarray, y: np.ndarray, oof_error: np.ndarray, sigma_scale: float
) -> dict[str, Any] | None:
    """``window_calibration`` of the training rows that have a time; None when none has."""
    stamps = parts.timestamps_train
    if stamps is None or len(stamps) != len(y):
        return None
    dated = np.array([s is not None for s in stamps])
    if not dated.any():
        return None
    seconds = np.array([datetime.fromisoformat(s).timestamp() for s in stamps if s is not None])
    return window_calibration(seconds, values[dated], y[dated], oof_error[dated], sigma_scale)
