""".github/workflows/rollback.yml's steps run for real (bash, the registry CLI, the loopback S3,
an MLflow store): a rollback to a named release, then the same workflow again (a re-run, or a
retried job), which must find that release live and change nothing."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import Any

import boto3
import pytest
import yaml

from registry.manifest import manifest_key
from settings import TOP_LEVEL_MODULES
from tests.registry.registry_helpers import REPO, Versions, approve, run_cli

pytestmark = pytest.mark.integration

WORKFLOW = REPO / ".github" / "workflows" / "rollback.yml"


def step(name: str) -> str:
    jobs = yaml.safe_load(WORKFLOW.read_text())["jobs"]
    (found,) = [s for s in jobs["rollback"]["steps"] if s.get("name") == name]
    return str(found["run"])


def run_step(name: str, workdir: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["bash", "-e", "-c", step(name)], cwd=workdir, env=env,
                          capture_output=True, text=True, timeout=300)  # fmt: skip


@pytest.fixture
def workdir(tmp_path: Path) -> Path:
    """The step's working directory: the checkout's code and venv, its own release.json."""
    work = tmp_path / "work"
    work.mkdir()
    for name in (".venv", "registry", "training", "inference", *TOP_LEVEL_MODULES):
        (work / name).symlink_to(REPO / name)
    return work


def manifest_versions(bucket: str) -> int:
    listed = boto3.client("s3").list_object_versions(Bucket=bucket, Prefix=manifest_key("wqi"))
    return len(listed.get("Versions", []))


def test_a_rerun_of_a_rollback_to_a_named_release_changes_nothing(
    versions: Versions, s3_env: dict[str, str], tmp_path: Path, workdir: Path
) -> None:
    released: list[dict[str, Any]] = []
    for i, rmse in enumerate((7.0, 6.0, 5.0)):
        v, _ = versions.add(metrics={"rmse": rmse, "r2": 0.8})
        proc = run_cli("promote", "wqi", "--approvals", str(approve(tmp_path / f"{i}", wqi=v)))
        assert proc.returncode == 0, proc.stderr
        released.append(json.loads(proc.stdout))
    target = released[0]  # two releases back: `--steps` would have to be counted
    summary = tmp_path / "summary.md"
    env = os.environ | {
        "MODEL": "wqi", "TO": target["version_id"], "TO_VERSION": "", "REASON": "bad canary",
        "GITHUB_STEP_SUMMARY": str(summary),
    }  # fmt: skip

    first = run_step("Roll back", workdir, env)
    assert first.returncode == 0, first.stderr
    done = json.loads((workdir / "release.json").read_text())
    assert done["mlflow_version"] == target["mlflow_version"] and done["action"] == "rollback"
    assert done["reason"] == "bad canary"
    writes = manifest_versions(s3_env["bucket"])

    again = run_step("Roll back", workdir, env)  # "Re-run all jobs"
    assert again.returncode == 0, again.stderr
    assert "already live" in again.stderr
    assert json.loads((workdir / "release.json").read_text()) == done
    assert manifest_versions(s3_env["bucket"]) == writes  # not one step further
    assert versions.champion() == target["mlflow_version"]
    assert summary.read_text().count("### wqi: the release") == 2


@pytest.mark.parametrize(("to", "to_version"), [("", ""), ("abc", "1")])
def test_the_target_must_be_named_exactly_once(to: str, to_version: str, workdir: Path) -> None:
    env = os.environ | {"TO": to, "TO_VERSION": to_version}
    proc = run_step("The target (exactly one of to and to_version)", workdir, env)
    assert proc.returncode == 2 and "set exactly one of to" in proc.stdout
