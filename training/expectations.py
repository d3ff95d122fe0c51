"""The data contract: great-expectations suites kept as JSON under ``data/expectations/``."""

from __future__ import annotations

import json
import logging
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from inference.calendar_features import FEATURES as CALENDAR
from training import data
from training.spec import SpecError

NUMERIC_TYPES = ["float64", "Float64", "float32", "int64", "Int64", "int32"]


class ValidationFailed(Exception):
    """The dataset breaks its expectation suite; ``failures`` says which and how often, and
    ``causes`` what most likely made them (said first)."""

    def __init__(self, dataset: str, failures: list[str], causes: Sequence[str] = ()) -> None:
        lines = "\n".join([*(f"  cause: {c}" for c in causes), *(f"  - {f}" for f in failures)])
        super().__init__(f"{dataset} fails {len(failures)} expectation(s):\n{lines}")
        self.failures = failures
        self.causes = list(causes)


@dataclass(frozen=True)
class ValidationReport:
    success: bool
    evaluated: int
    failures: list[str]
    result: dict[str, Any]  # the full great-expectations result, logged to MLflow
    causes: list[str] = field(default_factory=list)  # what most likely made the failures


def load_suite(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text(encoding="utf-8"))


def feature_ranges(suite: dict[str, Any], columns: list[str]) -> dict[str, dict[str, float]]:
    """Value bounds per column, read from the suite: serving enforces these, not a copy.
    A calendar feature is not a column of the data: its bounds are its definition's.

    Raises:
        SpecError: a feature has no range in the suite, or one without both numeric bounds.
    """
    out: dict[str, dict[str, float]] = {c: {} for c in columns if c not in CALENDAR}
    for exp in suite["expectations"]:
        column, kwargs = exp["kwargs"].get("column"), exp["kwargs"]
        if column in out and exp["type"] == "expect_column_values_to_be_between":
            bounds = kwargs.get("min_value"), kwargs.get("max_value")
            if not all(isinstance(b, int | float) for b in bounds):
                raise SpecError(
                    f"the suite's range for feature {column!r} needs both min_value and "
                    f"max_value as numbers (serving enforces [minimum, maximum]), not {bounds}"
                )
            out[column] = {"minimum": float(bounds[0]), "maximum": float(bounds[1])}
    unbounded = [c for c, r in out.items() if not r]
    if unbounded:
        raise SpecError(
            f"the suite gives no value range for feature(s) {unbounded}: add "
            "expect_column_values_to_be_between for each (serving enforces those ranges)"
        )
    calendar = {c: {"minimum": CALENDAR[c].minimum, "maximum": CALENDAR[c].maximum}
                for c in columns if c in CALENDAR}  # fmt: skip
    return {c: out.get(c) or calendar[c] for c in columns}


def validate(frame: Any, suite: dict[str, Any]) -> ValidationReport:
    """Validate a pandas frame, or a Spark DataFrame through great-expectations' Spark
    datasource (the Spark engine), against the same suite."""
    gx = _great_expectations()
    context = gx.get_context(mode="ephemeral")
    from great_expectations.data_context.types.base import ProgressBarsConfig

    context.variables.progress_bars = ProgressBarsConfig(globally=False)
    if isinstance(frame, pd.DataFrame):
        source, expected = context.data_sources.add_pandas("training"), _fresh(suite)
    else:
        source, expected = context.data_sources.add_spark("training"), spark_suite(suite)
    batch = (
        source.add_dataframe_asset("dataset")
        .add_batch_definition_whole_dataframe("whole")
        .get_batch(batch_parameters={"dataframe": frame})
    )
    result = batch.validate(gx.ExpectationSuite(**expected))
    columns = {str(c) for c in frame.columns}
    failed = [r for r in result.results if not r.success]
    # Columns of numbers read as text (an unlisted missing-value marker), for the causes.
    text = data.text_cells(frame) if failed and isinstance(frame, pd.DataFrame) else {}
    # Type failures first: a text column fails every range check on it too.
    failed.sort(key=lambda r: r.expectation_config.type not in _TYPE_CHECKS)
    return ValidationReport(
        success=bool(result.success),
        evaluated=int(result.statistics["evaluated_expectations"]),
        failures=[_describe(r, columns, text) for r in failed],
        result=result.to_json_dict(),
        causes=[
            data.unlisted_marker(c, text[c]) for c in sorted(_failed_columns(failed) & set(text))
        ],
    )


