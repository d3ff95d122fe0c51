"""The scripts behind the workflow steps, against botocore Stubbers (no AWS)."""

from __future__ import annotations

import io
import json
from pathlib import Path

import boto3
import pytest
from botocore.response import StreamingBody
from botocore.stub import ANY, Stubber
from waterml_infra.ci import deploy_context, image, outputs, promotion, smoke
from waterml_infra.config import ConfigError, load_settings, resolve

from registry.manifest import (
    ManifestDigestError,
    ManifestError,
    loads,
    parse_release,
    stored_metadata,
)

SHA = "5" * 64
BUCKET = "waterml-dev-models-111111111111-eu-west-1"
DIGEST = "sha256:" + "ab" * 32


def manifest(**changes):
    base = {
        "name": "wqi",
        "mlflow_version": "3",
        "bucket": BUCKET,
        "key": "models/wqi/model.joblib",
        "version_id": "3HL4kqtJlcpXroDTDmJ+rmSpXd3dIbrHY",
        "sha256": SHA,
        "git_sha": "a" * 40,
        "released_at": "2026-11-27T18:00:00Z",
        "previous": None,
    }
    base.update(changes)
    return base


def client(service: str):
    return boto3.client(
        service,
        region_name="eu-west-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )


def body(data: bytes) -> StreamingBody:
    return StreamingBody(io.BytesIO(data), len(data))


# Release manifest -----------------------------------------------------------------------------
def test_manifest_round_trip_with_previous():
    previous = {k: v for k, v in manifest(version_id="older", mlflow_version=2).items()}
    previous.pop("previous")
    release = parse_release(manifest(previous=previous))
    assert release.environment() == {
        "MODEL_BUCKET": BUCKET,
        "MODEL_KEY": "models/wqi/model.joblib",
        "MODEL_VERSION_ID": "3HL4kqtJlcpXroDTDmJ+rmSpXd3dIbrHY",
        "MODEL_SHA256": SHA,
        "MODEL_VERSION": "3",
    }
    assert release.previous is not None and release.previous.version_id == "older"
    assert release.previous.mlflow_version == "2"


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"version_id": ""}, "missing version_id"),
        ({"version_id": "null"}, "invalid S3 VersionId"),
        ({"sha256": "ABC"}, "sha256"),
        ({"sha256": "AB" * 32}, "sha256"),
        ({"key": "models/other/model.joblib"}, "is not models/wqi/model.joblib"),
        ({"name": "Bad Name"}, "invalid model name"),
        ({"bucket": 7}, "bucket must be a string"),
        (
            {"previous": {**manifest(), "name": "other", "key": "models/other/model.joblib"}},
            "another model",
        ),
    ],
)
def test_manifest_rejects_what_cannot_be_deployed(changes, message):
    data = manifest(**changes)
    if isinstance(data.get("previous"), dict):
        data["previous"].pop("previous", None)
    with pytest.raises(ManifestError, match=message):
        parse_release(data)


def test_manifest_must_be_json_object():
    with pytest.raises(ManifestError, match="not JSON"):
        loads("{nope")
    with pytest.raises(ManifestError, match="JSON object"):
        loads("[1]")


# deploy_context ----------------------------------------------------------------------------
def test_context_args_name_environment_model_digest_and_release():
    release = parse_release(manifest())
    args = deploy_context.context_args("dev", DIGEST, release)
    assert args[0::2] == ["--context"] * 4
    pairs = dict(a.split("=", 1) for a in args[1::2])
    assert pairs == {
        "env": "dev",
        "model": "wqi",  # the model the release is of: its own stack, WaterMl-dev-Serving-wqi
        "imageDigest": DIGEST,
        "release": pairs["release"],
    }
    assert json.loads(pairs["release"]) == release.to_context()
    # CodeDeploy moves `live`; the deploy never pins it (it once passed liveVersion).
    assert not any("liveVersion" in a for a in args)


