"""The statistics of a drift report: live records against the bundle's training profile.

Per feature (monitoring/README.md states the why of each number):

- **PSI** on the profile's quantile bins: the interior quantile levels (0.005, 0.01, 0.05, 0.1,
  0.25, 0.5, 0.75, 0.9, 0.95, 0.99, 0.995) cut the line into 12 right-closed bins, the outer
  ones open to ±inf, whose training shares are the differences of those levels (0.5 %, 0.5 %,
  4 %, 5 %, 15 %, 25 %, ...). Bins whose edges coincide (a feature with repeated values) are
  merged. Shares below 1e-4 are floored at 1e-4 on both sides, so an empty bin costs a
  bounded amount. PSI < 0.1 is stable, 0.1-0.25 moderate, > 0.25 drift.
- **Kolmogorov-Smirnov**, two-sample (scipy), live values against the profile's sample of
  training values; the family of features is held at alpha 0.01 with Bonferroni (each p is
  compared with 0.01 / features).
- A feature **drifts** when both say so: PSI above 0.25 *and* KS rejects. PSI alone is noisy
  on a small log, KS alone flags shifts too small to matter on a large one.
- **Out of domain**: the share of readings outside the profile's rule (its ``lower_q`` and
  ``upper_q`` quantiles: 1 % of training values by construction); above ``max_outside``
  (5 %) is drift.

The answers: the share of each band or class against the training shares, PSI (same
thresholds) and a chi-square goodness-of-fit test at alpha 0.01; the mix drifts when both say so.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy import stats

EPS = 1e-4  # floor of a bin share in PSI


@dataclass(frozen=True)
class Thresholds:
    psi_moderate: float = 0.1
    psi_drift: float = 0.25
    alpha: float = 0.01  # family-wise, Bonferroni over the features
    max_outside: float = 0.05  # per feature; the rule leaves 1 % of training values outside
    max_degradation: float = 0.2  # live primary metric this much worse than held-out (labels)
    min_labels: int = 30  # fewer joined labels are reported, not judged


def psi_status(psi: float, t: Thresholds) -> str:
    if psi > t.psi_drift:
        return "drift"
    return "moderate" if psi >= t.psi_moderate else "stable"


def quantile_bins(quantiles: dict[str, float]) -> tuple[np.ndarray, np.ndarray]:
    """Interior edges and the training share of each bin, ties merged."""
    levels = sorted((float(k), float(v)) for k, v in quantiles.items())
    inner = [(q, v) for q, v in levels if 0.0 < q < 1.0]
    edges: list[float] = []
    shares: list[float] = []
    previous = 0.0
    for level, value in inner:
        share = level - previous
        if edges and value <= edges[-1]:  # a repeated value: one bin, both shares
            shares[-1] += share
        else:
            edges.append(value)
            shares.append(share)
        previous = level
    shares.append(1.0 - previous)
    return np.array(edges), np.array(shares)


def bin_counts(values: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """Counts per right-closed bin: (-inf, e0], (e0, e1], ..., (e_last, inf)."""
    index = np.searchsorted(edges, values, side="left")
    return np.bincount(index, minlength=len(edges) + 1)


def psi(expected: np.ndarray, counts: np.ndarray) -> float:
    total = counts.sum()
    if total == 0:
        return math.nan
    actual = np.maximum(counts / total, EPS)
    base = np.maximum(expected, EPS)
    return float(np.sum((actual - base) * np.log(actual / base)))


@dataclass(frozen=True)
class FeatureDrift:
    name: str
    present: int  # readings with a value
    missing_rate: float
    train_missing_rate: float
    psi: float
    ks_statistic: float
    ks_pvalue: float
    outside_rate: float  # share of present readings outside the domain
    low: float  # the domain's bounds
    high: float
    status: str  # stable, moderate, drift, or "no data"
    reasons: tuple[str, ...] = ()
    expected_shares: tuple[float, ...] = ()
    live_shares: tuple[float, ...] = ()


def feature_drift(
    name: str, values: np.ndarray, entry: dict[str, Any], rule: dict[str, float],
    features: int, t: Thresholds,
) -> FeatureDrift:  # fmt: skip
    present = values[~np.isnan(values)]
    quantiles = entry["quantiles"]
    low, high = _bound(quantiles, rule["lower_q"]), _bound(quantiles, rule["upper_q"])
    missing = 1.0 - len(present) / len(values) if len(values) else math.nan
    train_missing = float(entry.get("missing_rate", 0.0))
    if len(present) == 0 or math.isnan(low):  # nothing live, or never observed in training
        status = "no data" if len(present) == 0 else "not profiled"
        return FeatureDrift(name, len(present), missing, train_missing, math.nan, math.nan,
                            math.nan, math.nan, low, high, status)  # fmt: skip
    edges, expected = quantile_bins(quantiles)
    counts = bin_counts(present, edges)
    value = psi(expected, counts)
    sample = np.asarray(entry.get("sample") or [], dtype=np.float64)
    sample = sample[~np.isnan(sample)]
    if len(sample):
        test = stats.ks_2samp(present, sample)
        ks_stat, ks_p = float(test.statistic), float(test.pvalue)
    else:
        ks_stat, ks_p = math.nan, math.nan
    outside = float(np.mean((present < low) | (present > high)))
    reasons = []
    status = psi_status(value, t)
    rejects = ks_p < t.alpha / max(features, 1)
    if status == "drift" and not rejects:
        status = "moderate"  # PSI alone: not confirmed by the test
    if status == "drift":
        reasons.append(f"PSI {value:.3f} > {t.psi_drift} and KS p {ks_p:.2g} < "
                       f"{t.alpha}/{features}")  # fmt: skip
    if outside > t.max_outside:
        status = "drift"
        reasons.append(f"{outside:.1%} of readings outside the domain > {t.max_outside:.0%}")
    return FeatureDrift(
        name, len(present), missing, train_missing, value, ks_stat, ks_p, outside, low, high,
        status, tuple(reasons), tuple(expected.tolist()), tuple((counts / counts.sum()).tolist()),
    )  # fmt: skip


def _bound(quantiles: dict[str, float | None], level: float) -> float:
    """The quantile at ``level``; NaN for a feature training never observed."""
    for key, value in quantiles.items():
        if math.isclose(float(key), level):
            return math.nan if value is None else float(value)
    raise KeyError(f"the profile has no {level} quantile")


def outside_rows(matrix: np.ndarray, lows: np.ndarray, highs: np.ndarray) -> np.ndarray:
    """Per row: outside the domain on any feature (a missing value is not outside)."""
    with np.errstate(invalid="ignore"):
        return np.asarray(((matrix < lows) | (matrix > highs)).any(axis=1))


def category_key(value: Any) -> str:
    """Bands compare as text; classes as 0/1 whether written true, 1 or "True"."""
    if isinstance(value, bool):
        return str(int(value))
    if isinstance(value, int | float) and float(value).is_integer():
        return str(int(value))
    text = str(value).strip()
    return {"true": "1", "false": "0"}.get(text.lower(), text)


@dataclass(frozen=True)
class OutputDrift:
    kind: str
    labels: tuple[str, ...]
    expected: tuple[float, ...]
    counts: tuple[int, ...]
    unknown: int  # answers with a label the profile does not know
    psi: float
    chi2: float
    pvalue: float
    status: str
    reasons: tuple[str, ...] = ()


def output_drift(outputs: dict[str, Any], answers: list[Any], t: Thresholds) -> OutputDrift:
    labels = [str(label) for label in outputs["labels"]]
    keys = [category_key(label) for label in outputs["labels"]]
    expected = np.asarray(outputs["shares"], dtype=np.float64)
    seen = [category_key(a) for a in answers if a is not None]
    counts = np.array([seen.count(k) for k in keys])
    unknown = len(seen) - int(counts.sum())
    if not seen:
        return OutputDrift(outputs["kind"], tuple(labels), tuple(expected.tolist()),
                           tuple(counts.tolist()), 0, math.nan, math.nan, math.nan,
                           "no data")  # fmt: skip
    # An unknown label is a bin training never filled.
    value = psi(np.append(expected, 0.0), np.append(counts, unknown))
    base = np.maximum(expected, EPS)
    chi = stats.chisquare(counts, base / base.sum() * counts.sum()) if counts.sum() else None
    chi2 = float(chi.statistic) if chi is not None else math.nan
    pvalue = float(chi.pvalue) if chi is not None else math.nan
    status = psi_status(value, t)
    reasons = []
    if status == "drift" and not pvalue < t.alpha:
        status = "moderate"
    if status == "drift":
        reasons.append(f"PSI {value:.3f} > {t.psi_drift} and chi-square p {pvalue:.2g} < {t.alpha}")
    if unknown:
        reasons.append(f"{unknown} answers with a label the training profile does not know")
        status = "drift"
    return OutputDrift(outputs["kind"], tuple(labels), tuple(expected.tolist()),
                       tuple(counts.tolist()), unknown, value, chi2, pvalue, status,
                       tuple(reasons))  # fmt: skip
