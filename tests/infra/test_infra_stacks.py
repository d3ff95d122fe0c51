"""Assertion tests: every property issues 5 and 13 ask of the CDK app (one model's stack here;
tests/infra/test_infra_fleet.py covers the fleet and its rollouts)."""

from __future__ import annotations

import json
from typing import Any

import pytest
from aws_cdk.assertions import Match, Template


def find_one(t: Template, resource_type: str, props: dict[str, Any]) -> str:
    """The logical id of the only resource of this type with these properties."""
    found = t.find_resources(
        resource_type, {"Properties": Match.object_like(props)} if props else {}
    )
    assert len(found) == 1, f"expected one {resource_type} like {props}, found {list(found)}"
    return next(iter(found))


def policy_statements(t: Template, role_id: str) -> list[dict[str, Any]]:
    """Every statement of every inline AWS::IAM::Policy attached to the role."""
    statements: list[dict[str, Any]] = []
    for policy in t.find_resources("AWS::IAM::Policy").values():
        if {"Ref": role_id} in policy["Properties"].get("Roles", []):
            statements += policy["Properties"]["PolicyDocument"]["Statement"]
    return statements


def function(t: Template, name: str = "waterml-dev-wqi") -> dict[str, Any]:
    """The model's function (the stack also holds its pre-traffic hook)."""
    (fn,) = [
        f
        for f in t.find_resources("AWS::Lambda::Function").values()
        if f["Properties"]["FunctionName"] == name
    ]
    return fn


def drift_function(t: Template) -> str:
    """The logical id of the model's scheduled drift job (constructs/drift_job.py)."""
    return find_one(t, "AWS::Lambda::Function", {"FunctionName": "waterml-dev-wqi-drift"})


DEV_BUCKET = "waterml-dev-models-111111111111-eu-west-1"
MODEL_OBJECT = f"arn:aws:s3:::{DEV_BUCKET}/models/wqi/model.joblib"
SIGNATURE_OBJECT = f"arn:aws:s3:::{DEV_BUCKET}/models/wqi/release.sig.json"


# Model bucket ----------------------------------------------------------------------------
def test_model_bucket_is_versioned_encrypted_private_and_retained(templates):
    t: Template = templates["dev-foundation"]
    t.has_resource(
        "AWS::S3::Bucket",
        {
            "Properties": Match.object_like(
                {
                    "BucketName": DEV_BUCKET,
                    "VersioningConfiguration": {"Status": "Enabled"},
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
                    "LoggingConfiguration": Match.object_like({"LogFilePrefix": "model-bucket/"}),
                }
            ),
            "DeletionPolicy": "Retain",
            "UpdateReplacePolicy": "Retain",
        },
    )


def test_model_bucket_denies_non_ssl_requests(templates):
    t: Template = templates["dev-foundation"]
    bucket_id = find_one(t, "AWS::S3::Bucket", {"BucketName": DEV_BUCKET})
    t.has_resource_properties(
        "AWS::S3::BucketPolicy",
        {
            "Bucket": {"Ref": bucket_id},
            "PolicyDocument": {
                "Statement": Match.array_with(
                    [
                        Match.object_like(
                            {
                                "Effect": "Deny",
                                "Action": "s3:*",
                                "Condition": {"Bool": {"aws:SecureTransport": "false"}},
                            }
                        )
                    ]
                )
            },
        },
    )


def test_lifecycle_keeps_the_configured_number_of_rollback_targets(templates):
    for name, retained in (
        ("dev-foundation", 10),
        ("prod-foundation", 20),
        ("pinned-foundation", 7),
    ):
        t: Template = templates[name]
        t.has_resource_properties(
            "AWS::S3::Bucket",
            {
                "VersioningConfiguration": {"Status": "Enabled"},
                "LifecycleConfiguration": {
                    "Rules": Match.array_with(
                        [
                            Match.object_like(
                                {
                                    "Id": "keep-rollback-targets",
                                    "Status": "Enabled",
                                    "NoncurrentVersionExpiration": {
                                        "NoncurrentDays": 30,
                                        "NewerNoncurrentVersions": retained,
                                    },
                                }
                            )
                        ]
                    )
                },
            },
        )


def test_lifecycle_never_expires_current_versions(templates):
    t: Template = templates["dev-foundation"]
    bucket = t.find_resources("AWS::S3::Bucket", {"Properties": {"BucketName": DEV_BUCKET}})
    (props,) = [r["Properties"] for r in bucket.values()]
    for rule in props["LifecycleConfiguration"]["Rules"]:
        assert "ExpirationInDays" not in rule and "ExpirationDate" not in rule


