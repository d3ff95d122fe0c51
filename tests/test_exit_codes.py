"""Documented exit codes reach the caller (issue 10 §4).

make exits 2 whenever a recipe fails, whatever the command's own code was (it only names it in
its `make: *** [...] Error N` line). So the workflows call the Python entry points directly,
and their steps fail with the documented code; `make` stays the developer's shorthand.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from settings import TOP_LEVEL_MODULES

REPO = Path(__file__).resolve().parents[1]
WORKFLOWS = sorted((REPO / ".github" / "workflows").glob("*.yml"))
# Targets whose exit code carries meaning (training's 2-6, the registry's 2-18): CI calls the
# commands instead. Targets CI may call through make: only pass or fail matters for them.
CODE_BEARING = {"train", "promote", "rollback", "releases", "invoke"}
UNKNOWN_MODEL = 3  # registry/README.md: `python -m registry` exit code for an unknown model
NOT_APPROVED = 4


def run_steps() -> list[dict[str, Any]]:
    return [
        step
        for path in WORKFLOWS
        for job in yaml.safe_load(path.read_text())["jobs"].values()
        for step in job.get("steps", [])
        if "run" in step
    ]


def test_no_workflow_calls_a_code_bearing_make_target() -> None:
    called = {t for s in run_steps() for t in re.findall(r"\bmake (?:-\S+ )*([a-z-]+)", s["run"])}
    assert called and not called & CODE_BEARING, called


def step(name: str) -> str:
    (found,) = [s for s in run_steps() if s.get("name") == name]
    return str(found["run"])


@pytest.fixture
def workdir(tmp_path: Path) -> Path:
    """The step's working directory: the checkout's code and venv, but its own releases/."""
    for name in (
        ".venv",
        "registry",
        "training",
        "inference",
        "tools",
        "infra",
        *TOP_LEVEL_MODULES,
    ):
        (tmp_path / name).symlink_to(REPO / name)
    return tmp_path


def test_the_promote_step_fails_with_the_registry_code(workdir: Path) -> None:
    summary = workdir / "summary.md"
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env |= {"MODELS": '["nosuch"]', "MODEL_BUCKET": "bucket", "PYTHONPATH": "infra",
            "GITHUB_STEP_SUMMARY": str(summary),
            "MLFLOW_TRACKING_URI": f"sqlite:///{workdir / 'mlflow.db'}"}  # fmt: skip
    # The Promote step tries every approved model (one refusal stops no other, issue 18) and
    # records the refusals; the job then fails in "Refused promotions" with the first code.
    out = subprocess.run(["bash", "-e", "-c", step("Promote")], cwd=workdir, env=env,
                         capture_output=True, text=True, timeout=300)  # fmt: skip
    assert out.returncode == 0, out.stdout + out.stderr
    assert "::error title=promote nosuch::exit code 3" in out.stdout
    assert "nosuch: promotion refused, exit code 3" in summary.read_text()
    refused = subprocess.run(["bash", "-e", "-c", step("Refused promotions")], cwd=workdir,
                             env=env, capture_output=True, text=True, timeout=60)  # fmt: skip
    assert refused.returncode == UNKNOWN_MODEL, refused.stdout + refused.stderr


def make(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    # -o: never re-sync .venv from the lock inside a test; the recipe is what is exercised.
    return subprocess.run(["make", "--silent", "-o", ".venv/.synced", *args], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=300)  # fmt: skip


def test_make_collapses_codes_to_2_but_names_them(tmp_path: Path) -> None:
    """Why CI does not go through make; and where a developer still finds the code."""
    empty = tmp_path / "approved.toml"
    empty.write_text("# nothing approved\n")
    # A configured bucket: make's loopback S3 wrapper starts nothing, and the registry refuses
    # before any S3 call.
    env = os.environ | {"MODEL_BUCKET": "bucket", "AWS_ENDPOINT_URL_S3": "http://127.0.0.1:9",
                        "MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path / 'mlflow.db'}"}  # fmt: skip
    command = [sys.executable, "-m", "registry", "promote", "wqi", "--approvals", str(empty)]
    direct = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True)
    assert direct.returncode == NOT_APPROVED, direct.stderr
    through_make = make("promote", "MODEL=wqi", f"ARGS=--approvals {empty}", env=env)
    assert through_make.returncode == 2
    assert re.search(rf"\[Makefile:\d+: promote\] Error {NOT_APPROVED}$", through_make.stderr,
                     re.M), through_make.stderr  # fmt: skip
