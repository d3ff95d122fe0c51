"""From solo to team (tools/tracking_migrate.py): a SQLite store with a trained, promoted-like
version moves into the team server with its runs (params, metric history, tags, datasets,
artifacts), logged model, version tags and aliases, verified; a second run copies nothing."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.registry.registry_helpers import REPO
from tests.team.conftest import spec_variant, train, trained
from tools import tracking_server
from tools.tracking_server import ADMIN, SCIENTIST

pytestmark = pytest.mark.integration


def version_of(result: dict[str, str]) -> tuple[str, str]:
    return "potability_solo", result["version"]


def test_a_solo_store_moves_to_the_team_server(
    team_stack: tracking_server.Stack, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from mlflow import MlflowClient
    from mlflow.entities import LoggedModelStatus

    solo = f"sqlite:///{tmp_path / 'solo' / 'mlflow.db'}"
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_TRACKING")}
    result = trained(train(env | {"MLFLOW_TRACKING_URI": solo}, "--json", "--spec",
                           str(spec_variant(tmp_path, 40, "potability_solo"))))  # fmt: skip
    local = MlflowClient(solo)
    local.set_model_version_tag("potability_solo", result["version"], "s3_version_id", "v-123")
    local.set_registered_model_alias("potability_solo", "champion", result["version"])

    def migrate() -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "tools.tracking_migrate", "--source", solo],
            cwd=REPO, env=env | team_stack.env(ADMIN), capture_output=True, text=True,
            timeout=900,
        )  # fmt: skip

    done = migrate()
    assert done.returncode == 0, done.stderr
    assert "artifacts verified by SHA-256" in done.stdout and "renumbered" not in done.stdout

    for key, value in team_stack.env(SCIENTIST).items():
        monkeypatch.setenv(key, value)
    server = MlflowClient(team_stack.uri)
    version = server.get_model_version("potability_solo", result["version"])
    assert version.tags["artifact_sha256"] == result["artifact_sha256"]
    assert version.tags["s3_version_id"] == "v-123"
    # Its aliases as in the solo store: champion, and candidate when it met its gates.
    assert "champion" in version.aliases
    assert set(version.aliases) == set(local.get_model_version(*version_of(result)).aliases)
    run, original = server.get_run(version.run_id), local.get_run(result["run_id"])
    assert run.data.params == original.data.params
    assert run.data.metrics == original.data.metrics
    names = sorted(i.dataset.name for i in run.inputs.dataset_inputs)
    assert names == ["potability_solo-held-out", "potability_solo-train"]
    bundle = Path(server.download_artifacts(run.info.run_id, "bundle/model.joblib", str(tmp_path)))
    assert hashlib.sha256(bundle.read_bytes()).hexdigest() == result["artifact_sha256"]
    logged = version.source.removeprefix("models:/")  # the copied logged model, finalized
    assert server.get_logged_model(logged).status == LoggedModelStatus.READY

    again = migrate()  # idempotent: everything is found, nothing copied
    assert again.returncode == 0, again.stderr
    assert "(0 copied now)" in again.stdout
    assert len(server.search_model_versions("name = 'potability_solo'")) == 1