# ECR ------------------------------------------------------------------------------------
def test_repository_scans_on_push_is_immutable_and_has_a_lifecycle(templates):
    t: Template = templates["dev-foundation"]
    t.has_resource(
        "AWS::ECR::Repository",
        {
            "Properties": Match.object_like(
                {
                    "RepositoryName": "waterml-dev-inference",
                    "ImageScanningConfiguration": {"ScanOnPush": True},
                    "ImageTagMutability": "IMMUTABLE",
                    "LifecyclePolicy": Match.object_like(
                        {"LifecyclePolicyText": Match.string_like_regexp("imageCountMoreThan")}
                    ),
                }
            ),
            "DeletionPolicy": "Retain",
        },
    )
    repo = next(iter(t.find_resources("AWS::ECR::Repository").values()))
    text = json.loads(repo["Properties"]["LifecyclePolicy"]["LifecyclePolicyText"])
    (rule,) = text["rules"]
    assert rule["selection"]["countNumber"] == 50
    assert rule["action"]["type"] == "expire"


def test_repository_lets_only_this_environments_functions_pull(templates):
    t: Template = templates["dev-foundation"]
    repo = next(iter(t.find_resources("AWS::ECR::Repository").values()))
    (statement,) = repo["Properties"]["RepositoryPolicyText"]["Statement"]
    assert statement["Principal"] == {"Service": "lambda.amazonaws.com"}
    assert sorted(statement["Action"]) == ["ecr:BatchGetImage", "ecr:GetDownloadUrlForLayer"]
    # Every model's function and hook, by name prefix: adding a model changes nothing here.
    fns = "arn:aws:lambda:eu-west-1:111111111111:function:waterml-dev-*"
    assert statement["Condition"]["ArnLike"]["aws:SourceArn"] == fns
    assert statement["Condition"]["StringEquals"]["aws:SourceAccount"] == "111111111111"


# Function ---------------------------------------------------------------------------------
def test_function_uses_the_image_by_digest_not_by_tag(templates):
    t: Template = templates["pinned-serving"]
    fn = function(t)
    uri = json.dumps(fn["Properties"]["Code"]["ImageUri"])
    assert "@sha256:" + "ab" * 32 in uri
    assert "waterml-dev-inference" in uri
    assert ":latest" not in uri
    assert fn["Properties"]["PackageType"] == "Image"


def test_function_defaults(templates):
    t: Template = templates["dev-serving"]
    t.has_resource_properties(
        "AWS::Lambda::Function",
        {
            "FunctionName": "waterml-dev-wqi",
            "MemorySize": 1024,
            "Timeout": 30,
            "Architectures": ["x86_64"],
        },
    )
    fn = function(t)
    assert "ReservedConcurrentExecutions" not in fn["Properties"]
    assert "SnapStart" not in fn["Properties"]


def test_function_settings_are_configurable(templates):
    templates["pinned-serving"].has_resource_properties(
        "AWS::Lambda::Function",
        {
            "MemorySize": 2048,
            "Timeout": 20,
            "Architectures": ["arm64"],
            "ReservedConcurrentExecutions": 20,
        },
    )
    templates["prod-serving"].has_resource_properties(
        "AWS::Lambda::Function", {"ReservedConcurrentExecutions": 50}
    )


def test_function_environment_comes_from_the_release(templates):
    templates["pinned-serving"].has_resource_properties(
        "AWS::Lambda::Function",
        {
            "Environment": {
                "Variables": {
                    "MODEL_BUCKET": DEV_BUCKET,
                    "MODEL_KEY": "models/wqi/model.joblib",
                    "MODEL_VERSION_ID": "3HL4kqtJlcpXroDTDmJ+rmSpXd3dIbrHY",
                    "MODEL_SHA256": "5" * 64,
                    "MODEL_VERSION": "3",
                    "POWERTOOLS_LOG_LEVEL": "INFO",
                    "POWERTOOLS_SERVICE_NAME": "waterml-dev-wqi",
                }
            }
        },
    )


