"""The team's MLflow on AWS (infra/waterml_infra/stacks/tracking.py): a SageMaker managed MLflow
tracking server, its artifact bucket and role, and the promotion role's grants; cdk-nag clean."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from aws_cdk import App, Environment
from aws_cdk.assertions import Match, Template

DEV_ARTIFACTS = "waterml-dev-mlflow-artifacts-111111111111-eu-west-1"
TRAINER = "arn:aws:iam::111111111111:role/data-scientists"


@pytest.fixture(scope="module")
def stacks() -> tuple[App, Any, Any]:
    from waterml_infra.app import make_app
    from waterml_infra.config import EnvConfig
    from waterml_infra.stacks.foundation import FoundationStack
    from waterml_infra.stacks.tracking import add_tracking

    app = make_app({"nag": "false"})  # cdk.json's feature flags, as `cdk synth` has them
    cfg = EnvConfig(name="dev")
    env = Environment(account=cfg.account, region=cfg.region)
    foundation = FoundationStack(app, cfg.stack_name("Foundation"), config=cfg, env=env)
    cfg = replace(cfg, tracking_trainer_roles=(TRAINER,))
    tracking = add_tracking(
        app,
        cfg,
        promote_role=foundation.promote_role,
        env=env,
    )
    return app, foundation, tracking


@pytest.fixture(scope="module")
def template(stacks: tuple[App, Any, Any]) -> Template:
    return Template.from_stack(stacks[2])


def artifact_bucket_id(t: Template) -> str:
    (found,) = [k for k, b in t.find_resources("AWS::S3::Bucket").items()
                if b["Properties"]["BucketName"] == DEV_ARTIFACTS]  # fmt: skip
    return found


def resource(t: Template, kind: str) -> tuple[str, dict[str, Any]]:
    (found,) = t.find_resources(kind).items()
    return found


def test_managed_mlflow_server(template: Template) -> None:
    from waterml_infra.stacks.tracking import MLFLOW_VERSION

    bucket_id = artifact_bucket_id(template)
    role_id = next(
        k
        for k, r in template.find_resources("AWS::IAM::Role").items()
        if r["Properties"]["RoleName"] == "waterml-dev-mlflow-server"
    )
    _, server = resource(template, "AWS::SageMaker::MlflowTrackingServer")
    props = server["Properties"]
    assert props["TrackingServerName"] == "waterml-dev-mlflow"
    assert props["MlflowVersion"] == MLFLOW_VERSION
    assert props["TrackingServerSize"] == "Small"
    assert props["AutomaticModelRegistration"] is False
    assert props["RoleArn"] == {"Fn::GetAtt": [role_id, "Arn"]}
    assert props["ArtifactStoreUri"] == {"Fn::Join": ["", ["s3://", {"Ref": bucket_id}, "/mlflow"]]}
    outputs = template.find_outputs("TrackingServerArn")
    assert outputs  # what CI's MLFLOW_TRACKING_URI secret holds


def test_artifact_bucket_is_private_encrypted_logged_and_retained(template: Template) -> None:
    template.has_resource(
        "AWS::S3::Bucket",
        {
            "DeletionPolicy": "Retain",
            "Properties": Match.object_like(
                {
                    "BucketName": DEV_ARTIFACTS,
                    "BucketEncryption": {
                        "ServerSideEncryptionConfiguration": [
                            {"ServerSideEncryptionByDefault": {"SSEAlgorithm": "AES256"}}
                        ]
                    },
                    "PublicAccessBlockConfiguration": {
                        "BlockPublicAcls": True,
                        "BlockPublicPolicy": True,
                        "IgnorePublicAcls": True,
                        "RestrictPublicBuckets": True,
                    },
                    "LoggingConfiguration": Match.object_like(
                        {"LogFilePrefix": "mlflow-artifacts/"}
                    ),
                }
            ),
        },
    )
    bucket_id = artifact_bucket_id(template)
    (policy,) = [p for p in template.find_resources("AWS::S3::BucketPolicy").values()
                 if p["Properties"]["Bucket"] == {"Ref": bucket_id}]  # fmt: skip
    (deny,) = [s for s in policy["Properties"]["PolicyDocument"]["Statement"]
               if s["Effect"] == "Deny" and "aws:SecureTransport" in str(s)]  # fmt: skip
    assert deny["Action"] == "s3:*"


def statements(template: Template, policy_prefix: str) -> list[dict[str, Any]]:
    (policy,) = [
        p for k, p in template.find_resources("AWS::IAM::Policy").items()
        if k.startswith(policy_prefix)
    ]  # fmt: skip
    return list(policy["Properties"]["PolicyDocument"]["Statement"])


def test_server_role_trusts_sagemaker_of_this_account_and_reaches_only_its_prefix(
    template: Template,
) -> None:
    template.has_resource_properties(
        "AWS::IAM::Role",
        {
            "RoleName": "waterml-dev-mlflow-server",
            "AssumeRolePolicyDocument": {
                "Statement": [
                    Match.object_like(
                        {
                            "Principal": {"Service": "sagemaker.amazonaws.com"},
                            "Condition": {"StringEquals": {"aws:SourceAccount": "111111111111"}},
                        }
                    )
                ]
            },
        },
    )
    got = statements(template, "TrackingServerPolicy")
    actions = sorted(a for s in got for a in s["Action"])
    assert actions == ["s3:DeleteObject", "s3:GetBucketLocation", "s3:GetObject",
                       "s3:ListBucket", "s3:PutObject"]  # fmt: skip
    (objects,) = [s for s in got if s["Sid"] == "ArtifactObjects"]
    assert objects["Resource"]["Fn::Join"][1][-1] == "/mlflow/*"


def test_promote_role_gets_registry_reads_tags_and_alias_on_this_server_only(
    stacks: tuple[App, Any, Any], template: Template
) -> None:
    from waterml_infra.stacks.tracking import PROMOTE_ACTIONS

    _, foundation, _ = stacks
    server_id, _ = resource(template, "AWS::SageMaker::MlflowTrackingServer")
    (policy,) = [
        p["Properties"] for k, p in template.find_resources("AWS::IAM::Policy").items()
        if k.startswith("PromoteTrackingPolicy")
    ]  # fmt: skip
    # Attached to the foundation stack's promotion role (an export of its name).
    (role_ref,) = policy["Roles"]
    assert "Fn::ImportValue" in role_ref
    assert foundation.get_logical_id(foundation.promote_role.node.default_child) in str(role_ref)
    by_sid = {s["Sid"]: s for s in policy["PolicyDocument"]["Statement"]}
    registry = by_sid["MlflowRegistry"]
    assert registry["Resource"] == {"Fn::GetAtt": [server_id, "TrackingServerArn"]}
    assert sorted(registry["Action"]) == sorted(PROMOTE_ACTIONS)
    assert {"sagemaker-mlflow:SetRegisteredModelAlias", "sagemaker-mlflow:SetModelVersionTag",
            "sagemaker-mlflow:GetModelVersion"} <= set(registry["Action"])  # fmt: skip
    # Nothing that creates, deletes or renames; no wildcard action.
    assert not [a for a in registry["Action"] if a.split(":")[1].startswith(
        ("Create", "Delete", "Rename", "Update", "Transition")) or "*" in a]  # fmt: skip
    assert by_sid["ReadArtifacts"]["Action"] == "s3:GetObject"
    assert by_sid["ListArtifacts"]["Condition"] == {"StringLike": {"s3:prefix": ["mlflow/*"]}}


def test_cdk_nag_clean_with_one_reasoned_acknowledgement(stacks: tuple[App, Any, Any]) -> None:
    from cdk_nag import AwsSolutionsChecks
    from waterml_infra.stacks.tracking import REASONS

    app, _, tracking = stacks
    report = AwsSolutionsChecks(app).validate_scope(tracking)
    assert [v.rule_name for v in report.violations] == []
    acknowledged: dict[str, list[str]] = {}
    for construct in tracking.node.find_all():
        for entry in construct.node.metadata:
            if entry.type == "aws:cdk:acknowledged-rules":
                acknowledged.setdefault(construct.node.path, []).extend(entry.data)
    assert sorted(acknowledged) == [
        "WaterMl-dev-Tracking/PromoteTrackingPolicy",
        "WaterMl-dev-Tracking/TrackingServerPolicy",
        "WaterMl-dev-Tracking/TrainTrackingPolicy0",  # the trainer's artifact writes
    ]
    for rules in acknowledged.values():
        (rule,) = rules
        assert rule.startswith("Annotation::AwsSolutions-IAM5[Resource::<ArtifactBucket")
        assert rule.endswith(".Arn>/mlflow/*]")
    assert all(len(reason) > 40 for reason in REASONS.values())


def test_the_app_adds_the_tracking_stack_only_where_an_environment_asks_for_it() -> None:
    """Opt-in per environment (billed per hour): off by default; on, it is synthesized beside
    Foundation with the promotion role's grants, and cdk-nag (on in the app) stays clean."""
    from cdk_nag import AwsSolutionsChecks
    from waterml_infra.app import build, make_app

    default = make_app({"env": "dev"})
    assert "WaterMl-dev-Tracking" not in [
        s.stack_name for s in build(default)["dev"].serving.values()
    ]
    assert default.node.try_find_child("WaterMl-dev-Tracking") is None

    app = make_app({"env": "dev", "waterml.dev.tracking_server": "true"})
    build(app)
    stack = app.node.find_child("WaterMl-dev-Tracking")
    template = Template.from_stack(stack)
    template.resource_count_is("AWS::SageMaker::MlflowTrackingServer", 1)
    template.has_resource_properties(
        "AWS::IAM::Policy",
        {"Roles": Match.any_value(), "PolicyName": Match.string_like_regexp("PromoteTracking")},
    )
    assert "WaterMl-dev-Foundation" in [d.stack_name for d in stack.dependencies]
    report = AwsSolutionsChecks(app).validate_scope(stack)
    assert [v.rule_name for v in report.violations] == []


