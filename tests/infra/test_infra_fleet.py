"""The fleet (issue 13 part 1) and its progressive delivery (part 2), for three models: the two
shipped and a third that exists only in the test's context (`conftest.FLEET`)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from aws_cdk.assertions import Match, Template
from waterml_infra.config import UNPINNED_KEY

from .conftest import DIGEST, FLEET, RELEASE, SIGNING_KEY_CONTEXT

REPO = Path(__file__).resolve().parents[2]
TRAFFIC = {
    "dev": "CodeDeployDefault.LambdaAllAtOnce",
    "prod": "CodeDeployDefault.LambdaCanary10Percent10Minutes",
}


@pytest.fixture(scope="module")
def fleet(fleet_app) -> dict[tuple[str, str], Template]:
    _, stacks = fleet_app
    return {
        (env, model): Template.from_stack(stack)
        for env, env_stacks in stacks.items()
        for model, stack in env_stacks.serving.items()
    }


def _one(t: Template, resource_type: str, props: dict[str, Any] | None = None) -> tuple[str, dict]:
    found = t.find_resources(
        resource_type, {"Properties": Match.object_like(props)} if props else {}
    )
    assert len(found) == 1, f"expected one {resource_type} like {props}, found {list(found)}"
    return next(iter(found.items()))


def _list(value: Any) -> list:
    return value if isinstance(value, list) else [value]


def test_every_model_of_every_environment_has_its_own_stack(fleet_app):
    _, stacks = fleet_app
    for env in ("dev", "prod"):
        assert list(stacks[env].serving) == FLEET
        for model, stack in stacks[env].serving.items():
            # Stack names allow no '_' (the third model has one): it becomes '-' there only.
            assert stack.stack_name == f"WaterMl-{env}-Serving-{model.replace('_', '-')}"
            # Independent of the other models: only the foundation stack is a dependency.
            assert [d.stack_name for d in stack.dependencies] == [f"WaterMl-{env}-Foundation"]


@pytest.mark.parametrize("env", ["dev", "prod"])
@pytest.mark.parametrize("model", FLEET)
def test_function_alias_deployment_group_and_hook(fleet, env, model):
    t = fleet[(env, model)]
    name = f"waterml-{env}-{model}"
    fn_id, fn = _one(t, "AWS::Lambda::Function", {"FunctionName": name})
    assert fn["Properties"]["Environment"]["Variables"]["MODEL_KEY"] == (
        f"models/{model}/model.joblib"
    )
    assert fn["Properties"]["Environment"]["Variables"]["POWERTOOLS_SERVICE_NAME"] == name
    # The live alias at the new version, moved by CodeDeploy with its hook.
    version_id, _ = _one(t, "AWS::Lambda::Version")
    _, alias = _one(t, "AWS::Lambda::Alias", {"Name": "live"})
    assert alias["Properties"]["FunctionVersion"] == {"Fn::GetAtt": [version_id, "Version"]}
    group_id, group = _one(t, "AWS::CodeDeploy::DeploymentGroup")
    app_id, application = _one(t, "AWS::CodeDeploy::Application")
    hook_id, hook = _one(t, "AWS::Lambda::Function", {"FunctionName": f"{name}-pretraffic"})
    assert application["Properties"]["ComputePlatform"] == "Lambda"
    assert application["Properties"]["ApplicationName"] == name
    assert alias["UpdatePolicy"] == {
        "CodeDeployLambdaAliasUpdate": {
            "ApplicationName": {"Ref": app_id},
            "DeploymentGroupName": {"Ref": group_id},
            "BeforeAllowTrafficHook": {"Ref": hook_id},
        }
    }
    # The group, the hook and the alarms exist before CloudFormation touches the alias.
    assert {group_id, hook_id} <= set(alias["DependsOn"])
    # The environment's traffic pattern; rollback on failure, on alarm and on a stop.
    props = group["Properties"]
    assert props["DeploymentGroupName"] == "live"
    assert props["DeploymentConfigName"] == TRAFFIC[env]
    assert props["DeploymentStyle"] == {
        "DeploymentOption": "WITH_TRAFFIC_CONTROL",
        "DeploymentType": "BLUE_GREEN",
    }
    assert props["AutoRollbackConfiguration"]["Enabled"] is True
    assert sorted(props["AutoRollbackConfiguration"]["Events"]) == [
        "DEPLOYMENT_FAILURE",
        "DEPLOYMENT_STOP_ON_ALARM",
        "DEPLOYMENT_STOP_ON_REQUEST",
    ]
    # The hook: the function's own image by digest, another entry point, its target named.
    assert hook["Properties"]["Code"] == fn["Properties"]["Code"]
    assert hook["Properties"]["ImageConfig"] == {"Command": ["inference.pretraffic.handler"]}
    assert hook["Properties"]["Environment"]["Variables"] == {
        "TARGET_FUNCTION": name,
        "MODEL_NAME": model,
        "RELEASE_BUCKET": f"waterml-{env}-models-111111111111-eu-west-1",
        "RELEASE_KEY": f"models/{model}/release.json",
        "MODEL_SIGNING_PUBLIC_KEY": UNPINNED_KEY,  # cdk.json pins none: nothing would verify
        "POWERTOOLS_LOG_LEVEL": "INFO",
        "POWERTOOLS_SERVICE_NAME": f"{name}-pretraffic",
    }
    assert fn_id != hook_id


def _statements(t: Template, role_id: str) -> list[dict[str, Any]]:
    statements: list[dict[str, Any]] = []
    for policy in t.find_resources("AWS::IAM::Policy").values():
        if {"Ref": role_id} in policy["Properties"].get("Roles", []):
            statements += policy["Properties"]["PolicyDocument"]["Statement"]
    return statements


@pytest.mark.parametrize("model", FLEET)
def test_hook_has_exactly_its_permissions(fleet, model):
    t = fleet[("prod", model)]
    name = f"waterml-prod-{model}"
    _, hook = _one(t, "AWS::Lambda::Function", {"FunctionName": f"{name}-pretraffic"})
    role_id = hook["Properties"]["Role"]["Fn::GetAtt"][0]
    group_id, _ = _one(t, "AWS::CodeDeploy::DeploymentGroup")
    app_id, _ = _one(t, "AWS::CodeDeploy::Application")
    log_id, _ = _one(t, "AWS::Logs::LogGroup", {"LogGroupName": f"/aws/lambda/{name}-pretraffic"})
    group_arn = {
        "Fn::Join": [
            "",
            [
                "arn:",
                {"Ref": "AWS::Partition"},
                ":codedeploy:eu-west-1:111111111111:deploymentgroup:",
                {"Ref": app_id},
                "/",
                {"Ref": group_id},
            ],
        ]
    }
    app_arn = {
        "Fn::Join": [
            "",
            [
                "arn:",
                {"Ref": "AWS::Partition"},
                ":codedeploy:eu-west-1:111111111111:application:",
                {"Ref": app_id},
            ],
        ]
    }
    fn_arn = f"arn:aws:lambda:eu-west-1:111111111111:function:{name}"
    bucket = "arn:aws:s3:::waterml-prod-models-111111111111-eu-west-1"
    granted = sorted(
        (action, json.dumps(resource, sort_keys=True))
        for statement in _statements(t, role_id)
        for action in _list(statement["Action"])
        for resource in _list(statement["Resource"])
        if statement["Effect"] == "Allow"
    )
    expected = sorted(
        (action, json.dumps(resource, sort_keys=True))
        for action, resource in [
            ("codedeploy:GetDeployment", group_arn),
            ("codedeploy:GetApplicationRevision", app_arn),
            ("codedeploy:PutLifecycleEventHookExecutionStatus", group_arn),
            ("lambda:GetFunctionConfiguration", fn_arn),
            ("lambda:GetFunctionConfiguration", fn_arn + ":*"),
            ("lambda:InvokeFunction", fn_arn + ":*"),  # versions, never $LATEST unqualified
            ("s3:GetObject", f"{bucket}/models/{model}/release.json"),  # at its key
            ("s3:GetObjectVersion", f"{bucket}/models/{model}/model.joblib"),  # pinned
            ("s3:GetObjectVersion", f"{bucket}/models/{model}/release.sig.json"),
            ("logs:CreateLogStream", {"Fn::GetAtt": [log_id, "Arn"]}),
            ("logs:PutLogEvents", {"Fn::GetAtt": [log_id, "Arn"]}),
        ]
    )
    assert granted == expected
    assert "ManagedPolicyArns" not in t.to_json()["Resources"][role_id]["Properties"]


@pytest.mark.parametrize("model", FLEET)
def test_rollback_alarms_watch_the_new_version_and_model_quality(fleet, model):
    t = fleet[("prod", model)]
    name = f"waterml-prod-{model}"
    _, group = _one(t, "AWS::CodeDeploy::DeploymentGroup")
    config = group["Properties"]["AlarmConfiguration"]
    assert config["Enabled"] is True
    rollback = {a["Name"]["Ref"] for a in config["Alarms"]}
    alarms = t.find_resources("AWS::CloudWatch::Alarm")
    assert rollback < set(alarms)
    by_metric = {
        alarms[a]["Properties"].get("MetricName", "InferenceErrorRate"): alarms[a]["Properties"]
        for a in rollback
    }
    assert sorted(by_metric) == ["Duration", "Errors", "InferenceErrorRate", "Throttles"]
    version_id, _ = _one(t, "AWS::Lambda::Version")
    for metric in ("Errors", "Duration"):
        dims = {d["Name"]: d["Value"] for d in by_metric[metric]["Dimensions"]}
        assert dims == {
            "FunctionName": name,
            "Resource": f"{name}:live",
            "ExecutedVersion": {"Fn::GetAtt": [version_id, "Version"]},
        }
    for props in by_metric.values():
        assert props.get("Period", 60) == 60
        assert props["TreatMissingData"] == "notBreaching"
    rate = by_metric["InferenceErrorRate"]
    assert rate["Threshold"] == 5
    metrics = {m["Id"]: m for m in rate["Metrics"]}
    assert metrics["faults"]["MetricStat"]["Metric"] == {
        "Namespace": "WaterML",
        "MetricName": "InferenceError",
        "Dimensions": [{"Name": "service", "Value": name}],
    }
    assert metrics["invocations"]["MetricStat"]["Metric"]["MetricName"] == "Invocations"
    (expression,) = [m for m in rate["Metrics"] if "Expression" in m]
    assert expression["Expression"] == "100 * FILL(faults, 0) / invocations"
    # The failure-queue alarm notifies but never rolls back (old messages would block rollouts).
    queue_alarms = [a for a in alarms if alarms[a]["Properties"].get("Namespace") == "AWS/SQS"]
    assert len(queue_alarms) == 1 and queue_alarms[0] not in rollback


def test_per_model_settings_override_the_environment(fleet):
    third = fleet[("prod", "third_test_model")]
    _, fn = _one(third, "AWS::Lambda::Function", {"FunctionName": "waterml-prod-third_test_model"})
    assert fn["Properties"]["MemorySize"] == 512
    _, alias = _one(third, "AWS::Lambda::Alias")
    assert "ProvisionedConcurrencyConfig" not in alias["Properties"]
    _, wqi = _one(fleet[("prod", "wqi")], "AWS::Lambda::Alias")
    assert wqi["Properties"]["ProvisionedConcurrencyConfig"] == {
        "ProvisionedConcurrentExecutions": 2
    }
    _, wqi_fn = _one(
        fleet[("prod", "wqi")], "AWS::Lambda::Function", {"FunctionName": "waterml-prod-wqi"}
    )
    assert wqi_fn["Properties"]["MemorySize"] == 1024


def test_the_third_model_needs_no_stack_code():
    """Nothing in the app or its settings names the test's third model: config alone adds it."""
    sources = [*(REPO / "infra" / "waterml_infra").glob("*.py"), REPO / "infra" / "app.py"]
    sources.append(REPO / "infra" / "cdk.json")
    for path in sources:
        assert "third_test_model" not in path.read_text(), path


