"""The drift report that runs itself, as synthesized: the prediction log's delivery to S3, the
scheduled job from the serving image with the job's command and the released model's pins,
least-privilege access, the alarms on the job's metrics and where they notify. The job's logic
against the loopback S3 and the real handler's log: tests/monitoring/test_job.py."""

from __future__ import annotations

from typing import Any

import pytest
from aws_cdk import App, Environment
from aws_cdk.assertions import Annotations, Match, Template
from synth_helpers import signature_fields
from waterml_infra.config import ConfigError, load_settings, resolve

from monitoring import contract
from registry.manifest import Release

from .conftest import DIGEST

TOPIC = "arn:aws:sns:eu-west-1:111111111111:paging"


def stack(overrides: dict[str, Any] | None = None) -> Any:
    from waterml_infra.stacks.serving import ServingStack

    env = resolve(load_settings(), "dev", overrides=overrides or {})
    cfg = env.model("wqi")
    release = Release(name="wqi", mlflow_version="3", bucket=cfg.env.bucket_name,
                      key=cfg.model_key, version_id="v-9", sha256="5" * 64, git_sha="",
                      released_at="", extra=signature_fields("wqi"))  # fmt: skip
    return ServingStack(App(), cfg.stack_name, config=cfg, image_digest=DIGEST, release=release,
                        env=Environment(account=env.account, region=env.region))  # fmt: skip


@pytest.fixture(scope="module")
def template() -> Template:
    return Template.from_stack(stack({"alarm_topic_arn": TOPIC}))


def test_the_prediction_records_go_to_s3_through_firehose(template: Template) -> None:
    (group,) = template.find_resources("AWS::Logs::LogGroup", {
        "Properties": {"LogGroupName": "/aws/lambda/waterml-dev-wqi"}})  # fmt: skip
    template.has_resource_properties("AWS::Logs::SubscriptionFilter", {
        "FilterPattern": contract.PREDICTION_FILTER, "LogGroupName": {"Ref": group},
    })  # fmt: skip
    template.has_resource_properties("AWS::KinesisFirehose::DeliveryStream", {
        "ExtendedS3DestinationConfiguration": Match.object_like(
            {"Prefix": "predictions/wqi/", "ErrorOutputPrefix": "errors/wqi/"}),
    })  # fmt: skip
    template.has_resource_properties("AWS::S3::Bucket", {
        "PublicAccessBlockConfiguration": Match.object_like({"BlockPublicAcls": True}),
        "BucketEncryption": Match.any_value(),
    })  # fmt: skip


def test_the_job_is_the_serving_image_with_the_jobs_command_on_a_schedule(
    template: Template,
) -> None:
    functions = template.find_resources("AWS::Lambda::Function", {
        "Properties": {"FunctionName": "waterml-dev-wqi-drift"}})  # fmt: skip
    ((_, job),) = functions.items()
    props = job["Properties"]
    assert props["PackageType"] == "Image"
    assert props["ImageConfig"] == {"Command": [contract.JOB_HANDLER]}
    image = props["Code"]["ImageUri"]
    assert DIGEST in str(image)  # the same image as the serving function, by digest
    env = props["Environment"]["Variables"]
    assert env["MODEL_VERSION_ID"] == "v-9" and env["MODEL_SHA256"] == "5" * 64
    # It verifies the release's signature as the serving function does, with the same key.
    assert env["MODEL_SIGNATURE_VERSION_ID"] == signature_fields("wqi")["signature_version_id"]
    assert env["MODEL_SIGNING_PUBLIC_KEY"] == serving_env(template)["MODEL_SIGNING_PUBLIC_KEY"]
    assert env[contract.LOG_PREFIX] == "predictions/wqi/"
    assert env[contract.REPORT_PREFIX] == "reports/wqi/" and env[contract.WINDOW_DAYS] == "7"
    template.has_resource_properties("AWS::Events::Rule", {
        "ScheduleExpression": "rate(1 day)", "State": "ENABLED",
        "Targets": Match.array_with([Match.object_like({"Arn": Match.any_value()})]),
    })  # fmt: skip


def serving_env(template: Template) -> dict[str, str]:
    (function,) = template.find_resources("AWS::Lambda::Function", {
        "Properties": {"FunctionName": "waterml-dev-wqi"}}).values()  # fmt: skip
    return dict(function["Properties"]["Environment"]["Variables"])


def test_the_job_reads_the_log_and_the_released_model_and_writes_reports_only(
    template: Template,
) -> None:
    policies = template.find_resources("AWS::IAM::Policy")
    (job,) = [p for name, p in policies.items() if name.startswith("DriftJobJobPolicy")]
    (role,) = template.find_resources("AWS::IAM::Role", {"Properties": {"Description": Match.
        string_like_regexp("^waterml-dev-wqi-drift: ")}})  # fmt: skip
    assert job["Properties"]["Roles"] == [{"Ref": role}]
    # The job's role has this policy only (no default policy CDK's grants could widen).
    assert [p for p in policies.values() if {"Ref": role} in p["Properties"]["Roles"]] == [job]
    statements = {s["Sid"]: s for s in job["Properties"]["PolicyDocument"]["Statement"]
                  if "Sid" in s}  # fmt: skip
    # By the pinned VersionIds only (run under the gate: test_run_under_policy_drift.py).
    assert statements["ReadReleasedModel"]["Action"] == "s3:GetObjectVersion"
    released = [r.rsplit("/", 1)[-1] for r in statements["ReadReleasedModel"]["Resource"]]
    assert released == ["model.joblib", "release.sig.json"]  # the bundle, verified by its sig
    assert statements["ReadTheLog"]["Action"] == "s3:GetObject"
    assert statements["WriteReports"]["Action"] == "s3:PutObject"
    assert "predictions/wqi/*" in str(statements["ReadTheLog"]["Resource"])
    assert "reports/wqi/*" in str(statements["WriteReports"]["Resource"])
    assert statements["ListTheLog"]["Condition"] == {
        "StringLike": {"s3:prefix": ["predictions/wqi/*"]}}  # fmt: skip


