"""Runs a bundle's ONNX graph with onnxruntime and interprets its outputs as answers."""

from __future__ import annotations

from typing import Any

import numpy as np
import onnxruntime as ort

from inference.bundle import BundleError
from inference.outputs import Output, make_output

ENGINE = "onnxruntime"


class Predictor:
    """The served model: raw ONNX outputs, and answers built from them by the bundle's output."""

    def __init__(self, bundle: dict[str, Any]) -> None:
        spec = bundle["predictor"]
        if spec.get("engine") != ENGINE:
            raise BundleError(f"predictor engine {spec.get('engine')!r} is not {ENGINE!r}")
        options = ort.SessionOptions()
        options.log_severity_level = 3  # errors only: warnings would go to stderr per session
        # One thread, no spin-waiting: a Lambda below 1,769 MB has less than one vCPU, and a
        # single row costs less than waking a pool (measured: p50 10 us vs 24 us with 2).
        options.intra_op_num_threads = 1
        options.inter_op_num_threads = 1
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        try:
            self._session = ort.InferenceSession(
                spec["onnx"], options, providers=["CPUExecutionProvider"]
            )
        except Exception as exc:  # onnxruntime raises its own untyped errors
            raise BundleError(f"the bundle's ONNX graph does not load: {exc}") from exc
        self._input: str = spec["input"]
        self._outputs: list[str] = list(spec["outputs"])
        self.n_features = len(bundle["schema"]["fields"])
        self.output: Output = make_output(bundle["output"])

    def raw(self, features: np.ndarray) -> dict[str, np.ndarray]:
        """Raw graph outputs (margins, predicted errors) for a float32 matrix."""
        results = self._session.run(self._outputs, {self._input: features})
        return {
            name: np.asarray(r).reshape(-1) for name, r in zip(self._outputs, results, strict=True)
        }

    def answers(self, features: np.ndarray) -> list[dict[str, Any]]:
        return self.output.answers(self.raw(features))
