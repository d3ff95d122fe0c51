"""Turns raw model outputs into answers. The bundle names the kind and its parameters.

- ``banded_regression``: a value, its band, and a confidence: the probability that the true
  value lies in the reported band, under a normal error whose scale a second model predicts
  per row (``abs_error``) and that training calibrated on held-out data (``sigma_scale``).
- ``binary_classification``: a probability (sigmoid of the margin), a label from the threshold,
  and a confidence: the probability of the reported label.
"""

from __future__ import annotations

import math
from typing import Any, Protocol

import numpy as np

from inference.bundle import BundleError


class Output(Protocol):
    def answers(self, raw: dict[str, np.ndarray]) -> list[dict[str, Any]]: ...


def normal_cdf(x: np.ndarray) -> np.ndarray:
    """Standard normal CDF via Abramowitz & Stegun 7.1.26 (|error| < 1.5e-7): no scipy needed."""
    z = np.abs(x) / math.sqrt(2.0)
    t = 1.0 / (1.0 + 0.3275911 * z)
    poly = t * (0.254829592 + t * (-0.284496736 + t * (1.421413741 + t * (-1.453152027
           + t * 1.061405429))))  # fmt: skip
    erf = 1.0 - poly * np.exp(-z * z)
    return 0.5 * (1.0 + np.sign(x) * erf)


def normal_cdf_scalar(x: float) -> float:
    """``normal_cdf`` for one float: the same formula, so single and batch answers agree."""
    z = abs(x) / math.sqrt(2.0)
    t = 1.0 / (1.0 + 0.3275911 * z)
    poly = t * (0.254829592 + t * (-0.284496736 + t * (1.421413741 + t * (-1.453152027
           + t * 1.061405429))))  # fmt: skip
    erf = 1.0 - poly * math.exp(-z * z)
    return 0.5 * (1.0 + math.copysign(erf, x)) if x != 0 else 0.5


SMALL = 4  # up to this many rows, plain floats beat ~40 numpy calls on tiny arrays


def sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


class BandedRegression:
    def __init__(self, spec: dict[str, Any]) -> None:
        self.value_name: str = spec["value_name"]
        self.band_name: str = spec["band_name"]
        self.lower, self.upper = float(spec["clip"][0]), float(spec["clip"][1])
        bands = sorted(spec["bands"], key=lambda b: b["min"], reverse=True)  # highest first
        self.band_labels = [b["label"] for b in bands]
        self.band_mins = np.array([b["min"] for b in bands], dtype=np.float64)
        self.band_mins_list: list[float] = self.band_mins.tolist()
        self.sigma_scale = float(spec["sigma_scale"])

    def band_index(self, values: np.ndarray) -> np.ndarray:
        # Index of the first (highest) band whose minimum the value reaches; the last band
        # catches everything below.
        reached = values[:, None] >= self.band_mins[None, :]
        reached[:, -1] = True
        return reached.argmax(axis=1)

    def confidence(self, values: np.ndarray, abs_error: np.ndarray) -> np.ndarray:
        idx = self.band_index(values)
        lo = np.where(idx == len(self.band_mins) - 1, -np.inf, self.band_mins[idx])
        hi = np.where(idx == 0, np.inf, self.band_mins[np.maximum(idx - 1, 0)])
        sigma = np.maximum(abs_error.astype(np.float64) * self.sigma_scale, 1e-6)
        return normal_cdf((hi - values) / sigma) - normal_cdf((lo - values) / sigma)

    def _answer_one(self, value: float, abs_error: float) -> dict[str, Any]:
        """The vectorised path's answer for one row, in plain floats (the request hot path)."""
        value = min(max(value, self.lower), self.upper)
        mins = self.band_mins_list
        last = len(mins) - 1
        i = next((k for k, m in enumerate(mins) if value >= m), last)
        lo = -math.inf if i == last else mins[i]
        hi = math.inf if i == 0 else mins[i - 1]
        sigma = max(abs_error * self.sigma_scale, 1e-6)
        up = 1.0 if hi == math.inf else normal_cdf_scalar((hi - value) / sigma)
        down = 0.0 if lo == -math.inf else normal_cdf_scalar((lo - value) / sigma)
        return {
            self.value_name: round(value, 2),
            self.band_name: self.band_labels[i],
            "confidence": round(up - down, 4),
        }

    def answers(self, raw: dict[str, np.ndarray]) -> list[dict[str, Any]]:
        if len(raw["margin"]) <= SMALL:
            return [
                self._answer_one(v, e)
                for v, e in zip(
                    raw["margin"].astype(np.float64).tolist(),
                    raw["abs_error"].astype(np.float64).tolist(),
                    strict=True,
                )
            ]
        values = np.clip(raw["margin"].astype(np.float64), self.lower, self.upper)
        conf = self.confidence(values, raw["abs_error"])
        idx = self.band_index(values)
        labels = self.band_labels
        return [
            {self.value_name: round(v, 2), self.band_name: labels[i], "confidence": round(c, 4)}
            for v, i, c in zip(values.tolist(), idx.tolist(), conf.tolist(), strict=True)
        ]


class BinaryClassification:
    def __init__(self, spec: dict[str, Any]) -> None:
        self.label_name: str = spec["label_name"]
        self.threshold = float(spec["threshold"])

    def answers(self, raw: dict[str, np.ndarray]) -> list[dict[str, Any]]:
        prob = sigmoid(raw["margin"].astype(np.float64))
        return [
            {
                self.label_name: p >= self.threshold,
                "probability": round(p, 4),
                "confidence": round(p if p >= self.threshold else 1.0 - p, 4),
            }
            for p in prob.tolist()
        ]


KINDS: dict[str, type[BandedRegression] | type[BinaryClassification]] = {
    "banded_regression": BandedRegression,
    "binary_classification": BinaryClassification,
}


def make_output(spec: dict[str, Any]) -> Output:
    try:
        return KINDS[spec["kind"]](spec)
    except KeyError as exc:
        raise BundleError(f"unknown or incomplete output spec: {exc}") from exc
