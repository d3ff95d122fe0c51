"""hadolint on the Lambda image's Dockerfile (written in inference/, linted here as CI does)."""

from __future__ import annotations

import subprocess
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def test_dockerfile_hadolint():
    dockerfile = REPO / "inference" / "Dockerfile"
    assert dockerfile.is_file(), "inference/Dockerfile does not exist yet"
    hadolint = REPO / ".venv" / "bin" / "hadolint"
    result = subprocess.run(
        [str(hadolint), "--failure-threshold", "warning", str(dockerfile)],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stdout + result.stderr