@pytest.mark.parametrize("digest", ["latest", "sha256:abc", "sha256:" + "AB" * 32])
def test_context_args_refuse_a_tag_instead_of_a_digest(digest):
    with pytest.raises(ManifestError, match="digest"):
        deploy_context.context_args("dev", digest, parse_release(manifest()))


def stored(data: bytes, metadata_of: bytes | None = None) -> dict:
    """A get_object answer for release.json as the registry stores it: with the SHA-256 of
    ``metadata_of`` (by default its own bytes) in the user metadata."""
    return {"Body": body(data), "Metadata": stored_metadata(metadata_of or data)}


def test_fetch_release_reads_the_manifest_from_the_bucket():
    s3 = client("s3")
    with Stubber(s3) as stub:
        stub.add_response(
            "get_object",
            stored(json.dumps(manifest()).encode()),
            {"Bucket": BUCKET, "Key": "models/wqi/release.json"},
        )
        release = deploy_context.fetch_release(s3, BUCKET, "wqi")
    assert release.version_id == "3HL4kqtJlcpXroDTDmJ+rmSpXd3dIbrHY"


def test_fetch_release_refuses_a_manifest_for_another_bucket_or_none():
    s3 = client("s3")
    with Stubber(s3) as stub:
        stub.add_response(
            "get_object",
            stored(json.dumps(manifest(bucket="elsewhere")).encode()),
            {"Bucket": BUCKET, "Key": "models/wqi/release.json"},
        )
        with pytest.raises(ManifestError, match="elsewhere"):
            deploy_context.fetch_release(s3, BUCKET, "wqi")
        stub.add_client_error("get_object", service_error_code="NoSuchKey", http_status_code=404)
        with pytest.raises(ManifestError, match="promote a model"):
            deploy_context.fetch_release(s3, BUCKET, "wqi")
        stub.add_client_error("get_object", service_error_code="AccessDenied", http_status_code=403)
        with pytest.raises(ManifestError, match="AccessDenied"):
            deploy_context.fetch_release(s3, BUCKET, "wqi")


def test_fetch_release_refuses_a_manifest_edited_without_its_metadata(monkeypatch, capsys):
    original = json.dumps(manifest(), indent=2).encode()
    edited = original.replace(b'"mlflow_version": "3"', b'"mlflow_version": "9"')
    s3 = client("s3")
    with Stubber(s3) as stub:
        stub.add_response("get_object", stored(edited, metadata_of=original))
        with pytest.raises(ManifestDigestError, match="SHA-256 mismatch for s3://"):
            deploy_context.fetch_release(s3, BUCKET, "wqi")
        stub.add_response("get_object", {"Body": body(original)})  # no metadata at all
        with pytest.raises(ManifestDigestError, match="has no sha256 metadata"):
            deploy_context.fetch_release(s3, BUCKET, "wqi")
        # The CLI: one line naming the problem, exit 1, no traceback.
        stub.add_response("get_object", stored(edited, metadata_of=original))
        monkeypatch.setattr(boto3, "client", lambda service, **kwargs: s3)
        args = ["--env", "dev", "--model", "wqi", "--image-digest", DIGEST, "--bucket", BUCKET]
        assert deploy_context.main(args) == 1
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.startswith("error: SHA-256 mismatch for s3://")
    assert len(captured.err.splitlines()) == 1 and "Traceback" not in captured.err


