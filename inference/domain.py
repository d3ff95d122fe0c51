"""The model's applicability domain: is a reading like the rows the model was trained on?

Training records a profile of its training rows (``training/profile.py``, the bundle's
``profile``). Two verdicts come from it, on the values the model reads (float32):

- **per feature**: a value is outside when it is below the training rows' ``lower_q``
  (0.5 %) quantile or above their ``upper_q`` (99.5 %) quantile;
- **the combination** (inference/neighbours.py): the reading's nearest training row, in rank
  space over the features inside their bounds, must be within the profile's radius, the
  distance 99 % of held-out weeks stay within. A reading whose every value is common but
  whose combination training never had (fresh-water pH with estuarine salinity) is
  ``unusual``, and the verdict names the features it is farthest from training in.

A missing value (a nullable feature's null, a calendar feature without a timestamp) is never
outside; a feature that training never saw missing is named in ``missing`` when it is. A
reading is ``inside`` when no feature is outside and its combination is not unusual.

One ``searchsorted`` per feature gives the first verdict and the missing values: its edges
are the lower bound, the float32 after the upper bound, and NaN, so the bin says below,
inside, above or missing.

Verdicts are shared, read-only objects: every answer with the same pattern carries the same
one, so a batch builds a verdict per distinct pattern, never per row (10,000 fresh dicts cost
~3 ms, more than validating them).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, NamedTuple, NoReturn

import numpy as np

from inference.bundle import BundleError
from inference.neighbours import Neighbours

PROFILE = "profile"
TABLE_BITS = 12  # a lookup slot per pattern up to here (4,096); beyond, a dict lookup per row
BELOW, WITHIN, ABOVE, MISSING = 0, 1, 2, 3  # a value's bin against its feature's bounds
SMALL = 4  # up to this many rows, plain floats beat numpy's call costs


class Verdict(dict[str, Any]):
    """``{"inside": bool, "outside": (...), "unusual": (...), "missing": (...)}``: features
    outside their bounds, features whose combination was rare in training, and features
    missing that training never saw missing. Read-only because shared."""

    __slots__ = ()

    def __init__(
        self,
        inside: bool,
        outside: tuple[str, ...],
        unusual: tuple[str, ...] = (),
        missing: tuple[str, ...] = (),
    ) -> None:
        super().__init__(inside=inside, outside=outside, unusual=unusual, missing=missing)

    def _read_only(self, *args: Any, **kwargs: Any) -> NoReturn:
        raise TypeError("a domain verdict is shared by many answers and is read-only")

    __setitem__ = __delitem__ = clear = pop = popitem = setdefault = update = _read_only  # type: ignore[assignment]
    __ior__ = _read_only  # type: ignore[assignment]

    def __reduce__(self) -> tuple[type[Verdict], tuple[Any, ...]]:  # copy and pickle as is
        return Verdict, (self["inside"], self["outside"], self["unusual"], self["missing"])


INSIDE = Verdict(True, ())
VERDICT_KEYS = tuple(INSIDE)  # the verdict's fields, in order (the MLflow signature's too)


class Checked(NamedTuple):
    """A block of rows checked against the domain."""

    verdicts: list[Verdict]
    outside_rows: np.ndarray | list[bool]  # per row: not inside (a bound or a combination)
    counts: list[int]  # per pattern bit (``Domain.bits``): rows with that bit
    unusual_rows: int = 0  # rows with an unusual combination


class Domain:
    """The rules compiled from a bundle's profile, in the schema's feature order.

    ``tracked``: the features a reading may lack (nullable, or derived from a timestamp) that
    training never saw missing; their absence is named in the verdict."""

    def __init__(
        self, profile: Mapping[str, Any], names: Sequence[str], tracked: Sequence[str] = ()
    ) -> None:
        try:
            lower_q, upper_q = float(profile["lower_q"]), float(profile["upper_q"])
            features = profile["features"]
            bounds = [_bounds(features[name]["quantiles"], lower_q, upper_q) for name in names]
            self.neighbours = Neighbours.of_profile(profile, names)
        except (KeyError, TypeError, ValueError) as exc:
            raise BundleError(f"the bundle's profile is incomplete: {exc!r}") from None
        d = len(names)
        self.names = tuple(names)
        self.lower = np.array([b[0] for b in bounds], dtype=np.float64)
        self.upper = np.array([b[1] for b in bounds], dtype=np.float64)
        # The same rule in float32, exactly: for a float32 x, x < lower <=> x < the smallest
        # float32 >= lower (and so for upper), and a float32 comparison skips a float64 copy.
        lo32, hi32 = _float32_bounds(self.lower, self.upper)
        self.edges = [_edges(lo, hi) for lo, hi in zip(lo32, hi32, strict=True)]
        self._bounds = list(zip(lo32.tolist(), hi32.tolist(), strict=True))
        self._bounded = ~np.isnan(self.lower)  # a feature training never observed is not judged
        # Pattern bits: outside on feature j (bit j), j named by an unusual combination
        # (d + j), the i-th tracked feature missing (2d + i).
        self.tracked = tuple(n for n in names if n in set(tracked))
        self._tracked_at = [self.names.index(n) for n in self.tracked]
        self.bits = (
            [("outside", n) for n in names]
            + [("unusual", n) for n in names]
            + [("missing", n) for n in self.tracked]
        )
        self._not_inside = (1 << (2 * d)) - 1  # the bits that make a reading not inside
        self._unusual = ((1 << d) - 1) << d
        self._verdicts: dict[int, Verdict] = {0: INSIDE}
        self._table: np.ndarray | None = None
        self._bit_matrix: np.ndarray | None = None
        if len(self.bits) <= TABLE_BITS:  # a slot per pattern: a batch's verdicts are one take
            self._table = np.full(1 << len(self.bits), None, dtype=object)
            self._table[0] = INSIDE
            patterns = np.arange(1 << len(self.bits), dtype=np.int64)
            self._bit_matrix = (patterns[:, None] >> np.arange(len(self.bits))) & 1

    @classmethod
    def of_bundle(cls, bundle: Mapping[str, Any]) -> Domain | None:
        """The bundle's domain, or None for a bundle trained before profiles (no verdict).

        Raises:
            BundleError: the profile is not a mapping or lacks what the rules need.
        """
        profile = bundle.get(PROFILE)
        if profile is None:
            return None
        if not isinstance(profile, Mapping):
            raise BundleError("the bundle's profile is not a mapping")
        fields = bundle["schema"]["fields"]
        try:
            never_missing = [
                f["name"] for f in fields
                if (f.get("nullable") or f.get("source") is not None)
                and not profile["features"][f["name"]].get("missing_rate")
            ]  # fmt: skip
        except (KeyError, TypeError) as exc:
            raise BundleError(f"the bundle's profile is incomplete: {exc!r}") from None
        return cls(profile, [f["name"] for f in fields], never_missing)

    # ---- verdicts ------------------------------------------------------------------------
    def verdict(self, pattern: int) -> Verdict:
        """The shared verdict of one pattern of bits."""
        found = self._verdicts.get(pattern)
        if found is None:
            named: dict[str, list[str]] = {"outside": [], "unusual": [], "missing": []}
            for k, (kind, name) in enumerate(self.bits):
                if pattern >> k & 1:
                    named[kind].append(name)
            inside = not pattern & self._not_inside
            verdict = Verdict(inside, *(tuple(named[k]) for k in ("outside", "unusual", "missing")))
            # At most one per pattern seen; 2**bits bounds it.
            found = self._verdicts.setdefault(pattern, verdict)
        return found

    def patterns(self, features: np.ndarray) -> np.ndarray:
        """Each row's pattern of verdict bits, for a float32 feature matrix (NaN: missing)."""
        d = len(self.names)
        bins = np.column_stack([np.searchsorted(e, features[:, j], side="right")
                                for j, e in enumerate(self.edges)])  # fmt: skip
        out = (((bins == BELOW) | (bins == ABOVE)) @ (1 << np.arange(d))).astype(np.int64)
        for i, j in enumerate(self._tracked_at):
            out |= (bins[:, j] == MISSING).astype(np.int64) << (2 * d + i)
        if self.neighbours is not None:  # judged: readings with no value outside its bounds
            within = (bins == WITHIN) & self._bounded
            judged = within & ((out & ((1 << d) - 1)) == 0)[:, None]
            out |= self.neighbours.unusual(features, judged) << d
        return out

    def check(self, features: np.ndarray) -> Checked:
        """Verdicts for a float32 feature matrix (NaN, a missing value, is never outside)."""
        if len(features) <= SMALL:
            return self._check_rows(features.tolist())  # the hot path: plain floats
        patterns = self.patterns(features)
        n = len(features)
        if not patterns.any():
            return Checked([INSIDE] * n, np.zeros(n, dtype=bool), [0] * len(self.bits))
        rows = (patterns & self._not_inside) != 0
        table, bit_matrix = self._table, self._bit_matrix
        if table is None or bit_matrix is None:
            seen, per_pattern = np.unique(patterns, return_counts=True)
            counts = [int(per_pattern[(seen >> k) & 1 == 1].sum()) for k in range(len(self.bits))]
            unusual = int(per_pattern[(seen & self._unusual) != 0].sum())
            return Checked(list(map(self.verdict, patterns.tolist())), rows, counts, unusual)
        per_pattern = np.bincount(patterns, minlength=len(table))
        seen = np.flatnonzero(per_pattern)
        for pattern in seen[table[seen] == None].tolist():  # noqa: E711 (elementwise)
            table[pattern] = self.verdict(pattern)
        unusual = int(per_pattern[seen[(seen & self._unusual) != 0]].sum())
        return Checked(table[patterns].tolist(), rows, (per_pattern @ bit_matrix).tolist(),
                       unusual)  # fmt: skip

    def _check_rows(self, rows: list[list[float]]) -> Checked:
        """``check`` for a few rows, in plain Python (the request hot path)."""
        verdicts, flags = [], []
        counts = [0] * len(self.bits)
        d = len(self.names)
        bounds, tracked, neighbours = self._bounds, self._tracked_at, self.neighbours
        unusual = 0
        for row in rows:
            pattern = judged = 0  # bits: features outside; features inside (NaN is neither)
            for j, (value, (lo, hi)) in enumerate(zip(row, bounds, strict=True)):
                if lo <= value <= hi:
                    judged |= 1 << j
                elif value < lo or value > hi:  # NaN (a value or a bound) fails both
                    pattern |= 1 << j
            for i, j in enumerate(tracked):
                if row[j] != row[j]:
                    pattern |= 1 << (2 * d + i)
            if neighbours is not None and not pattern & ((1 << d) - 1):
                far = neighbours.unusual_row(row, judged)
                pattern |= far << d
                unusual += far != 0
            verdict = self.verdict(pattern)
            verdicts.append(verdict)
            flags.append(not verdict["inside"])
            while pattern:  # count each bit set (most readings set none or one)
                low = pattern & -pattern
                counts[low.bit_length() - 1] += 1
                pattern ^= low
        return Checked(verdicts, flags, counts, unusual)