def test_function_reads_exactly_its_model_and_signature_objects_and_nothing_else(templates):
    t: Template = templates["pinned-serving"]
    role_id = function(t)["Properties"]["Role"]["Fn::GetAtt"][0]
    statements = policy_statements(t, role_id)
    s3 = [s for s in statements if any(a.startswith("s3:") for a in _list(s["Action"]))]
    assert len(s3) == 1
    (read,) = s3
    assert read["Effect"] == "Allow"
    # By their pinned VersionIds only: s3:GetObjectVersion, never s3:GetObject (what is at
    # the key now).
    assert _list(read["Action"]) == ["s3:GetObjectVersion"]
    assert read["Resource"] == [MODEL_OBJECT, SIGNATURE_OBJECT]
    every_action = {a for s in statements for a in _list(s["Action"])}
    assert "s3:ListBucket" not in every_action
    assert not any(a.endswith("*") for a in every_action)
    # The rest: its own logs and the on-failure queue.
    assert every_action - {"s3:GetObjectVersion"} <= {
        "logs:CreateLogStream",
        "logs:PutLogEvents",
        "sqs:SendMessage",
        "sqs:GetQueueAttributes",
        "sqs:GetQueueUrl",
    }
    t.resource_count_is("AWS::IAM::ManagedPolicy", 0)
    assert "ManagedPolicyArns" not in t.to_json()["Resources"][role_id]["Properties"]


def test_function_logs_have_a_retention(templates):
    templates["dev-serving"].has_resource_properties(
        "AWS::Logs::LogGroup",
        {"LogGroupName": "/aws/lambda/waterml-dev-wqi", "RetentionInDays": 30},
    )


# Alias, provisioned concurrency, warm-up ---------------------------------------------------
def test_live_alias_starts_at_the_new_version_on_first_deploy(templates):
    t: Template = templates["dev-serving"]
    version_id = find_one(t, "AWS::Lambda::Version", {})
    t.has_resource_properties(
        "AWS::Lambda::Alias",
        {"Name": "live", "FunctionVersion": {"Fn::GetAtt": [version_id, "Version"]}},
    )
    alias = next(iter(t.find_resources("AWS::Lambda::Alias").values()))
    assert "ProvisionedConcurrencyConfig" not in alias["Properties"]
    # No warm-up rule in dev: the one rule is the daily drift report's (test_infra_drift_job.py).
    (rule,) = t.find_resources("AWS::Events::Rule").values()
    assert rule["Properties"]["ScheduleExpression"] == "rate(1 day)"
    (target,) = rule["Properties"]["Targets"]
    assert target["Arn"] == {"Fn::GetAtt": [drift_function(t), "Arn"]}


def test_deploy_publishes_a_version_and_names_it_for_codedeploy_to_shift(templates):
    """`live` names the new version; its UpdatePolicy hands the move to CodeDeploy, and the old
    versions are retained so that a rollback has somewhere to return to."""
    t: Template = templates["pinned-serving"]
    t.resource_count_is("AWS::Lambda::Version", 1)
    t.has_resource("AWS::Lambda::Version", {"DeletionPolicy": "Retain"})
    version_id = find_one(t, "AWS::Lambda::Version", {})
    t.has_resource(
        "AWS::Lambda::Alias",
        {
            "Properties": Match.object_like(
                {"Name": "live", "FunctionVersion": {"Fn::GetAtt": [version_id, "Version"]}}
            ),
            "UpdatePolicy": {"CodeDeployLambdaAliasUpdate": Match.any_value()},
        },
    )
    t.has_output("FunctionVersion", {"Value": {"Fn::GetAtt": [version_id, "Version"]}})
    t.has_output("FunctionName", Match.any_value())
    t.has_output("LiveAliasName", {"Value": "live"})


def test_provisioned_concurrency_is_optional(templates):
    templates["pinned-serving"].has_resource_properties(
        "AWS::Lambda::Alias",
        {"ProvisionedConcurrencyConfig": {"ProvisionedConcurrentExecutions": 3}},
    )
    templates["prod-serving"].has_resource_properties(
        "AWS::Lambda::Alias",
        {"ProvisionedConcurrencyConfig": {"ProvisionedConcurrentExecutions": 2}},
    )


