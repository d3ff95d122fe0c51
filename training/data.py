"""Reads a spec's dataset into the frame the expectations and the model see."""

from __future__ import annotations

import codecs
import difflib
import io
import json
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

import numpy as np
import pandas as pd

from inference import calendar_features
from settings import REPO
from training.expressions import EVAL_ENGINE
from training.spec import ISO_8601, DataSpec, ModelSpec, SpecError


class DataError(Exception):
    """The dataset cannot be read as the spec describes it (missing, empty, wrong encoding)."""


@dataclass(frozen=True)
class Loaded:
    frame: pd.DataFrame
    rows_read: int  # rows in the file
    rows_filtered: int  # removed by the spec's [data] filter


def read_bytes(spec: DataSpec) -> bytes:
    """The dataset's bytes, as the spec's SHA-256 pins them.

    Raises:
        DataError: the file cannot be read (missing, a folder, no permission).
    """
    try:
        return spec.path.read_bytes()
    except OSError as exc:
        raise DataError(f"cannot read {spec.path}: {exc.strerror}") from exc


def load_frame(spec: DataSpec, raw: bytes) -> pd.DataFrame:
    return load(spec, raw).frame


def load(spec: DataSpec, raw: bytes) -> Loaded:
    """Decode, parse, rename, derive columns, filter rows, derive the calendar features and
    sort as the spec says.

    Raises:
        DataError: the bytes do not decode with the spec's encoding, or are not a CSV.
        SpecError: a derivation or the filter names a column the data does not have, or
            cannot be evaluated (``row_features``).
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
    (the Spark engine runs it per partition) and get the rows the whole frame would give.

    A derivation whose input the suite expects but the data lacks, or holds as text (a
    missing-value marker the spec does not list), is skipped, so the suite reports that column.

    Raises:
        SpecError: a derivation reads a column neither the data nor the suite has (a typo), the
            filter names a column the data does not have, or either cannot be evaluated; the
            message names the column, the closest existing one, and the key.
    """
    for derivation in spec.derive:
        absent = derivation.columns - set(frame.columns)
        if absent and (typos := misspelled(spec, absent, frame.columns)):
            raise missing_columns(derivation.label, typos, frame.columns, spec, "[[data.derive]]")
        if absent or not all(
            pd.api.types.is_numeric_dtype(frame[name]) for name in derivation.columns
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
    cell is empty.

    Raises:
        SpecError: the timestamp column is not a column of the data.
        DataError: a value does not match the spec's format; the message names it.
    """
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
    absent = spec.filter.columns - set(frame.columns)
    if typos := misspelled(spec, absent, frame.columns):
        raise missing_columns(what, typos, frame.columns, spec, "[data] filter")
    if absent:  # columns the suite expects and the data lacks: the suite reports them
        return frame
    try:
        with np.errstate(all="ignore"):
            keep = frame.eval(spec.filter.text, engine=EVAL_ENGINE)
    except Exception as exc:  # pandas.eval raises many types for a bad expression
        text = text_cells(frame[sorted(spec.filter.columns)])
        causes = "".join(f"; {unlisted_marker(c, cells)}" for c, cells in text.items())
        raise SpecError(f"{what} cannot be evaluated: {_one_line(exc)}{causes}") from exc
    if not (isinstance(keep, pd.Series) and pd.api.types.is_bool_dtype(keep)):
        raise SpecError(f"{what} must be true or false for each row (the rows to keep), "
                        f"e.g. \"ph <= 14\"")  # fmt: skip
    keep = keep.astype("boolean").fillna(False).astype(bool)
    return frame[keep].reset_index(drop=True)


# A column of numbers read as text holds a few distinct non-numbers: markers of a missing
# value ("NAN", "-", "n/a") that [data] na_values does not list. How many a message shows:
MARKERS_SHOWN = 3


def text_cells(frame: pd.DataFrame) -> dict[str, dict[str, int]]:
    """Per text column that is mostly numbers: its cells that are not numbers, with counts."""
    out = {}
    for column in frame.columns:
        values = frame[column]
        if pd.api.types.is_numeric_dtype(values) or not len(values.dropna()):
            continue
        present = values.dropna().astype(str)
        numbers = pd.to_numeric(present, errors="coerce")
        if numbers.notna().mean() >= 0.5:
            counts = present[numbers.isna()].value_counts()
            out[str(column)] = {str(k): int(v) for k, v in counts.items()}
    return out


def unlisted_marker(column: str, cells: dict[str, int]) -> str:
    """Why a column of numbers is text, and the spec key that fixes it."""
    shown = ", ".join(f"{v!r} ({n:,} cells)" for v, n in list(cells.items())[:MARKERS_SHOWN])
    more = f" and {len(cells) - MARKERS_SHOWN} more" if len(cells) > MARKERS_SHOWN else ""
    return (f"column {column!r} holds numbers and text that is not a number: {shown}{more}. If "
            f"that marks a missing value, add it to [data] na_values in the spec (the list "
            f"replaces pandas' defaults, so only the cells it names are missing)")  # fmt: skip


def check_columns(spec: ModelSpec, columns: Iterable[object]) -> None:
    """Before validation (seconds) and training: a feature or label column that neither the
    loaded data nor the suite has is a typo in the spec, reported at once with its fix. (One
    the suite expects and the data lacks is the data's fault: the suite reports it.)

    Raises:
        SpecError: naming each such name, the closest column and the key to fix.
    """
    names = [f for f in spec.features if f not in spec.calendar_features]
    if "column" in spec.label:
        names.append(spec.label_column)
    typos = misspelled(spec.data, names, columns)
    if typos:
        what = "[label] column" if typos == {spec.label_column} else "[model] features"
        raise missing_columns(what, typos, columns, spec.data, what)


def misspelled(spec: DataSpec, names: Iterable[str], columns: Iterable[object]) -> set[str]:
    """Of ``names``, those neither the data (``columns``) nor the spec's suite has."""
    absent = set(names) - {str(c) for c in columns}
    if not absent:
        return absent
    suite = json.loads(spec.expectations.read_text(encoding="utf-8"))
    expected = {str(e.get("kwargs", {}).get("column")) for e in suite.get("expectations", [])}
    return absent - expected


def missing_columns(
    what: str, absent: Iterable[str], columns: Iterable[object], spec: DataSpec, key: str
) -> SpecError:
    """One line: which names are not columns of the data (after renames and derivations), the
    existing column each most resembles, and the spec key to fix."""
    known = [str(c) for c in columns]
    named = []
    for name in sorted(absent):
        close = difflib.get_close_matches(name, known, n=1, cutoff=0.6)
        named.append(f"{name!r}" + (f" (did you mean {close[0]!r}?)" if close else ""))
    return SpecError(f"{what} names {', '.join(named)}, which neither {spec.path.name} nor its "
                     f"suite has: fix {key} in {_shown(spec)}, or add a [data.rename] or "
                     f"[[data.derive]] for it (columns: {', '.join(known)})")  # fmt: skip


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
