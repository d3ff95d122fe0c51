"""The serving side of one environment: the function from the image by digest, pinned to the
released model, its `live` alias, asynchronous-failure capture, warm-up and alarms.
"""

from __future__ import annotations

from aws_cdk import CfnOutput, Duration, RemovalPolicy, Stack
from aws_cdk import aws_cloudwatch as cloudwatch
from aws_cdk import aws_cloudwatch_actions as cloudwatch_actions
from aws_cdk import aws_ecr as ecr
from aws_cdk import aws_events as events
from aws_cdk import aws_events_targets as targets
from aws_cdk import aws_iam as iam
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_lambda_destinations as destinations
from aws_cdk import aws_logs as logs
from aws_cdk import aws_sns as sns
from aws_cdk import aws_sqs as sqs
from constructs import Construct

from registry.manifest import ManifestError, Release
from waterml_infra.config import EnvConfig
from waterml_infra.nag import acknowledge

LIVE_ALIAS = "live"


class ServingStack(Stack):
    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        config: EnvConfig,
        image_digest: str,
        release: Release,
        live_version: str | None = None,
        **kwargs: object,
    ):
        super().__init__(scope, construct_id, **kwargs)  # type: ignore[arg-type]
        self.config = config
        _check_release(config, release, live_version)
        self.log_group = logs.LogGroup(
            self,
            "FunctionLogs",
            log_group_name=f"/aws/lambda/{config.function_name}",
            retention=_retention(config.log_retention_days),
            removal_policy=RemovalPolicy.RETAIN,
        )
        self.role = self._execution_role()
        self.failure_queue = sqs.Queue(
            self,
            "AsyncFailures",
            encryption=sqs.QueueEncryption.SQS_MANAGED,
            enforce_ssl=True,
            retention_period=Duration.days(config.failure_queue_retention_days),
        )
        acknowledge(self.failure_queue, "AwsSolutions-SQS3")
        self.function = self._function(image_digest, release)
        self.version = self.function.current_version
        self.alias = self._live_alias(live_version)
        if config.warmup_minutes:
            self._warmup_rule()
        self.alarms = self._alarms()
        self._notify_alarms()
        CfnOutput(self, "FunctionName", value=self.function.function_name)
        CfnOutput(self, "FunctionVersion", value=self.version.version)
        CfnOutput(self, "LiveAliasName", value=LIVE_ALIAS)
        CfnOutput(self, "FailureQueueUrl", value=self.failure_queue.queue_url)

    def _function(self, image_digest: str, release: Release) -> lambda_.DockerImageFunction:
        """The image by digest, pinned to the released model by its environment."""
        cfg = self.config
        repository = ecr.Repository.from_repository_name(self, "Images", cfg.repository_name)
        return lambda_.DockerImageFunction(
            self,
            "Function",
            function_name=cfg.function_name,
            description=f"{cfg.model_name} model v{release.mlflow_version or '?'} ({cfg.name})",
            code=lambda_.DockerImageCode.from_ecr(repository, tag_or_digest=image_digest),
            architecture=(
                lambda_.Architecture.ARM_64
                if cfg.architecture == "arm64"
                else lambda_.Architecture.X86_64
            ),
            memory_size=cfg.memory_mb,
            timeout=Duration.seconds(cfg.timeout_seconds),
            reserved_concurrent_executions=cfg.reserved_concurrency,
            role=self.role,
            log_group=self.log_group,
            environment={
                **release.environment(),
                "LOG_LEVEL": cfg.log_level,
                "POWERTOOLS_SERVICE_NAME": f"{cfg.project}-{cfg.model_name}",
            },
            current_version_options=lambda_.VersionOptions(
                # Old versions stay: the alias may point at one, and rollback needs them.
                removal_policy=RemovalPolicy.RETAIN,
                description=f"image {image_digest} model {release.version_id}",
            ),
        )

    def _live_alias(self, live_version: str | None) -> lambda_.Alias:
        """`cdk deploy` publishes the new version; the alias stays where it is (liveVersion,
        read from the alias before the deploy) until the smoke test has passed and
        waterml_infra.alias moves it. On the very first deploy it starts at the new version."""
        cfg = self.config
        live_target: lambda_.IVersion = (
            lambda_.Version.from_version_attributes(
                self, "LiveVersion", lambda_=self.function, version=live_version
            )
            if live_version is not None
            else self.version
        )
        return lambda_.Alias(
            self,
            "LiveAlias",
            alias_name=LIVE_ALIAS,
            version=live_target,
            provisioned_concurrent_executions=cfg.provisioned_concurrency or None,
            # Readings arrive by asynchronous invocation: bounded retries, bounded age, and
            # whatever still fails lands in the queue instead of being dropped.
            retry_attempts=cfg.async_retry_attempts,
            max_event_age=Duration.seconds(cfg.async_max_event_age_seconds),
            on_failure=destinations.SqsDestination(self.failure_queue),
        )

    def _notify_alarms(self) -> None:
        if not self.config.alarm_topic_arn:
            return
        topic = sns.Topic.from_topic_arn(self, "AlarmTopic", self.config.alarm_topic_arn)
        for alarm in self.alarms.values():
            alarm.add_alarm_action(cloudwatch_actions.SnsAction(topic))
            alarm.add_ok_action(cloudwatch_actions.SnsAction(topic))

    def _execution_role(self) -> iam.Role:
        cfg = self.config
        role = iam.Role(
            self,
            "ExecutionRole",
            assumed_by=iam.ServicePrincipal("lambda.amazonaws.com"),
            description=f"{cfg.function_name}: write its logs, read its released model",
        )
        model_object = f"arn:aws:s3:::{cfg.bucket_name}/{cfg.model_key}"
        policy = iam.Policy(
            self,
            "ExecutionPolicy",
            statements=[
                iam.PolicyStatement(
                    sid="ReadReleasedModel",
                    actions=["s3:GetObject", "s3:GetObjectVersion"],
                    resources=[model_object],
                ),
                iam.PolicyStatement(
                    sid="WriteOwnLogs",
                    actions=["logs:CreateLogStream", "logs:PutLogEvents"],
                    resources=[self.log_group.log_group_arn],
                ),
            ],
        )
        policy.attach_to_role(role)
        return role

    def _warmup_rule(self) -> events.Rule:
        # The scheduled rule's own event ({"source": "aws.events", "detail-type":
        # "Scheduled Event"}) is what the handler recognises as a warm-up ping.
        return events.Rule(
            self,
            "WarmUp",
            description=f"keep {self.config.function_name}:{LIVE_ALIAS} warm",
            schedule=events.Schedule.rate(Duration.minutes(self.config.warmup_minutes)),
            targets=[
                targets.LambdaFunction(
                    self.alias, retry_attempts=0, max_event_age=Duration.minutes(1)
                )
            ],
        )

    def _alarms(self) -> dict[str, cloudwatch.Alarm]:
        cfg = self.config
        period = Duration.minutes(5)
        live = f"{cfg.function_name}:{LIVE_ALIAS}"
        return {
            "errors": self._alarm(
                "ErrorsAlarm", f"{live} returned errors",
                self.alias.metric_errors(period=period, statistic="Sum"), cfg.errors_threshold,
            ),
            "throttles": self._alarm(
                "ThrottlesAlarm", f"{live} was throttled",
                self.alias.metric_throttles(period=period, statistic="Sum"),
                cfg.throttles_threshold,
            ),
            "duration_p99": self._alarm(
                "DurationP99Alarm", f"{live} p99 duration is high",
                self.alias.metric_duration(period=period, statistic="p99"),
                cfg.p99_duration_threshold_ms, evaluation_periods=3, datapoints_to_alarm=2,
            ),
            "failure_queue": self._alarm(
                "AsyncFailuresAlarm",
                f"asynchronous invocations of {cfg.function_name} failed after retries",
                self.failure_queue.metric_approximate_number_of_messages_visible(
                    period=period, statistic="Maximum"
                ),
                1,
            ),
        }  # fmt: skip

    def _alarm(
        self,
        construct_id: str,
        description: str,
        metric: cloudwatch.IMetric,
        threshold: float,
        evaluation_periods: int = 1,
        datapoints_to_alarm: int | None = None,
    ) -> cloudwatch.Alarm:
        """An alarm at or above ``threshold``; no data (no traffic) is not a breach."""
        return cloudwatch.Alarm(
            self,
            construct_id,
            alarm_description=description,
            metric=metric,
            threshold=threshold,
            comparison_operator=cloudwatch.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
            evaluation_periods=evaluation_periods,
            datapoints_to_alarm=datapoints_to_alarm,
            treat_missing_data=cloudwatch.TreatMissingData.NOT_BREACHING,
        )