def _policy_of(t: Template, sid: str) -> tuple[list[Any], dict[str, Any]]:
    """The roles a policy is attached to, and its statement ``sid``."""
    for policy in t.find_resources("AWS::IAM::Policy").values():
        doc = policy["Properties"]["PolicyDocument"]["Statement"]
        for statement in doc:
            if statement.get("Sid") == sid:
                return policy["Properties"].get("Roles", []), {
                    s["Sid"]: s for s in doc if "Sid" in s
                }
    raise AssertionError(f"no policy with {sid}")


def test_trainer_roles_may_train_upload_and_open_the_ui(template: Template) -> None:
    """What `python -m training` needs on SageMaker's server, which hands out s3:// artifact
    URIs (no proxy): the MLflow actions, artifact writes under mlflow/, the UI by presigned
    URL; nothing that deletes."""
    from waterml_infra.stacks.tracking import TRAIN_ACTIONS, UI_ACTION

    roles, statements = _policy_of(template, "MlflowTraining")
    assert roles == ["data-scientists"]
    _, server = resource(template, "AWS::SageMaker::MlflowTrackingServer")
    training = statements["MlflowTraining"]
    assert set(training["Action"]) == set(TRAIN_ACTIONS)
    for needed in ("CreateRun", "LogBatch", "CreateModelVersion", "CreateRegisteredModel",
                   "SetRegisteredModelAlias", "LogInputs", "AccessUI"):  # fmt: skip
        assert f"sagemaker-mlflow:{needed}" in TRAIN_ACTIONS
    assert not [a for a in TRAIN_ACTIONS if "Delete" in a or "Rename" in a]
    assert statements["MlflowUi"]["Action"] == UI_ACTION
    writes = statements["WriteArtifacts"]
    assert set(writes["Action"]) == {"s3:GetObject", "s3:PutObject"}
    assert "/mlflow/*" in str(writes["Resource"])
    del server


def test_the_servers_mlflow_major_is_the_clients() -> None:
    """The lock's MLflow client talks to MLFLOW_VERSION's server: the same major."""
    import tomllib

    from waterml_infra.stacks.tracking import MLFLOW_VERSION

    lock = tomllib.loads((Path(__file__).parents[2] / "uv.lock").read_text())
    (client,) = [p["version"] for p in lock["package"] if p["name"] == "mlflow"]
    assert client.split(".")[0] == MLFLOW_VERSION.split(".")[0]


def test_a_trainer_role_must_be_a_role_arn() -> None:
    from waterml_infra.config import ConfigError, EnvConfig

    with pytest.raises(ConfigError, match="tracking_trainer_roles"):
        EnvConfig(name="dev", tracking_trainer_roles=("data-scientists",))
