"""Runs a bundle's ONNX graph with onnxruntime and interprets its outputs as answers."""

from __future__ import annotations

import os
from typing import Any

import numpy as np
import onnxruntime as ort

from inference.bundle import BundleError
from inference.outputs import Output, make_output

ENGINE = "onnxruntime"
# Lambda gives a function one full vCPU per 1,769 MB; below that a second thread only contends.
FULL_VCPU_MB = 1769
BATCH_ROWS = 256  # from here on a batch is split across threads (a single row never is)


def batch_threads() -> int:
    """Threads for large batches: ``INFERENCE_BATCH_THREADS``, else the vCPUs the function has."""
    configured = os.environ.get("INFERENCE_BATCH_THREADS")
    if configured:
        return max(1, int(configured))
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    memory = os.environ.get("AWS_LAMBDA_FUNCTION_MEMORY_SIZE")
    if memory is not None:
        cpus = min(cpus or 1, max(1, int(memory) // FULL_VCPU_MB))
    return max(1, cpus or 1)


def _session(onnx: bytes, threads: int) -> ort.InferenceSession:
    options = ort.SessionOptions()
    options.log_severity_level = 3  # errors only: warnings would go to stderr per session
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    # No spin-waiting: idle threads must not burn the CPU a single-row request needs.
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    try:
        return ort.InferenceSession(onnx, options, providers=["CPUExecutionProvider"])
    except Exception as exc:  # onnxruntime raises its own untyped errors
        raise BundleError(f"the bundle's ONNX graph does not load: {exc}") from exc


class Predictor:
    """The served model: raw ONNX outputs, and answers built from them by the bundle's output."""

    def __init__(self, bundle: dict[str, Any]) -> None:
        spec = bundle["predictor"]
        if spec.get("engine") != ENGINE:
            raise BundleError(f"predictor engine {spec.get('engine')!r} is not {ENGINE!r}")
        # Single rows run on one thread: waking a pool costs more than the row (measured:
        # p50 10 us vs 24 us with 2). Large batches get a pooled session, built here when the
        # function has more than one vCPU, so init (provisioned concurrency, the warm-up
        # schedule) pays for it rather than the first large batch; made on first use otherwise.
        self._onnx: bytes = spec["onnx"]
        self._session = _session(self._onnx, 1)
        self._threads = batch_threads()
        self._batch_session: ort.InferenceSession | None = (
            _session(self._onnx, self._threads) if self._threads > 1 else None
        )
        self._input: str = spec["input"]
        self._outputs: list[str] = list(spec["outputs"])
        self.n_features = len(bundle["schema"]["fields"])
        self.output: Output = make_output(bundle["output"])

    def raw(self, features: np.ndarray) -> dict[str, np.ndarray]:
        """Raw graph outputs (margins, predicted errors) for a float32 matrix."""
        results = self._session_for(len(features)).run(self._outputs, {self._input: features})
        return {
            name: np.asarray(r).reshape(-1) for name, r in zip(self._outputs, results, strict=True)
        }

    def _session_for(self, rows: int) -> ort.InferenceSession:
        if rows < BATCH_ROWS or self._threads == 1:
            return self._session
        if self._batch_session is None:  # fallback: normally built in __init__
            self._batch_session = _session(self._onnx, self._threads)
        return self._batch_session

    def answers(self, features: np.ndarray) -> list[dict[str, Any]]:
        return self.output.answers(self.raw(features))
