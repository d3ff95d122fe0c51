"""Turns raw model outputs into answers. The bundle names the kind and its parameters.

- ``banded_regression``: a value, its band, and a confidence: the probability that the true
  value lies in the reported band, under a normal error whose scale a second model predicts
  per row (``abs_error``) and that training calibrated on held-out data (``sigma_scale``).
- ``binary_classification``: a probability (sigmoid of the margin), a label from the threshold,
  and a confidence: the probability of the reported label. Label, probability and confidence
  are read from the one rounded probability, so they never contradict each other.

``answered`` adds the reading's domain verdict (``inference/domain.py``) and a tally of the
answers for the invocation's metrics. Outside the domain (a feature outside its bounds, or an
unusual combination) the features are evidence the model never learned to weigh, so the
confidence never rises above the model's own and falls to what the training labels alone say
when that is lower (``prior``: the training labels' share per band or class): a band's
confidence is capped at its prior; a probability moves toward the prior share of the positive
class, never past the threshold, so the label stays the model's. The card states, per
version, what this buys on the held-out rows (training/card_facts.py).
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Sequence
from itertools import repeat
from typing import Any, NamedTuple, Protocol

import numpy as np

from inference.bundle import BundleError
from inference.domain import Checked

Devices = Sequence[str | None] | None
DOMAIN = "domain"


class Tally(NamedTuple):
    """What one block of answers adds to the invocation's metrics."""

    rows: int
    labels: list[int]  # answers per label (band or class), in ``Output.labels`` order
    confidence_sum: float  # of the reported (rounded) confidences
    outside_rows: int = 0  # readings not inside the domain (a bound or a combination)
    counts: list[int] | None = None  # per verdict bit (``Domain.bits``); None without a profile
    unusual_rows: int = 0  # readings with an unusual combination

    @staticmethod
    def total(tallies: Sequence[Tally]) -> Tally:
        first = tallies[0]
        if len(tallies) == 1:
            return first
        counts = None
        if first.counts is not None:
            counts = [sum(n) for n in zip(*(t.counts or [] for t in tallies), strict=True)]
        labels = [sum(n) for n in zip(*(t.labels for t in tallies), strict=True)]
        return Tally(sum(t.rows for t in tallies), labels, sum(t.confidence_sum for t in tallies),
                     sum(t.outside_rows for t in tallies), counts,
                     sum(t.unusual_rows for t in tallies))  # fmt: skip


class Answered(NamedTuple):
    answers: list[dict[str, Any]]
    tally: Tally


class Output(Protocol):
    labels: list[Any]  # the values of the answer's label field: bands, or False/True
    names: tuple[str, str, str]  # the answer's fields after deviceId, in order

    def answers(self, raw: dict[str, np.ndarray], devices: Devices = None) -> list[dict[str, Any]]:
        """One answer per row; led by ``deviceId`` when ``devices`` is given. No domain: the
        golden check compares these with what training recorded."""
        ...

    def answered(
        self, raw: dict[str, np.ndarray], devices: Devices, checked: Checked | None
    ) -> Answered:
        """Answers with their ``domain`` verdict (None when ``checked`` is None: the bundle
        has no profile), out-of-domain confidences lowered toward the prior, and their tally."""
        ...


def rounded(values: np.ndarray, digits: int) -> list[float]:
    """Half-to-even at ``digits`` decimals, as plain floats: ten times cheaper than ``round``
    per element, and ``round_one`` gives the same float for one value."""
    return rounded_array(values, digits).tolist()


def rounded_array(values: np.ndarray, digits: int) -> np.ndarray:
    scale = 10.0**digits
    return np.rint(values * scale) / scale


def round_one(value: float, digits: int) -> float:
    scale = 10.0**digits
    return round(value * scale) / scale


def rows(
    names: tuple[str, str, str],
    columns: tuple[Sequence[Any], Sequence[Any], Sequence[Any]],
    devices: Devices,
    verdicts: Sequence[Any] | None = None,
    domain: bool = False,
) -> list[dict[str, Any]]:
    """Answer dicts from three columns, built in one comprehension (the batch hot path), and
    with ``domain`` each row's verdict (None when ``verdicts`` is None)."""
    a, b, c = names
    if not domain:
        if devices is None:
            return [{a: x, b: y, c: z} for x, y, z in zip(*columns, strict=True)]
        return [{"deviceId": d, a: x, b: y, c: z}
                for d, x, y, z in zip(devices, *columns, strict=True)]  # fmt: skip
    v = repeat(None, len(columns[0])) if verdicts is None else verdicts
    if devices is None:
        return [{a: x, b: y, c: z, DOMAIN: w} for x, y, z, w in zip(*columns, v, strict=True)]
    return [{"deviceId": d, a: x, b: y, c: z, DOMAIN: w}
            for d, x, y, z, w in zip(devices, *columns, v, strict=True)]  # fmt: skip


