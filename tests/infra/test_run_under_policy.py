"""Every AWS call runs under the permission that grants it: the code that uses a role runs
through the IAM gate (tools/iam_gate.py) with exactly that role's statements, taken from the
synthesized templates, against the loopback S3 over HTTP and the Lambda/CodeDeploy stand-in.

Roles: the deploy role (`status`, `deploy_context`), the function's execution role (its fetch
by VersionId), the pre-traffic hook's role (AppSpec, configuration, invocations, release and
bundle reads, its report). The promotion role is run in test_run_under_policy_promotion.py.
The function's role and the hook's S3 grants hold nothing the run did not use
(``tools.iam_gate.unused_grants``).
"""

from __future__ import annotations

import datetime as dt
import json
import os
import types
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
import synthetic
from botocore.config import Config
from botocore.exceptions import ClientError
from serving_helpers import signed
from synth_helpers import functions, released_bundle, serving_template

from inference import config as config_mod
from inference import handler, pretraffic
from inference.bundle import sha256_hex
from inference.config import from_env
from registry.manifest import Release, dumps, stored_metadata
from tools import local_s3
from tools.iam_gate import Gate, Names, Request, allowed, role_statements, unused_grants
from tools.lambda_sandbox import ControlPlane

ACCOUNT, REGION = "111111111111", "eu-west-1"
# Grants a role holds for calls the code run here does not make, so the unused-grant checks
# leave them out: CloudWatch Logs writes (made by the Lambda runtime; the gate does not model
# CloudWatch Logs) and the execution role's SQS grants (the asynchronous on-failure
# destination: Lambda's asynchronous invocation sends to the queue with the role, the handler
# never calls SQS; the gate does not model SQS either).
NOT_RUN = ("logs:*", "sqs:*")
pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def world(s3_endpoint: str, templates: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """dev's wqi released in the loopback S3 (potability never promoted), its stacks
    synthesized for that release, the gate with every role of them, the control plane."""
    from waterml_infra.config import load_settings, resolve

    cfg = resolve(load_settings(), "dev").model("wqi")
    bucket = cfg.env.bucket_name
    local_s3.ensure_bucket(s3_endpoint, bucket)
    admin = boto3.client("s3", endpoint_url=s3_endpoint, **local_s3._client_credentials())
    bundle = released_bundle()
    data = synthetic.dumps(bundle)
    version = admin.put_object(Bucket=bucket, Key=cfg.model_key, Body=data)["VersionId"]
    release = Release("wqi", "3", bucket, cfg.model_key, version, sha256_hex(data), "a" * 40,
                      "2026-12-07T00:00:00Z")  # fmt: skip
    release = signed(release, data, lambda key, body: admin.put_object(
        Bucket=bucket, Key=key, Body=body)["VersionId"])  # fmt: skip
    body = dumps(release)
    admin.put_object(Bucket=bucket, Key=cfg.release_key, Body=body, Metadata=stored_metadata(body))
    admin.delete_object(Bucket=bucket, Key="models/potability/release.json")  # never promoted
    serving = serving_template("dev", release, bundle)
    names = Names(ACCOUNT, REGION, [templates["dev-foundation"].to_json(), serving])
    roles = {
        "deploy": role_statements(names, cfg.env.deploy_role_name),
        "promote": role_statements(names, cfg.env.promote_role_name),
        "function": role_statements(names, "ExecutionRole"),
        "hook": role_statements(names, "RolloutPreTrafficRole"),
    }
    calls: list[str] = []

    def invoke(config: dict[str, Any], event: Any) -> dict[str, Any]:
        """A published version's execution environment: the real handler with the version's
        environment, fetching its bundle through the gate as the execution role."""
        calls.append(json.dumps(event)[:40])
        context = types.SimpleNamespace(aws_request_id=str(uuid.uuid4()),
                                        function_name=config["FunctionName"])  # fmt: skip
        if handler._service is None:
            handler.init(world_config(config))
        try:
            return {"kind": "response", "body": handler.lambda_handler(event, context)}
        except Exception as exc:
            return {"kind": "error", "body": {"errorType": type(exc).__name__}}

    plane = ControlPlane(invoke)
    gate = Gate(roles, {"s3": s3_endpoint, "lambda": plane.endpoint,
                        "codedeploy": plane.endpoint}, ACCOUNT, REGION)  # fmt: skip
    gate.deployment_groups["d-GATE"] = (cfg.codedeploy_application, cfg.deployment_group)
    gate.start()

    def world_config(config: dict[str, Any]) -> Any:
        # The version's environment; its /tmp the test's MODEL_CACHE_DIR, when one is set.
        env = {**config["Environment"]["Variables"], "AWS_ENDPOINT_URL_S3": gate.endpoint,
               "MODEL_CACHE_DIR": os.environ.get("MODEL_CACHE_DIR", "")}  # fmt: skip
        return from_env(env)

    handler.reset()
    try:
        yield {"cfg": cfg, "release": release, "gate": gate, "plane": plane,
               "functions": functions(serving), "admin": admin, "calls": calls}  # fmt: skip
    finally:
        handler.reset()
        gate.stop()
        plane.server.shutdown()


def client(world: dict[str, Any], service: str, role: str, **kwargs: Any) -> Any:
    keys = Gate.credentials(role)
    return boto3.client(
        service, endpoint_url=world["gate"].endpoint, region_name=REGION,
        aws_access_key_id=keys["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=keys["AWS_SECRET_ACCESS_KEY"],
        aws_session_token=keys["AWS_SESSION_TOKEN"], **kwargs,
    )  # fmt: skip


def as_role(monkeypatch: pytest.MonkeyPatch, world: dict[str, Any], role: str) -> None:
    # boto3's default session keeps the credentials it first resolved: a fresh one per role.
    monkeypatch.setattr(boto3, "DEFAULT_SESSION", None)
    for name, value in Gate.credentials(role).items():
        monkeypatch.setenv(name, value)
    for service in ("S3", "LAMBDA", "CODEDEPLOY"):
        monkeypatch.setenv(f"AWS_ENDPOINT_URL_{service}", world["gate"].endpoint)
    monkeypatch.setenv("AWS_DEFAULT_REGION", REGION)


def publish(world: dict[str, Any], version: str) -> None:
    """Version `version` of the wqi function, pinned to the release, and `live` on it."""
    fn = world["functions"][world["cfg"].function_name]
    plane, name = world["plane"], fn["FunctionName"]
    plane.functions[f"{name}:{version}"] = {
        "FunctionName": name, "Version": version, "State": "Active", "Timeout": fn["Timeout"],
        "Environment": {"Variables": fn["Environment"]["Variables"]},
        "LastModified": (dt.datetime.now(dt.UTC) - dt.timedelta(minutes=30)).strftime(
            "%Y-%m-%dT%H:%M:%S.000+0000"
        ),
    }  # fmt: skip
    plane.aliases[f"{name}:live"] = {"Name": "live", "FunctionVersion": version}


# ---- the deploy role ---------------------------------------------------------------------------
def test_status_as_the_deploy_role_reports_a_never_promoted_model_missing(
    world: dict[str, Any], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """The deploy role has no s3:ListBucket, so S3 answers potability's missing release.json
    with AccessDenied. status said "AWS unreachable" (exit 1) and the plan deployed the model;
    it is missing (exit 4), and wqi is read and in sync under the same role."""
    from waterml_infra.ci import status

    publish(world, "2")
    as_role(monkeypatch, world, "deploy")
    code = status.main(["--env", "dev", "--account", ACCOUNT, "--region", REGION, "--json"])
    captured = capsys.readouterr()
    assert code == status.MISSING, captured.err
    out = json.loads(captured.out)
    by_model = {s["model"]: s for s in out}
    assert by_model["wqi"]["state"] == "in sync"
    assert by_model["potability"]["state"] == "missing"
    assert "may not be read" in by_model["potability"]["problems"][0]


def test_a_rollout_that_served_nothing_is_reported_unobserved(
    world: dict[str, Any],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    s3_endpoint: str,
) -> None:
    """An environment asking 5 invocations of a rollout's version as evidence: version 7 has
    served none through `live` (status: UNOBSERVED, exit 6), then 6 (in sync). The count is
    Lambda's Invocations metric of that version (the loopback moto's CloudWatch), read as the
    deploy role."""
    from waterml_infra.ci import status
    from waterml_infra.config import load_settings

    settings = load_settings()
    settings["environments"]["dev"] = {**settings["environments"]["dev"],
                                       "rollout_evidence_invocations": 5}  # fmt: skip
    monkeypatch.setattr(status, "load_settings", lambda: settings)
    publish(world, "7")
    as_role(monkeypatch, world, "deploy")
    monkeypatch.setenv("AWS_ENDPOINT_URL_CLOUDWATCH", world["gate"].endpoint)
    world["gate"].upstreams["monitoring"] = s3_endpoint
    argv = ["--env", "dev", "--model", "wqi", "--account", ACCOUNT, "--region", REGION]
    assert status.main(argv) == status.UNOBSERVED
    assert "unobserved: version 7 served 0 invocation(s)" in capsys.readouterr().out
    cloudwatch = boto3.client("cloudwatch", endpoint_url=s3_endpoint, region_name=REGION,
                              aws_access_key_id="admin", aws_secret_access_key="admin")  # fmt: skip
    name = world["cfg"].function_name
    cloudwatch.put_metric_data(Namespace="AWS/Lambda", MetricData=[{
        "MetricName": "Invocations", "Value": 6, "Unit": "Count",
        "Timestamp": dt.datetime.now(dt.UTC) - dt.timedelta(minutes=5),
        "Dimensions": [{"Name": "FunctionName", "Value": name},
                       {"Name": "Resource", "Value": f"{name}:live"},
                       {"Name": "ExecutedVersion", "Value": "7"}],
    }])  # fmt: skip
    assert status.main(argv) == status.IN_SYNC, capsys.readouterr()


def test_the_plan_as_the_deploy_role_skips_a_never_promoted_model(
    world: dict[str, Any], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """deploy.yml's plan, started by hand (every model): potability has no release, so it is
    skipped with a warning, not deployed (it was: "state unknown, deploying it")."""
    from waterml_infra.ci import deploy_plan

    publish(world, "2")
    as_role(monkeypatch, world, "deploy")
    monkeypatch.setenv("GITHUB_OUTPUT", str(tmp_path / "out"))
    monkeypatch.delenv("GITHUB_STEP_SUMMARY", raising=False)
    code = deploy_plan.main(["--env", "dev", "--event", "workflow_dispatch", "--account",
                             ACCOUNT, "--region", REGION, "--github-output"])  # fmt: skip
    outputs = dict(line.split("=", 1) for line in (tmp_path / "out").read_text().splitlines())
    assert code == 0 and json.loads(outputs["models"]) == ["wqi"]


def test_deploy_context_as_the_deploy_role_reads_the_release_and_its_bundle(
    world: dict[str, Any],
) -> None:
    from waterml_infra.ci.deploy_context import fetch_release, fetch_training_mix

    s3 = client(world, "s3", "deploy")
    release = fetch_release(s3, world["cfg"].env.bucket_name, "wqi")
    assert release.version_id == world["release"].version_id
    mix = fetch_training_mix(s3, release)
    assert mix is not None and mix.labels
    # Read-only: the deploy role can neither write a release nor read the latest bundle.
    with pytest.raises(ClientError, match="AccessDenied"):
        s3.put_object(Bucket=release.bucket, Key=world["cfg"].release_key, Body=b"{}")
    with pytest.raises(ClientError, match="AccessDenied"):
        s3.get_object(Bucket=release.bucket, Key=release.key)


# ---- the function's execution role ------------------------------------------------------------
def granted_to(world: dict[str, Any], role: str, since: int) -> list[Request]:
    """The requests the gate allowed ``role`` from its ``since``-th record on."""
    return [r for who, r in world["gate"].granted[since:] if who == role]


def load_as_function(
    world: dict[str, Any], monkeypatch: pytest.MonkeyPatch, cache: Path
) -> list[Request]:
    """The real handler's init with the function's environment from the template, an empty
    /tmp (``cache``) and the execution role's keys: what the gate allowed it."""
    fn = world["functions"][world["cfg"].function_name]
    as_role(monkeypatch, world, "function")
    env = {**fn["Environment"]["Variables"], "AWS_ENDPOINT_URL_S3": world["gate"].endpoint,
           "MODEL_CACHE_DIR": str(cache)}  # fmt: skip
    since = len(world["gate"].granted)
    handler.reset()
    try:
        service = handler.init(from_env(env))  # the stdlib SigV4 GETs by VersionId, via the gate
    finally:
        handler.reset()
    assert service.model.source == "s3"
    return granted_to(world, "function", since)


def test_the_function_fetches_its_pinned_bundle_and_nothing_else(
    world: dict[str, Any], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    load_as_function(world, monkeypatch, tmp_path)
    s3 = client(world, "s3", "function")
    bucket = world["cfg"].env.bucket_name
    for key in (world["cfg"].release_key, "models/potability/model.joblib"):
        with pytest.raises(ClientError, match="AccessDenied"):
            s3.get_object(Bucket=bucket, Key=key)


def test_the_function_role_holds_no_grant_its_load_does_not_use(
    world: dict[str, Any], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """The load GETs the bundle and its signature by their pinned VersionIds only (the
    configuration refuses an empty one), which S3 authorizes as s3:GetObjectVersion: the
    s3:GetObject the role held on both was used by nothing (removed)."""
    used = load_as_function(world, monkeypatch, tmp_path)
    bucket = f"arn:aws:s3:::{world['cfg'].env.bucket_name}"
    assert sorted((r.action, r.resource) for r in used) == [
        ("s3:GetObjectVersion", f"{bucket}/{world['cfg'].model_key}"),
        ("s3:GetObjectVersion", f"{bucket}/{world['cfg'].signature_key}"),
    ]
    role = world["gate"].roles["function"]
    assert unused_grants(role, used, ignore=NOT_RUN) == []


# ---- the pre-traffic hook's role --------------------------------------------------------------
def run_hook(
    world: dict[str, Any], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> tuple[pretraffic.Report, list[Request]]:
    """``pretraffic.run`` on a deployment of version 5 with the hook's environment from the
    template and the hook role's keys: its report and what the gate allowed the hook."""
    cfg, plane = world["cfg"], world["plane"]
    publish(world, "5")
    plane.appspec = json.dumps({"version": 0.0, "Resources": [{"fn": {
        "Type": "AWS::Lambda::Function", "Properties": {"Name": cfg.function_name,
        "Alias": "live", "CurrentVersion": "2", "TargetVersion": "5"}}}]})  # fmt: skip
    plane.reports, plane.application = [], cfg.codedeploy_application
    hook = world["functions"][cfg.hook_function_name]
    # The function's environment loads through the gate as the function role; the hook's
    # clients carry the hook role's keys. Each has a /tmp of its own, empty: the hook's keeps
    # the signature it verified (its configuration has no MODEL_CACHE_DIR).
    as_role(monkeypatch, world, "function")
    monkeypatch.setenv("MODEL_CACHE_DIR", str(tmp_path / "function"))
    monkeypatch.setattr(config_mod, "DEFAULT_CACHE_DIR", str(tmp_path / "hook"))
    since = len(world["gate"].granted)
    handler.reset()
    invoking = Config(read_timeout=120, retries={"mode": "standard"})
    try:
        report = pretraffic.run(
            {"DeploymentId": "d-GATE", "LifecycleEventHookExecutionId": "hook-1"},
            client(world, "codedeploy", "hook"), client(world, "lambda", "hook", config=invoking),
            client(world, "s3", "hook"), hook["Environment"]["Variables"], sleep=lambda s: None,
        )  # fmt: skip
    finally:
        handler.reset()
    return report, granted_to(world, "hook", since)


def test_the_hook_checks_the_new_version_under_its_role(
    world: dict[str, Any], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    report, _ = run_hook(world, monkeypatch, tmp_path)
    assert report.problems == [] and report.status == "Succeeded", report
    assert [r["status"] for r in world["plane"].reports] == ["Succeeded"]
    refused = [r for r in world["gate"].refused if r.action.startswith(("lambda:", "codedeploy:"))]
    assert refused == []


def test_the_hook_role_holds_no_s3_grant_the_hook_does_not_use(
    world: dict[str, Any], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """The hook reads release.json at its key (s3:GetObject: it is what names the release),
    and the bundle and its signature by the VersionIds the version pins (s3:GetObjectVersion).
    Its role held both actions on all three objects: s3:GetObjectVersion of release.json and
    s3:GetObject of the bundle and the signature were used by nothing (removed)."""
    report, used = run_hook(world, monkeypatch, tmp_path)
    assert report.status == "Succeeded", report
    bucket = f"arn:aws:s3:::{world['cfg'].env.bucket_name}"
    cfg = world["cfg"]
    assert sorted({(r.action, r.resource) for r in used if r.action.startswith("s3:")}) == [
        ("s3:GetObject", f"{bucket}/{cfg.release_key}"),
        ("s3:GetObjectVersion", f"{bucket}/{cfg.model_key}"),
        ("s3:GetObjectVersion", f"{bucket}/{cfg.signature_key}"),
    ]
    s3_only = [*NOT_RUN, "codedeploy:*", "lambda:*"]  # its S3 grants only
    assert unused_grants(world["gate"].roles["hook"], used, ignore=s3_only) == []


def test_roles_do_not_hold_grants_nothing_uses(world: dict[str, Any]) -> None:
    """Removed: the deploy role's lambda:InvokeFunction (a smoke test no workflow runs) and its
    codedeploy:GetDeployment/ListDeployments (nothing reads deployments with it)."""
    deploy = world["gate"].roles["deploy"]
    fn = f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:waterml-dev-wqi"
    group = f"arn:aws:codedeploy:{REGION}:{ACCOUNT}:deploymentgroup:waterml-dev-wqi/live"
    assert not allowed(deploy, "lambda:InvokeFunction", fn + ":2")
    assert not allowed(deploy, "codedeploy:GetDeployment", group)
    assert not allowed(deploy, "codedeploy:ListDeployments", group)
    assert allowed(deploy, "lambda:GetAlias", fn + ":live")
