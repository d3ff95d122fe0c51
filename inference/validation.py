"""Input validation compiled from the bundle's feature schema (the data contract).

Policy (also in inference/README.md):
- a record is ``{"deviceId": str (optional), "readings": {field: number, ...}}``, and, for a
  model with calendar features, an optional ``"timestamp"``: ISO-8601 text with a UTC offset
  (absent or null: those features are missing, NaN; otherwise unreadable: rejected);
- every schema field is required; ``null`` is accepted only where the schema says
  ``nullable`` (it reaches the model as NaN, the learned missing-value branch);
- a value must be a JSON number: booleans and strings are rejected, never coerced;
- NaN and +/-Infinity are rejected (Python's json accepts those literals);
- a value outside the schema's [minimum, maximum] is rejected, not clipped;
- unknown keys are rejected, in ``readings`` and beside it: a typo such as ``ph`` for ``pH``
  must not be silently dropped and answered as if the reading were fine;
- a batch holds 1..MAX_BATCH records and is all-or-nothing (SQS is per message).
Every problem is reported with its field path; at most ``MAX_DETAILS`` are listed.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from operator import itemgetter
from typing import Any, NamedTuple

import numpy as np

from inference import calendar_features
from inference.bundle import BundleError
from inference.calendar_features import Calendar, TimestampError

MAX_DETAILS = 50
FIELD_MAX = 256  # characters of a field path reported back (it may hold a caller's key)
DEVICE_ID_MAX = 128
RECORD_KEYS = frozenset({"deviceId", "readings"})
TIMESTAMP = calendar_features.FIELD
EXAMPLE_TIME = calendar_features.EXAMPLE
_BIG = 1.7976931348623157e308  # float max: "no bound" that still excludes infinities
_MISSING = object()
_READINGS = itemgetter("readings")
_DEVICE_ID = itemgetter("deviceId")
_TIMESTAMP = itemgetter(TIMESTAMP)
_NUMBERS = frozenset({int, float})  # JSON numbers; bool is excluded by type, not isinstance


class ValidationError(Exception):
    """Bad input: becomes a 400 with ``VALIDATION_ERROR`` and field-level details."""

    def __init__(self, details: list[dict[str, str]], message: str = "invalid input") -> None:
        super().__init__(message)
        self.message = message
        self.details = details[:MAX_DETAILS]
        self.total = len(details)


def problem(field: str, reason: str) -> dict[str, str]:
    if len(field) > FIELD_MAX:  # bounded, so a 400 stays far below ALB's 1 MB response limit
        field = field[:FIELD_MAX] + "..."
    return {"field": field, "reason": reason}


class Rule(NamedTuple):
    name: str
    lo: float
    hi: float
    nullable: bool
    integer: bool


class Validator:
    """Turns records into feature rows in schema order, or collects why it cannot.

    ``rules`` are the fields a reading carries; fields with ``"source": "timestamp"`` are
    calendar features, derived from the record's ``timestamp`` by ``calendar`` (None when the
    model has none: the record shape and the hot path are then exactly the seed's).
    """

    def __init__(self, schema: Mapping[str, Any], max_batch: int) -> None:
        fields = list(schema["fields"])
        derived = [f for f in fields if f.get("source") is not None]
        self.calendar = _calendar(schema, derived)
        self.width = len(fields)
        self.record_keys = RECORD_KEYS | {TIMESTAMP} if self.calendar else RECORD_KEYS
        # A row is built as readings + calendar features; when the schema puts a calendar
        # feature before a reading, _gather picks the columns back into schema order.
        sources = [i for i, f in enumerate(fields) if f.get("source") is None]
        sources += [i for i, f in enumerate(fields) if f.get("source") is not None]
        order = np.argsort(sources).tolist()
        self._gather: list[int] | None = None if order == sorted(order) else order
        self.rules = tuple(
            Rule(
                name=f["name"],
                lo=_bound(f.get("minimum"), -_BIG),
                hi=_bound(f.get("maximum"), _BIG),
                nullable=bool(f.get("nullable", False)),
                integer=f.get("type") == "integer",
            )
            for f in fields
            if f.get("source") is None
        )
        self.names = frozenset(r.name for r in self.rules)
        self.max_batch = max_batch
        # The batch fast path's view of the same rules: a getter per field, bound vectors.
        self._getters = [itemgetter(r.name) for r in self.rules]
        self._lo = np.array([r.lo for r in self.rules], dtype=np.float64)
        self._hi = np.array([r.hi for r in self.rules], dtype=np.float64)
        self._integer = np.array([r.integer for r in self.rules], dtype=bool)

    def readings(self, values: Any, path: str, errors: list[dict[str, str]]) -> list[float]:
        """One feature row. Appends to ``errors`` (and returns a partial row) when invalid."""
        if type(values) is not dict:
            errors.append(problem(path, f"must be an object, not {json_type(values)}"))
            return []
        row: list[float] = []
        append = row.append
        for name, lo, hi, nullable, integer in self.rules:
            value = values.get(name, _MISSING)
            kind = type(value)
            # Fast path: a plain int/float in range (NaN fails both comparisons).
            if ((kind is float and not integer) or kind is int) and lo <= value <= hi:
                append(value)
                continue
            if value is None and nullable:
                append(math.nan)
                continue
            reason = self._reason(value, lo, hi, integer)
            if reason is None:  # an integer field given an int in range
                append(value)
            else:
                errors.append(problem(f"{path}.{name}", reason))
        if len(values) != len(self.rules) or errors:  # cheap test first; set maths if needed
            for extra in sorted(str(k) for k in values.keys() - self.names):
                errors.append(problem(_join(path, extra), "unknown field"))
        return row

    @staticmethod
    def _reason(value: Any, lo: float, hi: float, integer: bool) -> str | None:
        if value is _MISSING:
            return "missing"
        if value is None:
            return "must not be null"
        if type(value) not in (int, float):  # bool is an int subclass: excluded here too
            return f"must be a number, not {json_type(value)}"
        if type(value) is float and not math.isfinite(value):  # ints are exact: 10**400 too
            return "must be finite (NaN and Infinity are not accepted)"
        if integer and type(value) is float and not value.is_integer():
            return "must be an integer"
        if not lo <= value <= hi:
            return f"out of range: must be between {_fmt(lo)} and {_fmt(hi)}"
        return None

    def record(
        self, record: Any, path: str, errors: list[dict[str, str]]
    ) -> tuple[str | None, list[float]]:
        """(deviceId, feature row) of a direct-shape record."""
        if type(record) is not dict:
            errors.append(problem(path or "event", f"must be an object, not {json_type(record)}"))
            return None, []
        device = record.get("deviceId")
        if device is not None and (type(device) is not str or len(device) > DEVICE_ID_MAX):
            errors.append(
                problem(_join(path, "deviceId"), f"must be a string of at most {DEVICE_ID_MAX}")
            )
        dated = None
        if self.calendar is not None:
            dated = record.get(TIMESTAMP)  # absent or null: the calendar features are missing
            dated = self.calendar.missing if dated is None else self._timestamp(dated, path, errors)
        if "readings" not in record:
            errors.append(problem(_join(path, "readings"), "missing"))
            row: list[float] = []
        else:
            row = self.readings(record["readings"], _join(path, "readings"), errors)
        if dated is not None:
            row += dated
            if self._gather is not None and len(row) == self.width:  # not a partial row
                row = [row[i] for i in self._gather]
        if not record.keys() <= self.record_keys:
            for extra in sorted(str(k) for k in record.keys() - self.record_keys):
                errors.append(problem(_join(path, extra), "unknown field"))
        return device, row

    def _timestamp(self, stamp: Any, path: str, errors: list[dict[str, str]]) -> list[float] | None:
        """The calendar features of a record's timestamp (not None), or None and a problem."""
        assert self.calendar is not None
        path = _join(path, TIMESTAMP)
        if type(stamp) is not str:
            reason = f"must be a string (ISO-8601 with a UTC offset, e.g. {EXAMPLE_TIME})"
            errors.append(problem(path, f"{reason}, not {json_type(stamp)}"))
            return None
        try:
            return self.calendar.row(stamp)
        except TimestampError as exc:
            errors.append(problem(path, exc.reason))
            return None

    def batch(self, records: Any, path: str = "records") -> tuple[list[str | None], np.ndarray]:
        """(deviceIds, float64 feature matrix) of a batch, or ValidationError listing every
        problem."""
        self.check_batch(records, path)
        fast = self.fast_batch(records)
        if fast is not None:
            return fast
        devices, rows = self._slow_batch(records, path)  # names every problem, or all is well
        return devices, np.array(rows, dtype=np.float64).reshape(len(rows), self.width)

    def check_batch(self, records: Any, path: str = "records") -> None:
        """The batch as a whole: an array of 1..max_batch records.

        Raises:
            ValidationError: on ``path``: not an array, empty, or too many records.
        """
        if type(records) is not list:
            raise ValidationError([problem(path, f"must be an array, not {json_type(records)}")])
        if not records:
            raise ValidationError([problem(path, "must hold at least one record")])
        if len(records) > self.max_batch:
            raise ValidationError(
                [problem(path, f"holds {len(records)} records; at most {self.max_batch} allowed")],
                "batch too large",
            )

    def fast_batch(self, records: list[Any]) -> tuple[list[str | None], np.ndarray] | None:
        """The batch at C speed (map, set and numpy, no per-record Python) when it is valid
        without nulls; None when any record might not be, and the record-by-record pass then
        decides and names the problems. It accepts nothing that pass refuses (a test holds it
        to that), so it changes only the speed: 10,000 records in about 3.5 ms.
        """
        n, k = len(records), len(self.rules)
        try:  # a record or readings that is not an object fails these lookups (TypeError)
            readings = list(map(_READINGS, records))  # KeyError: a record without readings
            if set(map(len, readings)) != {k}:
                return None  # with every field present (below), k keys means no unknown ones
            columns = [list(map(get, readings)) for get in self._getters]  # KeyError: missing
        except (KeyError, TypeError):
            return None
        try:
            devices: list[Any] = list(map(_DEVICE_ID, records))
            absent = 0
        except KeyError:  # some records have no deviceId
            devices = [r.get("deviceId", _MISSING) for r in records]
            absent = devices.count(_MISSING)
        keys, expected = sum(map(len, records)), 2 * n - absent  # readings, deviceId if given
        stamps: list[Any] | None = None  # None: no record has a timestamp (the seed's shape)
        if self.calendar is not None and keys != expected:
            try:
                stamps = list(map(_TIMESTAMP, records))
            except KeyError:  # some records have no timestamp
                stamps = [r.get(TIMESTAMP, _MISSING) for r in records]
            expected += n - stamps.count(_MISSING)  # each timestamp given is one more key
        if keys != expected:  # no more keys than these
            return None
        kinds = set(map(type, devices))
        if kinds != {str}:
            if not kinds <= {str, type(None), object}:  # object: _MISSING
                return None
            devices = [None if d is _MISSING else d for d in devices]
        if max(map(len, filter(None, devices)), default=0) > DEVICE_ID_MAX:
            return None
        if not set().union(*(map(type, c) for c in columns)) <= _NUMBERS:
            return None  # a null, bool, string...: the full pass decides
        try:
            matrix = np.array(columns, dtype=np.float64).T
        except OverflowError:  # an integer beyond float range
            return None
        if not ((matrix >= self._lo) & (matrix <= self._hi)).all():  # NaN fails both
            return None
        if self._integer.any():
            whole = matrix[:, self._integer]
            if not (whole == np.trunc(whole)).all():
                return None
        if self.calendar is not None:
            dated = (np.full((n, len(self.calendar.names)), math.nan) if stamps is None
                     else self._timestamps(stamps))  # fmt: skip
            if dated is None:
                return None
            matrix = np.hstack((matrix, dated))
            if self._gather is not None:
                matrix = matrix[:, self._gather]
        return devices, matrix

    def _timestamps(self, stamps: list[Any]) -> np.ndarray | None:
        """The batch's calendar features, or None when a timestamp is not plainly valid."""
        assert self.calendar is not None
        kinds = set(map(type, stamps))
        if not kinds <= {str, type(None), object}:  # object: _MISSING
            return None
        if object in kinds:
            stamps = [None if s is _MISSING else s for s in stamps]
        try:
            return self.calendar.columns(stamps)
        except TimestampError:
            return None

    def _slow_batch(
        self, records: list[Any], path: str
    ) -> tuple[list[str | None], list[list[float]]]:
        errors: list[dict[str, str]] = []
        devices, rows = [], []
        for i, record in enumerate(records):
            device, row = self.record(record, f"{path}[{i}]", errors)
            devices.append(device)
            rows.append(row)
        if errors:
            raise ValidationError(errors)
        return devices, rows

    def single(self, record: Any) -> tuple[str | None, list[float]]:
        """One record's device and feature row, in schema order.

        Raises:
            ValidationError: every field-level reason the record is refused.
        """
        errors: list[dict[str, str]] = []
        device, row = self.record(record, "", errors)
        if errors:
            raise ValidationError(errors)
        return device, row


