"""XGBoost boosters to one ONNX graph of ``ai.onnx.ml`` TreeEnsembleRegressor nodes.

Serving runs the graph with onnxruntime: no xgboost, scipy or scikit-learn in the image. Each
output is a margin (the sum of leaf values plus the base margin); the bundle's output kind turns
margins into answers. Golden samples prove the graph answers as the booster does.
"""

from __future__ import annotations

import json
import math
from typing import Any

import xgboost as xgb
from onnx import TensorProto, helper

INPUT = "features"
OPSETS = [helper.make_opsetid("", 17), helper.make_opsetid("ai.onnx.ml", 3)]
IR_VERSION = 9  # onnxruntime >= 1.16 reads it


def base_margin(model: dict[str, Any]) -> float:
    """The booster's base score as a margin (a logit for a binary model), which the ONNX
    graph adds to the trees' sum.

    Raises:
        ValueError: the booster's objective has no ONNX export here.
    """
    learner = model["learner"]
    raw = learner["learner_model_param"]["base_score"]
    score = float(json.loads(raw)[0]) if raw.startswith("[") else float(raw)
    objective = learner["objective"]["name"]
    if objective == "binary:logistic":  # stored as a probability, applied as a logit
        return math.log(score / (1.0 - score))
    if objective in ("reg:squarederror", "reg:absoluteerror", "reg:pseudohubererror"):
        return score
    raise ValueError(f"objective {objective!r} has no ONNX export here")


def tree_node(booster: xgb.Booster, output: str) -> Any:
    model = json.loads(booster.save_raw("json"))
    trees = model["learner"]["gradient_booster"]["model"]["trees"]
    attrs: dict[str, Any] = {key: [] for key in (
        "nodes_treeids", "nodes_nodeids", "nodes_featureids", "nodes_values", "nodes_modes",
        "nodes_truenodeids", "nodes_falsenodeids", "nodes_missing_value_tracks_true",
        "target_treeids", "target_nodeids", "target_ids", "target_weights",
    )}  # fmt: skip
    for tree_id, tree in enumerate(trees):
        left, right = tree["left_children"], tree["right_children"]
        for node_id, (lo, hi) in enumerate(zip(left, right, strict=True)):
            leaf = lo == -1
            value = tree["split_conditions"][node_id]  # a leaf's value, or a split threshold
            attrs["nodes_treeids"].append(tree_id)
            attrs["nodes_nodeids"].append(node_id)
            attrs["nodes_featureids"].append(0 if leaf else tree["split_indices"][node_id])
            attrs["nodes_values"].append(0.0 if leaf else value)
            # XGBoost sends x < threshold left, and NaN the learned default way.
            attrs["nodes_modes"].append("LEAF" if leaf else "BRANCH_LT")
            attrs["nodes_truenodeids"].append(0 if leaf else lo)
            attrs["nodes_falsenodeids"].append(0 if leaf else hi)
            attrs["nodes_missing_value_tracks_true"].append(
                0 if leaf else int(tree["default_left"][node_id])
            )
            if leaf:
                attrs["target_treeids"].append(tree_id)
                attrs["target_nodeids"].append(node_id)
                attrs["target_ids"].append(0)
                attrs["target_weights"].append(value)
    return helper.make_node(
        "TreeEnsembleRegressor", [INPUT], [output], domain="ai.onnx.ml", name=output,
        n_targets=1, aggregate_function="SUM", post_transform="NONE",
        base_values=[base_margin(model)], **attrs,
    )  # fmt: skip


def to_onnx(boosters: dict[str, xgb.Booster], n_features: int) -> bytes:
    """One graph, one output per booster (e.g. ``margin`` and ``abs_error``)."""
    graph = helper.make_graph(
        [tree_node(booster, name) for name, booster in boosters.items()],
        "waterml",
        [helper.make_tensor_value_info(INPUT, TensorProto.FLOAT, [None, n_features])],
        [helper.make_tensor_value_info(name, TensorProto.FLOAT, [None, 1]) for name in boosters],
    )
    model = helper.make_model(graph, opset_imports=OPSETS, producer_name="waterml")
    model.ir_version = IR_VERSION
    return model.SerializeToString(deterministic=True)
