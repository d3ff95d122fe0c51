"""The drift report that runs itself, for one model (monitoring/job.py is the job's code):

- a **subscription filter** on the function's log group sends the prediction records only
  (``{ $.message.kind = "prediction" }``) through a **Firehose delivery stream** to a bucket
  of this model's own, under ``predictions/<model>/YYYY/MM/DD/HH/``;
- an **EventBridge schedule** runs the job every ``drift_schedule_hours``: a function from the
  serving image, by the same digest, with the command ``monitoring.job.handler`` and the same
  ``MODEL_*`` pins as the serving function, so it reports against exactly the released model;
  it reads the last ``drift_window_days`` days of the log, writes ``report.html`` and
  ``summary.json`` under ``reports/<model>/<time>/`` and prints its metrics (EMF);
- **alarms** on those metrics (data drift, out-of-domain traffic, estimated performance loss)
  and on the job's own errors, notifying the environment's alert topic like every alarm of
  the stack. An environment without ``alarm_topic_arn`` is told so at synth: its alarms change
  state on a dashboard and nowhere else.
"""

from __future__ import annotations

from aws_cdk import Annotations, Duration, RemovalPolicy, Stack
from aws_cdk import aws_cloudwatch as cloudwatch
from aws_cdk import aws_ecr as ecr
from aws_cdk import aws_events as events
from aws_cdk import aws_events_targets as targets
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kinesisfirehose as firehose
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_logs as logs
from aws_cdk import aws_logs_destinations as log_destinations
from aws_cdk import aws_s3 as s3
from constructs import Construct

from inference.contract import SIGNING_PUBLIC_KEY
from monitoring.contract import (
    DATA_DRIFT,
    ESTIMATED_LOSS,
    JOB_HANDLER,
    LOG_BUCKET,
    LOG_PREFIX,
    MODEL_DIMENSION,
    NAMESPACE,
    OUT_OF_DOMAIN,
    PREDICTION_FILTER,
    REPORT_PREFIX,
    WINDOW_DAYS,
)
from registry.manifest import Release
from waterml_infra.config import DELIVERY_LOGS, ModelConfig
from waterml_infra.constructs.alarms import alarm
from waterml_infra.constructs.log_groups import function_log_group, retention
from waterml_infra.nag import acknowledge

JOB_MEMORY_MB = 2048  # the drift tests draw 1,999 windows of up to 2,000 records
JOB_TIMEOUT = Duration.minutes(10)