def test_deploy_context_cli_from_a_manifest_file(tmp_path, capsys):
    path = tmp_path / "release.json"
    path.write_text(json.dumps(manifest()))
    args = ["--env", "dev", "--model", "wqi", "--image-digest", DIGEST, "--manifest", str(path)]
    code = deploy_context.main(args)
    lines = capsys.readouterr().out.splitlines()
    assert code == 0
    assert lines[:4] == ["--context", "env=dev", "--context", "model=wqi"]
    out = tmp_path / "pinned.json"
    assert deploy_context.main([*args, "--release-out", str(out)]) == 0
    assert json.loads(out.read_text())["version_id"] == manifest()["version_id"]
    # A release of another model is refused: each model's stack gets its own release only.
    other = ["--env", "dev", "--model", "potability", "--image-digest", DIGEST]
    assert deploy_context.main([*other, "--manifest", str(path)]) == 1
    assert "is a release of 'wqi'" in capsys.readouterr().err
    path.write_text(json.dumps(manifest(sha256="bad")))
    assert deploy_context.main(args) == 1
    # The model is required: the default once deployed wqi whatever was meant.
    with pytest.raises(SystemExit):
        deploy_context.main(["--env", "dev", "--image-digest", DIGEST, "--manifest", str(path)])


def test_deploy_context_output_is_accepted_by_the_cdk_app(pinned_app, templates):
    """The `pinned_app` fixture is built from context_args' output: the values reach the stack."""
    _, stacks = pinned_app
    assert list(stacks) == ["dev"]
    t = templates["pinned-serving"]
    fn = next(iter(t.find_resources("AWS::Lambda::Function").values()))
    assert fn["Properties"]["Environment"]["Variables"]["MODEL_SHA256"] == SHA
    assert DIGEST in json.dumps(fn["Properties"]["Code"])


def test_app_refuses_a_release_of_another_environment():
    from waterml_infra.app import build, make_app

    wrong = manifest(bucket="waterml-prod-models-111111111111-eu-west-1")
    context = {"env": "dev", "model": "wqi", "release": json.dumps(wrong), "nag": "false"}
    with pytest.raises(ManifestError, match="does not belong to WaterMl-dev-Serving-wqi"):
        build(make_app(context))
    # A release is one model's, in one environment: both must be named.
    for missing in ("env", "model"):
        partial = {k: v for k, v in context.items() if k != missing}
        with pytest.raises(ManifestError, match="one environment"):
            build(make_app({**partial, "release": json.dumps(manifest())}))


# smoke ---------------------------------------------------------------------------------------
def _lambda_with(answer, *, function_error=None, states=("Active",), payload=ANY):
    lam = client("lambda")
    stub = Stubber(lam)
    for state in states:
        stub.add_response(
            "get_function_configuration",
            {"State": state},
            {"FunctionName": "waterml-dev-wqi", "Qualifier": "8"},
        )
    response = {"StatusCode": 200, "Payload": body(json.dumps(answer).encode())}
    if function_error:
        response["FunctionError"] = function_error
    stub.add_response(
        "invoke",
        response,
        {
            "FunctionName": "waterml-dev-wqi",
            "Qualifier": "8",
            "InvocationType": "RequestResponse",
            "Payload": payload,
        },
    )
    stub.activate()
    return lam, stub


HANDLER_ANSWER = {
    "statusCode": 200,
    "model": {
        "name": "wqi",
        "version": "3",
        "s3VersionId": "3HL4kqtJlcpXroDTDmJ+rmSpXd3dIbrHY",
        "sha256": SHA[:12],
    },
    "prediction": {"deviceId": "smoke", "wqi": 81.2},
}


def test_smoke_passes_on_a_healthy_answer():
    lam, stub = _lambda_with(HANDLER_ANSWER, states=("Pending", "Active"))
    naps: list[float] = []
    answer = smoke.run(
        lam,
        "waterml-dev-wqi",
        "8",
        expect_version="3",
        expect_s3_version_id="3HL4kqtJlcpXroDTDmJ+rmSpXd3dIbrHY",
        sleep=naps.append,
    )
    assert answer["prediction"]["wqi"] == 81.2
    assert naps == [5.0]
    stub.assert_no_pending_responses()


def test_smoke_sends_the_sample_event():
    expected = json.dumps(smoke.SAMPLE_EVENT).encode()
    lam, stub = _lambda_with(HANDLER_ANSWER, payload=expected)
    smoke.run(lam, "waterml-dev-wqi", "8")
    stub.assert_no_pending_responses()
    assert smoke.SAMPLE_EVENT["readings"] == {
        "pH": 7.2,
        "turbidity": 1.5,
        "tds": 320,
        "temperature": 22.0,
    }


