"""Released vs deployed (waterml_infra.ci.status): release.json in the loopback S3, as the registry
writes it, against a fake Lambda's `live` alias, versions and their MODEL_* pins."""

from __future__ import annotations

import dataclasses
import json
import random
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError
from waterml_infra.ci import status
from waterml_infra.config import EnvConfig, load_settings, resolve

from registry.manifest import Release, bundle_key, dumps, manifest_key, stored_metadata
from tools import local_s3

SHA = "5" * 64


class FakeLambda:
    """Functions -> `live` alias (version, routing weights) and versions -> environment."""

    def __init__(self) -> None:
        self.aliases: dict[str, dict[str, Any]] = {}
        self.versions: dict[tuple[str, str], dict[str, str]] = {}

    def publish(self, function: str, version: str, env: dict[str, str]) -> None:
        self.versions[(function, version)] = {**env, "LOG_LEVEL": "INFO"}

    def point(self, function: str, version: str, canary: dict[str, float] | None = None):
        alias: dict[str, Any] = {"Name": "live", "FunctionVersion": version}
        if canary:
            alias["RoutingConfig"] = {"AdditionalVersionWeights": canary}
        self.aliases[function] = alias

    @staticmethod
    def _missing(operation: str) -> ClientError:
        error = {"Code": "ResourceNotFoundException", "Message": "Function not found"}
        return ClientError({"Error": error}, operation)

    def get_alias(self, FunctionName: str, Name: str) -> dict[str, Any]:
        assert Name == "live"
        if FunctionName not in self.aliases:
            raise self._missing("GetAlias")
        return self.aliases[FunctionName]

    def get_function_configuration(self, FunctionName: str, Qualifier: str) -> dict[str, Any]:
        if (FunctionName, Qualifier) not in self.versions:
            raise self._missing("GetFunctionConfiguration")
        env = self.versions[(FunctionName, Qualifier)]
        return {"Version": Qualifier, "Environment": {"Variables": env}}


@pytest.fixture
def env(s3_env: dict[str, str]) -> EnvConfig:
    """dev in an account of its own, so its bucket is this test's alone."""
    account = str(random.randrange(10**11, 10**12))
    cfg = resolve(load_settings(), "dev", account=account, region="eu-west-1")
    local_s3.ensure_bucket(s3_env["endpoint"], cfg.bucket_name)
    return cfg


@pytest.fixture
def s3(s3_env: dict[str, str]) -> Any:
    return boto3.client("s3", endpoint_url=s3_env["endpoint"])


def release(env: EnvConfig, model: str, version: str, s3_version: str) -> Release:
    key = bundle_key(model)
    return Release(model, version, env.bucket_name, key, s3_version, SHA, "a" * 40, "2026-12-01")


def write(s3: Any, rel: Release) -> None:
    body = dumps(rel)
    s3.put_object(Bucket=rel.bucket, Key=manifest_key(rel.name), Body=body,
                  Metadata=stored_metadata(body))  # fmt: skip


def deployed(lam: FakeLambda, env: EnvConfig, rel: Release, version: str) -> None:
    function = env.model(rel.name).function_name
    lam.publish(function, version, rel.environment())
    lam.point(function, version)


def test_in_sync_when_live_pins_the_release(env, s3):
    lam, rel = FakeLambda(), release(env, "wqi", "3", "v-3")
    write(s3, rel)
    deployed(lam, env, rel, "12")
    got = status.model_status(s3, lam, env, "wqi")
    assert got.in_sync and got.code == status.IN_SYNC and got.problems == []
    assert got.release == rel
    assert got.served == [status.Served("12", 1.0, rel.environment())]  # only the MODEL_* pins


def test_a_rolled_back_deployment_differs_from_its_release(env, s3):
    # CodeDeploy put `live` back on 12 (release 3); release.json names the new release 4.
    lam, old, new = FakeLambda(), release(env, "wqi", "3", "v-3"), release(env, "wqi", "4", "v-4")
    deployed(lam, env, old, "12")
    lam.publish(env.model("wqi").function_name, "13", new.environment())
    write(s3, new)
    got = status.model_status(s3, lam, env, "wqi")
    assert not got.in_sync and got.code == status.DIFFERENT
    assert got.differences(got.served[0]) == [
        "MODEL_VERSION_ID: released 'v-4', pinned 'v-3'",
        "MODEL_VERSION: released '4', pinned '3'",
    ]
    text = status.render([got])
    assert "wqi  waterml-dev-wqi  DIFFERS" in text
    assert "  released  mlflow 4  s3 v-4  sha256 555555555555  (promote 2026-12-01)" in text
    assert "  live      mlflow 3  s3 v-3  sha256 555555555555  (version 12, 100%)" in text


def test_a_canary_in_progress_shows_both_versions_and_weights(env, s3):
    lam, old, new = FakeLambda(), release(env, "wqi", "3", "v-3"), release(env, "wqi", "4", "v-4")
    function = env.model("wqi").function_name
    deployed(lam, env, old, "12")
    lam.publish(function, "13", new.environment())
    lam.point(function, "12", canary={"13": 0.1})
    write(s3, new)
    got = status.model_status(s3, lam, env, "wqi")
    assert got.code == status.SHIFTING and not got.in_sync
    assert [(s.version, s.weight) for s in got.served] == [("12", 0.9), ("13", 0.1)]
    assert got.to_dict()["live"][1]["differences"] == []
    assert got.to_dict()["state"] == "shifting"