def test_firehose_writes_the_log_prefixes_only_under_a_role_of_its_own(template: Template) -> None:
    """CDK's S3 destination would grant its role s3:GetObject*, List*, DeleteObject*... on the
    whole bucket: the stream's role is ours, with AWS's documented actions on two prefixes."""
    ((stream_id, stream),) = template.find_resources("AWS::KinesisFirehose::DeliveryStream").items()
    role_id = stream["Properties"]["ExtendedS3DestinationConfiguration"]["RoleARN"]["Fn::GetAtt"][0]
    policies = {name: p for name, p in template.find_resources("AWS::IAM::Policy").items()
                if {"Ref": role_id} in p["Properties"]["Roles"]}  # fmt: skip
    ((policy_id, policy),) = policies.items()
    assert policy_id in stream["DependsOn"]  # the role may write before the stream delivers
    statements = {s["Sid"]: s for s in policy["Properties"]["PolicyDocument"]["Statement"]}
    assert sorted(statements) == ["FindTheBucket", "WriteOwnLogs", "WriteTheLog"]
    assert statements["FindTheBucket"]["Action"] == [
        "s3:GetBucketLocation", "s3:ListBucket", "s3:ListBucketMultipartUploads"]  # fmt: skip
    assert "Fn::Join" not in str(statements["FindTheBucket"]["Resource"])  # the bucket itself
    assert statements["WriteTheLog"]["Action"] == [
        "s3:AbortMultipartUpload", "s3:GetObject", "s3:PutObject"]  # fmt: skip
    objects = [r["Fn::Join"][1][1] for r in statements["WriteTheLog"]["Resource"]]
    assert objects == ["/predictions/wqi/*", "/errors/wqi/*"]
    assert statements["WriteOwnLogs"]["Action"] == ["logs:CreateLogStream", "logs:PutLogEvents"]
    logging = stream["Properties"]["ExtendedS3DestinationConfiguration"]["CloudWatchLoggingOptions"]
    group = logging["LogGroupName"]["Ref"]
    assert statements["WriteOwnLogs"]["Resource"] == {"Fn::GetAtt": [group, "Arn"]}
    assert template.to_json()["Resources"][group]["Properties"] == {
        "LogGroupName": "/aws/kinesisfirehose/waterml-dev-wqi-drift",  # bootstrap_policy grants
        "RetentionInDays": 30,
    }
    assert stream_id.startswith("DriftJobDelivery")


def test_the_jobs_alarms_read_its_metrics_and_notify_the_topic(template: Template) -> None:
    alarms = template.find_resources("AWS::CloudWatch::Alarm")
    by_metric = {a["Properties"].get("MetricName"): a["Properties"] for a in alarms.values()}
    for name in (contract.DATA_DRIFT, contract.OUT_OF_DOMAIN, contract.ESTIMATED_LOSS):
        found = by_metric[name]
        assert found["Namespace"] == contract.NAMESPACE
        assert found["Dimensions"] == [{"Name": contract.MODEL_DIMENSION, "Value": "wqi"}]
        assert found["AlarmActions"] == [TOPIC] and found["Threshold"] == 1
    assert by_metric["Errors"]["AlarmActions"] == [TOPIC]


def test_without_an_alert_topic_the_synth_says_so() -> None:
    silent = stack()
    Annotations.from_stack(silent).has_warning("*", Match.string_like_regexp(
        "no alarm_topic_arn.*notify nobody"))  # fmt: skip


def test_no_drift_job_without_a_prediction_log_or_a_schedule() -> None:
    off = Template.from_stack(stack({"drift_schedule_hours": 0}))
    for kind in ("AWS::KinesisFirehose::DeliveryStream", "AWS::Logs::SubscriptionFilter",
                 "AWS::S3::Bucket", "AWS::Events::Rule"):  # fmt: skip
        off.resource_count_is(kind, 0)
    assert not off.find_resources("AWS::Lambda::Function", {
        "Properties": {"FunctionName": "waterml-dev-wqi-drift"}})  # fmt: skip
    assert not [k for k in off.find_resources("AWS::CloudWatch::Alarm") if "DriftJob" in k]
    # No log and no job: both switched off is a valid configuration.
    Template.from_stack(stack({"prediction_log_rate": 0.0, "drift_schedule_hours": 0}))
    # The log off alone is refused, naming the fix: it never turns the report off silently.
    refused = r"a drift job needs a prediction log.*set drift_schedule_hours to 0 too"
    with pytest.raises(ConfigError, match=refused):
        stack({"prediction_log_rate": 0.0})
    with pytest.raises(ConfigError, match=r"drift_window_days must be within 1\.\.90"):
        stack({"drift_window_days": 0})
    with pytest.raises(ConfigError, match=r"drift_schedule_hours must be within 0\.\.168"):
        stack({"drift_schedule_hours": 169})
    with pytest.raises(ConfigError, match=r"drift_window_days \(14\) must not exceed "
                       r"log_retention_days \(7\)"):  # fmt: skip
        stack({"drift_window_days": 14, "log_retention_days": 7})
