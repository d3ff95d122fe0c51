"""The single-row answer path (plain floats) agrees exactly with the vectorised one."""

from __future__ import annotations

import numpy as np
import synthetic

from inference.outputs import make_output, round_one, rounded


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


def test_vectorised_rounding_matches_one_value_rounding() -> None:
    # Half-way cases (x.xx5, x.xxxx5) and their float neighbours, where rounding rules differ.
    halves = np.arange(-10_000, 10_000) / 1000 + 0.0005
    values = np.concatenate([halves, np.nextafter(halves, 0), np.nextafter(halves, 1)])
    for digits in (2, 4):
        assert rounded(values, digits) == [round_one(v, digits) for v in values.tolist()]
    # 2.675 * 100 is exactly 267.5 in binary, then half to even; 0.125 -> 12.5 -> 12.
    assert rounded(np.array([2.675, 0.125, -0.125]), 2) == [2.68, 0.12, -0.12]


def test_answers_are_led_by_their_device_ids() -> None:
    output = make_output(synthetic.WQI_OUTPUT)
    for n in (1, 10):  # the plain-float path and the vectorised one
        raw = {"margin": np.full(n, 80.0, np.float32), "abs_error": np.ones(n, np.float32)}
        devices = [f"d{i}" for i in range(n)]
        answers = output.answers(raw, devices)
        assert [next(iter(a)) for a in answers] == ["deviceId"] * n
        assert [a["deviceId"] for a in answers] == devices
        assert [{k: v for k, v in a.items() if k != "deviceId"} for a in answers] == (
            output.answers(raw)
        )


def test_features_module_keeps_only_what_training_uses() -> None:
    from inference import features

    assert not hasattr(features, "matrix_from_records")  # dead: serving builds rows itself
    schema = {"fields": [{"name": "a"}, {"name": "b"}]}
    assert features.field_names(schema) == ["a", "b"]
    matrix = features.matrix_from_columns({"b": [3, 4], "a": [1, 2]}, schema)
    assert matrix.dtype.name == "float32" and matrix.tolist() == [[1, 3], [2, 4]]
