"""The model's applicability domain: is a reading like the rows the model was trained on?

Training records a profile of its training rows (``training/profile.py``, the bundle's
``profile``). Two verdicts come from it, on the values the model reads (float32):

- **per feature** (the box): a value is outside when it is below the training rows'
  ``lower_q`` (0.5 %) quantile or above their ``upper_q`` (99.5 %) quantile;
- **the combination**: each feature's values between those bounds are cut into ``grid``
  cells at its training quantiles (equal shares, so a cell is a rank interval), and every
  three features make a grid of cells. A cell where the training rows were rare (the
  profile's ``combination.rare`` bits, thresholded by cross-fitting so that 99 % of held-out
  training rows stay clear of them) is an unusual combination of those features, even when
  each value alone is common: fresh-water pH with estuarine salinity. The verdict names the
  features every rare triple shares (a rare pair is rare in each triple holding it), else all
  of theirs.

A missing value (a nullable feature's null, a calendar feature without a timestamp) is never
outside; a feature that training never saw missing is named in ``missing`` when it is. A
reading is ``inside`` when no feature is outside and no combination is unusual.

One ``searchsorted`` per feature gives every verdict at once: its edges are the lower bound,
the grid's cuts, the upper bound and NaN, so the bin says below, which cell, above or
missing. With few features the whole grid fits a table (wqi: 9**5 cells) whose entry is the
reading's pattern of verdict bits; otherwise each triple's cell is looked up.

Verdicts are shared, read-only objects: every answer with the same pattern carries the same
one, so a batch builds a verdict per distinct pattern, never per row (10,000 fresh dicts cost
~3 ms, more than validating them).
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Mapping, Sequence
from itertools import combinations
from typing import Any, NamedTuple, NoReturn

import numpy as np

from inference.bundle import BundleError

PROFILE = "profile"
COMBINATION = "combination"  # the profile's key of the combination grid
GROUP = 3  # features per combination grid
TABLE_BITS = 12  # a lookup slot per pattern up to here (4,096); beyond, a dict lookup per row
FULL_CELLS = 1 << 16  # the whole grid as one table up to here (wqi: 59,049)
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
            grid = profile.get(COMBINATION) or {}
            cells = int(grid.get("grid", 1))
            cuts = [_cuts(grid, name, cells) for name in names]
        except (KeyError, TypeError, ValueError) as exc:
            raise BundleError(f"the bundle's profile is incomplete: {exc!r}") from None
        d = len(names)
        self.names = tuple(names)
        self.cells = cells
        self.levels = cells + 3  # bins: below, the cells, above, missing
        self.above, self.missing = cells + 1, cells + 2
        self.lower = np.array([b[0] for b in bounds], dtype=np.float64)
        self.upper = np.array([b[1] for b in bounds], dtype=np.float64)
        lo32, hi32 = _float32_bounds(self.lower, self.upper)
        self.edges = [_edges(lo, hi, c) for lo, hi, c in zip(lo32, hi32, cuts, strict=True)]
        # The same edges for bisect, without the NaN (a missing value is tested first).
        self._edge_lists = [e[:-1].tolist() for e in self.edges]
        self.groups, self._rare = _groups(grid, names, cells)
        # Pattern bits: outside on feature j (bit j), j in an unusual combination (d + j),
        # the i-th tracked feature missing (2d + i).
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
        # The whole grid as one table when it is small: a reading's pattern is one lookup.
        self._cell_patterns: np.ndarray | None = None
        self._cell_list: list[int] = []
        if self.levels**d <= FULL_CELLS:
            every = np.arange(self.levels**d, dtype=np.int64)
            digits = [every // self.levels ** (d - 1 - j) % self.levels for j in range(d)]
            self._cell_patterns = self._patterns(digits)
            self._cell_list = self._cell_patterns.tolist()

    @classmethod
    def of_bundle(cls, bundle: Mapping[str, Any]) -> Domain | None:
        """The bundle's domain, or None for a bundle trained before profiles (no verdict)."""
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

    # ---- bins ----------------------------------------------------------------------------
    def bins(self, features: np.ndarray) -> list[np.ndarray]:
        """Per feature, each row's bin: 0 below the bound, 1..cells the grid's cells,
        ``above``, ``missing`` (NaN sorts after every edge)."""
        return [np.searchsorted(e, features[:, j], side="right")
                for j, e in enumerate(self.edges)]  # fmt: skip

    def _bins_row(self, row: Sequence[float]) -> list[int]:
        missing = self.missing
        return [bisect_right(e, v) if v == v else missing
                for e, v in zip(self._edge_lists, row, strict=True)]  # fmt: skip

    def _patterns(self, bins: list[np.ndarray]) -> np.ndarray:
        """Each row's pattern of verdict bits from its bins (numpy)."""
        d = len(self.names)
        pattern = np.zeros(len(bins[0]) if bins else 0, dtype=np.int64)
        for j, b in enumerate(bins):
            pattern |= ((b == 0) | (b == self.above)).astype(np.int64) << j
        for i, j in enumerate(self._tracked_at):
            pattern |= (bins[j] == self.missing).astype(np.int64) << (2 * d + i)
        if not self.groups:
            return pattern
        levels = self.levels
        total = np.zeros_like(pattern)  # rare triples per row
        per_feature = [np.zeros_like(pattern) for _ in range(d)]  # ... that hold feature j
        for group, rare in zip(self.groups, self._rare, strict=True):
            x, y, z = (bins[j] for j in group)
            hit = rare[(x * levels + y) * levels + z].astype(np.int64)
            total += hit
            for j in group:
                per_feature[j] += hit
        # The features every rare triple shares (a rare pair is in each triple that holds it),
        # else all of theirs.
        shared = [(n == total) & (total > 0) for n in per_feature]
        none_shared = ~np.logical_or.reduce(shared)
        for j, n in enumerate(per_feature):
            pattern |= (shared[j] | (none_shared & (n > 0))).astype(np.int64) << (d + j)
        return pattern

    def _pattern(self, bins: list[int]) -> int:
        """``_patterns`` for one row, in plain Python (the request hot path)."""
        if self._cell_patterns is not None:
            cell = 0
            for b in bins:
                cell = cell * self.levels + b
            return self._cell_list[cell]
        d, above, levels = len(self.names), self.above, self.levels
        pattern = 0
        for j, b in enumerate(bins):
            if b == 0 or b == above:
                pattern |= 1 << j
        for i, j in enumerate(self._tracked_at):
            if bins[j] == self.missing:
                pattern |= 1 << (2 * d + i)
        hits = [g for g, rare in zip(self.groups, self._rare, strict=True)
                if rare[(bins[g[0]] * levels + bins[g[1]]) * levels + bins[g[2]]]]  # fmt: skip
        if hits:
            shared = set(hits[0]).intersection(*hits[1:]) or set().union(*hits)
            for j in shared:
                pattern |= 1 << (d + j)
        return pattern

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

    def check(self, features: np.ndarray) -> Checked:
        """Verdicts for a float32 feature matrix (NaN: a missing value)."""
        if len(features) <= SMALL:  # the request hot path: plain floats beat numpy's call costs
            return self._check_rows(features.tolist())
        bins = self.bins(features)
        if self._cell_patterns is not None:
            cell = bins[0]
            for b in bins[1:]:
                cell = cell * self.levels + b
            patterns = self._cell_patterns[cell]
        else:
            patterns = self._patterns(bins)
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
        verdicts, flags = [], []
        counts = [0] * len(self.bits)
        unusual = 0
        for row in rows:
            pattern = self._pattern(self._bins_row(row))
            verdict = self.verdict(pattern)
            verdicts.append(verdict)
            flags.append(not verdict["inside"])
            if pattern:
                unusual += bool(pattern & self._unusual)
                for k in range(len(self.bits)):
                    counts[k] += pattern >> k & 1
        return Checked(verdicts, flags, counts, unusual)


