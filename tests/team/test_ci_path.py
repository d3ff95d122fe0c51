"""The path CI takes, over HTTP: a tracking server with basic auth on PostgreSQL, artifacts in
S3 through its proxy. Train as the CI user, approve, promote, roll back; two trainers at once;
a wrong password. The stack is the session's private one (tests/team/conftest.py)."""

from __future__ import annotations

import hashlib
import json
import os
import stat
import subprocess
import sys
from pathlib import Path
from typing import Any

import boto3
import pytest

from tests.registration_race import one_version, race
from tests.registry.registry_helpers import REPO, Versions, approve, run_cli
from tests.team.conftest import client_env, spec_variant, train, trained
from tools import local_s3, postgres, tracking_backup, tracking_server
from tools.tracking_server import ARTIFACT_BUCKET, CI, SCIENTIST

pytestmark = pytest.mark.integration


def sql(stack: tracking_server.Stack, query: str, *params: Any) -> list[tuple[Any, ...]]:
    """A query on MLflow's own database in the stack's PostgreSQL."""
    import psycopg2

    pg = postgres.Postgres(stack.postgres_pid, stack.postgres_port)
    conn = psycopg2.connect(pg.uri(stack.credentials.postgres, "mlflow"))
    try:
        with conn.cursor() as cur:
            cur.execute(query, params)
            return list(cur.fetchall())
    finally:
        conn.close()


def artifact_store(stack: tracking_server.Stack) -> Any:
    return boto3.client("s3", endpoint_url=stack.s3_endpoint, **local_s3._client_credentials())


@pytest.fixture(scope="module")
def first(team_stack: tracking_server.Stack) -> dict[str, Any]:
    """potability trained once through the real pipeline, logged in as the CI user; its
    stage lines are not interleaved with the sagemaker-mlflow plugin's warnings (154 before
    training/mlflow_names.py gated it to ARNs)."""
    done = train(client_env(team_stack, CI), "potability", "--json")
    assert "resolving request headers" not in done.stderr
    return trained(done)


def test_training_registers_in_postgres_with_artifacts_in_s3(
    team_stack: tracking_server.Stack, first: dict[str, Any]
) -> None:
    assert first["candidate"] is True
    rows = sql(team_stack, "SELECT run_id FROM model_versions WHERE name = %s AND version = %s",
               "potability", int(first["version"]))  # fmt: skip
    assert len(rows) == 1
    (run_id,) = rows[0]
    assert sql(team_stack, "SELECT name FROM registered_models") == [("potability",)]
    # The auth app records who logged the run.
    assert sql(team_stack, "SELECT user_id FROM runs WHERE run_uuid = %s", run_id) == [(CI,)]
    ((artifact_uri,),) = sql(team_stack, "SELECT artifact_uri FROM runs WHERE run_uuid = %s",
                             run_id)  # fmt: skip
    assert artifact_uri.startswith("mlflow-artifacts:/")  # proxied: no S3 URI reaches clients

    s3 = artifact_store(team_stack)
    keys = [o["Key"] for o in s3.list_objects_v2(Bucket=ARTIFACT_BUCKET)["Contents"]]
    (bundle,) = [k for k in keys if run_id in k and k.endswith("bundle/model.joblib")]
    body = s3.get_object(Bucket=ARTIFACT_BUCKET, Key=bundle)["Body"].read()
    assert hashlib.sha256(body).hexdigest() == first["artifact_sha256"]