def _float32_bounds(lower: np.ndarray, upper: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The smallest float32 >= each lower bound and the largest float32 <= each upper bound
    (NaN stays NaN: no bound, nothing outside)."""
    lo, hi = lower.astype(np.float32), upper.astype(np.float32)
    lo = np.where(lo < lower, np.nextafter(lo, np.float32(np.inf)), lo)
    hi = np.where(hi > upper, np.nextafter(hi, np.float32(-np.inf)), hi)
    return lo.astype(np.float32), hi.astype(np.float32)


def _edges(lo: np.float32, hi: np.float32) -> np.ndarray:
    """A feature's bin edges: for a float32 x, x < the lower bound is BELOW, x >= the float32
    after the upper bound ABOVE, NaN MISSING. A feature training never observed has no
    bounds: every value is WITHIN."""
    if np.isnan(lo) or np.isnan(hi):
        return np.array([-np.inf, np.inf, np.nan], dtype=np.float32)
    return np.array([lo, np.nextafter(hi, np.float32(np.inf)), np.nan], dtype=np.float32)


def _bounds(quantiles: Mapping[str, Any], lower_q: float, upper_q: float) -> tuple[float, float]:
    """The quantiles at ``lower_q`` and ``upper_q``, whatever the key's spelling ("0.005")."""
    levels = {float(k): v for k, v in quantiles.items()}
    lo, hi = levels[lower_q], levels[upper_q]
    # A feature with no training value has no domain to leave: NaN bounds flag nothing.
    return (np.nan if lo is None else float(lo)), (np.nan if hi is None else float(hi))
