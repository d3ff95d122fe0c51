"""Reads a spec's dataset into the frame the expectations and the model see."""

from __future__ import annotations

import codecs
import io
from dataclasses import dataclass
from datetime import datetime

import numpy as np
import pandas as pd

from inference import calendar_features
from settings import REPO
from training.spec import EVAL_ENGINE, ISO_8601, DataSpec, SpecError


class DataError(Exception):
    """The dataset cannot be read as the spec describes it (missing, empty, wrong encoding)."""


@dataclass(frozen=True)
class Loaded:
    frame: pd.DataFrame
    rows_read: int  # rows in the file
    rows_filtered: int  # removed by the spec's [data] filter


def read_bytes(spec: DataSpec) -> bytes:
    try:
        return spec.path.read_bytes()
    except OSError as exc:
        raise DataError(f"cannot read {spec.path}: {exc.strerror}") from exc


def load_frame(spec: DataSpec, raw: bytes) -> pd.DataFrame:
    return load(spec, raw).frame


def load(spec: DataSpec, raw: bytes) -> Loaded:
    """Decode, parse, rename, derive columns, filter rows, derive the calendar features and
    sort as the spec says.

    A derivation whose inputs are missing or not numeric is skipped, so the expectation suite
    reports the bad source column instead of a pandas traceback; one that cannot be evaluated
    otherwise is a SpecError naming it.
    """
    try:
        text = raw.decode(spec.encoding)
    except UnicodeDecodeError as exc:
        raise DataError(_not_decodable(spec, raw, exc)) from exc
    if not text.strip():
        raise DataError(f"{spec.path.name} is empty")
    try:
        # keep_default_na=False: the spec's list replaces pandas' default markers, so a
        # reading such as "NA" (sodium) or "null" stays text unless the spec lists it.
        frame = pd.read_csv(
            io.StringIO(text), na_values=list(spec.na_values), keep_default_na=False
        )
    except (pd.errors.ParserError, pd.errors.EmptyDataError) as exc:
        raise DataError(f"{spec.path.name} is not a readable CSV: {exc}") from exc
    rows_read = len(frame)
    frame = row_features(spec, frame.rename(columns=spec.rename))
    if spec.sort_by and spec.sort_by in frame.columns:
        frame = frame.sort_values(spec.sort_by, kind="stable").reset_index(drop=True)
    return Loaded(frame, rows_read, rows_read - len(frame))


def row_features(spec: DataSpec, frame: pd.DataFrame) -> pd.DataFrame:
    """The spec's derivations, row filter and calendar features, in that order. Each row's
    result depends on that row alone, so an engine may run this on any slice of the rows
    (the Spark engine runs it per partition) and get the rows the whole frame would give."""
    for derivation in spec.derive:
        inputs = derivation.columns
        if inputs - set(frame.columns) or not all(
            pd.api.types.is_numeric_dtype(frame[name]) for name in inputs
        ):
            continue
        try:
            with np.errstate(all="ignore"):  # log10(0) is -inf: the suite's range reports it
                frame[derivation.column] = frame.eval(derivation.expression, engine=EVAL_ENGINE)
        except Exception as exc:  # pandas.eval raises many types for a bad expression
            raise SpecError(f"{derivation.label} cannot be evaluated: {_one_line(exc)}") from exc
    frame = _filter(spec, frame)
    # Derived columns too, so the suite and the notebook see them; without the timestamp
    # column they are skipped, as a derivation is, and the suite reports the column.
    if spec.calendar and spec.timestamp and spec.timestamp.column in frame.columns:
        frame = frame.assign(**calendar_columns(spec, iso_timestamps(spec, frame)))
    return frame


