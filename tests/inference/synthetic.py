"""Small hand-made bundles in the real contract, for tests that must not depend on training.

The graphs are ``ai.onnx.ml`` TreeEnsembleRegressor nodes, like the trained exports; the golden
outputs are computed once here with onnxruntime, as training records them from XGBoost.
"""

from __future__ import annotations

import io
import math
import pickle
import platform
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np
from onnx import TensorProto, helper

from inference.bundle import FORMAT, FORMAT_CALENDAR, sha256_hex
from inference.outputs import make_output

WQI_FIELDS = [
    {"name": "pH", "type": "number", "minimum": 0.0, "maximum": 14.0, "nullable": False},
    {"name": "turbidity", "type": "number", "minimum": 0.0, "maximum": 4000.0, "nullable": False},
    {"name": "tds", "type": "number", "minimum": 0.0, "maximum": 50000.0, "nullable": False},
    {"name": "temperature", "type": "number", "minimum": -5.0, "maximum": 45.0, "nullable": False},
]
WQI_OUTPUT = {
    "kind": "banded_regression",
    "value_name": "wqi",
    "band_name": "quality",
    "clip": [0, 100],
    "bands": [
        {"label": "Excellent", "min": 90.0},
        {"label": "Good", "min": 70.0},
        {"label": "Fair", "min": 50.0},
        {"label": "Poor", "min": 25.0},
        {"label": "Very Poor", "min": 0.0},
    ],
    "sigma_scale": 1.25,
}
GOOD_READING = {"pH": 7.4, "turbidity": 3.2, "tds": 410.0, "temperature": 21.5}


def _stump(output: str, feature: int, threshold: float, left: float, right: float,
           base: float, missing_left: int = 1) -> Any:  # fmt: skip
    """One tree: x[feature] < threshold -> left leaf, else right leaf (NaN goes left)."""
    return helper.make_node(
        "TreeEnsembleRegressor", ["features"], [output], domain="ai.onnx.ml", name=output,
        n_targets=1, aggregate_function="SUM", post_transform="NONE", base_values=[base],
        nodes_treeids=[0, 0, 0], nodes_nodeids=[0, 1, 2], nodes_featureids=[feature, 0, 0],
        nodes_values=[threshold, 0.0, 0.0], nodes_modes=["BRANCH_LT", "LEAF", "LEAF"],
        nodes_truenodeids=[1, 0, 0], nodes_falsenodeids=[2, 0, 0],
        nodes_missing_value_tracks_true=[missing_left, 0, 0],
        target_treeids=[0, 0], target_nodeids=[1, 2], target_ids=[0, 0],
        target_weights=[left, right],
    )  # fmt: skip


def onnx_graph(nodes: list[Any], n_features: int) -> bytes:
    outputs = [n.output[0] for n in nodes]
    graph = helper.make_graph(
        nodes, "synthetic",
        [helper.make_tensor_value_info("features", TensorProto.FLOAT, [None, n_features])],
        [helper.make_tensor_value_info(name, TensorProto.FLOAT, [None, 1]) for name in outputs],
    )  # fmt: skip
    model = helper.make_model(
        graph,
        opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid("ai.onnx.ml", 3)],
    )
    model.ir_version = 9
    return model.SerializeToString(deterministic=True)


def runtime_versions() -> dict[str, str]:
    return {
        "python": platform.python_version(),
        "numpy": metadata.version("numpy"),
        "onnxruntime": metadata.version("onnxruntime"),
    }


def _golden(onnx: bytes, outputs: list[str], output_spec: dict[str, Any],
            inputs: list[list[float]]) -> dict[str, Any]:  # fmt: skip
    import onnxruntime as ort

    session = ort.InferenceSession(onnx, providers=["CPUExecutionProvider"])
    results = session.run(outputs, {"features": np.asarray(inputs, dtype=np.float32)})
    raw = {name: np.asarray(r).reshape(-1) for name, r in zip(outputs, results, strict=True)}
    return {
        "inputs": inputs,
        "raw": {name: values.astype(float).tolist() for name, values in raw.items()},
        "answers": make_output(output_spec).answers(raw),
        "rtol": 1e-4,
        "atol": 1e-3,
    }


def wqi_bundle(**overrides: Any) -> dict[str, Any]:
    # margin: 60 + (pH >= 7 ? 25 : 0) + (turbidity < 10 ? 5 : -20); abs_error: a constant 3.
    nodes = [
        helper.make_node("Add", ["m1", "m2"], ["margin"], name="margin"),
        _stump("m1", 0, 7.0, 0.0, 25.0, base=60.0),
        _stump("m2", 1, 10.0, 5.0, -20.0, base=0.0),
        _stump("abs_error", 2, 1e9, 3.0, 3.0, base=0.0),
    ]
    onnx = onnx_graph(nodes, len(WQI_FIELDS))
    inputs = [[7.4, 3.2, 410.0, 21.5], [6.1, 55.0, 900.0, 18.0], [8.0, 12.0, 200.0, 25.0]]
    bundle = {
        "format": FORMAT,
        "name": "wqi",
        "schema": {"fields": WQI_FIELDS},
        "predictor": {
            "engine": "onnxruntime",
            "onnx": onnx,
            "input": "features",
            "outputs": ["margin", "abs_error"],
        },
        "output": WQI_OUTPUT,
        "golden": _golden(onnx, ["margin", "abs_error"], WQI_OUTPUT, inputs),
        "metadata": {
            "model": "wqi",
            "params": {},
            "metrics": {},
            "data_sha256": "0" * 64,
            "git_sha": "synthetic",
            "runtime": runtime_versions(),
            "libraries": {},
        },
    }
    bundle.update(overrides)
    return bundle


