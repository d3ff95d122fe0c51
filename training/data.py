"""Reads a spec's dataset into the frame the expectations and the model see."""

from __future__ import annotations

import io
import re

import pandas as pd

from training.spec import DataSpec


class DataError(Exception):
    """The dataset cannot be read as the spec describes it (missing, empty, wrong encoding)."""


def read_bytes(spec: DataSpec) -> bytes:
    try:
        return spec.path.read_bytes()
    except OSError as exc:
        raise DataError(f"cannot read {spec.path}: {exc.strerror}") from exc


def load_frame(spec: DataSpec, raw: bytes) -> pd.DataFrame:
    """Decode, parse, rename and derive columns as the spec says.

    A derivation whose inputs are missing or not numeric is skipped, so the expectation suite
    reports the bad source column instead of a pandas traceback.
    """
    try:
        text = raw.decode(spec.encoding)
    except UnicodeDecodeError as exc:
        raise DataError(
            f"{spec.path.name} is not valid {spec.encoding}: byte 0x{raw[exc.start]:02x} at "
            f"offset {exc.start} ({exc.reason})"
        ) from exc
    if not text.strip():
        raise DataError(f"{spec.path.name} is empty")
    try:
        frame = pd.read_csv(
            io.StringIO(text), na_values=list(spec.na_values), keep_default_na=False
        )
    except (pd.errors.ParserError, pd.errors.EmptyDataError) as exc:
        raise DataError(f"{spec.path.name} is not a readable CSV: {exc}") from exc
    frame = frame.rename(columns=spec.rename)
    for derivation in spec.derive:
        names = set(re.findall(r"[A-Za-z_][A-Za-z0-9_]*", derivation.expression))
        if names - set(frame.columns) or not all(
            pd.api.types.is_numeric_dtype(frame[name]) for name in names
        ):
            continue
        try:
            frame[derivation.column] = frame.eval(derivation.expression)
        except Exception as exc:  # pandas.eval raises many types for a bad expression
            raise DataError(f"cannot derive {derivation.column!r}: {exc}") from exc
    if spec.sort_by and spec.sort_by in frame.columns:
        frame = frame.sort_values(spec.sort_by, kind="stable").reset_index(drop=True)
    return frame
