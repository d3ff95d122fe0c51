"""inference/requirements.txt is exactly what the lock file exports for the image: no drift."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from serving_helpers import uv

REPO = Path(__file__).resolve().parents[2]
# The command that wrote the file; the image installs it with --require-hashes semantics.
EXPORT = [
    "export", "--frozen", "--no-dev", "--no-default-groups", "--group", "serving",
    "--no-emit-project", "--no-header",
]  # fmt: skip
SERVING = {"aws-lambda-powertools", "numpy", "onnxruntime"}
NEVER = {"pandas", "scikit-learn", "xgboost", "xgboost-cpu", "scipy", "joblib", "boto3", "mlflow"}


def pinned(text: str) -> set[str]:
    return {line.split("==")[0] for line in text.splitlines() if "==" in line}


def test_requirements_equal_a_fresh_export() -> None:
    fresh = subprocess.run(
        [uv(), *EXPORT], cwd=REPO, check=True, capture_output=True, text=True
    ).stdout
    committed = (REPO / "inference" / "requirements.txt").read_text()
    assert committed == fresh, "inference/requirements.txt drifted: re-run `make requirements`"


def test_requirements_hold_serving_packages_only() -> None:
    text = (REPO / "inference" / "requirements.txt").read_text()
    names = pinned(text)
    assert names >= SERVING
    assert not names & NEVER
    assert "--hash=sha256:" in text


def test_missing_uv_fails_instead_of_skipping(monkeypatch: pytest.MonkeyPatch) -> None:
    import serving_helpers

    monkeypatch.setattr(serving_helpers, "REPO", Path("/nonexistent"))
    monkeypatch.setattr(serving_helpers.shutil, "which", lambda name: None)
    with pytest.raises(pytest.fail.Exception, match="uv not found"):
        serving_helpers.uv()