HOUR_FIELD = {"name": "hour_of_day", "type": "number", "minimum": 0.0, "maximum": 24.0,
              "nullable": True, "source": "timestamp"}  # fmt: skip
# Two golden readings with their timestamps (05:00Z is 15:00 on the model's +10:00 clock) and
# one without: its hour is missing.
CALENDAR_RECORDS = [
    {"timestamp": "2024-03-01T06:30:00+10:00", "readings": GOOD_READING},
    {"timestamp": "2024-03-01T05:00:00Z", "readings": GOOD_READING},
    {"readings": GOOD_READING},
]


def wqi_calendar_bundle(**overrides: Any) -> dict[str, Any]:
    """The wqi bundle with a fifth feature, hour_of_day, derived from the record's timestamp
    (on a +10:00 clock): margin 60 + 25 (pH >= 7) + 5 (turbidity < 10) - 12 from 12:00 on;
    a missing hour takes the morning branch."""
    nodes = [
        helper.make_node("Sum", ["m1", "m2", "m3"], ["margin"], name="margin"),
        _stump("m1", 0, 7.0, 0.0, 25.0, base=60.0),
        _stump("m2", 1, 10.0, 5.0, -20.0, base=0.0),
        _stump("m3", 4, 12.0, 0.0, -12.0, base=0.0),
        _stump("abs_error", 2, 1e9, 3.0, 3.0, base=0.0),
    ]
    fields = [*WQI_FIELDS, HOUR_FIELD]
    onnx = onnx_graph(nodes, len(fields))
    reading = [GOOD_READING[f["name"]] for f in WQI_FIELDS]
    inputs = [[*reading, 6.5], [*reading, 15.0], [*reading, math.nan]]
    bundle = wqi_bundle(
        format=FORMAT_CALENDAR,
        schema={"fields": fields, "timestamp": {"utc_offset": "+10:00"}},
        predictor={"engine": "onnxruntime", "onnx": onnx, "input": "features",
                   "outputs": ["margin", "abs_error"]},
        golden=_golden(onnx, ["margin", "abs_error"], WQI_OUTPUT, inputs)
        | {"records": [dict(r) for r in CALENDAR_RECORDS]},
    )  # fmt: skip
    bundle.update(overrides)
    return bundle


def potability_bundle() -> dict[str, Any]:
    fields = [
        {"name": "ph", "type": "number", "minimum": 0.0, "maximum": 14.0, "nullable": True},
        {
            "name": "Hardness",
            "type": "number",
            "minimum": 0.0,
            "maximum": 500.0,
            "nullable": False,
        },
    ]
    output = {"kind": "binary_classification", "label_name": "potable", "threshold": 0.5}
    onnx = onnx_graph([_stump("margin", 0, 7.0, -1.0, 1.5, base=0.0)], len(fields))
    return {
        "format": FORMAT,
        "name": "potability",
        "schema": {"fields": fields},
        "predictor": {
            "engine": "onnxruntime",
            "onnx": onnx,
            "input": "features",
            "outputs": ["margin"],
        },
        "output": output,
        "golden": _golden(onnx, ["margin"], output, [[6.0, 100.0], [math.nan, 120.0]]),
        "metadata": {"model": "potability", "runtime": runtime_versions()},
    }


def dumps(bundle: dict[str, Any]) -> bytes:
    """Bytes as ``joblib.dump`` writes a plain dict (a standard pickle stream)."""
    buffer = io.BytesIO()
    pickle.dump(bundle, buffer, protocol=pickle.HIGHEST_PROTOCOL)
    return buffer.getvalue()


def write(bundle: dict[str, Any], path: Path) -> str:
    data = dumps(bundle)
    path.write_bytes(data)
    return sha256_hex(data)


def profile(bounds: dict[str, tuple[float, float]], label_shares: list[float] | None = None,
            labels: list[Any] | None = None) -> dict[str, Any]:  # fmt: skip
    """A training profile in the bundle's contract whose domain is ``bounds`` per feature (its
    0.5 % and 99.5 % quantiles); the other quantiles sit in between."""
    features = {}
    for name, (lo, hi) in bounds.items():
        mid = (lo + hi) / 2
        levels = {"0": lo - 1, "0.005": lo, "0.01": lo, "0.05": lo, "0.1": lo, "0.25": mid,
                  "0.5": mid, "0.75": mid, "0.9": hi, "0.95": hi, "0.99": hi, "0.995": hi,
                  "1": hi + 1}  # fmt: skip
        features[name] = {"quantiles": levels, "mean": mid, "std": (hi - lo) / 4,
                          "missing_rate": 0.0, "sample": [lo, mid, hi]}  # fmt: skip
    labels = labels or ["Excellent", "Good", "Fair", "Poor", "Very Poor"]
    shares = label_shares or [0.2, 0.6, 0.2, 0.0, 0.0]
    return {"rule": "synthetic", "lower_q": 0.005, "upper_q": 0.995, "rows": 100,
            "features": features,
            "outputs": {"kind": "bands" if len(labels) > 2 else "classes", "labels": labels,
                        "shares": shares, "label_shares": shares}}  # fmt: skip


# The synthetic wqi model's domain: GOOD_READING is inside; TDS below 300 mg/L is not.
WQI_DOMAIN = {"pH": (7.0, 8.5), "turbidity": (0.5, 40.0), "tds": (300.0, 36000.0),
              "temperature": (15.0, 32.0)}  # fmt: skip


def wqi_profiled_bundle() -> dict[str, Any]:
    return wqi_bundle(profile=profile(WQI_DOMAIN))
