"""The model's applicability domain: is a reading like the rows the model was trained on?

Training records a profile of each feature on its training rows (``training/profile.py``,
the bundle's ``profile``). The rule, per feature, on the values the model reads (float32):
a value is **outside** when it is below the training rows' ``lower_q`` (0.5 %) quantile or
above their ``upper_q`` (99.5 %) quantile; a missing value (a nullable feature's null, a
calendar feature without a timestamp) is never outside. A reading is inside when no feature
is outside.

Verdicts are shared, read-only objects: every answer inside the domain carries the same one,
and every answer outside on the same features another, so a batch builds a verdict per
distinct pattern, never per row (10,000 fresh dicts cost ~3 ms, more than validating them).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, NamedTuple, NoReturn

import numpy as np

from inference.bundle import BundleError

PROFILE = "profile"


class Verdict(dict[str, Any]):
    """``{"inside": bool, "outside": (feature names, ...)}``; read-only because shared."""

    __slots__ = ()

    def __init__(self, inside: bool, outside: tuple[str, ...]) -> None:
        super().__init__(inside=inside, outside=outside)

    def _read_only(self, *args: Any, **kwargs: Any) -> NoReturn:
        raise TypeError("a domain verdict is shared by many answers and is read-only")

    __setitem__ = __delitem__ = clear = pop = popitem = setdefault = update = _read_only  # type: ignore[assignment]
    __ior__ = _read_only  # type: ignore[assignment]

    def __reduce__(self) -> tuple[type[Verdict], tuple[bool, tuple[str, ...]]]:
        return Verdict, (self["inside"], self["outside"])  # copy and pickle without mutation


INSIDE = Verdict(True, ())


class Checked(NamedTuple):
    """A block of rows checked against the domain."""

    verdicts: list[Verdict]
    outside_rows: np.ndarray  # bool per row: outside on any feature
    outside_counts: np.ndarray  # int per feature: rows outside on it


class Domain:
    """The rule compiled from a bundle's profile, in the schema's feature order."""

    def __init__(self, profile: Mapping[str, Any], names: Sequence[str]) -> None:
        try:
            lower_q, upper_q = float(profile["lower_q"]), float(profile["upper_q"])
            features = profile["features"]
            bounds = [_bounds(features[name]["quantiles"], lower_q, upper_q) for name in names]
        except (KeyError, TypeError, ValueError) as exc:
            raise BundleError(f"the bundle's profile is incomplete: {exc!r}") from None
        self.names = tuple(names)
        self.lower = np.array([b[0] for b in bounds], dtype=np.float64)
        self.upper = np.array([b[1] for b in bounds], dtype=np.float64)
        self._bounds = list(zip(self.lower.tolist(), self.upper.tolist(), strict=True))
        self._weights = 1 << np.arange(len(names), dtype=np.int64)  # a row's pattern as bits
        self._verdicts: dict[int, Verdict] = {0: INSIDE}

    @classmethod
    def of_bundle(cls, bundle: Mapping[str, Any]) -> Domain | None:
        """The bundle's domain, or None for a bundle trained before profiles (no verdict)."""
        profile = bundle.get(PROFILE)
        if profile is None:
            return None
        if not isinstance(profile, Mapping):
            raise BundleError("the bundle's profile is not a mapping")
        return cls(profile, [f["name"] for f in bundle["schema"]["fields"]])

    def verdict(self, pattern: int) -> Verdict:
        """The shared verdict of one pattern (bit j: outside on feature j)."""
        found = self._verdicts.get(pattern)
        if found is None:
            outside = tuple(n for j, n in enumerate(self.names) if pattern >> j & 1)
            # At most one per pattern seen; 2**features bounds it (9 features: 512).
            found = self._verdicts.setdefault(pattern, Verdict(False, outside))
        return found

    def check(self, features: np.ndarray) -> Checked:
        """Verdicts for a float32 feature matrix (NaN, a missing value, is never outside)."""
        if len(features) <= 4:  # the request hot path: plain floats beat numpy's call costs
            return self._check_rows(features.tolist())
        outside = (features < self.lower) | (features > self.upper)
        rows: np.ndarray = np.asarray(outside.any(axis=1))
        if not rows.any():
            n = len(features)
            return Checked([INSIDE] * n, rows, np.zeros(len(self.names), dtype=np.int64))
        patterns = np.zeros(len(features), dtype=np.int64)
        patterns[rows] = outside[rows] @ self._weights  # only the rows that are outside
        verdicts = list(map(self.verdict, patterns.tolist()))
        return Checked(verdicts, rows, outside.sum(axis=0))

    def _check_rows(self, rows: list[list[float]]) -> Checked:
        verdicts, flags = [], []
        counts = [0] * len(self.names)
        for row in rows:
            pattern = 0
            for j, (value, (lo, hi)) in enumerate(zip(row, self._bounds, strict=True)):
                if value < lo or value > hi:  # NaN fails both
                    pattern |= 1 << j
                    counts[j] += 1
            verdicts.append(self.verdict(pattern))
            flags.append(pattern != 0)
        return Checked(verdicts, np.array(flags, dtype=bool), np.array(counts, dtype=np.int64))


def _bounds(quantiles: Mapping[str, Any], lower_q: float, upper_q: float) -> tuple[float, float]:
    """The quantiles at ``lower_q`` and ``upper_q``, whatever the key's spelling ("0.005")."""
    levels = {float(k): v for k, v in quantiles.items()}
    lo, hi = levels[lower_q], levels[upper_q]
    # A feature with no training value has no domain to leave: NaN bounds flag nothing.
    return (np.nan if lo is None else float(lo)), (np.nan if hi is None else float(hi))