def test_promote_and_roll_back_as_ci(
    team_stack: tracking_server.Stack,
    first: dict[str, Any],
    s3_env: dict[str, str],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from mlflow import MlflowClient

    for key, value in team_stack.env(CI).items():
        monkeypatch.setenv(key, value)  # the CLI below and the client here log in as CI
    env = os.environ.copy()  # CI's login and the model bucket's S3 (s3_env)
    v1 = first["version"]
    approvals = approve(tmp_path / "approved.toml", potability=(v1, first["artifact_sha256"]))
    done = run_cli("promote", "potability", "--approvals", str(approvals), env=env)
    assert done.returncode == 0, done.stderr
    release1 = json.loads(done.stdout)
    assert (release1["mlflow_version"], release1["sha256"]) == (v1, first["artifact_sha256"])
    model_bucket = boto3.client("s3")
    obj = model_bucket.get_object(Bucket=s3_env["bucket"], Key=release1["key"],
                                  VersionId=release1["version_id"])  # fmt: skip
    assert hashlib.sha256(obj["Body"].read()).hexdigest() == first["artifact_sha256"]

    # A better second version, registered through the server the way training does.
    client = MlflowClient(tracking_uri=team_stack.uri)
    versions = Versions(client, tmp_path / "unused", team_stack.uri)
    v2, sha2 = versions.add("potability", metrics={"roc_auc": 0.9, "f1": 0.6})
    approve(approvals, potability=(v2, sha2))
    done = run_cli("promote", "potability", "--approvals", str(approvals), env=env)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["mlflow_version"] == v2
    assert versions.champion("potability") == v2

    done = run_cli("rollback", "potability", "--reason", "test", env=env)
    assert done.returncode == 0, done.stderr
    back = json.loads(done.stdout)
    assert (back["mlflow_version"], back["version_id"]) == (v1, release1["version_id"])
    assert versions.champion("potability") == v1
    assert versions.tags("potability", v1)["s3_version_id"] == release1["version_id"]


def test_two_trainers_register_at_once(team_stack: tracking_server.Stack, tmp_path: Path) -> None:
    """A data scientist and CI train a new model at the same time: both create it in the
    registry (one of them finds it made: RESOURCE_ALREADY_EXISTS, exit 6 before the fix in
    training/register.py), and each gets its own version."""
    name = "potability_pair"  # not registered yet, whatever ran before
    specs = {user: spec_variant(tmp_path, n, name) for user, n in ((SCIENTIST, 120), (CI, 150))}
    procs = [
        subprocess.Popen(
            [sys.executable, "-m", "training", "--spec", str(spec), "--json"],
            cwd=REPO,
            env=client_env(team_stack, user),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for user, spec in specs.items()
    ]
    results = []
    for proc in procs:
        out, err = proc.communicate(timeout=600)
        results.append(trained(subprocess.CompletedProcess(proc.args, proc.returncode, out, err)))
    numbers = {r["version"] for r in results}
    assert len(numbers) == 2
    assert all(r["reused"] is False for r in results)
    rows = sql(
        team_stack,
        "SELECT v.version::text, r.user_id FROM model_versions v JOIN runs r"
        " ON r.run_uuid = v.run_id WHERE v.name = %s",
        name,
    )
    assert set(rows) == {
        (results[0]["version"], SCIENTIST),
        (results[1]["version"], CI),
    }
    # Both set `candidate` at about the same time (a unique-key clash on the server, exit 6,
    # before the retry in training/register.py): it names one of them.
    alias = "SELECT version::text FROM registered_model_aliases WHERE name = %s AND alias = %s"
    ((holder,),) = sql(team_stack, alias, name, "candidate")
    assert holder in numbers


def test_trainers_of_the_same_bytes_at_once_make_one_version(
    team_stack: tracking_server.Stack, tmp_path: Path
) -> None:
    """CI and two data scientists register the same bytes at the same moment (real
    processes, tests/registration_race.py): the server creates one version (tools/team_auth.py
    refuses the others: RESOURCE_ALREADY_EXISTS), and the two others report it reused. Before,
    each made its own version with the same sha256."""
    name = "potability_same"
    spec = spec_variant(tmp_path, 40, name)
    envs = [client_env(team_stack, user) for user in (CI, SCIENTIST, SCIENTIST)]
    version = one_version(race(spec, envs, tmp_path / "barrier"))
    rows = sql(team_stack, "SELECT version::text FROM model_versions WHERE name = %s", name)
    assert rows == [(version,)]


def test_wrong_password_is_a_clear_error(
    team_stack: tracking_server.Stack,
    first: dict[str, Any],
    s3_env: dict[str, str],
    tmp_path: Path,
) -> None:
    bad = {"MLFLOW_TRACKING_PASSWORD": "not-the-password"}
    done = train(client_env(team_stack, CI, **bad), "--spec", str(spec_variant(tmp_path, 90)))
    assert done.returncode == 6, done.stderr  # the MLflow tracking store failed
    assert "Traceback" not in done.stderr
    assert f"MLflow at {team_stack.uri} failed" in done.stderr
    assert "401" in done.stderr and "not authenticated" in done.stderr

    approvals = approve(tmp_path / "approved.toml",
                        potability=(first["version"], first["artifact_sha256"]))  # fmt: skip
    done = run_cli("promote", "potability", "--approvals", str(approvals),
                   env=os.environ | team_stack.env(CI) | bad)  # fmt: skip
    # StorageError: MLflow refused the login. Not "version not found" (exit 5), as before.
    assert done.returncode == 16, done.stderr
    assert "Traceback" not in done.stderr
    assert f"could not read potability version {first['version']} from MLflow" in done.stderr
    assert "401" in done.stderr


def test_auth_api_paths_are_mlflows() -> None:
    """The tool keeps the basic-auth app's REST paths as strings (importing its routes module
    loads the whole server): they must be the ones this MLflow serves."""
    from mlflow.server.auth import routes

    for name, path in tracking_server.AUTH_API.items():
        assert getattr(routes, name.upper()) == path


def test_backup_restores_into_a_fresh_server(
    team_stack: tracking_server.Stack, first: dict[str, Any], tmp_path: Path
) -> None:
    """`make tracking-backup` of the session's server (every training and promotion so far)
    into a fresh server: every run, param, metric, tag, version, alias and artifact digest is
    equal, and the users log in there with its own credentials."""
    from mlflow import MlflowClient

    made = tracking_server.backup_to(team_stack, tmp_path / "backup")
    assert stat.S_IMODE((tmp_path / "backup").stat().st_mode) == 0o700
    assert made["artifacts"]
    queries = (
        "SELECT run_uuid, name, status, experiment_id, artifact_uri, user_id FROM runs",
        "SELECT run_uuid, key, value FROM params",
        "SELECT run_uuid, key, value, step FROM metrics",
        "SELECT run_uuid, key, value FROM tags",
        "SELECT name, version, run_id, source, description FROM model_versions",
        "SELECT name, version, key, value FROM model_version_tags",
        "SELECT name, alias, version FROM registered_model_aliases",
        "SELECT dataset_uuid, name, digest FROM datasets",
    )
    before = {q: sorted(sql(team_stack, q)) for q in queries}
    assert before[queries[4]]  # there is something to restore
    with tracking_server.private_stack(restore_from=tmp_path / "backup") as fresh:
        assert {q: sorted(sql(fresh, q)) for q in queries} == before
        digests = tracking_backup.artifact_digests(
            tracking_backup.bucket_client(tracking_server._stack_s3_env(fresh)),
            ARTIFACT_BUCKET, fresh.credentials,
        )  # fmt: skip
        assert digests == made["artifacts"]
        with pytest.MonkeyPatch.context() as login:
            for key, value in fresh.env(SCIENTIST).items():
                login.setenv(key, value)
            client = MlflowClient(tracking_uri=fresh.uri)
            version = client.get_model_version("potability", first["version"])
            assert version.tags["artifact_sha256"] == first["artifact_sha256"]
            bundle = client.download_artifacts(version.run_id, "bundle/model.joblib", str(tmp_path))
            assert hashlib.sha256(Path(bundle).read_bytes()).hexdigest() == first["artifact_sha256"]