def _float32_bounds(lower: np.ndarray, upper: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The smallest float32 >= each lower bound and the largest float32 <= each upper bound
    (NaN stays NaN: no bound, nothing outside)."""
    lo, hi = lower.astype(np.float32), upper.astype(np.float32)
    lo = np.where(lo < lower, np.nextafter(lo, np.float32(np.inf)), lo)
    hi = np.where(hi > upper, np.nextafter(hi, np.float32(-np.inf)), hi)
    return lo.astype(np.float32), hi.astype(np.float32)


def _edges(lo: np.float32, hi: np.float32, cuts: list[float]) -> np.ndarray:
    """A feature's sorted bin edges: for a float32 x, x < lower bound is bin 0, x >= the
    float32 after the upper bound is ``above``, NaN is ``missing``. A feature training never
    observed has no bounds: every value falls in the first cell."""
    if np.isnan(lo) or np.isnan(hi):
        inner = [-np.inf] + [np.inf] * len(cuts) + [np.inf]
        return np.array([*inner, np.nan], dtype=np.float32)
    top = np.nextafter(hi, np.float32(np.inf))
    middle = np.clip(np.asarray(cuts, dtype=np.float32), lo, top)
    return np.array([lo, *np.sort(middle), top, np.nan], dtype=np.float32)


def _cuts(grid: Mapping[str, Any], name: str, cells: int) -> list[float]:
    cuts = [float(c) for c in grid["cuts"][name]] if cells > 1 else []
    if len(cuts) != cells - 1:
        raise ValueError(f"{name} has {len(cuts)} grid cuts for {cells} cells")
    return cuts


def _groups(
    grid: Mapping[str, Any], names: Sequence[str], cells: int
) -> tuple[list[tuple[int, int, int]], list[np.ndarray]]:
    """The feature triples and, per triple, a lookup over its cells (levels**3 bins, True
    where training rows were rare)."""
    if not grid:
        return [], []
    groups = [tuple(int(i) for i in g) for g in grid["groups"]]
    if any(len(g) != GROUP or not all(0 <= i < len(names) for i in g) for g in groups):
        raise ValueError(f"combination groups must be {GROUP} feature positions")
    bits = np.unpackbits(np.frombuffer(grid["rare"], dtype=np.uint8))
    if len(bits) < len(groups) * cells**GROUP:
        raise ValueError("combination.rare holds fewer cells than its groups need")
    levels = cells + 3
    inner = np.arange(1, cells + 1)
    kept, tables = [], []
    for t, group in enumerate(groups):
        rare = bits[t * cells**GROUP : (t + 1) * cells**GROUP].reshape((cells,) * GROUP)
        if not rare.any():  # a triple training filled everywhere judges nothing: skipped
            continue
        table = np.zeros((levels,) * GROUP, dtype=bool)
        table[np.ix_(inner, inner, inner)] = rare.astype(bool)  # only cells between the bounds
        kept.append(group)
        tables.append(table.reshape(-1))
    return kept, tables  # type: ignore[return-value]


def triples(names: Sequence[Any]) -> list[tuple[int, int, int]]:
    """Every three of the features (by position): the combination grid's groups."""
    return list(combinations(range(len(names)), GROUP))  # type: ignore[arg-type]


def _bounds(quantiles: Mapping[str, Any], lower_q: float, upper_q: float) -> tuple[float, float]:
    """The quantiles at ``lower_q`` and ``upper_q``, whatever the key's spelling ("0.005")."""
    levels = {float(k): v for k, v in quantiles.items()}
    lo, hi = levels[lower_q], levels[upper_q]
    # A feature with no training value has no domain to leave: NaN bounds flag nothing.
    return (np.nan if lo is None else float(lo)), (np.nan if hi is None else float(hi))