def _calendar(schema: Mapping[str, Any], derived: list[Mapping[str, Any]]) -> Calendar | None:
    """The schema's calendar features, or None; BundleError for a schema this code cannot
    serve (a derived field of an unknown source or name, no time zone)."""
    if not derived:
        return None
    unknown = [f["name"] for f in derived if f.get("source") != calendar_features.SOURCE]
    if unknown:
        raise BundleError(f"schema fields {unknown} derive from a source this code does not know")
    settings = schema.get(TIMESTAMP)
    if not isinstance(settings, Mapping) or "utc_offset" not in settings:
        raise BundleError("the schema has calendar features but no timestamp utc_offset")
    try:
        return Calendar([f["name"] for f in derived], settings["utc_offset"])
    except ValueError as exc:
        raise BundleError(f"the schema's calendar features: {exc}") from None


def _bound(value: Any, default: float) -> float:
    return default if value is None else float(value)


def _join(path: str, key: str) -> str:
    key = key or '""'  # an empty key still gets a name a caller can read
    return f"{path}.{key}" if path else key


def _fmt(bound: float) -> str:
    return "unbounded" if abs(bound) == _BIG else f"{bound:g}"


def json_type(value: Any) -> str:
    if value is _MISSING:
        return "nothing"
    return {
        bool: "boolean",
        str: "string",
        list: "array",
        dict: "object",
        type(None): "null",
        int: "number",
        float: "number",
    }.get(type(value), type(value).__name__)
