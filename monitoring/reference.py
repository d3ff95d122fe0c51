"""The training rows a drift report compares a log with, and the windows of training's own it
draws to learn what chance alone gives (the null of every test in monitoring/compare.py).

The bundle's profile keeps up to 20,000 training rows (``profile["reference"]``,
training/profile.py's REFERENCE_ROWS): every k-th in time order with its reading time when
the data has timestamps, else a seeded sample. A live log is not a random sample of training-like
readings: its records come in windows of time, from devices whose readings follow each other
(a warm week, a day's cycle). So each draw of the null is **a window of training's own with
the log's shape**, the comparable window: for every device in the log, its records are placed
at the same day of the year in the training period, moved by a random whole number of days
within ``SEASON_DAYS`` either way, and each takes the training row nearest in time on the day
it lands on, at its own time of day (``Timeline``). Devices draw their moves independently
(each is its own series). A log without reading times, or a profile without them, draws
training rows independently.

The null so has the log's size, its devices and its span: a day of one buoy is compared with
days of training's buoy, a scatter of readings across months with a scatter across months.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import numpy as np

from monitoring.errors import ModelError

DAY = 86_400
SEASON_DAYS = 15  # a day lands this many days either way from its own day of the year
SLOTS = 96  # a day in quarter hours: a record takes the row nearest its quarter hour
DRAWS = 1999  # windows per report: p-values down to 1 / 2,000
CHUNK = 200  # windows drawn at a time (memory: CHUNK x records indices)
MAX_RECORDS = 2_000  # beyond, the tests run on a seeded subsample of the records


@dataclass(frozen=True)
class Reference:
    """Training rows (float32 values as float64, schema order) and their reading times."""

    names: list[str]
    values: np.ndarray
    seconds: np.ndarray | None  # sorted, seconds since the epoch; None: no times
    outside: np.ndarray | None = None  # per row: outside a domain built without its week

    @classmethod
    def of_profile(cls, profile: Mapping[str, Any]) -> Reference:
        """Raises:
        ModelError: the profile predates the reference rows, or they do not parse."""
        entry = profile.get("reference")
        if not isinstance(entry, Mapping):
            raise ModelError("the bundle's profile has no reference rows (trained before "
                             "windowed drift tests): retrain it")  # fmt: skip
        try:
            names = list(entry["names"])
            values = np.frombuffer(entry["values"], dtype="<f4").reshape(entry["rows"], len(names))
            raw = entry.get("seconds")
            seconds = None if raw is None else np.frombuffer(raw, dtype="<i8")
            bits = entry.get("outside")
            outside = None if bits is None else np.unpackbits(
                np.frombuffer(bits, dtype=np.uint8), count=entry["rows"]).astype(bool)  # fmt: skip
        except (KeyError, TypeError, ValueError) as exc:
            raise ModelError(f"the bundle's reference rows do not parse: {exc}") from None
        return cls(names, values.astype(np.float64), seconds, outside)

    def __len__(self) -> int:
        return len(self.values)

    def column(self, name: str) -> np.ndarray:
        return self.values[:, self.names.index(name)]


@dataclass(frozen=True)
class Shape:
    """What a null window copies from the log: per record, its device (an integer) and, when
    every record has a reading time, its day (whole days since its device's first) and its
    time of day in seconds; ``first``: each device's first day (seconds since the epoch)."""

    devices: np.ndarray
    days: np.ndarray | None = None
    clock: np.ndarray | None = None
    first: dict[int, float] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.devices)


def shape(times: list[float | None], devices: list[Any]) -> Shape:
    """The log's shape; a missing reading time makes it a shape without times."""
    codes = {d: i for i, d in enumerate(dict.fromkeys(devices))}
    device = np.array([codes[d] for d in devices], dtype=np.int64)
    if not times or any(t is None for t in times):
        return Shape(device)
    seconds = np.array(times, dtype=np.float64)
    day = np.floor(seconds / DAY)
    days = np.empty(len(seconds), dtype=np.int64)
    first = {}
    for code in np.unique(device):
        where = np.flatnonzero(device == code)
        first[int(code)] = float(day[where].min() * DAY)
        days[where] = day[where] - day[where].min()
    return Shape(device, days, seconds - day * DAY, first)


def windows(ref: Reference, log: Shape, draws: int, seed: int) -> Iterator[np.ndarray]:
    """``draws`` windows of training rows with the log's shape, ``CHUNK`` at a time: arrays of
    reference row indices, one row per window, one column per record."""
    rng = np.random.default_rng(seed)
    timeline = None if ref.seconds is None or len(ref) < 2 else Timeline(ref.seconds)
    for start in range(0, draws, CHUNK):
        m = min(CHUNK, draws - start)
        if timeline is None or log.days is None:
            yield rng.integers(0, len(ref), size=(m, len(log)))
            continue
        out = np.empty((m, len(log)), dtype=np.int64)
        for device in np.unique(log.devices):
            where = np.flatnonzero(log.devices == device)
            days, clock = log.days[where], log.clock[where]  # type: ignore[index]
            out[:, where] = timeline.shifted(days, clock, log.first[int(device)], m, rng)
        yield out


