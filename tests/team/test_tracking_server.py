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
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.registry.registry_helpers import REPO, approve, run_cli
from tests.team.conftest import client_env, spec_variant, train
from tools import local_s3, processes, tracking_backup, tracking_server
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

    # The server down: one clear line and the documented exit code, no traceback, after
    # three retries (training/mlflow_names.py; MLflow's own seven took 4.5 minutes).
    env = client_env(second, CI)
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


def children(pid: int) -> list[int]:
    return [int(c) for c in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]


def wait_closed(port: int, seconds: float = 60) -> bool:
    """Whether nothing listens on ``port`` within ``seconds`` (a bound, not a measurement)."""
    deadline = time.monotonic() + seconds
    while local_s3._listening(port):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.2)
    return True


@pytest.mark.parametrize("victim", ["mlflow server", "uvicorn", "postgres"])
def test_killing_any_process_leaves_nothing_serving(home: Path, victim: str) -> None:
    """`kill -9` of `mlflow server` left its uvicorn process serving the port (and the next
    `up` moved to another port); of PostgreSQL, left MLflow answering 503. Now the rest stops
    (tools/team_watchdog.py) and the next `up` serves on the same port."""
    first, _ = tracking_server.up()
    (worker,) = children(first.mlflow_pid)
    pid = {"mlflow server": first.mlflow_pid, "uvicorn": worker,
           "postgres": first.postgres_pid}[victim]  # fmt: skip
    os.kill(pid, signal.SIGKILL)
    processes.wait_gone(pid, 30)  # reaped when it is this process's child (not a zombie)
    assert wait_closed(first.port), f"still serving after {victim} was killed"
    assert processes.wait_gone(worker, 30)
    second, started = tracking_server.up()
    assert started and second.port == first.port


def test_secrets_are_never_printed_and_a_password_rotates(
    home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import requests

    assert tracking_server.main(["up"]) == 0
    stack = tracking_server.shared_stack()
    assert stack is not None
    creds = stack.credentials
    secrets = [creds.postgres, creds.flask_secret, creds.admin, creds.ci, creds.scientist]
    shown = capsys.readouterr()
    assert not [s for s in secrets if s in shown.out + shown.err]
    assert "set -a; . " in shown.out and "data-scientist.env; set +a" in shown.out
    for path in (home / "tracking" / "credentials", home / "tracking" / "env" / "ci.env"):
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
    ci_env = (home / "tracking" / "env" / "ci.env").read_text()
    assert f"MLFLOW_TRACKING_PASSWORD='{creds.ci}'" in ci_env

    def status(password: str) -> int:
        return requests.get(f"{stack.uri}/api/2.0/mlflow/registered-models/search",
                            auth=(SCIENTIST, password), timeout=60).status_code  # fmt: skip

    assert status(creds.scientist) == 200
    assert tracking_server.main(["rotate", SCIENTIST]) == 0
    rotated = stack.credentials
    assert rotated.scientist != creds.scientist and rotated.ci == creds.ci
    assert status(creds.scientist) == 401 and status(rotated.scientist) == 200
    shown = capsys.readouterr()
    assert rotated.scientist not in shown.out + shown.err
    assert stat.S_IMODE((home / "tracking" / "credentials").stat().st_mode) == 0o600
    scientist_env = (home / "tracking" / "env" / "data-scientist.env").read_text()
    assert f"MLFLOW_TRACKING_PASSWORD='{rotated.scientist}'" in scientist_env


def test_wipe_deletes_the_servers_artifacts_and_nothing_else(home: Path, s3_endpoint: str) -> None:
    from mlflow import MlflowClient

    stack, _ = tracking_server.up()
    s3 = tracking_backup.bucket_client(tracking_server._stack_s3_env(stack))
    s3.put_object(Bucket=ARTIFACT_BUCKET, Key="someone-else/kept.txt", Body=b"not ours")
    with pytest.MonkeyPatch.context() as login:
        for key, value in stack.env(SCIENTIST).items():
            login.setenv(key, value)
        client = MlflowClient(tracking_uri=stack.uri)
        experiment = client.create_experiment("wipe")
        run = client.create_run(experiment).info.run_id
        note = home / "note.txt"
        note.write_text("evidence")
        client.log_artifact(run, str(note))
    prefix = stack.credentials.artifact_prefix + "/"
    assert s3.list_objects_v2(Bucket=ARTIFACT_BUCKET, Prefix=prefix)["KeyCount"] >= 1

    assert tracking_server.main(["down", "--wipe"]) == 0
    left = s3.list_object_versions(Bucket=ARTIFACT_BUCKET, Prefix=prefix)
    assert not left.get("Versions") and not left.get("DeleteMarkers")
    kept = s3.get_object(Bucket=ARTIFACT_BUCKET, Key="someone-else/kept.txt")
    assert kept["Body"].read() == b"not ours"


def test_beyond_loopback_only_with_tls() -> None:
    with pytest.raises(RuntimeError, match="beyond loopback it needs TLS"):
        tracking_server.start(Path("/nonexistent"), {}, host="0.0.0.0")


def test_a_client_over_tls(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The server over HTTPS with a self-signed certificate: a client trusting it (MLflow's
    MLFLOW_TRACKING_SERVER_CERT_PATH, what the env file sets) registers and uploads through
    the artifact proxy; without it, the client refuses the server."""
    import requests
    from mlflow import MlflowClient

    with tracking_server.private_stack(tls=True) as stack:
        assert stack.uri.startswith("https://")
        for key, value in stack.env(SCIENTIST).items():
            monkeypatch.setenv(key, value)
        client = MlflowClient(tracking_uri=stack.uri)
        client.create_registered_model("over-tls")
        run = client.create_run(client.create_experiment("over-tls")).info.run_id
        note = tmp_path / "note.txt"
        note.write_text("over tls")
        client.log_artifact(run, str(note))
        assert [f.path for f in client.list_artifacts(run)] == ["note.txt"]
        with pytest.raises(requests.exceptions.SSLError):
            requests.get(f"{stack.uri}/health", timeout=30)
        plain = stack.uri.replace("https://", "http://")
        with pytest.raises(requests.exceptions.ConnectionError):
            requests.get(f"{plain}/health", timeout=30)
