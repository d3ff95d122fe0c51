"""The workflows' shell steps run for real (bash, jq, the repository's scripts), with only the
registry CLI faked: GitHub's step semantics (in order, stop at the first failure) on top."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml

from registry.manifest import Release

REPO = Path(__file__).resolve().parents[2]
WORKFLOWS = REPO / ".github" / "workflows"

# `python -m registry ...` answered as a promotion of `potability` and a refusal of `wqi`
# would be (exit 4: not approved); everything else is the real interpreter.
FAKE_PYTHON = """#!/bin/bash
if [ "$1" = -m ] && [ "$2" = registry ]; then
  case "$3 $4" in
    "current "*) exit 0 ;;
    "promote wqi") echo "registry: error: wqi is not approved" >&2; exit 4 ;;
    "promote potability") cat "$RELEASE_JSON"; exit 0 ;;
  esac
fi
exec {python} "$@"
"""


def job_steps(workflow: str, job: str) -> list[dict[str, Any]]:
    data = yaml.safe_load((WORKFLOWS / workflow).read_text())
    return list(data["jobs"][job]["steps"])


def run_steps(steps: list[dict[str, Any]], names: list[str], env: dict[str, str],
              cwd: Path) -> dict[str, int]:  # fmt: skip
    """Run the named steps' scripts as GitHub does: in order, and after a failure only the
    steps whose `if` asks for it. Returns each run step's exit code."""
    codes: dict[str, int] = {}
    failed = False
    for step in steps:
        if step.get("name") not in names:
            continue
        if failed and "always()" not in str(step.get("if", "")):
            continue
        result = subprocess.run(["bash", "-e", "-c", step["run"]], cwd=cwd, env=env,
                                capture_output=True, text=True)  # fmt: skip
        codes[step["name"]] = result.returncode
        failed = failed or result.returncode != 0
    return codes


def test_one_refused_promotion_never_stops_the_others(tmp_path: Path) -> None:
    """wqi is refused (exit 4), potability promotes: potability's release is published and it
    is the one deployed; the job still fails, with wqi's exit code, after that."""
    venv = tmp_path / ".venv" / "bin"
    venv.mkdir(parents=True)
    (venv / "python").write_text(FAKE_PYTHON.format(python=sys.executable))
    (venv / "python").chmod(0o755)
    release = Release("potability", "2", "bucket", "models/potability/model.joblib", "v-2",
                      "5" * 64, "a" * 40, "2026-12-07T00:00:00Z")  # fmt: skip
    (tmp_path / "release.json").write_text(json.dumps(release.to_dict()))
    outputs, summary = tmp_path / "outputs", tmp_path / "summary"
    env = {
        **os.environ, "PYTHONPATH": f"{REPO / 'infra'}:{REPO}",
        "MODELS": json.dumps(["potability", "wqi"]), "RELEASE_JSON": str(tmp_path / "release.json"),
        "GITHUB_OUTPUT": str(outputs), "GITHUB_STEP_SUMMARY": str(summary),
    }  # fmt: skip
    steps = job_steps("promote.yml", "promote")
    codes = run_steps(steps, ["Promote", "Promoted models (the release changed)",
                              "Refused promotions"], env, tmp_path)  # fmt: skip
    assert codes == {"Promote": 0, "Promoted models (the release changed)": 0,
                     "Refused promotions": 4}, summary.read_text()  # fmt: skip
    promoted = dict(line.split("=", 1) for line in outputs.read_text().splitlines())
    assert json.loads(promoted["models"]) == ["potability"]
    report = summary.read_text()
    assert "### wqi: promotion refused, exit code 4" in report and "### potability" in report
    deploy = yaml.safe_load((WORKFLOWS / "promote.yml").read_text())["jobs"]["deploy"]
    assert "!cancelled()" in deploy["if"], "the promoted models deploy despite the refusal"
