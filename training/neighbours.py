"""The combination verdict's training half (``profile["combination"]``; serving's half:
inference/neighbours.py): how far a reading may be from its nearest training row before its
combination of values is one training never had.

Distances are measured in rank space: each feature's value becomes its share of the
reference rows' values below it, so every feature counts alike whatever its unit or skew,
and the nearest training row is the one whose values rank closest on every feature at once.

**The radius** is what held-out weeks meet: the record is cut into folds of whole weeks
(training/profile.py), each fold's rows are measured against the other folds' reference rows
(ranked among themselves, as serving ranks), and the radius is the distance that 99 % of
those held-out rows stay within. Random rows held out would leave their half-hour neighbours,
near twins, in the reference; a live week is new as a held-out week is. On wqi, 0.7 % of the
rows of held-out weeks are farther from the other weeks' rows than any training row is from
its own nearest neighbour, while 11 % of random combinations of within-bounds values are:
the radius separates the two (tests/training/test_neighbours.py).

**The certificate grid** makes the verdict cheap: rank space is cut into ``cells`` per
feature (as many as keep the grid within ``GRID_CELLS``), and each cell is classed once, at
training: inside when its centre's nearest reference row plus the cell's half-diagonal is
within the radius (every point of the cell is), outside when the centre is farther than the
radius plus the half-diagonal, else to be measured. Serving looks a reading's cell up, and
measures the rare reading in a cell near the boundary. A second grid covers the readings
without their calendar features (no timestamp). Each is stored zlib-compressed (wqi's
248,832 cells: 20 KB).

With many features the cells are too coarse to certify anything (potability's nine features:
4 per feature, and 0.5 % of its training rows in a certified cell); every reading would be
measured against every reference row (about 1 ms each). When the full grid certifies fewer
than ``CERTIFIED`` of the training rows, the profile records ``"method": "none"`` and the
share, and serving gives no combination verdict: its nine features are close to independent
besides, and held-out readings far from every training row are rare (0.2 %).
"""

from __future__ import annotations

import zlib
from typing import Any

import numpy as np
from scipy.spatial import cKDTree

from inference.neighbours import GRID_CELLS, INSIDE, OUTSIDE, UNSURE, Neighbours, cells_for

HELD_OUT_INSIDE = 0.99  # held-out weeks' rows that stay within the radius
CERTIFIED = 0.9  # training rows the full grid must certify, else no combination verdict


def _distances(points: np.ndarray, queries: np.ndarray) -> np.ndarray:
    """Each query's distance to its nearest point, over the features both have (a missing
    value is no evidence); rows of points missing a queried feature are skipped."""
    out = np.full(len(queries), np.inf)
    present = ~np.isnan(queries)
    for pattern in np.unique(present, axis=0):
        rows = (present == pattern).all(axis=1)
        usable = points[:, pattern]
        usable = usable[~np.isnan(usable).any(axis=1)]
        if not pattern.any() or not len(usable):
            continue
        found, _ = cKDTree(usable).query(queries[rows][:, pattern])
        out[rows] = found * np.sqrt(len(pattern) / pattern.sum())  # as if in every dimension
    return out


def radius(values: np.ndarray, folds: np.ndarray) -> tuple[float, float]:
    """The radius 99 % of held-out folds' rows stay within, each fold measured against the
    other folds' rows ranked among themselves; and the held-out rows' share within it."""
    found = np.full(len(values), np.inf)
    for k in np.unique(folds):
        rest = Neighbours(values[folds != k], 1.0)
        found[folds == k] = _distances(rest.points, rest.ranks(values[folds == k]))
    finite = found[np.isfinite(found)]
    if not len(finite):
        return float("inf"), 1.0
    r = float(np.quantile(finite, HELD_OUT_INSIDE))
    return r, float(np.mean(found <= r))


def certificate(neighbours: Neighbours, features: tuple[int, ...]) -> np.ndarray:
    """Per cell of the rank grid over ``features``: INSIDE, OUTSIDE or UNSURE (module
    docstring), distances scaled as serving scales them for a reading with those alone."""
    k, d = len(features), neighbours.points.shape[1]
    cells = cells_for(k)
    centres = (np.stack(np.meshgrid(*[np.arange(cells)] * k, indexing="ij"), -1).reshape(-1, k)
               + 0.5) / cells  # fmt: skip
    points = neighbours.points[:, list(features)]
    nearest, _ = cKDTree(points[~np.isnan(points).any(axis=1)]).query(centres)
    scale = np.sqrt(d / k)
    half = np.sqrt(k) / (2 * cells)
    r = neighbours.radius
    classes = np.full(len(centres), UNSURE, dtype=np.uint8)
    classes[(nearest + half) * scale <= r] = INSIDE
    classes[(nearest - half) * scale > r] = OUTSIDE
    return classes


def certified(neighbours: Neighbours, classes: np.ndarray) -> float:
    """The share of the reference rows whose cell of the full grid is certified inside."""
    d = neighbours.points.shape[1]
    cells = cells_for(d)
    cell = np.zeros(len(neighbours.points), dtype=np.int64)
    for j in range(d):
        index = np.floor(np.nan_to_num(neighbours.points[:, j]) * cells).astype(np.int64)
        cell = cell * cells + np.minimum(index, cells - 1)
    complete = ~np.isnan(neighbours.points).any(axis=1)
    return float(np.mean(classes[cell[complete]] == INSIDE)) if complete.any() else 0.0


def combination(
    values: np.ndarray, folds: np.ndarray, optional: tuple[int, ...] = ()
) -> dict[str, Any]:
    """The profile's ``combination`` entry: the radius, its held-out share, the grids (all
    features, and all but ``optional``, the calendar features a reading without a timestamp
    lacks). ``values``: the reference rows (float32, schema order), as serving holds them."""
    r, inside = radius(values, folds)
    entry: dict[str, Any] = {"method": "nearest", "radius": r, "held_out_inside": inside,
                             "grids": []}  # fmt: skip
    if not np.isfinite(r):
        return entry
    neighbours = Neighbours(values, r)
    d = values.shape[1]
    full = certificate(neighbours, tuple(range(d)))
    share = certified(neighbours, full)
    if share < CERTIFIED:  # most readings would need an exact search: no verdict
        return entry | {"method": "none", "certified": share}
    entry["certified"] = share
    sets = [tuple(range(d))]
    if optional and len(optional) < d:
        sets.append(tuple(j for j in range(d) if j not in optional))
    for features in sets:
        classes = full if len(features) == d else certificate(neighbours, features)
        entry["grids"].append({"features": list(features),
                               "grid": zlib.compress(classes.tobytes(), 9)})  # fmt: skip
    return entry


__all__ = ["GRID_CELLS", "combination", "radius"]
