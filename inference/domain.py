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
TABLE_FEATURES = 12  # a lookup slot per pattern up to here (4,096); beyond, a dict lookup per row


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
    outside_rows: np.ndarray | list[bool]  # per row: outside on any feature
    outside_counts: list[int]  # per feature: rows outside on it


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
        # The same rule in float32, exactly: for a float32 x, x < lower <=> x < the smallest
        # float32 >= lower (and so for upper), and a float32 comparison skips a float64 copy.
        self._lower32, self._upper32 = _float32_bounds(self.lower, self.upper)
        self._bounds = list(zip(self._lower32.tolist(), self._upper32.tolist(), strict=True))
        self._weights = 1 << np.arange(len(names), dtype=np.int64)  # a row's pattern as bits
        self._verdicts: dict[int, Verdict] = {0: INSIDE}
        # Up to TABLE_FEATURES features, every pattern has a slot, so a batch's verdicts are one
        # numpy take (C speed) and its counts per feature one product, however many rows are out.
        self._table: np.ndarray | None = None
        self._bits: np.ndarray | None = None
        if len(names) <= TABLE_FEATURES:
            self._table = np.full(1 << len(names), None, dtype=object)
            self._table[0] = INSIDE
            patterns = np.arange(1 << len(names), dtype=np.int64)
            self._bits = ((patterns[:, None] >> np.arange(len(names))) & 1).astype(np.int64)

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
        outside = (features < self._lower32) | (features > self._upper32)
        patterns = outside @ self._weights  # a row's features outside, as bits; 0: inside
        n = len(features)
        if not patterns.any():
            return Checked([INSIDE] * n, np.zeros(n, dtype=bool), [0] * len(self.names))
        rows = patterns != 0
        table, bits = self._table, self._bits
        if table is None or bits is None:
            verdicts = list(map(self.verdict, patterns.tolist()))
            return Checked(verdicts, rows, outside.sum(axis=0).tolist())
        per_pattern = np.bincount(patterns, minlength=len(table))
        seen = np.flatnonzero(per_pattern)
        for pattern in seen[table[seen] == None].tolist():  # noqa: E711 (elementwise)
            table[pattern] = self.verdict(pattern)
        return Checked(table[patterns].tolist(), rows, (per_pattern @ bits).tolist())

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
        return Checked(verdicts, flags, counts)


def _float32_bounds(lower: np.ndarray, upper: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The smallest float32 >= each lower bound and the largest float32 <= each upper bound
    (NaN stays NaN: no bound, nothing outside)."""
    lo, hi = lower.astype(np.float32), upper.astype(np.float32)
    lo = np.where(lo < lower, np.nextafter(lo, np.float32(np.inf)), lo)
    hi = np.where(hi > upper, np.nextafter(hi, np.float32(-np.inf)), hi)
    return lo.astype(np.float32), hi.astype(np.float32)


def _bounds(quantiles: Mapping[str, Any], lower_q: float, upper_q: float) -> tuple[float, float]:
    """The quantiles at ``lower_q`` and ``upper_q``, whatever the key's spelling ("0.005")."""
    levels = {float(k): v for k, v in quantiles.items()}
    lo, hi = levels[lower_q], levels[upper_q]
    # A feature with no training value has no domain to leave: NaN bounds flag nothing.
    return (np.nan if lo is None else float(lo)), (np.nan if hi is None else float(hi))
