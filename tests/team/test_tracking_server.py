"""`make tracking-up` / `tracking-down` on a data folder of the test's own: start, reuse, a
killed server that must not block the next `up`, a clean stop, and what the CLIs say when the
server is down. Never touches the checkout's .local/."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.registry.registry_helpers import REPO, approve, run_cli
from tests.team.conftest import client_env, spec_variant, train
from tools import local_s3, processes, tracking_server
from tools.tracking_server import ARTIFACT_BUCKET, CI, SCIENTIST

pytestmark = pytest.mark.integration


@pytest.fixture
def home(s3_endpoint: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """The tool's .local/ in a temp folder (traversable: PostgreSQL may run as `pgserver`),
    its artifacts in a bucket on the tests' S3 (an endpoint the environment configures)."""
    root = Path(tempfile.mkdtemp(prefix="tracking-home-"))
    root.chmod(0o755)
    monkeypatch.setattr(tracking_server, "LOCAL_DIR", root)
    monkeypatch.setattr(tracking_server, "DATA_DIR", root / "tracking")
    monkeypatch.setattr(tracking_server, "STATE_FILE", root / "tracking.json")
    for key, value in local_s3.LOCAL_ENV.items():
        monkeypatch.setenv(key, os.environ.get(key, value))
    monkeypatch.setenv("AWS_ENDPOINT_URL_S3", s3_endpoint)
    local_s3.ensure_bucket(s3_endpoint, ARTIFACT_BUCKET)
    try:
        yield root
    finally:
        tracking_server.down()
        shutil.rmtree(root, ignore_errors=True)


def gone(pid: int) -> bool:
    return not processes.alive(pid)


def test_up_reuse_kill_restart_down(
    home: Path,
    s3_env: dict[str, str],  # the model bucket, for `promote` against the stopped server
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from mlflow import MlflowClient

    first, started = tracking_server.up()
    assert started
    creds = home / "tracking" / "credentials"
    assert stat.S_IMODE(creds.stat().st_mode) == 0o600
    assert tracking_server.main(["status"]) == 0
    again, started = tracking_server.up()
    assert (again, started) == (first, False)  # reused, not a second server

    with monkeypatch.context() as login:  # MlflowClient reads the login from the environment
        for key, value in first.env(SCIENTIST).items():
            login.setenv(key, value)
        MlflowClient(tracking_uri=first.uri).create_registered_model("kept")

    os.killpg(first.mlflow_pid, signal.SIGKILL)  # a crash: the state file names a dead pid
    processes.wait_gone(first.mlflow_pid, 10)
    assert tracking_server.shared_stack() is None
    capsys.readouterr()
    assert tracking_server.main(["status"]) == 3
    assert "not running" in capsys.readouterr().out

    second, started = tracking_server.up()
    assert started
    assert gone(first.postgres_pid)  # the survivor was stopped, not left holding the data
    assert second.port == first.port  # the exported URI stays valid
    assert second.credentials == first.credentials
    with monkeypatch.context() as login:
        for key, value in second.env(CI).items():
            login.setenv(key, value)
        names = [m.name for m in MlflowClient(tracking_uri=second.uri).search_registered_models()]
    assert names == ["kept"]  # in PostgreSQL, across the restart

    assert tracking_server.main(["down"]) == 0
    assert gone(second.mlflow_pid) and gone(second.postgres_pid)
    assert not (home / "tracking.json").exists()

    # The server down: one clear line and the documented exit code, no traceback. MLflow
    # retries a refused connection for minutes by default; the variable shortens that.
    env = client_env(second, CI, MLFLOW_HTTP_REQUEST_MAX_RETRIES="0")
    done = train(env, "--spec", str(spec_variant(tmp_path, 80)))
    assert done.returncode == 6, done.stderr  # the MLflow tracking store failed
    assert "Traceback" not in done.stderr
    assert f"MLflow at {second.uri} failed" in done.stderr
    assert "Connection refused" in done.stderr

    approvals = approve(tmp_path / "approved.toml", potability=("1", "a" * 64))
    done = run_cli("promote", "potability", "--approvals", str(approvals),
                   env=os.environ | env)  # fmt: skip
    assert done.returncode == 16, done.stderr  # StorageError, not "version not found" (5)
    assert "Traceback" not in done.stderr
    assert f"could not read potability version 1 from MLflow at {second.uri}" in done.stderr

    assert tracking_server.main(["down", "--wipe"]) == 0
    assert not (home / "tracking").exists()


def test_a_recorded_pid_that_is_not_ours_is_left_alone(home: Path) -> None:
    """After a reboot the state file may name pids that now belong to anything, this test's
    own process included: never signalled, and the stale file does not block `up`."""
    state = home / "tracking.json"
    me = os.getpid()
    fake = tracking_server.Stack(me, me, 1, 2, "http://127.0.0.1:3", str(home / "tracking"))
    state.write_text(json.dumps(fake.__dict__))
    assert tracking_server.shared_stack() is None
    tracking_server._leftovers()
    assert not state.exists()  # we are still here to check


def test_make_ui_with_a_team_server_points_at_it() -> None:
    """`make ui` started `mlflow server --backend-store-uri http://...`, which MLflow refuses
    (a traceback, exit 1): with a server, the server is the UI."""
    uri = "http://127.0.0.1:1"  # never contacted
    done = subprocess.run(
        [sys.executable, "-m", "training.ui"],
        cwd=REPO,
        env=os.environ | {"MLFLOW_TRACKING_URI": uri},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert f"open {uri}" in done.stdout


def test_an_up_killed_after_mlflow_started_leaves_no_server_behind(home: Path) -> None:
    """`make tracking-up` killed between starting MLflow and saving its state: nothing
    records that server. The next `up` stops it and serves on the same port, instead of
    leaving it running and moving the URI (before the fix in tools/tracking_server.py)."""
    orphan = tracking_server.start(tracking_server.DATA_DIR, tracking_server._s3_env())
    try:
        assert not (home / "tracking.json").exists()  # as if killed right here
        again, started = tracking_server.up()
        assert started
        assert gone(orphan.mlflow_pid) and gone(orphan.postgres_pid)
        assert again.port == orphan.port
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(orphan.mlflow_pid, signal.SIGKILL)
