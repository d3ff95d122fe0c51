"""The statistics of a drift report: a log's records against the bundle's training rows, each
test calibrated by windows of training's own with the log's shape (monitoring/reference.py),
so a test's p-value is the share of such windows at least as far from training as the log.

**Data drift**, a family of tests held at ``alpha`` (0.01) with Bonferroni:

- per feature, **PSI** (population stability index, the sum of (live - train) * ln(live /
  train) over bins) on the profile's quantile bins (0.5 %, 0.5 %, 4 %, 5 %, 15 %, 25 %, ...
  of training; ties merged; shares floored at 1e-4). PSI is the effect, the windows give its
  p-value: a day of readings has a narrow range, and so do training's days; 30 readings give
  PSI about 0.4 by chance alone, and so do 30 training rows. A feature drifts when p is below
  alpha / tests **and** PSI is at least ``min_psi`` (0.1): a shift too small to matter is
  not called drift however many readings prove it;
- per feature, the **missing rate** against training's (two-sided: the distance between the
  shares); it drifts when p is below alpha / tests and the rates differ by ``min_missing``
  (2 points) or more; a value that is not a number (a changed type) is drift outright;
- the **answers' mix** (bands or classes), PSI against the answers the model gives the
  training rows; a label training never answered is drift outright.

**Out-of-domain traffic**, a test of its own at ``alpha``: the share of readings not inside
the domain (serving's own verdicts, recomputed from the inputs), against the windows' share;
it alarms when p is below alpha and the share exceeds training's by ``min_excess`` (2 points).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from monitoring.reference import DRAWS, Reference, Shape, p_value, windows

EPS = 1e-4  # floor of a bin share in PSI


@dataclass(frozen=True)
class Thresholds:
    alpha: float = 0.01  # family-wise: data drift (Bonferroni over its tests); out of domain
    min_psi: float = 0.1  # the smallest shift called drift
    min_missing: float = 0.02  # the smallest change of a missing rate called drift
    min_excess: float = 0.02  # the smallest excess of out-of-domain readings that alarms
    max_degradation: float = 0.2  # a primary metric this much worse than held-out
    min_labels: int = 30  # fewer joined labels are reported, not judged
    draws: int = DRAWS  # null windows per report


def quantile_bins(quantiles: dict[str, float | None]) -> tuple[np.ndarray, np.ndarray]:
    """Interior edges and the training share of each bin, ties merged."""
    levels = sorted((float(k), v) for k, v in quantiles.items() if v is not None)
    edges: list[float] = []
    shares: list[float] = []
    previous = 0.0
    for level, value in levels:
        if not 0.0 < level < 1.0:
            continue
        share = level - previous
        if edges and float(value) <= edges[-1]:  # a repeated value: one bin, both shares
            shares[-1] += share
        else:
            edges.append(float(value))
            shares.append(share)
        previous = level
    shares.append(1.0 - previous)
    return np.array(edges), np.array(shares)


def codes(values: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """Each value's right-closed bin, (-inf, e0], (e0, e1], ..., (e_last, inf); a missing value
    the code after the last bin."""
    out = np.searchsorted(edges, values, side="left")
    out[np.isnan(values)] = len(edges) + 1
    return out


def counts(code: np.ndarray, size: int) -> np.ndarray:
    """Per row of ``code`` (windows x records), how many records hold each code 0..size-1."""
    rows = np.arange(code.shape[0])[:, None] * size
    return np.bincount((code + rows).ravel(), minlength=code.shape[0] * size).reshape(-1, size)


def psi(expected: np.ndarray, counted: np.ndarray) -> np.ndarray:
    """PSI of each row of counts against the expected shares (NaN for a row without any)."""
    total = counted.sum(axis=-1, keepdims=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        actual = np.maximum(counted / total, EPS)
    base = np.maximum(expected, EPS)
    out = np.sum((actual - base) * np.log(actual / base), axis=-1)
    return np.where(total[..., 0] > 0, out, np.nan)


@dataclass(frozen=True)
class FeatureDrift:
    name: str
    present: int  # readings with a value
    missing_rate: float
    train_missing_rate: float
    not_numbers: int  # values of another type (a string, a boolean)
    psi: float
    p: float
    missing_p: float
    outside_rate: float  # share of present readings outside the domain's bounds
    low: float  # the domain's bounds
    high: float
    status: str  # stable, moderate, drift, no data
    reasons: tuple[str, ...] = ()
    expected_shares: tuple[float, ...] = ()
    live_shares: tuple[float, ...] = ()


@dataclass(frozen=True)
class OutputDrift:
    kind: str
    labels: tuple[str, ...]
    expected: tuple[float, ...]  # the model's answers on the training rows
    counts: tuple[int, ...]
    unknown: int  # answers with a label the profile does not know
    psi: float
    p: float
    status: str
    reasons: tuple[str, ...] = ()


@dataclass(frozen=True)
class DomainTraffic:
    outside: float  # share of readings not inside the domain (recomputed)
    training: float  # the same share on the training rows
    p: float
    unusual: float  # share with an unusual combination
    missing: dict[str, float]  # share missing, per feature training never saw missing
    served: float | None  # share the answers' own verdicts call not inside
    status: str  # ok, alarm
    reasons: tuple[str, ...] = ()


@dataclass
class Live:
    """What the log gives, in the reference's terms."""

    matrix: np.ndarray  # records x features (NaN: missing or not a number)
    not_numbers: np.ndarray  # per feature: values of another type
    answers: np.ndarray  # per record: its answer's label index (len(labels): unknown; -1: none)
    outside: np.ndarray  # per record: not inside the domain
    shape: Shape