def iso_timestamps(spec: DataSpec, frame: pd.DataFrame) -> list[str | None]:
    """The spec's timestamp column as serving receives a timestamp: ISO-8601 text with its UTC
    offset (a value written without one is on the spec's ``utc_offset`` clock); None where the
    cell is empty. A value that does not match the format is a DataError naming it."""
    stamp = spec.timestamp
    assert stamp is not None
    if stamp.column not in frame.columns:
        raise SpecError(f"{stamp.label} is not a column of {spec.path.name} "
                        f"(columns: {', '.join(map(str, frame.columns))})")  # fmt: skip
    zone = calendar_features.zone(stamp.utc_offset)
    out: list[str | None] = []
    for value in frame[stamp.column].tolist():
        if pd.isna(value):
            out.append(None)
            continue
        text = str(value).strip()
        try:
            if stamp.format == ISO_8601:
                moment = datetime.fromisoformat(text)
            else:
                moment = datetime.strptime(text, stamp.format)
        except ValueError:
            raise DataError(f"{spec.path.name}: {stamp.label} holds {text!r}, which is not "
                            f"{_format_name(stamp.format)}; fix the data or [data] timestamp "
                            f"format in {_shown(spec)}") from None  # fmt: skip
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=zone)
        out.append(moment.isoformat())
    return out


def calendar_columns(spec: DataSpec, stamps: list[str | None]) -> dict[str, np.ndarray]:
    """The model's calendar features, derived by serving's own code
    (inference/calendar_features.py) from the timestamps as serving receives them."""
    assert spec.timestamp is not None
    calendar = calendar_features.Calendar(spec.calendar, spec.timestamp.utc_offset)
    values = calendar.columns(stamps)
    return {name: values[:, j] for j, name in enumerate(calendar.names)}


def _format_name(form: str) -> str:
    return "ISO-8601 text" if form == ISO_8601 else f"in the format {form!r}"


def _filter(spec: DataSpec, frame: pd.DataFrame) -> pd.DataFrame:
    """The rows where the spec's filter holds; a row where it is missing (NA) is removed."""
    if spec.filter is None:
        return frame
    what = f"[data] filter {spec.filter.text!r}"
    missing = sorted(spec.filter.columns - set(frame.columns))
    if missing:
        raise SpecError(f"{what} names column(s) {missing} that the data does not have "
                        f"(columns: {', '.join(map(str, frame.columns))})")  # fmt: skip
    try:
        with np.errstate(all="ignore"):
            keep = frame.eval(spec.filter.text, engine=EVAL_ENGINE)
    except Exception as exc:  # pandas.eval raises many types for a bad expression
        raise SpecError(f"{what} cannot be evaluated: {_one_line(exc)}") from exc
    if not (isinstance(keep, pd.Series) and pd.api.types.is_bool_dtype(keep)):
        raise SpecError(f"{what} must be true or false for each row (the rows to keep), "
                        f"e.g. \"ph <= 14\"")  # fmt: skip
    keep = keep.astype("boolean").fillna(False).astype(bool)
    return frame[keep].reset_index(drop=True)


def _not_decodable(spec: DataSpec, raw: bytes, exc: UnicodeDecodeError) -> str:
    """Names the spec key that fixes it, and an encoding that does decode the bytes."""
    declared = codecs.lookup(spec.encoding).name
    others = [e for e in ("cp1252", "latin-1") if codecs.lookup(e).name != declared]
    guess = next((e for e in others if _decodes(raw, e)), "cp1252")
    return (
        f"{spec.path.name} is not {spec.encoding.upper()} (byte 0x{raw[exc.start]:02x} at offset "
        f'{exc.start}); set [data] encoding = "{guess}" (or the file\'s encoding) in '
        f"{_shown(spec)}"
    )


def _shown(spec: DataSpec) -> str:
    """The spec file as a user would type it: relative to the checkout when inside it."""
    if spec.source is None:
        return "the model's spec"
    path = spec.source.resolve()
    return str(path.relative_to(REPO) if path.is_relative_to(REPO) else spec.source)


def _decodes(raw: bytes, encoding: str) -> bool:
    try:
        raw.decode(encoding)
    except UnicodeDecodeError:
        return False
    return True


def _one_line(exc: Exception) -> str:
    return " ".join(str(exc).split()) or type(exc).__name__
