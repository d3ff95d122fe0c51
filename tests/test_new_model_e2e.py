"""Adding a model is data, not code (README, "Add a model"; issue 10 §3).

A throwaway model (a generated CSV, its expectation suite, its spec: three new files, no
Python) goes through the real entry points: ``python -m training``, ``python -m registry
promote`` and ``python -m tools.invoke``, against a fresh MLflow store and the loopback S3.

Why a copy of the code: specs are found in ``training/specs/`` next to the code
(``settings.SPECS_DIR``, derived from the package's own location), and registry
promotion looks its model's gates up there too. Writing the throwaway spec into the checkout
would show it to every other test and command running meanwhile (``make demo`` would train
it); adding a ``SPECS_DIR`` override would be a Python change made only for this test. So the
test copies the Python packages the flow runs (a few hundred KB, byte for byte) and the
shipped specs and suites into a temporary git repository, commits that as "the repository",
commits the three new files as the change under test, and runs the entry points there with
the checkout's virtualenv. The copy's history then proves the point: the commit that added
the model touched no Python file.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from settings import TOP_LEVEL_MODULES
from tests.extra_models import THROWAWAY

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[1]
PACKAGES = ("training", "inference", "registry", "tools")
MODULES = TOP_LEVEL_MODULES  # shared paths, settings and the document renderer
NAME = THROWAWAY.name


def git(repo: Path, *args: str) -> str:
    identity = ["-c", "user.name=test", "-c", "user.email=test@example.invalid"]
    out = subprocess.run(["git", *identity, *args], cwd=repo, capture_output=True, text=True,
                         check=True)  # fmt: skip
    return out.stdout.strip()


@pytest.fixture
def repo_copy(tmp_path: Path) -> Path:
    """The code and the shipped specs and suites, committed in a fresh git repository."""
    copy = tmp_path / "repo"
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    for package in PACKAGES:
        shutil.copytree(REPO / package, copy / package, ignore=ignore)
    for module in MODULES:
        shutil.copy2(REPO / module, copy / module)
    shutil.copytree(REPO / "data" / "expectations", copy / "data" / "expectations")
    (copy / ".gitignore").write_text(".local/\n")
    git(copy, "init", "--quiet")
    git(copy, "add", ".")
    git(copy, "commit", "--quiet", "-m", "the repository")
    return copy


def add_model(copy: Path) -> None:
    """README "Add a model", steps 1-3, then a commit before training."""
    THROWAWAY.write(copy)
    git(copy, "add", "data", "training/specs")
    git(copy, "commit", "--quiet", "-m", "add the throwaway model")


def entry_point(copy: Path, env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", *args], cwd=copy, env=env, capture_output=True,
                          text=True, timeout=600)  # fmt: skip


def test_a_new_model_goes_from_data_to_an_answer_without_code(
    repo_copy: Path, s3_env: dict[str, str], tmp_path: Path
) -> None:
    add_model(repo_copy)
    changed = git(repo_copy, "diff", "--name-only", "HEAD~1", "HEAD").splitlines()
    # The whole change that added the model: no .py file.
    assert sorted(changed) == [
        "data/expectations/throwaway.json",
        "data/throwaway.csv",
        "training/specs/throwaway.toml",
    ]

    tracking = f"sqlite:///{tmp_path / 'mlflow.db'}"
    # The subprocesses import the copy (cwd first on sys.path), never the checkout.
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONSAFEPATH")}
    env["MLFLOW_TRACKING_URI"] = tracking

    # train -> register: a candidate, recorded against the commit that added the model.
    trained = entry_point(repo_copy, env, "training", NAME, "--json")
    assert trained.returncode == 0, trained.stderr
    result = json.loads(trained.stdout)
    assert result["name"] == NAME and result["candidate"] is True, result
    assert "WARNING" not in trained.stderr  # committed first: nothing to warn about
    from mlflow import MlflowClient

    version = MlflowClient(tracking_uri=tracking).get_model_version(NAME, result["version"])
    assert version.tags["git_sha"] == git(repo_copy, "rev-parse", "HEAD")
    assert version.tags["artifact_sha256"] == result["artifact_sha256"]

    # approve: the reviewer's entry, as registry/README.md describes it.
    approvals = tmp_path / "approved.toml"
    approvals.write_text(
        f'[{NAME}]\nversion = "{result["version"]}"\nsha256 = "{result["artifact_sha256"]}"\n'
        f'approved_by = "test"\nreason = "end-to-end test of a new model"\n'
    )
    promoted = entry_point(repo_copy, env, "registry", "promote", NAME, "--approvals",
                           str(approvals))  # fmt: skip
    assert promoted.returncode == 0, promoted.stderr
    release = json.loads(promoted.stdout)
    assert release["name"] == NAME and str(release["mlflow_version"]) == result["version"]
    assert release["key"] == f"models/{NAME}/model.joblib"

    # invoke: the Lambda handler, in-process in tools.invoke, pinned to that release.
    event = tmp_path / "event.json"
    event.write_text(json.dumps({"readings": {"conductivity": 850.0, "temperature": 18.5,
                                              "turbidity": 1.2}}))  # fmt: skip
    answered = entry_point(repo_copy, env, "tools.invoke", str(event), "--model", NAME)
    assert answered.returncode == 0, answered.stderr
    answer = json.loads(answered.stdout)
    assert answer["statusCode"] == 200, answer
    prediction = answer["prediction"]
    assert prediction["clear"] is True and 0.5 < prediction["probability"] <= 1.0, answer
    assert answer["model"]["name"] == NAME  # every answer names the model that made it
    assert answer["model"]["s3VersionId"] == release["version_id"]
