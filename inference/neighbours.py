"""The combination verdict: is a reading's combination of values one training had? Its
nearest training row, in rank space, must be within the profile's radius
(``profile["combination"]``; how the radius and the grid are found: training/neighbours.py).

A feature's rank is its share of the reference rows' values below it (their sorted values,
held once), so every feature counts alike. Only the features that are present and inside
their bounds are judged (a value outside its bounds is the per-feature verdict's, a missing
one is no evidence); with fewer features the distance is scaled as if they were all there.

A reading with a value outside its bounds is the per-feature verdict's alone (its combination
is not judged). Most readings cost one lookup: the certificate grid of the features the
reading has classes each cell of rank space as inside, outside or unsure, and only readings
in the last two, or with a set of features no grid covers, are measured, against every
reference row, in small blocks (a block of 32 readings against 16,658 rows holds 2 MB). A
measured reading that is too far names the features it is farthest from its nearest training
row in (at least half the largest gap).
"""

from __future__ import annotations

import zlib
from bisect import bisect_left
from collections.abc import Mapping, Sequence
from typing import Any, NamedTuple

import numpy as np

GRID_CELLS = 1 << 18  # cells of the certificate grid, at most (wqi: 12 per feature, 248,832)
INSIDE, OUTSIDE, UNSURE = 0, 1, 2
BLOCK = 32  # readings measured at a time


class Grid(NamedTuple):
    """A certificate grid over some features: its cells per feature, each cell's class, and
    each feature's cell boundaries (numpy, and as lists for one reading)."""

    features: tuple[int, ...]
    cells: int
    classes: np.ndarray
    cuts: list[np.ndarray]
    cut_lists: list[list[float]]
    class_bytes: bytes  # the classes again: indexing bytes gives an int, no numpy scalar


def cells_for(features: int) -> int:
    """Cells per feature of the certificate grid for ``features`` features."""
    return max(1, int(GRID_CELLS ** (1.0 / max(features, 1)) + 1e-9))