def test_missing_release_function_or_broken_manifest(env, s3):
    lam = FakeLambda()
    got = status.model_status(s3, lam, env, "potability")
    assert got.code == status.MISSING and got.release is None and got.served == []
    assert got.problems == [
        f"no release: s3://{env.bucket_name}/models/potability/release.json does not exist or"
        " may not be read (S3 says AccessDenied for a missing key to a role without"
        " s3:ListBucket): promote the model first",
        "no function waterml-dev-potability or no live alias",
    ]
    rel = release(env, "wqi", "3", "v-3")
    s3.put_object(Bucket=rel.bucket, Key=manifest_key("wqi"), Body=dumps(rel),
                  Metadata=stored_metadata(b"edited"))  # fmt: skip
    deployed(lam, env, rel, "12")
    got = status.model_status(s3, lam, env, "wqi")
    assert got.code == status.MISSING and "release unreadable: SHA-256 mismatch" in got.problems[0]


def test_exit_code_is_the_worst_state():
    def of(code: int) -> Any:
        return type("S", (), {"code": code})()

    assert status.exit_code([]) == status.IN_SYNC
    assert status.exit_code([of(0), of(5), of(3)]) == status.DIFFERENT
    assert status.exit_code([of(3), of(4), of(0)]) == status.MISSING
    assert status.exit_code([of(0), of(5)]) == status.SHIFTING


@pytest.fixture
def cli(env, s3, monkeypatch):
    """main() with boto3's Lambda client replaced by a fake; S3 is the loopback server."""
    lam = FakeLambda()
    real = boto3.client

    def client(service: str, **kwargs: Any) -> Any:
        return lam if service == "lambda" else real(service, **kwargs)

    monkeypatch.setattr(boto3, "client", client)

    def run(capsys, *args: str) -> tuple[int, str, str]:
        code = status.main(
            ["--env", "dev", "--account", env.account, "--region", env.region, *args]
        )
        out, err = capsys.readouterr()
        return code, out, err

    return lam, run


def test_cli_exit_codes_and_json(env, s3, cli, capsys):
    lam, run = cli
    wqi, potability = release(env, "wqi", "3", "v-3"), release(env, "potability", "1", "p-1")
    # Every model cdk.json serves, in sync (a third one there changes nothing here).
    others = [release(env, m, "1", f"{m}-1") for m in env.models if m not in ("wqi", "potability")]
    for rel, version in ((wqi, "12"), (potability, "2"), *((o, "1") for o in others)):
        write(s3, rel)
        deployed(lam, env, rel, version)
    code, out, err = run(capsys)
    assert (code, err) == (0, ""), out
    assert "wqi  waterml-dev-wqi  in sync" in out and "potability" in out

    write(s3, dataclasses.replace(potability, mlflow_version="2", version_id="p-2"))
    code, out, err = run(capsys, "--json")
    rows = {row["model"]: row for row in json.loads(out)}
    assert code == status.DIFFERENT
    assert err == f"status: {status.EXIT_CODES[status.DIFFERENT]} (exit 3)\n"
    assert rows["wqi"]["in_sync"] and not rows["potability"]["in_sync"]
    assert rows["potability"]["released"]["version_id"] == "p-2"
    assert rows["potability"]["live"][0]["pins"]["MODEL_VERSION_ID"] == "p-1"

    code, out, _ = run(capsys, "--model", "wqi")
    assert code == 0 and "potability" not in out


def test_cli_usage_errors(cli, capsys):
    _, run = cli
    code, out, err = run(capsys, "--model", "nope")
    assert code == status.USAGE and out == ""
    assert err.startswith("status: error: environment 'dev' serves no model 'nope'")


def test_cli_without_aws_is_one_clear_line(env, monkeypatch, capsys):
    monkeypatch.setenv("AWS_ENDPOINT_URL_S3", "http://127.0.0.1:9")  # nothing listens there
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "1")
    code = status.main(["--env", "dev", "--account", env.account, "--region", env.region,
                        "--model", "wqi"])  # fmt: skip
    out, err = capsys.readouterr()
    assert code == status.UNREACHABLE and out == ""
    assert err.startswith(f"status: error: AWS unreachable: reading s3://{env.bucket_name}/")
    assert "Traceback" not in err and len(err.splitlines()) == 1


def test_a_lambda_refusal_is_unreachable_not_missing(env, s3):
    class Denied(FakeLambda):
        def get_alias(self, FunctionName: str, Name: str) -> dict[str, Any]:
            error = {"Code": "AccessDeniedException", "Message": "not allowed"}
            raise ClientError({"Error": error}, "GetAlias")

    write(s3, release(env, "wqi", "3", "v-3"))
    with pytest.raises(status.AwsUnreachable, match="AccessDeniedException: not allowed"):
        status.model_status(s3, Denied(), env, "wqi")


def test_the_docs_list_the_exit_codes():
    readme = (Path(__file__).resolve().parents[2] / "infra" / "README.md").read_text()
    for code, meaning in status.EXIT_CODES.items():
        assert f"    {code}  {meaning}" in (status.__doc__ or "")
        assert f"| {code} | {meaning} |" in readme


def test_registry_releases_points_here(s3_env, capsys):
    from registry import cli

    assert cli.main(["releases", "wqi"]) == 0
    out = capsys.readouterr().out
    assert out.splitlines() == ["no releases", cli.DEPLOYED_HINT]
    assert "python -m waterml_infra.ci.status --env ENV" in cli.DEPLOYED_HINT
    assert cli.main(["releases", "wqi", "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == []  # JSON stays JSON