def test_each_model_reads_only_its_own_model_and_signature_objects(fleet):
    t = fleet[("dev", "third_test_model")]
    _, fn = _one(t, "AWS::Lambda::Function", {"FunctionName": "waterml-dev-third_test_model"})
    statements = _statements(t, fn["Properties"]["Role"]["Fn::GetAtt"][0])
    s3 = {
        r
        for s in statements
        if _list(s["Action"])[0].startswith("s3:")
        for r in _list(s["Resource"])
    }
    prefix = "arn:aws:s3:::waterml-dev-models-111111111111-eu-west-1/models/third_test_model/"
    assert s3 == {prefix + "model.joblib", prefix + "release.sig.json"}


def test_add_rollback_alarm_joins_the_deployment_group():
    """The monitoring issue's alarms (out-of-domain, drift) roll back the same way."""
    from aws_cdk import aws_cloudwatch as cloudwatch
    from waterml_infra.app import build, make_app

    app = make_app({"nag": "false", "env": "dev", "model": "potability"})
    stack = build(app)["dev"].serving["potability"]
    before = len(stack.rollback_alarms)
    drift = cloudwatch.Alarm(
        stack,
        "DriftAlarm",
        metric=cloudwatch.Metric(namespace="WaterML", metric_name="Drift"),
        threshold=1,
        evaluation_periods=1,
    )
    stack.add_rollback_alarm(drift)
    assert len(stack.rollback_alarms) == before + 1 == 5
    t = Template.from_stack(stack)
    drift_id = stack.get_logical_id(drift.node.default_child)  # type: ignore[arg-type]
    _, group = _one(t, "AWS::CodeDeploy::DeploymentGroup")
    names = [a["Name"] for a in group["Properties"]["AlarmConfiguration"]["Alarms"]]
    assert {"Ref": drift_id} in names and len(names) == 5


