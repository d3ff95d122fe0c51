"""`python -m training` on a developer's machine: it warns before recording a version that no
commit reproduces, and chooses how XGBoost's threads wait before OpenMP loads."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

import training.__main__ as cli
from training import openmp

REPO = Path(__file__).resolve().parents[2]


def spin_count(env: dict[str, str], tmp_path: Path) -> tuple[str, str]:
    """What libgomp took, as it reports it when it loads (OMP_DISPLAY_ENV), through the real
    entry point: a spec whose CSV is missing gets past the imports, then fails (exit 3)."""
    spec = tmp_path / "nodata.toml"
    text = (REPO / "training" / "specs" / "potability.toml").read_text()
    spec.write_text(text.replace('path = "water_potability.csv"', 'path = "/nonexistent.csv"'))
    out = subprocess.run([sys.executable, "-m", "training", "--spec", str(spec)], cwd=REPO,
                         env=env | {"OMP_DISPLAY_ENV": "VERBOSE"}, capture_output=True,
                         text=True)  # fmt: skip
    assert out.returncode == 3, out.stderr
    return re.findall(r"GOMP_SPINCOUNT = '(\d+)'", out.stderr)[0], out.stderr


def test_the_entry_point_chooses_how_threads_wait_before_openmp_loads(tmp_path: Path) -> None:
    clean = {k: v for k, v in os.environ.items()
             if k not in ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT")}  # fmt: skip
    spins, stderr = spin_count(clean, tmp_path)  # libgomp's own default would be 300000
    busy = "the CPU is busy" in stderr
    assert spins == ("0" if busy else "1000"), stderr


@pytest.mark.parametrize(
    ("environ", "busy", "chosen"),
    [
        ({}, 0.1, {"GOMP_SPINCOUNT": "1000"}),  # idle: a short spin is as fast as the default
        ({}, 1.9, {"OMP_WAIT_POLICY": "PASSIVE"}),  # others use the CPU: sleep at once
        ({}, None, {"GOMP_SPINCOUNT": "1000"}),  # cannot tell (no /proc/stat)
        ({"OMP_WAIT_POLICY": "ACTIVE"}, 1.9, {}),  # the user's choice stands
        ({"GOMP_SPINCOUNT": "5"}, 0.0, {}),
    ],
)
def test_wait_policy(environ: dict[str, str], busy: float | None, chosen: dict[str, str]) -> None:
    assert openmp.wait_policy(environ, lambda: busy) == chosen


def test_busy_cores_sees_a_busy_loop() -> None:
    idle = openmp.busy_cores()
    assert idle is not None and 0.0 <= idle <= (os.cpu_count() or 1)
    hog = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        time.sleep(0.3)
        busy = openmp.busy_cores(0.5)
    finally:
        hog.kill()
        hog.wait()
    assert busy is not None and busy >= 0.8  # at least the busy loop's core


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


def test_exit_codes_come_from_one_table(capsys: pytest.CaptureFixture[str]) -> None:
    """--help prints the table, and training/README.md lists every row of it."""
    from settings import REPO

    with pytest.raises(SystemExit):
        cli.main(["--help"])
    shown = " ".join(capsys.readouterr().out.split())
    readme = (REPO / "training" / "README.md").read_text()
    for code, meaning in cli.EXIT_CODES:
        assert f"{code} {meaning}" in shown
        assert re.search(rf"^\| {code} \| {re.escape(meaning)} \|", readme, re.M), code
