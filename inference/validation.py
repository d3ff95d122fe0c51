"""Input validation compiled from the bundle's feature schema (the data contract).

Policy (also in inference/README.md):
- a record is ``{"deviceId": str (optional), "readings": {field: number, ...}}``;
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
from typing import Any, NamedTuple

MAX_DETAILS = 50
DEVICE_ID_MAX = 128
RECORD_KEYS = frozenset({"deviceId", "readings"})
_BIG = 1.7976931348623157e308  # float max: "no bound" that still excludes infinities
_MISSING = object()


class ValidationError(Exception):
    """Bad input: becomes a 400 with ``VALIDATION_ERROR`` and field-level details."""

    def __init__(self, details: list[dict[str, str]], message: str = "invalid input") -> None:
        super().__init__(message)
        self.message = message
        self.details = details[:MAX_DETAILS]
        self.total = len(details)


def problem(field: str, reason: str) -> dict[str, str]:
    return {"field": field, "reason": reason}


class Rule(NamedTuple):
    name: str
    lo: float
    hi: float
    nullable: bool
    integer: bool


class Validator:
    """Turns records into feature rows in schema order, or collects why it cannot."""

    def __init__(self, schema: Mapping[str, Any], max_batch: int) -> None:
        self.rules = tuple(
            Rule(
                name=f["name"],
                lo=_bound(f.get("minimum"), -_BIG),
                hi=_bound(f.get("maximum"), _BIG),
                nullable=bool(f.get("nullable", False)),
                integer=f.get("type") == "integer",
            )
            for f in schema["fields"]
        )
        self.names = frozenset(r.name for r in self.rules)
        self.max_batch = max_batch

    def readings(self, values: Any, path: str, errors: list[dict[str, str]]) -> list[float]:
        """One feature row. Appends to ``errors`` (and returns a partial row) when invalid."""
        if type(values) is not dict:
            errors.append(problem(path, f"must be an object, not {_json_type(values)}"))
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
                errors.append(problem(f"{path}.{extra}", "unknown field"))
        return row

    @staticmethod
    def _reason(value: Any, lo: float, hi: float, integer: bool) -> str | None:
        if value is _MISSING:
            return "missing"
        if value is None:
            return "must not be null"
        if type(value) not in (int, float):  # bool is an int subclass: excluded here too
            return f"must be a number, not {_json_type(value)}"
        if not math.isfinite(value):
            return "must be finite (NaN and Infinity are not accepted)"
        if integer and not float(value).is_integer():
            return "must be an integer"
        if not lo <= value <= hi:
            return f"out of range: must be between {_fmt(lo)} and {_fmt(hi)}"
        return None

    def record(
        self, record: Any, path: str, errors: list[dict[str, str]]
    ) -> tuple[str | None, list[float]]:
        """(deviceId, feature row) of a direct-shape record."""
        if type(record) is not dict:
            errors.append(problem(path or "event", f"must be an object, not {_json_type(record)}"))
            return None, []
        device = record.get("deviceId")
        if device is not None and (type(device) is not str or len(device) > DEVICE_ID_MAX):
            errors.append(
                problem(_join(path, "deviceId"), f"must be a string of at most {DEVICE_ID_MAX}")
            )
        if "readings" not in record:
            errors.append(problem(_join(path, "readings"), "missing"))
            row: list[float] = []
        else:
            row = self.readings(record["readings"], _join(path, "readings"), errors)
        if not record.keys() <= RECORD_KEYS:
            for extra in sorted(str(k) for k in record.keys() - RECORD_KEYS):
                errors.append(problem(_join(path, extra), "unknown field"))
        return device, row

    def batch(
        self, records: Any, path: str = "records"
    ) -> tuple[list[str | None], list[list[float]]]:
        """All rows of a batch, or ValidationError listing every problem."""
        if type(records) is not list:
            raise ValidationError([problem(path, f"must be an array, not {_json_type(records)}")])
        if not records:
            raise ValidationError([problem(path, "must hold at least one record")])
        if len(records) > self.max_batch:
            raise ValidationError(
                [problem(path, f"holds {len(records)} records; at most {self.max_batch} allowed")],
                "batch too large",
            )
        devices: list[str | None] = []
        rows: list[list[float]] = []
        fast = self.fast_row
        for record in records:
            row = fast(record)
            if row is None:  # something is off: the full pass below names every problem
                return self._slow_batch(records, path)
            devices.append(record.get("deviceId"))
            rows.append(row)
        return devices, rows

    def fast_row(self, record: Any) -> list[float] | None:
        """The row of a record that is valid in the common way (no nulls), else None.

        No path strings, no error objects: 10,000 valid records validate in a few ms.
        """
        if type(record) is not dict:
            return None
        values = record.get("readings")
        if type(values) is not dict or len(values) != len(self.rules):
            return None
        size = len(record)
        if size == 2:
            device = record.get("deviceId", _MISSING)
            if device is not None and (type(device) is not str or len(device) > DEVICE_ID_MAX):
                return None  # also when the second key is not deviceId (_MISSING)
        elif size != 1:
            return None
        row: list[float] = []
        for name, lo, hi, _nullable, integer in self.rules:
            value: Any = values.get(name)
            kind = type(value)
            if ((kind is float and not integer) or kind is int) and lo <= value <= hi:
                row.append(value)
            else:
                return None
        return row

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
        errors: list[dict[str, str]] = []
        device, row = self.record(record, "", errors)
        if errors:
            raise ValidationError(errors)
        return device, row


def _bound(value: Any, default: float) -> float:
    return default if value is None else float(value)


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def _fmt(bound: float) -> str:
    return "unbounded" if abs(bound) == _BIG else f"{bound:g}"


def _json_type(value: Any) -> str:
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