class Neighbours:
    """The reference rows in rank space, the radius, and the certificate grids (one per set
    of features a reading may have: all of them, and all but the calendar features)."""

    def __init__(
        self, values: np.ndarray, radius: float, grids: Sequence[Mapping[str, Any]] = ()
    ) -> None:
        values = np.asarray(values, dtype=np.float32)
        d = values.shape[1]
        self.radius = float(radius)
        self.sorted = [np.sort(c[~np.isnan(c)]) for c in values.T]
        self._sizes = [max(len(c), 1) for c in self.sorted]
        self.points = self.ranks(values)
        self.grids: dict[int, Grid] = {}
        for entry in grids:
            features = tuple(int(j) for j in entry["features"])
            cells = cells_for(len(features))
            raw = zlib.decompress(entry["grid"])
            grid = np.frombuffer(raw, dtype=np.uint8)
            if len(grid) != cells ** len(features) or not all(0 <= j < d for j in features):
                raise ValueError(f"a combination grid over {features} holds {len(grid)} cells, "
                                 f"not {cells}**{len(features)}")  # fmt: skip
            cuts = [self.cuts(j, cells) for j in features]
            self.grids[sum(1 << j for j in features)] = Grid(
                features, cells, grid, cuts, [c.tolist() for c in cuts], raw
            )

    def cuts(self, j: int, cells: int) -> np.ndarray:
        """Feature j's cell boundaries: a value's cell is min(rank * cells // n, cells - 1)
        (rank: the reference values below it), which is the count of these it exceeds."""
        column, n = self.sorted[j], self._sizes[j]
        if not len(column):
            return np.full(cells - 1, np.inf, dtype=np.float32)
        first = -(-np.arange(1, cells) * n // cells)  # the least rank of each cell k >= 1
        return column[np.maximum(first - 1, 0)]

    @classmethod
    def of_profile(cls, profile: Mapping[str, Any], names: Sequence[str]) -> Neighbours | None:
        """None when the profile has no combination verdict (older profiles; or a model whose
        grid cannot certify its readings: training/neighbours.py).

        Raises:
            ValueError, KeyError, TypeError, zlib.error: the entry or the reference rows do
                not parse.
        """
        entry = profile.get("combination")
        if not entry or entry.get("method") != "nearest" or not np.isfinite(entry["radius"]):
            return None
        ref = profile["reference"]
        if list(ref["names"]) != list(names):
            raise ValueError("the reference rows' features are not the schema's")
        values = np.frombuffer(ref["values"], dtype="<f4").reshape(ref["rows"], len(names))
        return cls(values, entry["radius"], entry.get("grids") or ())

    def ranks(self, X: np.ndarray) -> np.ndarray:
        """Each value's share of the reference values below it (NaN stays NaN)."""
        out = np.empty(X.shape, dtype=np.float32)
        for j, (column, size) in enumerate(zip(self.sorted, self._sizes, strict=True)):
            x = X[:, j]
            out[:, j] = np.searchsorted(column, x, side="left") / size
            out[np.isnan(x), j] = np.nan
        return out

    def unusual(self, X: np.ndarray, judged: np.ndarray) -> np.ndarray:
        """Per reading (rows of the float32 matrix ``X``), the bits of the features it is far
        from training in; 0 for a usual combination. ``judged``: per reading, which of its
        values to judge (none: not judged)."""
        masks = judged.astype(np.int64) @ (1 << np.arange(X.shape[1]))
        todo = masks != 0
        for mask in np.flatnonzero(np.bincount(masks[todo])).tolist():
            found = self.grids.get(mask)
            if found is None:
                continue
            rows = np.flatnonzero(masks == mask)
            every = len(rows) == len(X)
            cell = np.zeros(len(rows), dtype=np.int64)
            for j, cuts in zip(found.features, found.cuts, strict=True):
                column = X[:, j] if every else X[rows, j]
                cell = cell * found.cells + np.searchsorted(cuts, column, side="left")
            todo[rows[found.classes[cell] == INSIDE]] = False
        bits = np.zeros(len(X), dtype=np.int64)
        if todo.any():
            U = self.ranks(X[todo])
            U[~judged[todo]] = np.nan
            bits[todo] = self._measure(U)
        return bits

    def unusual_row(self, row: Sequence[float], judged: int) -> int:
        """``unusual`` for one reading, in plain Python until it must be measured. ``judged``:
        the bits of the features to judge."""
        if not judged:
            return 0
        found = self.grids.get(judged)
        if found is not None:
            cell, cells = 0, found.cells
            for j, cuts in zip(found.features, found.cut_lists, strict=True):
                cell = cell * cells + bisect_left(cuts, row[j])
            if found.class_bytes[cell] == INSIDE:
                return 0
        X = np.array([row], dtype=np.float32)
        flags = np.array([[judged >> j & 1 for j in range(len(row))]], dtype=bool)
        return int(self.unusual(X, flags).item())

    def _measure(self, U: np.ndarray) -> np.ndarray:
        """Bits of each reading's farthest features when its nearest reference row is beyond
        the radius (features it lacks are left out, the distance scaled up for them)."""
        out = np.zeros(len(U), dtype=np.int64)
        present = ~np.isnan(U)
        d = U.shape[1]
        for pattern in np.unique(present, axis=0):
            rows = np.flatnonzero((present == pattern).all(axis=1))
            points = self.points[:, pattern]
            usable = ~np.isnan(points).any(axis=1)
            points = np.ascontiguousarray(points[usable])
            if not pattern.any() or not len(points):
                continue
            norms = np.sum(points**2, axis=1)
            scale = d / pattern.sum()
            for start in range(0, len(rows), BLOCK):
                block = rows[start : start + BLOCK]
                u = U[np.ix_(block, np.flatnonzero(pattern))]
                squared = norms[None, :] - 2.0 * (u @ points.T) + np.sum(u**2, axis=1)[:, None]
                nearest = np.argmin(squared, axis=1)
                far = np.maximum(squared[np.arange(len(block)), nearest], 0.0) * scale
                for i in np.flatnonzero(far > self.radius**2):
                    gap = np.abs(u[i] - points[nearest[i]])
                    named = np.flatnonzero(pattern)[gap >= 0.5 * gap.max()]
                    out[block[i]] = int(np.sum(1 << named))
        return out