def test_smoke_accepts_a_proxy_shaped_answer():
    answer = {"statusCode": 200, "body": json.dumps(_identity(version=3))}
    lam, _ = _lambda_with(answer)
    smoke.run(lam, "waterml-dev-wqi", "8", expect_version="3")


def _identity(**changes):
    return {**HANDLER_ANSWER, "model": {**HANDLER_ANSWER["model"], **changes}}


@pytest.mark.parametrize(
    ("answer", "function_error", "message"),
    [
        ({"errorMessage": "boom", "errorType": "Runtime"}, "Unhandled", "function error"),
        (
            {"statusCode": 500, "error": {"code": "InferenceError"}, "model": None},
            None,
            "status 500",
        ),
        ({"error": {"code": "ValidationError"}, "model": "wqi", "version": "3"}, None, "error"),
        ({"statusCode": 503, "body": "{}"}, None, "status 503"),
        ({"model": "wqi", "version": "3"}, None, "no model identity"),  # the handler never
        # answered this flat form: accepting it let a wrong answer pass the smoke test
        (_identity(version=None), None, "lacks"),
        (_identity(name="potability"), None, "expected 'wqi'"),
        (_identity(version="2"), None, "expected '3'"),
        (_identity(s3VersionId="other"), None, "S3 version"),
        (["not", "an", "object"], None, "not a JSON object"),
    ],
)
def test_smoke_fails_on_a_bad_answer(answer, function_error, message):
    lam, _ = _lambda_with(answer, function_error=function_error)
    with pytest.raises(smoke.SmokeTestFailed, match=message):
        smoke.run(
            lam,
            "waterml-dev-wqi",
            "8",
            expect_version="3",
            expect_s3_version_id="3HL4kqtJlcpXroDTDmJ+rmSpXd3dIbrHY",
        )


def test_smoke_cli_checks_against_the_pinned_release(tmp_path, monkeypatch, capsys):
    release = tmp_path / "release.json"
    release.write_text(json.dumps(manifest(version_id="other-version")))
    lam, _ = _lambda_with(HANDLER_ANSWER)
    monkeypatch.setattr(boto3, "client", lambda *a, **k: lam)
    code = smoke.main(
        ["--function-name", "waterml-dev-wqi", "--version", "8", "--release", str(release)]
    )
    assert code == 1
    assert "S3 version" in capsys.readouterr().err


def test_smoke_fails_when_the_version_fails_to_start():
    lam = client("lambda")
    with Stubber(lam) as stub:
        stub.add_response(
            "get_function_configuration", {"State": "Failed", "StateReason": "image not found"}
        )
        with pytest.raises(smoke.SmokeTestFailed, match="image not found"):
            smoke.run(lam, "waterml-dev-wqi", "8")


def test_smoke_refuses_latest():
    with pytest.raises(smoke.SmokeTestFailed, match="published version"):
        smoke.run(client("lambda"), "waterml-dev-wqi", "$LATEST")


# image / outputs / promotion ----------------------------------------------------------------------
def test_existing_digest():
    ecr = client("ecr")
    with Stubber(ecr) as stub:
        stub.add_response(
            "describe_images",
            {"imageDetails": [{"imageDigest": DIGEST}]},
            {"repositoryName": "repo", "imageIds": [{"imageTag": "git-abc"}]},
        )
        assert image.existing_digest(ecr, "repo", "git-abc") == DIGEST
        stub.add_client_error("describe_images", "ImageNotFoundException")
        assert image.existing_digest(ecr, "repo", "git-abc") is None
    with pytest.raises(ValueError):
        image.existing_digest(ecr, "repo", "bad tag")