def test_no_function_asks_for_snapstart(fleet_app):
    """An image function with SnapStart is refused by AWS: none of the fleet's has it."""
    _, stacks = fleet_app
    for env in stacks.values():
        for stack in env.serving.values():
            for fn in Template.from_stack(stack).find_resources("AWS::Lambda::Function").values():
                assert fn["Properties"]["PackageType"] == "Image"
                assert "SnapStart" not in fn["Properties"]


def test_one_model_selected_synthesizes_only_its_stack():
    from waterml_infra.app import build, make_app

    from registry.manifest import parse_release

    release = parse_release(RELEASE).to_context()
    app = make_app(
        {
            "nag": "false",
            "env": "dev",
            "model": "wqi",
            "imageDigest": DIGEST,
            "release": json.dumps(release),
            **SIGNING_KEY_CONTEXT,
        }
    )
    stacks = build(app)
    assert list(stacks) == ["dev"] and list(stacks["dev"].serving) == ["wqi"]
    assembly = app.synth()
    assert sorted(s.stack_name for s in assembly.stacks) == [
        "WaterMl-dev-Foundation",
        "WaterMl-dev-Serving-wqi",
    ]


@pytest.mark.parametrize(
    ("context", "message"),
    [
        ({"env": "dev"}, "one model of one environment"),  # a release without a model
        ({"model": "wqi"}, "one model of one environment"),  # ... or for every environment
        ({"env": "dev", "model": "potability"}, "does not belong"),  # another model's release
    ],
)
def test_a_release_names_one_environment_and_its_model(context, message):
    from waterml_infra.app import build, make_app

    from registry.manifest import ManifestError, parse_release

    release = json.dumps(parse_release(RELEASE).to_context())
    app = make_app({"nag": "false", "release": release, **context, **SIGNING_KEY_CONTEXT})
    with pytest.raises(ManifestError, match=message):
        build(app)


def test_an_unserved_model_is_refused():
    from waterml_infra.app import build, make_app
    from waterml_infra.config import ConfigError

    with pytest.raises(ConfigError, match="serves no model 'unserved'"):
        build(make_app({"nag": "false", "env": "dev", "model": "unserved"}))


def test_every_traffic_pattern_is_a_codedeploy_config():
    from waterml_infra.config import TRAFFIC_PATTERNS
    from waterml_infra.constructs.rollout import DEPLOYMENT_CONFIGS

    assert list(DEPLOYMENT_CONFIGS) == list(TRAFFIC_PATTERNS)
    for name, config in DEPLOYMENT_CONFIGS.items():
        assert config.deployment_config_name == TRAFFIC_PATTERNS[name]
