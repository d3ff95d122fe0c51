"""Helpers for the registry tests: register versions the way training does, write approval
files, run the CLI in a subprocess. Imported as tests.registry.registry_helpers (importlib mode)."""

from __future__ import annotations

import contextlib
import hashlib
import os
import subprocess
import sys
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import joblib

REPO = Path(__file__).resolve().parents[2]
# The specs' gates: wqi needs rmse <= 15 and r2 >= 0 (lower rmse is better),
# potability roc_auc >= 0.55.
GOOD_WQI = {"rmse": 5.0, "r2": 0.8}


@dataclass
class Versions:
    """Registers model versions the way training does: bundle logged under ``bundle/``."""

    client: Any
    root: Path
    uri: str

    def add(
        self,
        name: str = "wqi",
        metrics: dict[str, float] | None = None,
        payload: Any = None,
        tags: dict[str, str] | None = None,
        with_bundle: bool = True,
    ) -> tuple[str, str]:
        """Return (version, sha256 of the bundle bytes)."""
        exp = self.client.get_experiment_by_name(name)
        exp_id = (
            exp.experiment_id
            if exp
            else self.client.create_experiment(name, artifact_location=(self.root / name).as_uri())
        )
        run = self.client.create_run(exp_id)
        for key, value in (GOOD_WQI if metrics is None else metrics).items():
            self.client.log_metric(run.info.run_id, key, value)
        local = self.root / "staging" / uuid.uuid4().hex / "model.joblib"
        local.parent.mkdir(parents=True)
        joblib.dump(payload if payload is not None else {"model": uuid.uuid4().hex}, local)
        sha = hashlib.sha256(local.read_bytes()).hexdigest()
        if with_bundle:
            self.client.log_artifact(run.info.run_id, str(local), artifact_path="bundle")
        self.client.set_terminated(run.info.run_id)
        with contextlib.suppress(Exception):  # already registered
            self.client.create_registered_model(name)
        mv = self.client.create_model_version(
            name,
            source=f"{run.info.artifact_uri}/bundle",
            run_id=run.info.run_id,
            tags={"artifact_sha256": sha, "data_sha256": "d" * 64, "git_sha": "abc1234"}
            | (tags or {}),
        )
        self.client.set_registered_model_alias(name, "candidate", mv.version)
        return str(mv.version), sha

    def champion(self, name: str = "wqi") -> str | None:
        try:
            return str(self.client.get_model_version_by_alias(name, "champion").version)
        except Exception:
            return None

    def tags(self, name: str, version: str) -> dict[str, str]:
        return dict(self.client.get_model_version(name, version).tags)


def approved_sha(name: str, version: str) -> str:
    """What a reviewer copies into the approval: the version's artifact_sha256 tag (all zeros
    when there is no such version, or no MLflow store configured for the test)."""
    uri = os.environ.get("MLFLOW_TRACKING_URI")
    if uri:
        from mlflow import MlflowClient

        with contextlib.suppress(Exception):
            tag = MlflowClient(tracking_uri=uri).get_model_version(name, version).tags
            return str(tag.get("artifact_sha256") or "0" * 64)
    return "0" * 64


def approve(path: Path, **entries: str | tuple[str, str]) -> Path:
    """Write an approval file: approve(path, wqi="2") approves version 2 with the sha256 its
    artifact_sha256 tag names; approve(path, wqi=("2", sha)) approves explicit bytes."""
    text = ""
    for name, entry in entries.items():
        version, sha = entry if isinstance(entry, tuple) else (entry, approved_sha(name, entry))
        text += (
            f'[{name}]\nversion = "{version}"\nsha256 = "{sha}"\n'
            'approved_by = "tester"\nreason = "test"\n\n'
        )
    path.write_text(text)
    return path


def run_cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "registry", *args],
        cwd=REPO,
        env=os.environ.copy() if env is None else env,
        capture_output=True,
        text=True,
        timeout=300,
    )
