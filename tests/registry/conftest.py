"""Registry fixtures: a real MLflow SQLite store per test, copied from a session-wide template so
the schema migrations run once."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.registry.registry_helpers import Versions


@pytest.fixture(scope="session")
def mlflow_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from mlflow import MlflowClient

    db = tmp_path_factory.mktemp("mlflow-template") / "mlflow.db"
    MlflowClient(tracking_uri=f"sqlite:///{db}").search_experiments()  # runs the migrations
    return db


@pytest.fixture
def versions(
    tmp_path: Path, mlflow_template: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Versions]:
    from mlflow import MlflowClient

    db = tmp_path / "mlflow.db"
    shutil.copy(mlflow_template, db)
    uri = f"sqlite:///{db}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    yield Versions(MlflowClient(tracking_uri=uri), tmp_path / "artifacts", uri)


@pytest.fixture
def trained_store(
    trained: dict[str, object], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> dict[str, object]:
    """The session's trained models on a copy of their MLflow store (other tests see it
    untouched); artifacts stay where training wrote them, and are only read."""
    db = tmp_path / "mlflow.db"
    shutil.copy(Path(str(trained["tracking_uri"]).removeprefix("sqlite:///")), db)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{db}")
    return trained