class Timeline:
    """The reference's calendar, and which of its days have training rows.

    A window places a device's records on the training period at the same day of the year
    (the same season), moved by a random whole number of days within ``SEASON_DAYS`` either
    way (the same for all its records, so a day stays a day and a week a week), and takes for
    each the training row nearest in time on the day it lands on, at its time of day. With
    more than a year of training, the year is drawn too. A day without training rows inside
    the training period (the buoy out of the water) takes the nearest day that has some; a day
    beyond it (a season training never saw) a random one, the same for all the records of
    that day. ``uncovered`` tells the share of a log's records whose season training did not
    see."""

    def __init__(self, seconds: np.ndarray) -> None:
        days = np.floor(seconds / DAY).astype(np.int64)
        dates, rank = np.unique(days, return_inverse=True)  # the days with data
        self.first = int(dates[0])
        self.calendar = int(dates[-1] - dates[0] + 1)
        # Per calendar day, the rank of the nearest day with data (the earlier one on a tie):
        # inside the training period a gap takes its nearest day, so the season holds.
        ranks = np.arange(len(dates))
        calendar = np.arange(self.calendar) + dates[0]
        right = np.clip(np.searchsorted(dates, calendar), 0, len(dates) - 1)
        left = np.maximum(right - 1, 0)
        self.rank = np.where(calendar - dates[left] <= dates[right] - calendar, ranks[left],
                             ranks[right])  # fmt: skip
        self.data_days = len(dates)
        # The row nearest in time to each slot of each data day (the rows' days end to end):
        # a window's record takes its slot's row, one lookup instead of a search.
        active = rank * DAY + (seconds - days * DAY)  # sorted: the rows are in time order
        slots = (np.arange(len(dates) * SLOTS) + 0.5) * (DAY / SLOTS)
        right = np.clip(np.searchsorted(active, slots), 1, len(active) - 1)
        left = right - 1
        nearest = np.where(slots - active[left] <= active[right] - slots, left, right)
        self.nearest = nearest.reshape(len(dates), SLOTS)

    def aligned(self, first: float) -> np.ndarray:
        """The calendar days (from the reference's first) with the same month and day as the
        day ``first`` (seconds since the epoch), one per year the training period spans; the
        first such day after the reference's start when none falls inside it."""
        day = datetime.fromtimestamp(first, UTC)
        start = datetime.fromtimestamp(self.first * DAY, UTC)
        found = []
        for year in range(start.year, start.year + self.calendar // 365 + 2):
            try:
                same = datetime(year, day.month, day.day, tzinfo=UTC)
            except ValueError:  # 29 February in a common year
                same = datetime(year, day.month, 28, tzinfo=UTC)
            found.append(int(same.timestamp() // DAY) - self.first)
        inside = [d for d in found if 0 <= d < self.calendar]
        return np.array(inside or [next(d for d in found if d >= 0)], dtype=np.int64)

    def uncovered(self, days: np.ndarray, first: float) -> float:
        """The share of one device's records whose day of the year training never reached."""
        landed = self.aligned(first)[0] + days
        return float(np.mean((landed < 0) | (landed >= self.calendar)))

    def shifted(
        self, days: np.ndarray, clock: np.ndarray, first: float, m: int, rng: np.random.Generator
    ) -> np.ndarray:
        """One device's records (their ``Shape`` days and times of day), m times, as the
        nearest reference rows: each of its days lands on its own comparable training day."""
        unique, which = np.unique(days, return_inverse=True)
        years = self.aligned(first)
        start = rng.choice(years, size=(m, len(unique))) + rng.integers(
            -SEASON_DAYS, SEASON_DAYS + 1, size=(m, len(unique))
        )
        day = (start + unique[None, :])[:, which]
        inside = (day >= 0) & (day < self.calendar)
        landed = np.where(inside, self.rank[np.clip(day, 0, self.calendar - 1)], -1)
        if not inside.all():  # beyond the training period: a random data day per live day
            random = rng.integers(0, self.data_days, size=(m, len(unique)))
            landed = np.where(inside, landed, random[:, which])
        slot = np.minimum((clock * (SLOTS / DAY)).astype(np.int64), SLOTS - 1)
        return self.nearest[landed, slot[None, :]]


def p_value(observed: float, null: np.ndarray) -> float:
    """The share of null windows at least as extreme, counting the observation itself; beyond
    every window, the tail of a normal fitted to the windows' log statistic (a window of one
    day has about 31 comparable training days: the share alone could never go below 1/32,
    and a day of fresh water is far beyond all of them)."""
    if np.isnan(observed):
        return float("nan")
    null = null[~np.isnan(null)]
    if not len(null):
        return float("nan")
    beyond = np.count_nonzero(null >= observed - 1e-12)
    if beyond:
        return float((1 + beyond) / (len(null) + 1))
    floor = max(float(np.min(null[null > 0])) if (null > 0).any() else 1e-6, 1e-6)
    logs = np.log(np.maximum(null, floor))
    spread = max(float(np.std(logs)), 1e-6)
    z = (np.log(max(observed, floor)) - float(np.mean(logs))) / spread
    return min(0.5 * math.erfc(z / math.sqrt(2.0)), 1.0 / (len(null) + 1))