_RETENTION = {
    1: logs.RetentionDays.ONE_DAY,
    3: logs.RetentionDays.THREE_DAYS,
    5: logs.RetentionDays.FIVE_DAYS,
    7: logs.RetentionDays.ONE_WEEK,
    14: logs.RetentionDays.TWO_WEEKS,
    30: logs.RetentionDays.ONE_MONTH,
    60: logs.RetentionDays.TWO_MONTHS,
    90: logs.RetentionDays.THREE_MONTHS,
    180: logs.RetentionDays.SIX_MONTHS,
    365: logs.RetentionDays.ONE_YEAR,
    731: logs.RetentionDays.TWO_YEARS,
}


def _check_release(config: EnvConfig, release: Release, live_version: str | None) -> None:
    """Refuse a release of another model, bucket or key, and a live version that is not one."""
    ours = (config.model_name, config.bucket_name, config.model_key)
    if (release.name, release.bucket, release.key) != ours:
        raise ManifestError(
            f"release {release.name} s3://{release.bucket}/{release.key} does not belong to "
            f"environment {config.name} (s3://{config.bucket_name}/{config.model_key})"
        )
    if live_version is not None and not live_version.isdigit():
        raise ManifestError(f"liveVersion must be a version number, got {live_version!r}")


def _retention(days: int) -> logs.RetentionDays:
    if days not in _RETENTION:
        raise ValueError(f"log_retention_days must be one of {sorted(_RETENTION)}, got {days}")
    return _RETENTION[days]