def test_serving_outputs(tmp_path, monkeypatch, capsys):
    data = {
        "WaterMl-dev-Serving": {
            "FunctionName": "waterml-dev-wqi",
            "FunctionVersion": "8",
            "LiveAliasName": "live",
            "FailureQueueUrl": "https://sqs...",
        }
    }
    path = tmp_path / "out.json"
    path.write_text(json.dumps(data))
    gh = tmp_path / "gh"
    monkeypatch.setenv("GITHUB_OUTPUT", str(gh))
    assert outputs.main([str(path), "--stack", "WaterMl-dev-Serving", "--github-output"]) == 0
    assert gh.read_text().splitlines() == [
        "function_name=waterml-dev-wqi",
        "version=8",
        "alias=live",
    ]
    with pytest.raises(outputs.OutputsError, match="no outputs"):
        outputs.serving_outputs(data, "WaterMl-prod-Serving")
    data["WaterMl-dev-Serving"]["FunctionVersion"] = "$LATEST"
    with pytest.raises(outputs.OutputsError, match="not a number"):
        outputs.serving_outputs(data, "WaterMl-dev-Serving")


def test_approved_models_reads_the_registry_file_format():
    sha = "ab" * 32
    entry = f'version = "3"\nsha256 = "{sha}"\napproved_by = "jane.doe"\nreason = "r"\n'
    text = f"# comment\n[wqi]\n{entry}\n[potability]\n{entry}"
    assert promotion.approved_models(text) == ["potability", "wqi"]
    assert promotion.approved_models("# nothing approved yet\n") == []


@pytest.mark.parametrize(
    "text",
    [
        '[models.wqi]\nversion = "2"\n',  # once accepted here while the registry refused it
        '[wqi]\nversion = "2"\n',  # no sha256, approved_by, reason
        '[[models]]\nname = "wqi"\n',
        '["../specs/wqi"]\nversion = "2"\n',
    ],
)
def test_approved_models_refuses_what_the_registry_refuses(text, tmp_path):
    """One parser: promote.yml's model list and `promote` agree on what is approved."""
    from registry import approvals
    from registry.errors import NotApproved

    with pytest.raises(NotApproved):
        promotion.approved_models(text)
    path = tmp_path / "approved.toml"
    path.write_text(text)
    with pytest.raises(NotApproved):
        approvals.load(path)
    assert promotion.main(["models", str(path)]) == 1


def test_approved_models_of_the_repository_file():
    """Every model the shipped approval file names has a spec (none is approved at first)."""
    repo = Path(__file__).resolve().parents[2]
    names = promotion.approved_models((repo / "registry" / "approved.toml").read_text())
    assert all((repo / "training" / "specs" / f"{n}.toml").is_file() for n in names), names


def test_extract_release_from_promotion_output(tmp_path):
    log = tmp_path / "promote.log"
    log.write_text('uv sync ...\n{"not": "it"}\n' + json.dumps(manifest(extra="kept")) + "\n")
    out = tmp_path / "release.json"
    assert promotion.main(["extract", str(log), str(out)]) == 0
    written = json.loads(out.read_text())
    assert written["extra"] == "kept"
    assert parse_release(written).sha256 == SHA
    log.write_text("promotion refused: gates failed\n")
    assert promotion.main(["extract", str(log), str(out)]) == 1


def test_promoted_models_are_those_whose_release_changed(tmp_path, capsys):
    """promote.yml deploys only these: an approved model already released stays as it is."""
    same = manifest()
    new_wqi = manifest(version_id="newer", mlflow_version="4", release_id="r2")
    potability = manifest(name="potability", key="models/potability/model.joblib", version_id="p1")
    files = {
        # wqi: a new release over an older one.
        "wqi.before.log": json.dumps(same) + "\n",
        "wqi.json": json.dumps(new_wqi),
        # potability: its first release (`registry current` printed nothing).
        "potability.before.log": "",
        "potability.json": json.dumps(potability),
    }
    for name, text in files.items():
        (tmp_path / name).write_text(text)
    assert promotion.promoted_models(tmp_path) == ["potability", "wqi"]
    # Already the release: promote printed the very release `current` printed before.
    (tmp_path / "wqi.json").write_text(json.dumps(same, indent=2))
    assert promotion.promoted_models(tmp_path) == ["potability"]
    assert promotion.main(["promoted", str(tmp_path)]) == 0
    assert capsys.readouterr().out.strip() == '["potability"]'
    # Nothing read before promoting: refused, not guessed.
    (tmp_path / "potability.before.log").unlink()
    assert promotion.main(["promoted", str(tmp_path)]) == 1
    assert "potability.before.log is missing" in capsys.readouterr().err


