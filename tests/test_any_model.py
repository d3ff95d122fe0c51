"""Any number of models, with any output names (issue 20 §2): the tests that run for every
spec in training/specs/ derive what they expect from the spec, so a model a newcomer adds is
checked by them too (README, "Add a model": `make test` trains and checks it).

Two such models (tests/extra_models.py: other answer fields, one with a timestamp) are added
to a copy of the code and the tests, in a fresh git repository beside no other spec (so only
they are trained), and pytest runs there every test parametrized over ``available()``.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from settings import TOP_LEVEL_MODULES
from tests.extra_models import EXTRA_MODELS

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[1]
CODE = ("training", "inference", "registry", "tools", "monitoring", "tests")
FILES = (*TOP_LEVEL_MODULES, "pyproject.toml")
# A test that runs once per model in training/specs/.
PER_MODEL = re.compile(r"@pytest\.mark\.parametrize\(\s*\"name\",\s*available\(\)\s*\)")


def spec_driven() -> list[str]:
    """The test files with a test parametrized over every model, relative to the checkout."""
    return sorted(
        str(path.relative_to(REPO))
        for path in (REPO / "tests").rglob("test_*.py")
        if PER_MODEL.search(path.read_text(encoding="utf-8"))
    )


def copy_with_only(repo: Path) -> Path:
    """The code and the tests, committed, then the extra models, committed as "the change"."""
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", "specs")
    for folder in CODE:
        shutil.copytree(REPO / folder, repo / folder, ignore=ignore)
    for name in FILES:
        shutil.copy2(REPO / name, repo / name)
    (repo / "training" / "specs").mkdir()
    for model in EXTRA_MODELS:
        model.write(repo)
    ident = ["-c", "user.name=test", "-c", "user.email=test@example.invalid"]
    for args in (["init", "-q"], ["add", "."], ["commit", "-qm", "the code and two models"]):
        subprocess.run(["git", *ident, *args], cwd=repo, check=True, capture_output=True)
    return repo


def test_the_spec_driven_tests_pass_for_two_models_with_their_own_output_names(
    tmp_path: Path,
) -> None:
    files = spec_driven()
    assert "tests/training/test_pipeline.py" in files and len(files) >= 3, files
    repo = copy_with_only(tmp_path / "repo")
    names = [m.name for m in EXTRA_MODELS]
    # The copy's own code (pyproject's pythonpath), never the checkout's; a store per test run.
    env = {k: v for k, v in os.environ.items()
           if k not in ("PYTHONPATH", "PYTHONSAFEPATH", "MLFLOW_TRACKING_URI")}  # fmt: skip
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-rA", "-p", "no:cacheprovider",
         "-k", " or ".join(names), *files],
        cwd=repo, env=env, capture_output=True, text=True, timeout=1800,
    )  # fmt: skip
    report = done.stdout[-6000:] + done.stderr[-2000:]
    assert done.returncode == 0, report
    passed = re.findall(r"^PASSED (\S+?)::\S+\[(\w+)\]$", done.stdout, re.M)
    for name in names:  # every spec-driven file ran for both models
        assert {path for path, model in passed if model == name} == set(files), report
    assert not re.search(r"\b(skipped|xfailed|xpassed)\b", done.stdout.splitlines()[-1]), report
