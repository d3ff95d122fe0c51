"""Large batches run on a pooled session sized to the function's vCPUs; single rows never do."""

from __future__ import annotations

import numpy as np
import pytest
import synthetic

from inference import predictor


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({"INFERENCE_BATCH_THREADS": "3"}, 3),
        ({"AWS_LAMBDA_FUNCTION_MEMORY_SIZE": "1024"}, 1),  # less than one full vCPU
        ({"AWS_LAMBDA_FUNCTION_MEMORY_SIZE": "3538"}, 2),
    ],
)
def test_batch_threads(env: dict[str, str], expected: int, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("INFERENCE_BATCH_THREADS", raising=False)
    monkeypatch.delenv("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", raising=False)
    monkeypatch.setattr(predictor.os, "sched_getaffinity", lambda _pid: {0, 1}, raising=False)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    assert predictor.batch_threads() == expected


def test_pooled_session_answers_as_the_single_thread_one(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("INFERENCE_BATCH_THREADS", "2")
    served = predictor.Predictor(synthetic.wqi_bundle())
    rows = (
        np.random.default_rng(0)
        .uniform([6, 0, 0, 10], [9, 50, 40000, 30], size=(predictor.BATCH_ROWS * 4, 4))
        .astype(np.float32)
    )
    pooled = served.raw(rows)
    assert served._batch_session is not None  # the batch went through the pool
    single = {k: np.concatenate([served.raw(rows[i : i + 1])[k] for i in range(len(rows))])
              for k in pooled}  # fmt: skip
    for name in pooled:
        np.testing.assert_array_equal(pooled[name], single[name])


@pytest.mark.parametrize(("threads", "prebuilt"), [("2", True), ("1", False)])
def test_pooled_session_is_built_at_init(
    threads: str, prebuilt: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Built when the model loads (provisioned concurrency and warm-up pay for it), not by the
    # first large batch; a single vCPU never gets a pool.
    monkeypatch.setenv("INFERENCE_BATCH_THREADS", threads)
    served = predictor.Predictor(synthetic.wqi_bundle())
    assert (served._batch_session is not None) is prebuilt


def test_pooled_session_is_still_made_lazily_when_missing(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("INFERENCE_BATCH_THREADS", "2")
    served = predictor.Predictor(synthetic.wqi_bundle())
    served._batch_session = None
    served.raw(np.zeros((predictor.BATCH_ROWS, 4), dtype=np.float32))
    assert served._batch_session is not None