def priors(spec: Any, labels: list[Any]) -> np.ndarray | None:
    """The training labels' share per label, checked against ``labels`` (None: the model's
    confidence stands outside the domain too)."""
    if spec is None:
        return None
    shares = np.asarray(spec, dtype=np.float64)
    if shares.shape != (len(labels),) or not np.isfinite(shares).all():
        raise BundleError(f"the profile's label shares {spec!r} do not fit labels {labels!r}")
    return shares


def capped(conf: np.ndarray, index: np.ndarray, checked: Checked | None,
           prior: np.ndarray | None) -> np.ndarray:  # fmt: skip
    """The confidences, each out-of-domain row's capped at its label's prior."""
    if checked is None or prior is None or not anything(checked.outside_rows):
        return conf
    return np.where(checked.outside_rows, np.minimum(conf, prior[index]), conf)


def anything(flags: np.ndarray | Sequence[bool]) -> bool:
    """Any flag set: numpy's own test for an array (a Python loop over 10,000 is ~0.3 ms)."""
    return bool(flags.any()) if isinstance(flags, np.ndarray) else any(flags)


def tally(index: np.ndarray, conf: np.ndarray, n_labels: int, checked: Checked | None) -> Tally:
    labels = np.bincount(index, minlength=n_labels).tolist()
    if checked is None:
        return Tally(len(index), labels, float(conf.sum()))
    outside = int(np.count_nonzero(checked.outside_rows))
    return Tally(len(index), labels, float(conf.sum()), outside, checked.counts,
                 checked.unusual_rows)  # fmt: skip


def tally_rows(index: Sequence[int], conf: Sequence[float], n_labels: int,
               checked: Checked | None) -> Tally:  # fmt: skip
    """``tally`` for a few rows, in plain Python (the request hot path)."""
    labels = [0] * n_labels
    for i in index:
        labels[i] += 1
    if checked is None:
        return Tally(len(index), labels, sum(conf))
    outside = sum(map(bool, checked.outside_rows))
    return Tally(len(index), labels, sum(conf), outside, checked.counts, checked.unusual_rows)


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
STEP = 1e-4  # the rounding step of probabilities and confidences


def sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


class _Kind(ABC):
    """What both answer kinds offer: answers alone (golden checks, the MLflow pyfunc without
    a profile), or answers with their domain verdicts and tally (the handler)."""

    def answers(self, raw: dict[str, np.ndarray], devices: Devices = None) -> list[dict[str, Any]]:
        return self._answered(raw, devices, None, domain=False).answers

    def answered(
        self, raw: dict[str, np.ndarray], devices: Devices, checked: Checked | None
    ) -> Answered:
        return self._answered(raw, devices, checked, domain=True)

    @abstractmethod
    def _answered(
        self, raw: dict[str, np.ndarray], devices: Devices, checked: Checked | None, domain: bool
    ) -> Answered:
        """The kind's answers, with verdicts and tally when ``domain``."""