def test_warmup_schedule_targets_the_live_alias(templates):
    t: Template = templates["pinned-serving"]
    alias_id = find_one(t, "AWS::Lambda::Alias", {})
    t.resource_count_is("AWS::Events::Rule", 2)  # the warm-up and the drift report's schedule
    find_one(t, "AWS::Events::Rule", {"ScheduleExpression": "rate(10 minutes)"})
    find_one(t, "AWS::Events::Rule", {"ScheduleExpression": "rate(1 day)"})
    t.has_resource_properties(
        "AWS::Events::Rule",
        {
            "ScheduleExpression": "rate(10 minutes)",
            "State": "ENABLED",
            "Targets": [
                Match.object_like(
                    {
                        "Arn": {"Ref": alias_id},
                        "RetryPolicy": {"MaximumRetryAttempts": 0, "MaximumEventAgeInSeconds": 60},
                    }
                )
            ],
        },
    )
    # The rule sends its own scheduled event: no Input override to confuse the handler.
    rule = next(iter(t.find_resources("AWS::Events::Rule").values()))
    assert "Input" not in rule["Properties"]["Targets"][0]
    t.has_resource_properties(
        "AWS::Lambda::Permission",
        {"Action": "lambda:InvokeFunction", "Principal": "events.amazonaws.com"},
    )
    templates["prod-serving"].has_resource_properties(
        "AWS::Events::Rule", {"ScheduleExpression": "rate(5 minutes)"}
    )


# Asynchronous invocation ----------------------------------------------------------------------
def test_async_invocation_has_bounded_retries_and_age_and_an_on_failure_queue(templates):
    t: Template = templates["dev-serving"]
    queue_id = find_one(t, "AWS::SQS::Queue", {})
    alias_id = find_one(t, "AWS::Lambda::Alias", {})
    (config,) = [
        c
        for c in t.find_resources("AWS::Lambda::EventInvokeConfig").values()
        if c["Properties"]["Qualifier"] != "$LATEST"  # the hook's own config
    ]
    # On the alias (its qualifier is taken from the alias ARN), not on $LATEST.
    assert {"Ref": alias_id} in config["Properties"]["Qualifier"]["Fn::Select"][1]["Fn::Split"]
    t.has_resource_properties(
        "AWS::Lambda::EventInvokeConfig",
        {
            "MaximumRetryAttempts": 2,
            "MaximumEventAgeInSeconds": 3600,
            "DestinationConfig": {"OnFailure": {"Destination": {"Fn::GetAtt": [queue_id, "Arn"]}}},
        },
    )


def test_failure_queue_is_encrypted_and_ssl_only(templates):
    t: Template = templates["dev-serving"]
    t.has_resource_properties(
        "AWS::SQS::Queue",
        {"SqsManagedSseEnabled": True, "MessageRetentionPeriod": 14 * 24 * 3600},
    )
    t.has_resource_properties(
        "AWS::SQS::QueuePolicy",
        {
            "PolicyDocument": {
                "Statement": Match.array_with(
                    [
                        Match.object_like(
                            {
                                "Effect": "Deny",
                                "Condition": {"Bool": {"aws:SecureTransport": "false"}},
                            }
                        )
                    ]
                )
            }
        },
    )


# Alarms -------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("metric", "statistic", "threshold"),
    [
        ("Errors", {"Statistic": "Sum"}, 1),
        ("Throttles", {"Statistic": "Sum"}, 1),
        ("Duration", {"ExtendedStatistic": "p99"}, 3000),
    ],
)
def test_function_alarms_on_the_live_alias(templates, metric, statistic, threshold):
    """Errors and p99 on the version being deployed as `live` executes it (ExecutedVersion),
    throttles on the alias; every one a one-minute alarm (a canary bakes for five)."""
    templates["dev-serving"].has_resource_properties(
        "AWS::CloudWatch::Alarm",
        {
            "Namespace": "AWS/Lambda",
            "MetricName": metric,
            "Threshold": threshold,
            "ComparisonOperator": "GreaterThanOrEqualToThreshold",
            "Dimensions": Match.array_with([{"Name": "Resource", "Value": Match.any_value()}]),
            "Period": 60,
            **statistic,
        },
    )


def test_alarms_notify_the_configured_topic(templates):
    pinned = templates["pinned-serving"].find_resources("AWS::CloudWatch::Alarm")
    # The four rollback alarms, the failure queue's and the out-of-domain alarm (no training
    # mix in this context, so no answer-mix alarm: tests/infra/test_infra_monitoring.py), and
    # the drift job's four: data drift, out of domain, estimated loss, the job's errors.
    assert len(pinned) == 10
    drift = {k for k in pinned if k.startswith("DriftJob")}
    assert len(drift) == 4
    for alarm in pinned.values():
        assert alarm["Properties"]["AlarmActions"] == ["arn:aws:sns:eu-west-1:111111111111:paging"]
        assert alarm["Properties"]["OKActions"] == ["arn:aws:sns:eu-west-1:111111111111:paging"]
    for alarm in templates["dev-serving"].find_resources("AWS::CloudWatch::Alarm").values():
        assert "AlarmActions" not in alarm["Properties"]


