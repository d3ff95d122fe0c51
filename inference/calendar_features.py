"""Calendar features of a reading's timestamp: the one implementation training and serving share.

A model may use a few calendar features of the record's ``timestamp`` (ISO-8601 with a UTC
offset, e.g. ``2024-03-01T06:30:00+10:00``). Serving derives them here from the request;
training derives its columns here too, from the dataset's timestamps written as the same
ISO-8601 text, so the two cannot drift, and the bundle's golden records replay it at each load.

Time zone: the features describe the wall clock of the model's zone, the fixed UTC offset the
spec declares for its data (``utc_offset``, kept in the bundle's schema). A timestamp written
in another offset is the same instant on that clock: ``2024-02-29T20:30:00Z`` and
``2024-03-01T06:30:00+10:00`` both have ``hour_of_day`` 6.5. A timestamp without an offset is
refused, since which clock it was read from cannot be known. Fixed offsets only, no daylight
saving rules: the image has no time-zone database, and a daily cycle follows the sun.

How: the time as written (its date and its seconds since midnight) is shifted by the
difference between the model's offset and the written one, and split into (days since
1970-01-01, seconds of the day) on the model's clock. Each feature is one function of those two
numbers, written once with operators and numpy functions that take a float or an array alike:
a single reading calls it on floats, a batch (or training's column) on arrays, through the same
IEEE operations in the same order, so a reading gets the same features alone, in a batch and in
training (a test compares them on a year of minutes).
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Sequence
from datetime import datetime, timedelta, timezone
from operator import attrgetter
from typing import Any, NamedTuple

import numpy as np

FIELD = "timestamp"  # the record's key, beside deviceId and readings
SOURCE = "timestamp"  # a schema field with "source": "timestamp" is derived, not read
MAX_LENGTH = 64  # ISO-8601 with microseconds and an offset is 32 characters
EXAMPLE = "2024-03-01T06:30:00+10:00"
_OFFSET = re.compile(r"(?:Z|([+-])([01]\d|2[0-3]):([0-5]\d))")
_DAY = 86400.0
_TURN_PER_SECOND = 2.0 * math.pi / _DAY
_THURSDAY = 3.0  # 1970-01-01, day 0, was a Thursday (Monday is 0)
_EPOCH = 719163  # datetime.toordinal() of 1970-01-01
_TZINFO = attrgetter("tzinfo")
_PARTS = tuple(attrgetter(p) for p in ("hour", "minute", "second", "microsecond"))


def _date(days: Any) -> np.ndarray:
    return np.asarray(days).astype(np.int64).astype("datetime64[D]")


def _day_of_year(seconds: Any, days: Any) -> Any:
    date = _date(days)
    return (date - date.astype("datetime64[Y]").astype("datetime64[D]")).astype(np.int64) + 1.0


def _month(seconds: Any, days: Any) -> Any:
    return _date(days).astype("datetime64[M]").astype(np.int64) % 12 + 1.0


class Feature(NamedTuple):
    derive: Callable[[Any, Any], Any]  # (seconds of the day, days since 1970-01-01) -> value
    minimum: float
    maximum: float
    meaning: str


FEATURES: dict[str, Feature] = {
    "hour_of_day": Feature(lambda s, d: s / 3600.0, 0.0, 24.0,
                           "local hour, minutes and seconds as its fraction: 06:30 is 6.5"),
    "hour_sin": Feature(lambda s, d: np.sin(s * _TURN_PER_SECOND), -1.0, 1.0,
                        "sine of the time of day on a 24 h circle"),
    "hour_cos": Feature(lambda s, d: np.cos(s * _TURN_PER_SECOND), -1.0, 1.0,
                        "cosine of the time of day on a 24 h circle"),
    "day_of_week": Feature(lambda s, d: (d + _THURSDAY) % 7.0, 0.0, 6.0,
                           "Monday 0 ... Sunday 6"),
    "day_of_year": Feature(_day_of_year, 1.0, 366.0, "1 January is 1, 31 December 365 or 366"),
    "month": Feature(_month, 1.0, 12.0, "January 1 ... December 12"),
}  # fmt: skip


class TimestampError(ValueError):
    """A timestamp that cannot be read; ``reason`` is the field-level message, ``index`` the
    position in a column."""

    def __init__(self, reason: str, index: int | None = None) -> None:
        super().__init__(reason)
        self.reason, self.index = reason, index


def utc_offset_seconds(utc_offset: str) -> float:
    """``"+10:00"``, ``"-03:30"`` or ``"Z"`` in seconds east of UTC.

    Raises:
        ValueError: anything else, e.g. ``"+10"`` or ``"UTC"``.
    """
    match = _OFFSET.fullmatch(utc_offset) if isinstance(utc_offset, str) else None
    if match is None:
        raise ValueError(f"utc_offset must be Z or ±HH:MM (e.g. +10:00), not {utc_offset!r}")
    if match.group(1) is None:
        return 0.0
    seconds = (int(match.group(2)) * 60 + int(match.group(3))) * 60.0
    return -seconds if match.group(1) == "-" else seconds


def zone(utc_offset: str) -> timezone:
    """The fixed zone of a ``utc_offset`` (training writes its timestamps in it)."""
    return timezone(timedelta(seconds=utc_offset_seconds(utc_offset)))


def parse(text: str) -> datetime:
    """An aware datetime from ISO-8601 text with a UTC offset.

    Raises:
        TimestampError: too long, not ISO-8601, or without a UTC offset (the reason never
            echoes the text back).
    """
    if len(text) > MAX_LENGTH:
        raise TimestampError(f"must be an ISO-8601 date and time of at most {MAX_LENGTH} "
                             f"characters, e.g. {EXAMPLE}")  # fmt: skip
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:  # its message repeats the text: not echoed back
        raise TimestampError(f"must be an ISO-8601 date and time, e.g. {EXAMPLE}") from None
    if moment.tzinfo is None:
        raise TimestampError(f"must carry a UTC offset (Z or ±HH:MM), e.g. {EXAMPLE}")
    return moment


class Calendar:
    """The calendar features ``names`` (in schema order) on the clock of ``utc_offset``."""

    def __init__(self, names: Sequence[str], utc_offset: str) -> None:
        unknown = [n for n in names if n not in FEATURES]
        if unknown:
            raise ValueError(f"unknown calendar feature(s) {unknown}; known: {', '.join(FEATURES)}")
        self.names = tuple(names)
        self.utc_offset = utc_offset
        self._offset = utc_offset_seconds(utc_offset)
        self._derive = tuple(FEATURES[n].derive for n in names)
        self.missing = [math.nan] * len(names)  # a reading without a timestamp

    def row(self, text: str) -> list[float]:
        """The features of one timestamp (a str); TimestampError if it cannot be read."""
        moment = parse(text)
        written = (moment.hour * 3600 + moment.minute * 60 + moment.second
                   + moment.microsecond / 1e6)  # fmt: skip
        shift = self._offset - moment.utcoffset().total_seconds()  # type: ignore[union-attr]
        carry, seconds = divmod(written + shift, _DAY)
        days = (moment.toordinal() - _EPOCH) + carry
        return [float(derive(seconds, days)) for derive in self._derive]

    def columns(self, stamps: Sequence[str | None]) -> np.ndarray:
        """float64 (rows x features) for timestamps (str) or None (missing: NaN). Parsing is
        C-level maps, the features numpy over the column.

        Raises:
            TimestampError: a timestamp cannot be read; its ``index`` is the first such one.
        """
        n, k = len(stamps), len(self._derive)
        absent = stamps.count(None)
        out = np.full((n, k), math.nan)
        if absent == n:  # the seed's request shape: no timestamps at all
            return out
        texts = stamps if not absent else [t for t in stamps if t is not None]
        try:
            if max(map(len, texts)) > MAX_LENGTH:  # type: ignore[arg-type]
                raise ValueError
            moments = list(map(datetime.fromisoformat, texts))  # type: ignore[arg-type]
            if None in map(_TZINFO, moments):
                raise ValueError
        except ValueError:  # rare: which one, and why, from the one-timestamp checks
            raise _first_error(stamps) from None
        # As `row` computes them, an array at a time (C-level maps over the datetimes).
        m = len(moments)
        hour, minute, second, micro = (np.fromiter(map(p, moments), np.int64, m) for p in _PARTS)
        written = hour * 3600 + minute * 60 + second + micro / 1e6
        zones = set(map(_TZINFO, moments))
        if len(zones) == 1:  # usual: every timestamp written in one offset
            shift: Any = self._offset - zones.pop().utcoffset(None).total_seconds()
        else:
            shift = self._offset - np.fromiter(map(_offset_seconds, moments), np.float64, m)
        carry, seconds = np.divmod(written + shift, _DAY)
        days = (np.fromiter(map(datetime.toordinal, moments), np.int64, m) - _EPOCH) + carry
        rows = slice(None) if not absent else np.fromiter(map(_present, stamps), bool, n)
        for j, derive in enumerate(self._derive):
            out[rows, j] = derive(seconds, days)
        return out


def _offset_seconds(moment: datetime) -> float:
    return moment.utcoffset().total_seconds()  # type: ignore[union-attr]


def _present(text: str | None) -> bool:
    return text is not None


def _first_error(stamps: Sequence[str | None]) -> TimestampError:
    for i, text in enumerate(stamps):
        if text is None:
            continue
        try:
            parse(text)
        except TimestampError as exc:
            return TimestampError(exc.reason, i)
    return TimestampError(f"must be an ISO-8601 date and time, e.g. {EXAMPLE}")
