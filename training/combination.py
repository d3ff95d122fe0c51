"""The combination grid of a training profile (``profile["combination"]``), which serving's
second domain verdict reads (inference/domain.py): which cells of every three features' grid
the training rows left rare.

Each feature's values between the domain's bounds are cut into ``CELLS`` equal shares at its
training quantiles, so a cell is a rank interval and every feature counts alike whatever its
unit or skew. For each triple of features, a cell's density is its share of the training rows
against the share it would hold if the three were independent (1 / CELLS**3). A reading's
score is its least dense triple cell; a cell is **rare** when its density is below the score
that 1 % of held-out training rows fall under. That threshold is found by cross-fitting
(each fold's rows scored on the other folds' counts, seeded), so it holds for rows the counts
never saw, as a live reading is; the rows' share that stays clear of rare cells is recorded
(``held_out_inside``) and checked by the tests to be at least 97 %.

Why triples and not a distance to the nearest training row: a k-nearest-neighbour distance
costs a pass over the reference for every reading (~4 ms per 10,000 readings against 512
rows, above the handler's whole budget), where a cell is one lookup. On wqi's training rows,
98.7 % of random within-bounds combinations whose nearest training row is farther than any
training row's own nearest neighbour fall in a rare cell (tests/training/test_combination.py).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from inference.domain import COMBINATION, GROUP, Domain, triples

CELLS = 6  # cells per feature between the bounds: 216 per triple
RARE_SHARE = 0.01  # held-out training rows allowed in a rare cell
FOLDS = 5


def cuts(values: np.ndarray) -> list[float]:
    """The interior cut points of one feature's cells: its quantiles at 1/CELLS, 2/CELLS..."""
    present = values[~np.isnan(values)]
    if not len(present):
        return [0.0] * (CELLS - 1)
    return np.quantile(present, np.arange(1, CELLS) / CELLS).tolist()


def _cell_index(bins: list[np.ndarray], group: tuple[int, ...]) -> tuple[np.ndarray, np.ndarray]:
    """Each row's cell of ``group`` (0..CELLS**3-1), and whether it is between every bound."""
    inner = np.ones(len(bins[0]), dtype=bool)
    index = np.zeros(len(bins[0]), dtype=np.int64)
    for j in group:
        b = bins[j]
        inner &= (b >= 1) & (b <= CELLS)
        index = index * CELLS + np.clip(b - 1, 0, CELLS - 1)
    return index, inner


def _density(index: np.ndarray, inner: np.ndarray, rows: int) -> np.ndarray:
    """Each cell's share of ``rows`` against the independent share 1 / CELLS**GROUP."""
    counts = np.bincount(index[inner], minlength=CELLS**GROUP)
    return counts * (CELLS**GROUP / max(rows, 1))


def grid(profile: dict[str, Any], X: np.ndarray, names: list[str], seed: int) -> dict[str, Any]:
    """The profile's ``combination`` entry for training rows ``X`` (float32, schema order);
    ``profile`` holds the features' bounds already."""
    entry: dict[str, Any] = {
        "grid": CELLS,
        "cuts": {name: cuts(X[:, j].astype(np.float64)) for j, name in enumerate(names)},
        "groups": [],
        "rare": b"",
        "threshold": 0.0,
        "held_out_inside": 1.0,
    }
    observed = [j for j, n in enumerate(names) if profile["features"][n].get("mean") is not None]
    groups = [tuple(observed[i] for i in g) for g in triples(observed)]
    if not groups:  # fewer than three observed features: no combination to judge
        return entry
    bins = Domain(profile | {COMBINATION: entry}, names).bins(X)
    cells = [_cell_index(bins, g) for g in groups]
    folds = np.random.default_rng(seed).permutation(len(X)) % FOLDS
    score = np.full(len(X), np.inf)  # each row's least dense cell, counted without its fold
    for fold in range(FOLDS):
        held = folds == fold
        for index, inner in cells:
            density = _density(index, inner & ~held, int((~held).sum()))
            score[held] = np.where(inner[held], np.minimum(score[held], density[index[held]]),
                                   score[held])  # fmt: skip
    threshold = float(np.quantile(score, RARE_SHARE))
    rare = np.concatenate([_density(index, inner, len(X)) < threshold for index, inner in cells])
    return entry | {
        "groups": [list(g) for g in groups],
        "rare": np.packbits(rare).tobytes(),
        "threshold": threshold,
        "held_out_inside": float(np.mean(score >= threshold)),
    }