def test_alarm_on_failure_queue_depth(templates):
    t: Template = templates["dev-serving"]
    queue_id = find_one(t, "AWS::SQS::Queue", {})
    t.has_resource_properties(
        "AWS::CloudWatch::Alarm",
        {
            "Namespace": "AWS/SQS",
            "MetricName": "ApproximateNumberOfMessagesVisible",
            "Threshold": 1,
            "Dimensions": [{"Name": "QueueName", "Value": {"Fn::GetAtt": [queue_id, "QueueName"]}}],
        },
    )


# GitHub OIDC ------------------------------------------------------------------------------------
def _github_roles(t: Template) -> dict[str, dict]:
    return {
        role["Properties"]["RoleName"]: role
        for role in t.find_resources("AWS::IAM::Role").values()
        if "github" in role["Properties"].get("RoleName", "")
    }


def test_oidc_provider_is_created_once_per_account(templates):
    dev: Template = templates["dev-foundation"]
    dev.has_resource_properties(
        "AWS::IAM::OIDCProvider",
        {
            "Url": "https://token.actions.githubusercontent.com",
            "ClientIdList": ["sts.amazonaws.com"],
        },
    )
    dev.resource_count_is("AWS::Lambda::Function", 0)  # native resource, no custom resource
    templates["prod-foundation"].resource_count_is("AWS::IAM::OIDCProvider", 0)
    prod_roles = _github_roles(templates["prod-foundation"])
    for role in prod_roles.values():
        (stmt,) = role["Properties"]["AssumeRolePolicyDocument"]["Statement"]
        assert stmt["Principal"]["Federated"] == (
            "arn:aws:iam::111111111111:oidc-provider/token.actions.githubusercontent.com"
        )


def test_github_roles_trust_only_this_repository_and_environment(templates):
    roles = _github_roles(templates["dev-foundation"])
    assert sorted(roles) == ["waterml-dev-github-deploy", "waterml-dev-github-promote"]
    for role in roles.values():
        (stmt,) = role["Properties"]["AssumeRolePolicyDocument"]["Statement"]
        assert stmt["Action"] == "sts:AssumeRoleWithWebIdentity"
        assert stmt["Condition"] == {
            "StringEquals": {
                "token.actions.githubusercontent.com:aud": "sts.amazonaws.com",
                "token.actions.githubusercontent.com:sub": (
                    "repo:example-org/waterml:environment:dev"
                ),
            }
        }
        assert role["Properties"]["MaxSessionDuration"] == 3600


def test_deploy_role_may_push_the_image_deploy_and_read_what_is_released_and_deployed(templates):
    t: Template = templates["dev-foundation"]
    statements = policy_statements(t, _role_id(t, "waterml-dev-github-deploy"))
    by_sid = {s["Sid"]: s for s in statements}
    assert set(by_sid) == {
        "EcrLogin",
        "EcrPushThisRepository",
        "CdkDeploy",
        "ReadReleases",
        "ReadReleasedBundles",
        "ReadFunctions",
        "ReadServingStacks",
        "CountRolloutInvocations",
    }
    assert by_sid["CountRolloutInvocations"]["Action"] == "cloudwatch:GetMetricStatistics"
    assert by_sid["ReadServingStacks"]["Action"] == "cloudformation:DescribeStacks"
    assert by_sid["ReadServingStacks"]["Resource"] == (
        "arn:aws:cloudformation:eu-west-1:111111111111:stack/WaterMl-dev-Serving-*/*"
    )
    assert by_sid["EcrLogin"]["Action"] == "ecr:GetAuthorizationToken"
    assert by_sid["EcrLogin"]["Resource"] == "*"
    repo_id = find_one(t, "AWS::ECR::Repository", {})
    assert by_sid["EcrPushThisRepository"]["Resource"] == {"Fn::GetAtt": [repo_id, "Arn"]}
    assert "ecr:PutImage" in by_sid["EcrPushThisRepository"]["Action"]
    assert not any("Delete" in a for a in by_sid["EcrPushThisRepository"]["Action"])
    assert by_sid["CdkDeploy"]["Action"] == "sts:AssumeRole"
    assert sorted(by_sid["CdkDeploy"]["Resource"]) == sorted(
        f"arn:aws:iam::111111111111:role/cdk-wmldev-{r}-111111111111-eu-west-1"
        for r in ("deploy-role", "file-publishing-role", "image-publishing-role", "lookup-role")
    )
    # Every model of the environment (the status command); CodeDeploy moves `live`, not this
    # role: no lambda:UpdateAlias, no code or configuration change.
    fns = "arn:aws:lambda:eu-west-1:111111111111:function:waterml-dev-*"
    assert by_sid["ReadFunctions"]["Resource"] == fns
    assert sorted(by_sid["ReadFunctions"]["Action"]) == [
        "lambda:GetAlias",
        "lambda:GetFunctionConfiguration",
    ]
    assert by_sid["ReadReleases"]["Action"] == "s3:GetObject"
    assert json.dumps(by_sid["ReadReleases"]["Resource"]).endswith('/models/*/release.json"]]}')
    # The released bundle by VersionId (deploy_context's training mix), never the latest object.
    assert by_sid["ReadReleasedBundles"]["Action"] == "s3:GetObjectVersion"
    assert json.dumps(by_sid["ReadReleasedBundles"]["Resource"]).endswith(
        '/models/*/model.joblib"]]}'
    )
    actions = {a for st in statements for a in _list(st["Action"])}
    assert not any(a.startswith(("s3:Put", "s3:Delete", "lambda:Update", "iam:")) for a in actions)


