"""`python -m training` on a developer's machine: it warns before recording a version that no
commit reproduces, and its XGBoost threads sleep instead of spinning on a busy CPU."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

import training.__main__ as cli

REPO = Path(__file__).resolve().parents[2]


def test_openmp_threads_sleep_when_waiting() -> None:
    """The entry point sets OMP_WAIT_POLICY before anything loads OpenMP: libgomp reads it
    once, at load. Its spin count shows the policy it took: 300000 by default, 0 if PASSIVE."""
    env = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"}
    env |= {"OMP_DISPLAY_ENV": "VERBOSE", "PYTHONPATH": str(REPO)}
    probe = "import training.__main__, xgboost, sklearn.ensemble"
    out = subprocess.run([sys.executable, "-c", probe], cwd=REPO, env=env, capture_output=True,
                         text=True, check=True)  # fmt: skip
    assert "GOMP_SPINCOUNT = '0'" in out.stderr, out.stderr
    explicit = env | {"OMP_WAIT_POLICY": "ACTIVE"}  # a deliberate choice is respected
    out = subprocess.run([sys.executable, "-c", probe], cwd=REPO, env=explicit,
                         capture_output=True, text=True, check=True)  # fmt: skip
    assert "OMP_WAIT_POLICY = 'ACTIVE'" in out.stderr


def spec_at(source: Path, data: Path, suite: Path) -> Any:
    return SimpleNamespace(source=source, data=SimpleNamespace(path=data, expectations=suite))


@pytest.fixture
def checkout(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A git repository standing in for the checkout: spec.toml committed, data.csv not."""
    repo = tmp_path / "repo"
    repo.mkdir()
    for name in ("spec.toml", "suite.json", "data.csv"):
        (repo / name).write_text(name)
    ident = ["-c", "user.name=t", "-c", "user.email=t@example.invalid"]
    for args in (["init", "-q"], ["add", "spec.toml", "suite.json"], ["commit", "-qm", "x"]):
        subprocess.run(["git", *ident, *args], cwd=repo, check=True)
    monkeypatch.setattr(cli, "REPO", repo)
    return repo


def test_a_dirty_tree_is_warned_about_before_training(checkout: Path) -> None:
    spec = spec_at(checkout / "spec.toml", checkout / "suite.json", checkout / "suite.json")
    (warning,) = cli.provenance_warnings("0123abc-dirty", [spec])
    assert warning.startswith("WARNING: ") and "git_sha 0123abc-dirty" in warning
    assert "Commit first" in warning
    assert cli.provenance_warnings("0123abc", [spec]) == []


def test_an_uncommitted_input_is_named(checkout: Path, tmp_path: Path) -> None:
    """A new model's files are untracked, so the tree is not "dirty", yet the commit the
    version records does not contain them."""
    spec = spec_at(checkout / "spec.toml", checkout / "data.csv", checkout / "suite.json")
    (warning,) = cli.provenance_warnings("0123abc", [spec])
    assert "not committed: data.csv." in warning and "git add and commit" in warning
    outside = spec_at(tmp_path / "elsewhere.toml", checkout / "suite.json", checkout / "spec.toml")
    assert cli.provenance_warnings("0123abc", [outside]) == []  # `--spec /tmp/x.toml`: no claim
    assert cli.provenance_warnings("unknown", [spec]) == []  # no git at all: nothing recorded


def test_train_prints_the_warning_before_training(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from training import bundle

    said_before: list[str] = []

    def train(pipeline: Any, spec: Any, args: Any) -> int:
        said_before.append(capsys.readouterr().err)
        return 0

    monkeypatch.setattr(bundle, "git_sha", lambda: "0123abc-dirty")
    monkeypatch.setattr(cli, "_train", train)
    assert cli.main(["wqi"]) == 0
    assert len(said_before) == 1
    assert said_before[0].startswith("WARNING: tracked files have uncommitted changes")
