"""Progress inside a long train stage: lines every few seconds, and the same model bytes."""

from __future__ import annotations

import io
from dataclasses import replace
from typing import Any

import numpy as np
import pandas as pd
import pytest
import xgboost as xgb

from training import model
from training.engines import base
from training.progress import Progress, stage_prefix
from training.spec import load_spec


def test_a_line_every_interval_with_trees_elapsed_and_estimate() -> None:
    ticks = iter([0.0, 5.0, 10.0, 10.5, 21.0])  # start, then one reading per tree
    out = io.StringIO()
    progress = Progress("wqi", 100, every=10.0, stream=out, clock=lambda: next(ticks))
    for epoch in range(4):
        assert progress.after_iteration(None, epoch, {}) is False  # never stops a fit
    assert out.getvalue() == (
        " ... 2 / 100 trees, 10 s elapsed, about 490 s left\n[wqi] train    "
        " ... 4 / 100 trees, 21 s elapsed, about 504 s left\n[wqi] train    "
    )


def test_progress_lines_continue_the_open_stage_line(capsys: pytest.CaptureFixture[str]) -> None:
    """Each progress line completes the stage's open line and re-opens it the same way, so
    the stage's own timing still ends a well-formed `[wqi] train ...` line."""
    with base.stage("train", "wqi"):
        pass
    assert capsys.readouterr().err.startswith(stage_prefix("wqi") + " ")


def small_parts(features: tuple[str, ...], rows: int = 400) -> model.Split:
    rng = np.random.default_rng(3)
    X = pd.DataFrame(rng.uniform(0, 10, (rows, len(features))), columns=list(features))
    y = pd.Series(60 + 3 * X.iloc[:, 0] + rng.normal(0, 2, rows))
    cut = rows * 3 // 4
    return model.Split(X[:cut].astype("float32"), X[cut:].astype("float32"), y[:cut], y[cut:])


def test_every_tree_is_counted_and_the_bytes_do_not_change(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Reporting after every tree: the model, the error model and the scale are those of the
    same fits without a callback."""
    spec = replace(load_spec("wqi"), params={"n_estimators": 12, "max_depth": 2})
    parts = small_parts(spec.features)
    made: list[Progress] = []
    out = io.StringIO()

    def chatty(name: str, total: int) -> Progress:
        made.append(Progress(name, total, every=0.0, stream=out))
        return made[-1]

    monkeypatch.setattr(model, "Progress", chatty)
    fitted = model.fit(parts, spec)

    (progress,) = made
    planned = model.planned_trees(fitted.params, banded=True)
    assert planned == 12 + model.ERROR_MODEL_FOLDS * (12 + 60) + 60
    assert progress.done == progress.total == planned
    assert out.getvalue().count("\n") == planned
    assert f"{planned:,} / {planned:,} trees" in out.getvalue()
    assert "callbacks" not in fitted.params  # params are logged and bundled; the callback not

    def raw(booster_of: Any) -> bytes:
        return bytes(booster_of.get_booster().save_raw("json"))

    quiet = xgb.XGBRegressor(**fitted.params).fit(parts.X_train, parts.y_train)
    assert raw(fitted.model) == raw(quiet)
    error_model, scale, windows = model.fit_error_model(parts, fitted.params, spec.output)
    assert fitted.error_model is not None and raw(fitted.error_model) == raw(error_model)
    assert fitted.sigma_scale == scale and fitted.window_log_ratio == windows