def test_promoted_models_refuses_a_file_named_for_another_model(tmp_path):
    (tmp_path / "wqi.json").write_text(
        json.dumps(manifest(name="potability", key="models/potability/model.joblib"))
    )
    (tmp_path / "wqi.before.log").write_text("")
    with pytest.raises(ManifestError, match="is a release of 'potability'"):
        promotion.promoted_models(tmp_path)


# config -----------------------------------------------------------------------------------------
def test_config_names_are_derived_consistently():
    cfg = resolve(load_settings(), "dev", account="222222222222", region="us-east-1")
    names = cfg.names()
    assert names["bucket"] == "waterml-dev-models-222222222222-us-east-1"
    model = cfg.model("wqi").names()
    assert model["function_name"] == "waterml-dev-wqi"
    assert model["serving_stack"] == "WaterMl-dev-Serving-wqi"  # deploy.yml's STACK
    assert names["deploy_role_arn"] == "arn:aws:iam::222222222222:role/waterml-dev-github-deploy"
    assert names["platform"] == "linux/amd64"
    assert resolve(load_settings(), "dev", overrides={"architecture": "arm64"}).platform == (
        "linux/arm64"
    )


@pytest.mark.parametrize(
    "overrides",
    [
        {"architecture": "sparc"},
        {"memory_mb": "64"},
        {"async_retry_attempts": "5"},
        {"reserved_concurrency": "2", "provisioned_concurrency": "3"},
        {"create_oidc_provider": "maybe"},
        {"no_such_setting": "1"},
        {"noncurrent_versions_to_retain": "0"},
    ],
)
def test_config_rejects_unsafe_settings(overrides):
    with pytest.raises(ConfigError):
        resolve(load_settings(), "dev", overrides=overrides)


def test_config_rejects_unknown_environment():
    with pytest.raises(ConfigError, match="unknown environment"):
        resolve(load_settings(), "staging")


def test_config_cli_writes_github_outputs(tmp_path, monkeypatch, capsys):
    from waterml_infra import config

    gh = tmp_path / "gh"
    monkeypatch.setenv("GITHUB_OUTPUT", str(gh))
    # Without an account in cdk.json a workflow must not fall back to the dummy one.
    settings = load_settings()
    settings["environments"]["prod"] = {**settings["environments"]["prod"], "account": None}
    monkeypatch.setattr(config, "load_settings", lambda: settings)
    monkeypatch.delenv("AWS_REGION", raising=False)
    assert config.main(["prod", "--github-output"]) == 2
    assert "infra/cdk.json" in capsys.readouterr().err
    assert not gh.exists()
    args = ["prod", "--account", "333333333333", "--region", "eu-central-1", "--github-output"]
    assert config.main(args) == 0
    # deploy.yml's model job reads both: the environment's names, then its model's.
    assert config.main([*args[:1], "--model", "wqi", *args[1:]]) == 0
    lines = dict(line.split("=", 1) for line in gh.read_text().splitlines())
    assert lines["serving_stack"] == "WaterMl-prod-Serving-wqi"
    assert json.loads(lines["models"]) == list(resolve(settings, "prod").models)
    assert lines["repository"] == "waterml-prod-inference"
    assert lines["account"] == "333333333333"
    assert lines["region"] == "eu-central-1"
    assert lines["promote_role_arn"] == "arn:aws:iam::333333333333:role/waterml-prod-github-promote"