class DriftJob(Construct):
    """The prediction log's delivery to S3, the scheduled report and its alarms."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        config: ModelConfig,
        log_group: logs.ILogGroup,
        repository: ecr.IRepository,
        image_digest: str,
        release: Release,
        architecture: lambda_.Architecture,
    ) -> None:
        super().__init__(scope, construct_id)
        cfg = self.config = config
        self.log_prefix = f"predictions/{cfg.name}/"
        self.report_prefix = f"reports/{cfg.name}/"
        self.bucket = s3.Bucket(
            self,
            "Bucket",
            encryption=s3.BucketEncryption.S3_MANAGED,
            enforce_ssl=True,
            block_public_access=s3.BlockPublicAccess.BLOCK_ALL,
            removal_policy=RemovalPolicy.RETAIN,
            lifecycle_rules=[s3.LifecycleRule(expiration=Duration.days(cfg.log_retention_days))],
        )
        acknowledge(self.bucket, "AwsSolutions-S1")
        self.stream = self._delivery()
        logs.SubscriptionFilter(
            self,
            "PredictionLog",
            log_group=log_group,
            destination=log_destinations.FirehoseDestination(self.stream),
            filter_pattern=logs.FilterPattern.literal(PREDICTION_FILTER),
        )
        self.function = self._function(repository, image_digest, release, architecture)
        events.Rule(
            self,
            "Schedule",
            description=f"{cfg.name}: drift report of the last {cfg.drift_window_days} days",
            schedule=events.Schedule.rate(Duration.hours(cfg.drift_schedule_hours)),
            targets=[targets.LambdaFunction(self.function, retry_attempts=1)],
        )
        self.alarms = self._alarms()
        if not cfg.env.alarm_topic_arn:
            Annotations.of(self).add_warning_v2(
                "waterml:noAlertTopic",
                f"{cfg.function_name}: no alarm_topic_arn in this environment, so the drift "
                "job's alarms (and every other alarm of the stack) notify nobody; set "
                "alarm_topic_arn to an SNS topic of your paging integration",
            )

    def _delivery(self) -> firehose.DeliveryStream:
        """Firehose into this model's prefixes of the bucket, under a role of its own whose
        every statement is written here: CDK's S3 destination grants its role read/write/delete
        on the whole bucket, so the stream gets that role immutable (CDK's grants are dropped)
        and the policy below is the one the role has (AWS's documented S3 destination access,
        narrowed to the two prefixes Firehose writes)."""
        cfg = self.config
        errors_prefix = f"errors/{cfg.name}/"
        delivery_logs = logs.LogGroup(
            self,
            "DeliveryLogs",
            log_group_name=f"{DELIVERY_LOGS}{cfg.function_name}-drift",
            retention=retention(cfg.log_retention_days),
            removal_policy=RemovalPolicy.RETAIN,
        )
        role = iam.Role(
            self, "DeliveryRole", assumed_by=iam.ServicePrincipal("firehose.amazonaws.com"),
            description=f"{cfg.function_name}: Firehose delivers the prediction log to S3",
        )  # fmt: skip
        policy = iam.Policy(self, "DeliveryPolicy", statements=[
            iam.PolicyStatement(sid="FindTheBucket", resources=[self.bucket.bucket_arn],
                                actions=["s3:GetBucketLocation", "s3:ListBucket",
                                         "s3:ListBucketMultipartUploads"]),
            iam.PolicyStatement(sid="WriteTheLog", actions=[
                "s3:AbortMultipartUpload", "s3:GetObject", "s3:PutObject"], resources=[
                self.bucket.arn_for_objects(f"{self.log_prefix}*"),
                self.bucket.arn_for_objects(f"{errors_prefix}*")]),
            iam.PolicyStatement(sid="WriteOwnLogs", resources=[delivery_logs.log_group_arn],
                                actions=["logs:CreateLogStream", "logs:PutLogEvents"]),
        ])  # fmt: skip
        policy.attach_to_role(role)
        bucket_id = Stack.of(self).get_logical_id(self.bucket.node.default_child)  # type: ignore[arg-type]
        for prefix in (self.log_prefix, errors_prefix):
            acknowledge(policy, "AwsSolutions-IAM5[Resource::<DRIFT_DELIVERY>]",
                        resource=f"<{bucket_id}.Arn>/{prefix}*")  # fmt: skip
        stream = firehose.DeliveryStream(
            self,
            "Delivery",
            destination=firehose.S3Bucket(
                self.bucket,
                role=role.without_policy_updates(),
                logging_config=firehose.EnableLogging(delivery_logs),
                data_output_prefix=self.log_prefix,
                error_output_prefix=errors_prefix,
                buffering_interval=Duration.minutes(5),
            ),
            encryption=firehose.StreamEncryption.aws_owned_key(),
        )
        stream.node.add_dependency(policy)  # no delivery before the role may write
        return stream

    def _function(
        self, repository: ecr.IRepository, image_digest: str, release: Release,
        architecture: lambda_.Architecture,
    ) -> lambda_.DockerImageFunction:  # fmt: skip
        cfg = self.config
        name = f"{cfg.function_name}-drift"
        group = function_log_group(self, "Logs", name, cfg.log_retention_days)
        # Its own role, every statement named: no managed policy (its logs, its model, its log).
        role = iam.Role(
            self, "Role", assumed_by=iam.ServicePrincipal("lambda.amazonaws.com"),
            description=f"{name}: reads the released model and the prediction log, writes reports",
        )  # fmt: skip
        bucket = cfg.env.bucket_name
        # The bundle and its signature, verified before use as the serving function does. Both
        # are read by their pinned VersionId only (s3:GetObjectVersion): s3:GetObject, which no
        # call of the job used under the IAM gate, is not granted
        # (tests/infra/test_run_under_policy_drift.py).
        released = [f"arn:aws:s3:::{bucket}/{cfg.model_key}",
                    f"arn:aws:s3:::{bucket}/{cfg.signature_key}"]  # fmt: skip
        policy = iam.Policy(self, "JobPolicy", statements=[
            iam.PolicyStatement(sid="WriteOwnLogs", resources=[group.log_group_arn],
                                actions=["logs:CreateLogStream", "logs:PutLogEvents"]),
            iam.PolicyStatement(sid="ReadReleasedModel", resources=released,
                                actions=["s3:GetObjectVersion"]),
            iam.PolicyStatement(sid="ListTheLog", actions=["s3:ListBucket"],
                                resources=[self.bucket.bucket_arn],
                                conditions={"StringLike": {"s3:prefix": [f"{self.log_prefix}*"]}}),
            iam.PolicyStatement(sid="ReadTheLog", actions=["s3:GetObject"],
                                resources=[self.bucket.arn_for_objects(f"{self.log_prefix}*")]),
            iam.PolicyStatement(sid="WriteReports", actions=["s3:PutObject"],
                                resources=[self.bucket.arn_for_objects(f"{self.report_prefix}*")]),
        ])  # fmt: skip
        policy.attach_to_role(role)
        function = lambda_.DockerImageFunction(
            self,
            "Function",
            function_name=name,
            description=f"{cfg.name}: scheduled drift report (monitoring/job.py)",
            code=lambda_.DockerImageCode.from_ecr(
                repository, tag_or_digest=image_digest, cmd=[JOB_HANDLER]
            ),
            architecture=architecture,
            memory_size=JOB_MEMORY_MB,
            timeout=JOB_TIMEOUT,
            log_group=group,
            role=role,
            environment={
                **release.environment(),
                SIGNING_PUBLIC_KEY: cfg.public_key,
                LOG_BUCKET: self.bucket.bucket_name,
                LOG_PREFIX: self.log_prefix,
                REPORT_PREFIX: self.report_prefix,
                WINDOW_DAYS: str(cfg.drift_window_days),
            },
        )
        function.node.add_dependency(policy)  # a run reads the model and the log at once
        bucket_id = Stack.of(self).get_logical_id(self.bucket.node.default_child)  # type: ignore[arg-type]
        acknowledge(policy, "AwsSolutions-IAM5[Resource::<DRIFT_LOG>]",
                    resource=f"<{bucket_id}.Arn>/{self.log_prefix}*")  # fmt: skip
        acknowledge(policy, "AwsSolutions-IAM5[Resource::<DRIFT_REPORTS>]",
                    resource=f"<{bucket_id}.Arn>/{self.report_prefix}*")  # fmt: skip
        return function

    def metric(self, name: str) -> cloudwatch.Metric:
        """One of the job's metrics (monitoring/job.py), for this model's released version."""
        return cloudwatch.Metric(
            namespace=NAMESPACE,
            metric_name=name,
            dimensions_map={MODEL_DIMENSION: self.config.name},
            statistic="Maximum",
            period=Duration.hours(self.config.drift_schedule_hours),
        )

    def _alarms(self) -> dict[str, cloudwatch.Alarm]:
        cfg = self.config
        every = f"over the last {cfg.drift_window_days} days of {cfg.name}'s prediction log"
        found = {
            "drift": alarm(self, "DataDriftAlarm", f"{cfg.name}: data drift {every} (the report "
                           f"is under s3://.../{self.report_prefix})", self.metric(DATA_DRIFT), 1),
            "drift_out_of_domain": alarm(
                self, "OutOfDomainAlarm", f"{cfg.name}: more readings outside the domain than "
                f"training explains, {every}", self.metric(OUT_OF_DOMAIN), 1),
            "drift_estimated_loss": alarm(
                self, "EstimatedLossAlarm", f"{cfg.name}: the metric estimated without labels "
                f"is worse than held-out, {every}", self.metric(ESTIMATED_LOSS), 1),
            "drift_job_errors": alarm(
                self, "JobErrorsAlarm", f"{cfg.name}: the drift job failed",
                self.function.metric_errors(period=Duration.hours(cfg.drift_schedule_hours)),
                1),
        }  # fmt: skip
        return found
