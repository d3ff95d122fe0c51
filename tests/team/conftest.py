"""The team's tracking server for the CI-path tests: one private stack per session (its own
PostgreSQL, in-memory S3 and MLflow with basic auth, in a temp folder), stopped at the end."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tools import tracking_server

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="session")
def team_stack() -> Iterator[tracking_server.Stack]:
    with tracking_server.private_stack() as stack:
        yield stack


def client_env(stack: tracking_server.Stack, user: str, **extra: str) -> dict[str, str]:
    """A client's environment: the URI and one login, and no AWS variables, so the artifact
    proxy is what moves the bytes (a client never holds S3 credentials)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "MODEL_BUCKET"))}
    return env | stack.env(user) | extra


def train(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "training", *args],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )


def trained(proc: subprocess.CompletedProcess[str]) -> dict[str, Any]:
    """The result of `python -m training --json` (one model). Every stdout line must be JSON:
    with a server, MLflow also prints "View run ... at: URL" there unless told not to."""
    assert proc.returncode == 0, proc.stderr
    (line,) = proc.stdout.splitlines()
    return dict(json.loads(line))


def spec_variant(tmp: Path, n_estimators: int, name: str = "potability") -> Path:
    """potability's spec with another tree count (other bytes), under ``name``."""
    text = (REPO / "training" / "specs" / "potability.toml").read_text()
    assert "n_estimators = 300" in text and 'name = "potability"' in text
    text = text.replace("n_estimators = 300", f"n_estimators = {n_estimators}")
    path = tmp / f"{name}-{n_estimators}.toml"
    path.write_text(text.replace('name = "potability"', f'name = "{name}"'))
    return path