def test_promote_role_is_limited_to_the_models_prefix(templates):
    t: Template = templates["dev-foundation"]
    statements = policy_statements(t, _role_id(t, "waterml-dev-github-promote"))
    by_sid = {s["Sid"]: s for s in statements}
    assert sorted(by_sid["ModelObjects"]["Action"]) == [
        "s3:GetObject",
        "s3:GetObjectVersion",
        "s3:PutObject",
    ]
    assert json.dumps(by_sid["ModelObjects"]["Resource"]).endswith('/models/*"]]}')
    assert by_sid["ListModelVersions"]["Condition"] == {"StringLike": {"s3:prefix": ["models/*"]}}
    assert by_sid["UndoConflictingReleaseWrite"]["Action"] == "s3:DeleteObjectVersion"
    assert json.dumps(by_sid["UndoConflictingReleaseWrite"]["Resource"]).endswith(
        '/models/*/release.json"]]}'
    )
    actions = {a for s in statements for a in _list(s["Action"])}
    assert not any(a.startswith(("iam:", "lambda:", "ecr:")) for a in actions)
    assert {a for a in actions if a.startswith("s3:Delete")} == {"s3:DeleteObjectVersion"}
    # Releases are signed with the environment's KMS key, and with nothing else.
    key = find_one(t, "AWS::KMS::Key", {"KeySpec": "ECC_NIST_P256", "KeyUsage": "SIGN_VERIFY"})
    assert sorted(by_sid["SignReleases"]["Action"]) == ["kms:GetPublicKey", "kms:Sign"]
    assert by_sid["SignReleases"]["Resource"] == {"Fn::GetAtt": [key, "Arn"]}
    assert {a for a in actions if a.startswith("kms:")} == {"kms:GetPublicKey", "kms:Sign"}


def test_only_the_promotion_role_may_sign(templates):
    """No other role of the environment (deploy, the functions, the hooks) names KMS at all:
    serving verifies with the pinned public key."""
    for name, template in templates.items():
        for policy in template.find_resources("AWS::IAM::Policy").values():
            for statement in policy["Properties"]["PolicyDocument"]["Statement"]:
                kms = [a for a in _list(statement["Action"]) if a.startswith("kms:")]
                assert not kms or statement.get("Sid") == "SignReleases", (name, statement)


def _role_id(t: Template, name: str) -> str:
    return find_one(t, "AWS::IAM::Role", {"RoleName": name})


def _list(value):
    return value if isinstance(value, list) else [value]


# Environments -------------------------------------------------------------------------------------
def test_environments_are_one_stack_class_with_different_settings(default_app):
    _, stacks = default_app
    assert sorted(stacks) == ["dev", "prod"]
    assert type(stacks["dev"].serving["wqi"]) is type(stacks["prod"].serving["potability"])
    assert list(stacks["dev"].serving) == list(stacks["dev"].config.models)  # cdk.json's
    assert stacks["dev"].serving["wqi"].stack_name == "WaterMl-dev-Serving-wqi"
    assert stacks["prod"].serving["wqi"].termination_protection is True
    assert stacks["prod"].foundation.termination_protection is True
    assert stacks["dev"].foundation.termination_protection is False
