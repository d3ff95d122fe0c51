"""The promotion role's policy, run: `python -m registry` promote, rollback and reconcile (as
promote.yml runs them) through the IAM gate with exactly the statements of
`waterml-dev-github-promote` from the synthesized Foundation, against the loopback S3 and a
real MLflow store. Its `s3:prefix` condition on ListBucketVersions is evaluated as AWS does
(moto's own enforcement would deny any conditional statement)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import boto3
import pytest

from registry import cli
from tests.registry.registry_helpers import Versions, approve
from tools import local_s3
from tools.iam_gate import Gate, Names, allowed, role_statements

ACCOUNT, REGION = "111111111111", "eu-west-1"
MODEL = "potability"  # its own keys in dev's bucket (the other gate tests use wqi's)
GOOD = {"roc_auc": 0.8, "f1": 0.6, "accuracy": 0.7}
pytestmark = pytest.mark.integration


@pytest.fixture
def promoting(s3_endpoint: str, templates: dict[str, Any], tmp_path: Path,
              monkeypatch: pytest.MonkeyPatch) -> Any:  # fmt: skip
    from mlflow import MlflowClient
    from waterml_infra.config import load_settings, resolve

    cfg = resolve(load_settings(), "dev")
    local_s3.ensure_bucket(s3_endpoint, cfg.bucket_name)
    admin = boto3.client("s3", endpoint_url=s3_endpoint, **local_s3._client_credentials())
    for key in (f"models/{MODEL}/release.json", f"models/{MODEL}/model.joblib"):
        admin.delete_object(Bucket=cfg.bucket_name, Key=key)  # a model never promoted here
    names = Names(ACCOUNT, REGION, [templates["dev-foundation"].to_json()])
    statements = role_statements(names, cfg.promote_role_name)
    gate = Gate({"promote": statements}, {"s3": s3_endpoint}, ACCOUNT, REGION).start()
    db = tmp_path / "mlflow.db"
    uri = f"sqlite:///{db}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    monkeypatch.setenv("MODEL_BUCKET", cfg.bucket_name)
    monkeypatch.setenv("AWS_ENDPOINT_URL_S3", gate.endpoint)
    monkeypatch.setattr(boto3, "DEFAULT_SESSION", None)
    for name, value in Gate.credentials("promote").items():
        monkeypatch.setenv(name, value)
    try:
        yield {"versions": Versions(MlflowClient(tracking_uri=uri), tmp_path / "artifacts", uri),
               "gate": gate, "statements": statements, "cfg": cfg}  # fmt: skip
    finally:
        gate.stop()
        shutil.rmtree(tmp_path / "artifacts", ignore_errors=True)


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> Any:
    code = cli.main(list(argv))
    out, err = capsys.readouterr()
    assert code == 0, err
    return json.loads(out)


def test_promote_rollback_and_reconcile_under_the_promote_role(
    promoting: dict[str, Any], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    versions, gate = promoting["versions"], promoting["gate"]
    v1, _ = versions.add(MODEL, metrics=GOOD)
    v2, _ = versions.add(MODEL, metrics=GOOD)
    first = run(capsys, "promote", MODEL, "--approvals",
                str(approve(tmp_path / "a1.toml", **{MODEL: v1})))  # fmt: skip
    second = run(capsys, "promote", MODEL, "--approvals",
                 str(approve(tmp_path / "a2.toml", **{MODEL: v2})))  # fmt: skip
    assert second["previous"]["version_id"] == first["version_id"]
    back = run(capsys, "rollback", MODEL)
    assert back["version_id"] == first["version_id"] and back["action"] == "rollback"
    code = cli.main(["reconcile", MODEL])
    assert code == 0, capsys.readouterr().err
    assert gate.refused == [], gate.refused  # every call it made was granted


def test_the_promote_role_may_not_leave_its_prefix_or_delete_bundles(promoting) -> None:
    statements, bucket = promoting["statements"], promoting["cfg"].bucket_name
    arn = f"arn:aws:s3:::{bucket}"
    assert not allowed(statements, "s3:DeleteObjectVersion", f"{arn}/models/wqi/model.joblib")
    assert allowed(statements, "s3:DeleteObjectVersion", f"{arn}/models/wqi/release.json")
    assert not allowed(statements, "s3:PutObject", f"{arn}/other/x")
    assert not allowed(statements, "s3:ListBucketVersions", arn, {"s3:prefix": "other/"})
    assert allowed(statements, "s3:ListBucketVersions", arn, {"s3:prefix": "models/wqi/"})
