"""The single-row answer path (plain floats) agrees exactly with the vectorised one."""

from __future__ import annotations

import numpy as np
import synthetic

from inference.outputs import make_output


def test_single_row_answers_equal_batch_answers() -> None:
    output = make_output(synthetic.WQI_OUTPUT)
    rng = np.random.default_rng(7)
    edges = [90, 70, 50, 25, 0, 100, 89.999, 90.0001, -5, 105]
    margin = np.concatenate([rng.uniform(-20, 120, 5000), edges]).astype(np.float32)
    error = np.concatenate([rng.uniform(0, 15, 5000), [0, 1, 2, 3, 0, 5, 1e-3, 0.5, 1, 1]])
    error = error.astype(np.float32)
    batch = output.answers({"margin": margin, "abs_error": error})
    single = [
        output.answers({"margin": margin[i : i + 1], "abs_error": error[i : i + 1]})[0]
        for i in range(len(margin))
    ]
    assert single == batch


def test_features_module_keeps_only_what_training_uses() -> None:
    from inference import features

    assert not hasattr(features, "matrix_from_records")  # dead: serving builds rows itself
    schema = {"fields": [{"name": "a"}, {"name": "b"}]}
    assert features.field_names(schema) == ["a", "b"]
    matrix = features.matrix_from_columns({"b": [3, 4], "a": [1, 2]}, schema)
    assert matrix.dtype.name == "float32" and matrix.tolist() == [[1, 3], [2, 4]]