@dataclass
class Training:
    """The same of the reference rows, and the profile's expectations."""

    ref: Reference
    quantiles: list[dict[str, float | None]]
    missing_rates: list[float]
    answers: np.ndarray  # per reference row: the model's label index
    labels: list[str]
    kind: str
    outside: np.ndarray  # per reference row: not inside the domain
    bounds: list[tuple[float, float]] = field(default_factory=list)


def compare(
    live: Live, train: Training, t: Thresholds, seed: int = 0
) -> tuple[list[FeatureDrift], OutputDrift, DomainTraffic]:
    """Every test of the report: per feature, the answers' mix, the out-of-domain share."""
    d, ref = len(train.ref.names), train.ref
    bins = [quantile_bins(q) for q in train.quantiles]
    live_codes = [codes(live.matrix[:, j], bins[j][0]) for j in range(d)]
    ref_codes = [codes(ref.values[:, j], bins[j][0]) for j in range(d)]
    sizes = [len(b[0]) + 2 for b in bins]  # the bins, and missing
    n_labels = len(train.labels)
    ref_share = np.bincount(train.answers, minlength=n_labels) / max(len(train.answers), 1)
    answered = live.answers[live.answers >= 0]
    ref_missing = np.array([np.isnan(ref.values[:, j]).mean() for j in range(d)])

    def statistics(code: list[np.ndarray], answers: np.ndarray, outside: np.ndarray,
                   ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:  # fmt: skip
        """PSI and missing-rate distance per feature, answers' PSI, out-of-domain share: for
        each row of codes (a window, or the log itself)."""
        m = code[0].shape[0]
        feature_psi, missing = np.empty((m, d)), np.empty((m, d))
        for j in range(d):
            c = counts(code[j], sizes[j])
            feature_psi[:, j] = psi(bins[j][1], c[:, :-1])
            missing[:, j] = np.abs(c[:, -1] / code[j].shape[1] - ref_missing[j])
        a = counts(np.minimum(answers, n_labels), n_labels + 1)
        answer_psi = psi(np.append(ref_share, 0.0), a)
        return feature_psi, missing, answer_psi, outside.mean(axis=1)

    observed = statistics([c[None, :] for c in live_codes], answered[None, :],
                          live.outside[None, :].astype(np.float64))  # fmt: skip
    kept = np.flatnonzero(live.answers >= 0)  # the windows copy the records with an answer
    nulls: list[list[np.ndarray]] = [[], [], [], []]
    for index in windows(ref, live.shape, t.draws, seed):
        got = statistics([c[index] for c in ref_codes], train.answers[index[:, kept]],
                         train.outside[index].astype(np.float64))  # fmt: skip
        for store, value in zip(nulls, got, strict=True):
            store.append(value)
    null = [np.concatenate(v) for v in nulls]
    tests = 2 * d + 1
    per_test = t.alpha / tests
    features = [_feature(j, train, live, bins[j], observed, null, per_test, t) for j in range(d)]
    output = _output(train, answered, observed[2][0], p_value(observed[2][0], null[2]), per_test,
                     t)  # fmt: skip
    domain = _domain(live, train, observed[3][0], p_value(observed[3][0], null[3]), t)
    return features, output, domain


def _feature(
    j: int, train: Training, live: Live, bins: tuple[np.ndarray, np.ndarray],
    observed: tuple[np.ndarray, ...], null: list[np.ndarray], per_test: float, t: Thresholds,
) -> FeatureDrift:  # fmt: skip
    name = train.ref.names[j]
    values = live.matrix[:, j]
    present = values[~np.isnan(values)]
    missing = 1.0 - len(present) / len(values) if len(values) else math.nan
    low, high = train.bounds[j] if train.bounds else (math.nan, math.nan)
    value, p = float(observed[0][0, j]), p_value(float(observed[0][0, j]), null[0][:, j])
    distance = float(observed[1][0, j])
    missing_p = p_value(distance, null[1][:, j])
    not_numbers = int(live.not_numbers[j])
    status, reasons = _shift(bool(len(present)), value, p, per_test, t)
    train_missing = float(train.missing_rates[j])
    if distance >= t.min_missing and missing_p < per_test:
        status = "drift"
        reasons.append(f"missing {missing:.1%} of readings, {train_missing:.1%} in training "
                       f"(p {missing_p:.2g})")  # fmt: skip
    if not_numbers:
        status = "drift"
        reasons.append(f"{not_numbers} values are not numbers")
    live_counts = counts(codes(present, bins[0])[None, :], len(bins[0]) + 1)[0]
    with np.errstate(invalid="ignore", divide="ignore"):
        outside = float(np.mean((present < low) | (present > high))) if len(present) else math.nan
        shares = tuple((live_counts / live_counts.sum()).tolist()) if len(present) else ()
    return FeatureDrift(
        name, len(present), missing, train_missing, not_numbers, value, p, missing_p, outside,
        low, high, status, tuple(reasons), tuple(bins[1].tolist()), shares,
    )  # fmt: skip


def _shift(
    present: bool, value: float, p: float, per_test: float, t: Thresholds
) -> tuple[str, list[str]]:
    """A PSI's status (drift when significant and large enough, moderate when only large)."""
    if not present:
        return "no data", []
    if value >= t.min_psi and p < per_test:
        return "drift", [f"PSI {value:.3f} (p {p:.2g} < {per_test:.2g}; at least {t.min_psi})"]
    return ("moderate" if value >= t.min_psi else "stable"), []


def _output(
    train: Training, answered: np.ndarray, value: float, p: float, per_test: float,
    t: Thresholds,
) -> OutputDrift:  # fmt: skip
    n_labels = len(train.labels)
    counted = np.bincount(np.minimum(answered, n_labels), minlength=n_labels + 1)
    expected = np.bincount(train.answers, minlength=n_labels) / max(len(train.answers), 1)
    unknown = int(counted[n_labels])
    status, reasons = _shift(bool(len(answered)), value, p, per_test, t)
    if unknown:
        status = "drift"
        reasons.append(f"{unknown} answers with a label the training profile does not know")
    return OutputDrift(train.kind, tuple(train.labels), tuple(expected.tolist()),
                       tuple(int(c) for c in counted[:n_labels]), unknown, value, p, status,
                       tuple(reasons))  # fmt: skip


def _domain(live: Live, train: Training, share: float, p: float, t: Thresholds) -> DomainTraffic:
    training = float(train.outside.mean()) if len(train.outside) else math.nan
    reasons = []
    status = "ok"
    if share - training >= t.min_excess and p < t.alpha:
        status = "alarm"
        reasons.append(f"{share:.1%} of readings outside the domain, {training:.1%} of "
                       f"training rows (p {p:.2g} < {t.alpha})")  # fmt: skip
    return DomainTraffic(share, training, p, math.nan, {}, None, status, tuple(reasons))


def category_key(value: Any) -> str:
    """Bands compare as text; classes as 0/1 whether written true, 1 or "True"."""
    if isinstance(value, bool):
        return str(int(value))
    if isinstance(value, int | float) and float(value).is_integer():
        return str(int(value))
    text = str(value).strip()
    return {"true": "1", "false": "0"}.get(text.lower(), text)
