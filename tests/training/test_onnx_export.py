"""The exported ONNX graph answers as the XGBoost booster does, NaN routing included."""

import numpy as np
import xgboost as xgb

from inference.predictor import Predictor
from training.onnx_export import to_onnx


def predictor_for(boosters: dict[str, xgb.Booster], n: int, output: dict) -> Predictor:
    bundle = {
        "schema": {"fields": [{"name": f"f{i}"} for i in range(n)]},
        "predictor": {"engine": "onnxruntime", "onnx": to_onnx(boosters, n),
                      "input": "features", "outputs": list(boosters)},
        "output": output,
    }  # fmt: skip
    return Predictor(bundle)


def data(rng: np.random.Generator, n: int = 2000) -> tuple[np.ndarray, np.ndarray]:
    X = rng.normal(size=(n, 3)).astype(np.float32)
    X[rng.random(n) < 0.2, 1] = np.nan  # learned default branches must be honoured
    y = 2 * X[:, 0] + np.nan_to_num(X[:, 1]) ** 2 + rng.normal(scale=0.1, size=n)
    return X, y


def test_regressor_margins_match() -> None:
    rng = np.random.default_rng(0)
    X, y = data(rng)
    booster = xgb.XGBRegressor(n_estimators=50, max_depth=4).fit(X, y).get_booster()
    output = {"kind": "binary_classification", "label_name": "x", "threshold": 0.5}
    predictor = predictor_for({"margin": booster}, 3, output)
    want = booster.predict(xgb.DMatrix(X), output_margin=True)
    np.testing.assert_allclose(predictor.raw(X)["margin"], want, rtol=1e-5, atol=1e-4)


def test_classifier_margin_and_two_outputs() -> None:
    rng = np.random.default_rng(1)
    X, y = data(rng)
    clf = xgb.XGBClassifier(n_estimators=40, max_depth=3).fit(X, y > 1).get_booster()
    reg = xgb.XGBRegressor(n_estimators=20, max_depth=2).fit(X, y).get_booster()
    predictor = predictor_for({"margin": clf, "other": reg}, 3, {
        "kind": "binary_classification", "label_name": "x", "threshold": 0.5})  # fmt: skip
    raw = predictor.raw(X)
    np.testing.assert_allclose(raw["margin"], clf.predict(xgb.DMatrix(X), output_margin=True),
                               rtol=1e-5, atol=1e-4)  # fmt: skip
    np.testing.assert_allclose(raw["other"], reg.predict(xgb.DMatrix(X)), rtol=1e-5, atol=1e-4)
    probs = [a["probability"] for a in predictor.answers(X[:5])]
    np.testing.assert_allclose(probs, clf.predict(xgb.DMatrix(X[:5])), atol=1e-4)


def test_export_is_deterministic() -> None:
    rng = np.random.default_rng(2)
    X, y = data(rng)
    booster = xgb.XGBRegressor(n_estimators=10, max_depth=3).fit(X, y).get_booster()
    assert to_onnx({"margin": booster}, 3) == to_onnx({"margin": booster}, 3)