_TYPE_CHECKS = ("expect_column_values_to_be_in_type_list", "expect_column_values_to_be_of_type")


def _failed_columns(failed: list[Any]) -> set[str]:
    return {str(r.expectation_config.kwargs.get("column")) for r in failed}


# The suites name pandas dtypes; great-expectations' Spark datasource checks pyspark.sql.types
# class names. The same suite file serves both engines through this one table.
SPARK_TYPES = {"float64": "DoubleType", "Float64": "DoubleType", "float32": "FloatType",
               "Float32": "FloatType", "int64": "LongType", "Int64": "LongType",
               "int32": "IntegerType", "Int32": "IntegerType", "int16": "ShortType",
               "int8": "ByteType", "bool": "BooleanType", "boolean": "BooleanType",
               "object": "StringType", "str": "StringType", "string": "StringType"}  # fmt: skip


def spark_suite(suite: dict[str, Any]) -> dict[str, Any]:
    """The suite with each ``type_list`` and ``type_`` in Spark's type names (a name already
    Spark's stays)."""
    out = _fresh(suite)
    for exp in out["expectations"]:
        kwargs = exp["kwargs"]
        types = kwargs.get("type_list")
        if exp["type"] == "expect_column_values_to_be_in_type_list" and types:
            kwargs["type_list"] = list(dict.fromkeys(SPARK_TYPES.get(t, t) for t in types))
        if exp["type"] == "expect_column_values_to_be_of_type" and kwargs.get("type_"):
            kwargs["type_"] = SPARK_TYPES.get(kwargs["type_"], kwargs["type_"])
    return out


def _great_expectations() -> Any:
    # Imported on first use (about 4 s); it logs noisy lines about its ephemeral context.
    logging.getLogger("great_expectations").setLevel(logging.ERROR)
    # It imports pyspark when the spark group is installed, and pyspark warns about pandas 3
    # in the middle of the pandas engine's progress line; the Spark engine's tests cover it.
    warnings.filterwarnings("ignore", "PySpark does not yet fully support", FutureWarning)
    import great_expectations as gx

    return gx


def _fresh(suite: dict[str, Any]) -> dict[str, Any]:
    # The suite object is mutated by validation; give it a copy of the stored JSON.
    return json.loads(json.dumps(suite))


def _describe(result: Any, columns: set[str], text: dict[str, dict[str, int]]) -> str:
    """One failed expectation: what was expected and what was found, in one line."""
    config = result.expectation_config
    kwargs = {k: v for k, v in config.kwargs.items() if k not in ("column", "batch_id")}
    column = config.kwargs.get("column")
    where = f"column {column!r}: " if column else ""
    what = f"{config.type}({', '.join(f'{k}={v}' for k, v in kwargs.items())})"
    info = result.result or {}
    if info.get("unexpected_count") is not None:
        sample = info.get("partial_unexpected_list") or []
        detail = f"{info['unexpected_count']} of {info.get('element_count')} rows unexpected" + (
            f", e.g. {sample[:3]}" if sample else ""
        )
    elif "observed_value" in info:
        detail = f"observed {info['observed_value']!r}"
    elif column is not None and str(column) not in columns:
        detail = "column is missing"
    elif column is not None and str(column) in text:
        detail = "not evaluated: the column holds text (see the cause above)"
    else:
        message = _exception_message(result.exception_info)
        detail = f"could not be evaluated: {message}" if message else "failed"
    return f"{where}{what}: {detail}"


def _exception_message(info: Any) -> str | None:
    """great-expectations reports an exception at the top level, or per metric it could not
    compute ({metric id: {"exception_message": ...}})."""
    if not isinstance(info, dict):
        return None
    if info.get("raised_exception"):
        return str(info.get("exception_message"))
    nested = (_exception_message(v) for v in info.values() if isinstance(v, dict))
    return next((m for m in nested if m), None)
