"""Large batches are split by rows across one thread per vCPU; single rows never are, and a
reading gets the very same answer either way."""

from __future__ import annotations

import threading
import time
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest
import synthetic

from inference import blocks, predictor


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
    monkeypatch.setattr(blocks.os, "sched_getaffinity", lambda _pid: {0, 1}, raising=False)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    assert blocks.threads_available() == expected


def rows(n: int) -> np.ndarray:
    rng = np.random.default_rng(0)
    return rng.uniform([6, 0, 0, 10], [9, 50, 40000, 30], size=(n, 4)).astype(np.float32)


@pytest.mark.parametrize("threads", ["2", "3"])
def test_split_batch_answers_exactly_as_single_rows(
    threads: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("INFERENCE_BATCH_THREADS", threads)
    served = predictor.Predictor(synthetic.wqi_bundle())
    seen: list[tuple[str, int]] = []
    run = served._run_many
    monkeypatch.setattr(
        served,
        "_run_many",
        lambda block: seen.append((threading.current_thread().name, len(block))) or run(block),
    )
    X = rows(blocks.MIN_ROWS * 4 + 3)  # not a multiple of the thread count
    split = served.raw(X)
    # One block per thread; the caller's a little smaller (it also prepares the others).
    caller = threading.current_thread().name
    assert len(seen) == int(threads) and sum(n for _, n in seen) == len(X)
    mine = [n for name, n in seen if name == caller]
    assert mine == [round(len(X) / int(threads) * blocks.CALLER_SHARE)]
    others = [n for name, n in seen if name != caller]
    assert len(others) == int(threads) - 1 and max(others) - min(others) <= 1
    single = {k: np.concatenate([served.raw(X[i : i + 1])[k] for i in range(len(X))])
              for k in split}  # fmt: skip
    for name in split:
        np.testing.assert_array_equal(split[name], single[name])


@pytest.mark.parametrize(("threads", "pooled"), [("2", True), ("1", False)])
def test_small_batches_and_single_vcpus_stay_on_the_calling_thread(
    threads: str, pooled: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("INFERENCE_BATCH_THREADS", threads)
    served = predictor.Predictor(synthetic.wqi_bundle())
    assert (served.blocks._pool is not None) is pooled
    callers: set[str] = set()
    run = served._run_many
    monkeypatch.setattr(
        served,
        "_run_many",
        lambda block: callers.add(threading.current_thread().name) or run(block),
    )
    served.raw(rows(blocks.MIN_ROWS - 1))
    assert callers == {threading.current_thread().name}


def test_a_failing_block_fails_the_batch(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("INFERENCE_BATCH_THREADS", "2")
    served = predictor.Predictor(synthetic.wqi_bundle())
    main = threading.current_thread().name
    run = served._run_many

    def fail_off_main(block: np.ndarray) -> list[np.ndarray]:
        if threading.current_thread().name != main:
            raise RuntimeError("worker block failed")
        return run(block)

    monkeypatch.setattr(served, "_run_many", fail_off_main)
    with pytest.raises(RuntimeError, match="worker block failed"):
        served.raw(rows(blocks.MIN_ROWS * 2))


def test_a_block_is_predicting_before_the_caller_prepares_the_next() -> None:
    # The GIL handover: without it the pool thread would wait for the caller to release the
    # GIL, i.e. until the caller had prepared (validated) its own block too.
    runner = blocks.Blocks(threads=2)
    events: list[str] = []

    def prepare(lo: int, hi: int) -> int:
        events.append(f"prepare {lo}")
        return lo

    def finish(lo: int) -> int:
        events.append(f"finish {lo}")
        time.sleep(0.02)  # releases the GIL, as onnxruntime does
        return lo

    assert runner.map(1000, prepare, finish) == [0, 480]
    assert events[:3] == ["prepare 480", "finish 480", "prepare 0"]


def test_split_answers_equal_single_thread_answers(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("INFERENCE_BATCH_THREADS", "2")
    served = predictor.Predictor(synthetic.wqi_bundle())
    X = rows(blocks.MIN_ROWS * 3)
    devices = [f"d{i}" for i in range(len(X))]
    assert served.answers(X, devices) == served.answers_here(X, devices)


@pytest.mark.parametrize("bundle", [synthetic.wqi_bundle, synthetic.potability_bundle])
def test_a_single_reading_on_bound_buffers_gets_the_plain_runs_outputs(
    bundle: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """One reading runs on buffers bound once per thread: the same outputs as a plain run of
    the same session, reading after reading and on two threads at once."""
    monkeypatch.setenv("INFERENCE_BATCH_THREADS", "1")
    served = predictor.Predictor(bundle())
    width = served._session.get_inputs()[0].shape[1]
    X = np.random.default_rng(1).uniform(0, 100, size=(200, width)).astype(np.float32)
    X[::7, -1] = np.nan  # a missing value takes the trees' missing branch
    want = [served._run_many(X[i : i + 1]) for i in range(len(X))]
    got: dict[str, list[list[np.ndarray]]] = {}

    def one_by_one(name: str) -> None:
        got[name] = [[o.copy() for o in served._run_one(X[i : i + 1])] for i in range(len(X))]

    threads = [threading.Thread(target=one_by_one, args=(n,)) for n in ("a", "b")]
    for t in threads:
        t.start()
    one_by_one("main")
    for t in threads:
        t.join()
    for name in ("a", "b", "main"):
        for mine, plain in zip(got[name], want, strict=True):
            for m, p in zip(mine, plain, strict=True):
                np.testing.assert_array_equal(m, p)
    assert served._bound.one is not None  # this thread ran on its binding, not the fallback
    # The answers read the outputs before the next reading overwrites them.
    devices = [f"d{i}" for i in range(len(X))]
    alone = [served.answers(X[i : i + 1], devices[i : i + 1])[0] for i in range(len(X))]
    assert alone == served.answers_here(X, devices)


def test_a_graph_whose_outputs_are_not_float32_columns_runs_plainly(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    served = predictor.Predictor(synthetic.wqi_bundle())
    X = rows(1)
    want = served._run_many(X)
    declared = [SimpleNamespace(name=o.name, type="tensor(double)", shape=o.shape)
                for o in served._session.get_outputs()]  # fmt: skip
    monkeypatch.setattr(served._session, "get_outputs", lambda: declared)
    assert served._bind() is None
    got = served._run_one(X)  # no binding: the plain run
    assert served._bound.one is None
    for g, w in zip(got, want, strict=True):
        np.testing.assert_array_equal(g, w)
