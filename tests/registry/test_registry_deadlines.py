"""Every registry command ends within its deadline (``REGISTRY_DEADLINE_S``) and says so,
whatever S3 does: stays silent, or answers one byte at a time (which no socket timeout ends).
And what a command prints never decides its exit code: a closed stdout loses the text only.

Real processes (``python -m registry`` as CI runs it), the loopback S3 behind the fault proxy
or a silent socket; the test's own timeout is the bound the old code broke."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from registry import errors
from tests.inference.hung_s3 import HungEndpoint
from tests.registry.fault_proxy import FaultProxy
from tests.registry.registry_helpers import REPO, Versions, approve, run_cli

pytestmark = pytest.mark.integration

BOUND_S = 120  # the test's patience: the old code took 90 s to 10 min on these endpoints


@pytest.fixture
def released(versions: Versions, s3_env: dict[str, str], tmp_path: Path) -> dict[str, Any]:
    v1, _ = versions.add()
    proc = run_cli("promote", "wqi", "--approvals", str(approve(tmp_path / "a.toml", wqi=v1)))
    assert proc.returncode == 0, proc.stderr
    return dict(json.loads(proc.stdout))


def registry(*argv: str, endpoint: str, deadline_s: str = "10") -> subprocess.CompletedProcess[str]:
    env = os.environ | {"AWS_ENDPOINT_URL_S3": endpoint, "REGISTRY_DEADLINE_S": deadline_s}
    return subprocess.run([sys.executable, "-m", "registry", *argv], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=BOUND_S)  # fmt: skip


@pytest.mark.parametrize("command", [["current", "wqi"], ["releases", "wqi"]])
def test_a_trickling_s3_ends_at_the_deadline(
    command: list[str], released: dict[str, Any], s3_env: dict[str, str]
) -> None:
    """release.json's GET answered one byte every 0.2 s: about 4 min for the whole answer,
    every wait far under botocore's 30 s read timeout. (What the line names as waited for is
    tested in-process: here, on a loaded machine, the deadline may pass during the imports.)"""

    def trickle_the_manifest(method: str, path: str) -> str:
        return "trickle" if method == "GET" and "/models/wqi/release.json" in path else "pass"

    with FaultProxy(s3_env["endpoint"], trickle_the_manifest, trickle_s=0.2) as proxy:
        proc = registry(*command, endpoint=proxy.endpoint)

    assert proc.returncode == errors.StorageError.exit_code, proc.stderr
    assert proc.stdout == "" and proc.stderr.count("registry: error:") == 1
    assert "the 10 s deadline (REGISTRY_DEADLINE_S) passed" in proc.stderr


@pytest.mark.parametrize("command", [["current", "wqi"], ["rollback", "wqi"]])
def test_a_silent_s3_ends_at_the_deadline(
    command: list[str], versions: Versions, s3_env: dict[str, str]
) -> None:
    """A socket that takes the connection and never answers: botocore waited 30 s a read,
    three attempts, per request."""
    with HungEndpoint() as hung:
        proc = registry(*command, endpoint=hung.url)
    assert proc.returncode == errors.StorageError.exit_code, proc.stderr
    assert proc.stdout == "" and "the 10 s deadline (REGISTRY_DEADLINE_S) passed" in proc.stderr
    if command[0] == "rollback":
        assert "nothing was released" in proc.stderr


def test_a_deadline_that_is_not_a_number_is_a_usage_error() -> None:
    proc = registry("current", "wqi", endpoint="http://127.0.0.1:9", deadline_s="soon")
    assert proc.returncode == errors.UsageError.exit_code
    assert "REGISTRY_DEADLINE_S='soon' is not a positive number of seconds" in proc.stderr


def closed_stdout(*argv: str) -> subprocess.CompletedProcess[str]:
    """`python -m registry ... | true`, deterministically: the pipe's reading end is closed
    before the command starts, so its first write to stdout fails (EPIPE)."""
    read, write = os.pipe()
    os.close(read)
    try:
        return subprocess.run([sys.executable, "-m", "registry", *argv], cwd=REPO,
                              stdout=write, stderr=subprocess.PIPE, text=True,
                              timeout=300)  # fmt: skip
    finally:
        os.close(write)


def test_a_closed_stdout_never_changes_what_the_exit_code_says(
    versions: Versions, s3_env: dict[str, str], tmp_path: Path
) -> None:
    """Before: `promote ... | true` exited 16 "storage unreachable: BrokenPipeError" while the
    version was live, and `releases | true` exited 16 too."""
    v1, _ = versions.add(metrics={"rmse": 6.0, "r2": 0.8})
    v2, _ = versions.add(metrics={"rmse": 5.0, "r2": 0.8})
    for v in (v1, v2):
        promoted = closed_stdout("promote", "wqi", "--approvals", str(approve(tmp_path / v, wqi=v)))
        assert promoted.returncode == 0, promoted.stderr
        assert "stdout is closed" in promoted.stderr and "BrokenPipe" not in promoted.stderr
    assert versions.champion() == v2
    for argv in (["releases", "wqi"], ["releases", "wqi", "--json"], ["current", "wqi"]):
        proc = closed_stdout(*argv)
        assert proc.returncode == 0, (argv, proc.stderr)
    rolled = closed_stdout("rollback", "wqi")
    assert rolled.returncode == 0, rolled.stderr
    assert versions.champion() == v1
    assert json.loads(run_cli("current", "wqi").stdout)["mlflow_version"] == v1
    refused = closed_stdout("rollback", "wqi")  # a refusal keeps its own code
    assert refused.returncode == errors.NoRelease.exit_code, refused.stderr
