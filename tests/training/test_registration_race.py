"""One version per bytes with a SQLite store (solo): three trainers of the same spec entering
registration at the same moment (real processes, tests/registration_race.py) end with one
version, and two of them report it reused. The team server's case: tests/team/test_ci_path.py."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.registration_race import one_version, race
from tests.team.conftest import spec_variant

pytestmark = pytest.mark.integration


def test_three_trainers_of_the_same_bytes_make_one_version(tmp_path: Path) -> None:
    from mlflow import MlflowClient

    uri = f"sqlite:///{tmp_path / 'store' / 'mlflow.db'}"
    env = os.environ | {"MLFLOW_TRACKING_URI": uri}
    spec = spec_variant(tmp_path, 40, "potability_race")
    results = race(spec, [env] * 3, tmp_path / "barrier")
    version = one_version(results)
    versions = MlflowClient(tracking_uri=uri).search_model_versions("name = 'potability_race'")
    assert [v.version for v in versions] == [int(version)] == [1]