class BandedRegression(_Kind):
    def __init__(self, spec: dict[str, Any], prior: Any = None) -> None:
        self.value_name: str = spec["value_name"]
        self.band_name: str = spec["band_name"]
        self.lower, self.upper = float(spec["clip"][0]), float(spec["clip"][1])
        bands = sorted(spec["bands"], key=lambda b: b["min"], reverse=True)  # highest first
        self.band_labels = [b["label"] for b in bands]
        self.labels: list[Any] = self.band_labels
        self.band_mins = np.array([b["min"] for b in bands], dtype=np.float64)
        self.band_mins_list: list[float] = self.band_mins.tolist()
        self.sigma_scale = float(spec["sigma_scale"])
        self.names = (self.value_name, self.band_name, "confidence")
        self.prior = priors(prior, self.labels)
        self.prior_list: list[float] | None = None if self.prior is None else self.prior.tolist()

    def band_index(self, values: np.ndarray) -> np.ndarray:
        # Index of the first (highest) band whose minimum the value reaches; the last band
        # catches everything below.
        reached = values[:, None] >= self.band_mins[None, :]
        reached[:, -1] = True
        return reached.argmax(axis=1)

    def confidence(self, values: np.ndarray, abs_error: np.ndarray) -> np.ndarray:
        return self._confidence(values, abs_error, self.band_index(values))

    def _confidence(self, values: np.ndarray, abs_error: np.ndarray, idx: np.ndarray) -> np.ndarray:
        lo = np.where(idx == len(self.band_mins) - 1, -np.inf, self.band_mins[idx])
        hi = np.where(idx == 0, np.inf, self.band_mins[np.maximum(idx - 1, 0)])
        sigma = np.maximum(abs_error.astype(np.float64) * self.sigma_scale, 1e-6)
        return normal_cdf((hi - values) / sigma) - normal_cdf((lo - values) / sigma)

    def _one(self, value: float, abs_error: float, outside: bool = False
             ) -> tuple[float, str, float, int]:  # fmt: skip
        """The vectorised path's answer for one row, in plain floats (the request hot path)."""
        value = min(max(value, self.lower), self.upper)
        mins = self.band_mins_list
        last = i = len(mins) - 1
        for k, m in enumerate(mins):  # a loop, not next() over a generator: 0.3 us less
            if value >= m:
                i = k
                break
        lo = -math.inf if i == last else mins[i]
        hi = math.inf if i == 0 else mins[i - 1]
        sigma = max(abs_error * self.sigma_scale, 1e-6)
        up = 1.0 if hi == math.inf else normal_cdf_scalar((hi - value) / sigma)
        down = 0.0 if lo == -math.inf else normal_cdf_scalar((lo - value) / sigma)
        conf = up - down
        if outside and self.prior_list is not None:
            conf = min(conf, self.prior_list[i])
        return round_one(value, 2), self.band_labels[i], round_one(conf, 4), i

    def _answered(
        self, raw: dict[str, np.ndarray], devices: Devices, checked: Checked | None, domain: bool
    ) -> Answered:
        verdicts = None if checked is None else checked.verdicts
        n_labels = len(self.band_labels)
        if 0 < len(raw["margin"]) <= SMALL:  # tolist: the float32 values as exact floats
            margins = raw["margin"].tolist()
            flags = [False] * len(margins) if checked is None else checked.outside_rows
            one = map(self._one, margins, raw["abs_error"].tolist(), flags)
            value, band, confidence, index = zip(*one, strict=True)
            answers = rows(self.names, (value, band, confidence), devices, verdicts, domain)
            return Answered(answers, tally_rows(index, confidence, n_labels, checked))
        margin, abs_error = raw["margin"].astype(np.float64), raw["abs_error"].astype(np.float64)
        values = np.clip(margin, self.lower, self.upper)
        idx = self.band_index(values)
        conf = rounded_array(capped(self._confidence(values, abs_error, idx), idx, checked,
                                    self.prior), 4)  # fmt: skip
        labels = list(map(self.band_labels.__getitem__, idx.tolist()))
        columns = (rounded(values, 2), labels, conf.tolist())
        answers = rows(self.names, columns, devices, verdicts, domain)
        return Answered(answers, tally(idx, conf, n_labels, checked))


class BinaryClassification(_Kind):
    def __init__(self, spec: dict[str, Any], prior: Any = None) -> None:
        self.label_name: str = spec["label_name"]
        self.threshold = float(spec["threshold"])
        self.labels: list[Any] = [False, True]  # index = the label as 0/1
        self.names = (self.label_name, "probability", "confidence")
        self.prior = priors(prior, self.labels)

    def toward_prior(self, prob: np.ndarray, outside: Any) -> np.ndarray:
        """Out of the domain, a probability moves to the prior share of the positive class
        when that is less sure of the model's label, stopping one rounding step short of the
        threshold: the label stays the model's and the confidence never rises."""
        if self.prior is None or not anything(outside):
            return prob
        share, t = float(self.prior[1]), self.threshold
        positive = prob >= t
        moved = np.where(positive, np.minimum(prob, max(share, t)),
                         np.maximum(prob, min(share, t - STEP)))  # fmt: skip
        return np.where(outside, moved, prob)

    def _answered(
        self, raw: dict[str, np.ndarray], devices: Devices, checked: Checked | None, domain: bool
    ) -> Answered:
        prob = sigmoid(raw["margin"].astype(np.float64))
        if checked is not None:
            prob = self.toward_prior(prob, checked.outside_rows)
        # Label and confidence from the probability as reported, so the three always agree.
        prob = rounded_array(prob, 4)
        positive = prob >= self.threshold
        idx = positive.astype(np.int64)
        conf = rounded_array(np.where(positive, prob, 1.0 - prob), 4)
        columns = (positive.tolist(), prob.tolist(), conf.tolist())
        verdicts = None if checked is None else checked.verdicts
        answers = rows(self.names, columns, devices, verdicts, domain)
        return Answered(answers, tally(idx, conf, 2, checked))


KINDS: dict[str, type[BandedRegression] | type[BinaryClassification]] = {
    "banded_regression": BandedRegression,
    "binary_classification": BinaryClassification,
}


def make_output(spec: dict[str, Any], prior: Any = None) -> Output:
    """The answer builder of a bundle's ``output``; ``prior``: the training labels' share per
    label (the profile's ``outputs.label_shares``), what bounds an out-of-domain confidence."""
    try:
        return KINDS[spec["kind"]](spec, prior)
    except KeyError as exc:
        raise BundleError(f"unknown or incomplete output spec: {exc}") from exc
