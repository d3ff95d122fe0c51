"""Runs a bundle's ONNX graph with onnxruntime and interprets its outputs as answers."""

from __future__ import annotations

from typing import Any

import numpy as np
import onnxruntime as ort

from inference.blocks import Blocks, joined
from inference.bundle import BundleError
from inference.outputs import Devices, Output, make_output

ENGINE = "onnxruntime"


def _session(onnx: bytes) -> ort.InferenceSession:
    options = ort.SessionOptions()
    options.log_severity_level = 3  # errors only: warnings would go to stderr per session
    # One thread per run, no intra-op pool: large batches are split by rows across threads
    # instead (inference/blocks.py).
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
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
        self._session = _session(spec["onnx"])
        self._input: str = spec["input"]
        self._outputs: list[str] = list(spec["outputs"])
        self.n_features = len(bundle["schema"]["fields"])
        self.output: Output = make_output(bundle["output"])
        # Large batches run as row blocks on threads of their own, each through this same
        # single-threaded session (a session may be run concurrently). Against one session with
        # an intra-op pool that is faster (no pool wake-ups between the graph's two tree nodes:
        # 13 ms for 10,000 rows, not 15-17) and exact: the pool splits the trees and adds the
        # partial sums in another order, so a reading in a batch could be answered a float32
        # ulp away from the same reading alone.
        self.blocks = Blocks()

    def raw(self, features: np.ndarray) -> dict[str, np.ndarray]:
        """Raw graph outputs (margins, predicted errors) for a float32 matrix."""
        parts = self.blocks.map(len(features), lambda lo, hi: features[lo:hi], self._run)
        results = (
            parts[0] if len(parts) == 1 else [np.concatenate(p) for p in zip(*parts, strict=True)]
        )
        return self._named(results)

    def answers(self, features: np.ndarray, devices: Devices = None) -> list[dict[str, Any]]:
        """Answers, each block's built on the thread that predicted it."""
        if not self.blocks.splits(len(features)):  # a single row: the request hot path
            return self.answers_here(features, devices)

        def prepare(lo: int, hi: int) -> tuple[np.ndarray, Devices]:
            return features[lo:hi], None if devices is None else devices[lo:hi]

        parts = self.blocks.map(len(features), prepare, lambda block: self.answers_here(*block))
        return joined(parts)

    def answers_here(self, features: np.ndarray, devices: Devices = None) -> list[dict[str, Any]]:
        """Answers computed on the calling thread alone."""
        return self.output.answers(self._named(self._run(features)), devices)

    def _named(self, results: list[np.ndarray]) -> dict[str, np.ndarray]:
        return {
            name: np.asarray(r).reshape(-1) for name, r in zip(self._outputs, results, strict=True)
        }

    def _run(self, features: np.ndarray) -> list[np.ndarray]:
        return self._session.run(self._outputs, {self._input: features})  # type: ignore[no-any-return]
