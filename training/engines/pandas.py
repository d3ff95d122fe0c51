"""The pandas engine (``[train] engine = "pandas"``, the default): load, validate and train in
this process."""

from __future__ import annotations

import json

from inference.bundle import sha256_hex
from training import data, labels, model
from training.engines.base import Rows, Trained, check_pin, stage, validated
from training.spec import ModelSpec


def train(spec: ModelSpec) -> Trained:
    """Load, validate and train; the stages after it are every engine's (pipeline.run).

    Raises:
        DataError: the data cannot be read, or its bytes are not the ones the spec pins.
        ValidationFailed: the data does not meet its suite.
    """
    name = spec.name
    with stage("load", name) as note:
        raw = data.read_bytes(spec.data)
        data_sha256 = sha256_hex(raw)
        check_pin(spec, data_sha256)
        loaded = data.load(spec.data, raw)
        frame = loaded.frame
        note.append(f"{len(frame):,} rows x {frame.shape[1]} columns{filtered(loaded, spec)}, "
                    f"sha256 {data_sha256[:12]}")  # fmt: skip
        # The spec's list replaces pandas' defaults: say which cells became missing values.
        markers = ", ".join(json.dumps(v, ensure_ascii=False) for v in spec.data.na_values)
        note.append(f"NA markers {markers or 'none'}")

    report, ranges = validated(spec, frame, data_sha256)

    with stage("train", name) as note:
        label = labels.make_label(frame, spec.label)
        dataset = model.make_dataset(frame, label, spec, ranges)
        parts = model.split(dataset, spec)
        fitted = model.fit(parts, spec)
        counts = Rows(dataset.dropped, len(parts.X_train), len(parts.X_test))
        note.append(counts.line())
    rows = counts.metrics(loaded.rows_read, loaded.rows_filtered)
    return Trained(data_sha256, report, ranges, parts, fitted, rows)


def filtered(loaded: data.Loaded, spec: ModelSpec) -> str:
    """The load line's account of the spec's row filter, when it has one."""
    if spec.data.filter is None:
        return ""
    return f" (filter removed {loaded.rows_filtered:,} of {loaded.rows_read:,} rows)"
