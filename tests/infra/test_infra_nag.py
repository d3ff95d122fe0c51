"""cdk-nag's AwsSolutions pack: zero unacknowledged findings, and no acknowledgement without a
recorded reason (cdk-nag 3.x: the policy-validation plugin, run directly on each stack)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


def _violations(app, stack) -> list[str]:
    from cdk_nag import AwsSolutionsChecks

    report = AwsSolutionsChecks(app).validate_scope(stack)
    return [
        f"{v.rule_name}: {v.description.splitlines()[0]} at "
        + ", ".join(str(r.construct_path) for r in v.violating_resources)
        for v in report.violations
    ]


def _stacks(env_stacks) -> list:
    return [env_stacks.foundation, *env_stacks.serving.values()]


@pytest.mark.parametrize("env", ["dev", "prod"])
def test_no_unacknowledged_findings(default_app, env):
    app, stacks = default_app
    for stack in _stacks(stacks[env]):
        assert _violations(app, stack) == [], stack.stack_name


def test_no_unacknowledged_findings_with_every_option_on(pinned_app):
    app, stacks = pinned_app
    for stack in _stacks(stacks["dev"]):
        assert _violations(app, stack) == [], stack.stack_name


@pytest.mark.parametrize("env", ["dev", "prod"])
def test_no_unacknowledged_findings_for_a_third_model(fleet_app, env):
    app, stacks = fleet_app
    assert _violations(app, stacks[env].serving["third_test_model"]) == []


def test_checks_really_run(default_app):
    """The pack does report findings: a bare bucket and queue fail it."""
    from aws_cdk import App, Stack
    from aws_cdk import aws_s3 as s3
    from aws_cdk import aws_sqs as sqs

    app = App()
    stack = Stack(app, "Bare")
    s3.Bucket(stack, "Bucket")
    sqs.Queue(stack, "Queue")
    rules = {v.split(":")[0] for v in _violations(app, stack)}
    assert {
        "AwsSolutions-S1",
        "AwsSolutions-S10",
        "AwsSolutions-SQS3",
        "AwsSolutions-SQS4",
    } <= rules


def test_every_acknowledgement_has_a_reason_and_is_documented():
    from waterml_infra.nag import REASONS

    readme = (REPO / "infra" / "README.md").read_text()
    for finding, reason in REASONS.items():
        assert len(reason) > 40, finding
        assert finding in readme, f"{finding} is not explained in infra/README.md"


def _acknowledged(stack) -> dict[str, list[str]]:
    found: dict[str, list[str]] = {}
    for construct in [stack, *stack.node.find_all()]:
        for entry in construct.node.metadata:
            if entry.type == "aws:cdk:acknowledged-rules":
                found.setdefault(construct.node.path, []).extend(entry.data)
    return found


def test_acknowledgements_are_few_and_on_the_narrowest_constructs(default_app):
    """Exactly the findings listed in nag.REASONS, each on the policy/queue that needs it."""
    _, stacks = default_app
    dev = stacks["dev"]
    foundation = _acknowledged(dev.foundation)
    assert sorted(foundation) == [
        "WaterMl-dev-Foundation/GitHubDeployPolicy",
        "WaterMl-dev-Foundation/GitHubPromotePolicy",
    ]
    deploy = sorted(foundation["WaterMl-dev-Foundation/GitHubDeployPolicy"])
    assert len(deploy) == 5
    bucket_acks = [deploy.pop(1), deploy.pop(1)]
    for ack in bucket_acks:
        assert ack.startswith("Annotation::AwsSolutions-IAM5[Resource::<ModelBucket")
    # The released bundles (deploy_context's training mix) and the release manifests.
    assert sorted(ack.split(".Arn>", 1)[1] for ack in bucket_acks) == [
        "/models/*/model.joblib]",
        "/models/*/release.json]",
    ]
    assert deploy == [
        "Annotation::AwsSolutions-IAM5[Resource::*]",
        "Annotation::AwsSolutions-IAM5[Resource::arn:aws:cloudformation:eu-west-1:111111111111:"
        "stack/WaterMl-dev-Serving-*/*]",
        "Annotation::AwsSolutions-IAM5[Resource::arn:aws:lambda:eu-west-1:111111111111:"
        "function:waterml-dev-*]",
    ]
    promote = foundation["WaterMl-dev-Foundation/GitHubPromotePolicy"]
    assert len(promote) == 2
    for ack in promote:
        assert ack.startswith("Annotation::AwsSolutions-IAM5[Resource::<ModelBucket")
    assert sorted(ack.split(".Arn>", 1)[1] for ack in promote) == [
        "/models/*/release.json]",
        "/models/*]",
    ]
    serving = _acknowledged(dev.serving["wqi"])
    prefix = "WaterMl-dev-Serving-wqi/"
    assert sorted(serving) == [
        prefix + "AsyncFailures",
        prefix + "Rollout/DeploymentGroup/ServiceRole",
        prefix + "Rollout/DeploymentGroup/ServiceRole/DefaultPolicy",
        prefix + "Rollout/PreTrafficPolicy",
    ]
    assert serving[prefix + "AsyncFailures"] == ["Annotation::AwsSolutions-SQS3"]
    assert serving[prefix + "Rollout/DeploymentGroup/ServiceRole"] == [
        "Annotation::AwsSolutions-IAM4[Policy::arn:<AWS::Partition>:iam::aws:policy/"
        "service-role/AWSCodeDeployRoleForLambdaLimited]"
    ]
    (hook_invoke,) = serving[prefix + "Rollout/DeploymentGroup/ServiceRole/DefaultPolicy"]
    assert re.fullmatch(
        r"Annotation::AwsSolutions-IAM5\[Resource::<RolloutPreTraffic[0-9A-F]{8}\.Arn>:\*\]",
        hook_invoke,
    )
    assert serving[prefix + "Rollout/PreTrafficPolicy"] == [
        "Annotation::AwsSolutions-IAM5[Resource::arn:aws:lambda:eu-west-1:111111111111:"
        "function:waterml-dev-wqi:*]"
    ]


def test_cdk_app_registers_the_nag_plugin():
    source = (REPO / "infra" / "waterml_infra" / "app.py").read_text()
    assert re.search(r"nag\.add_checks\(app\)", source)
    nag_source = (REPO / "infra" / "waterml_infra" / "nag.py").read_text()
    assert "Validations.of(app).add_plugins(checks)" in nag_source
