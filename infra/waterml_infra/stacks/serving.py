"""The serving side of one model in one environment (stack `WaterMl-<env>-Serving-<model>`):
the function from the image by digest, pinned to the released model, its `live` alias shifted
by CodeDeploy (waterml_infra.constructs.rollout), asynchronous-failure capture, warm-up, alarms, and
its dashboard with the model alarms (waterml_infra.constructs.monitoring).

One stack per model, so one model's failed deployment (and CloudFormation's rollback of it)
never touches another model's function.
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
from aws_cdk import aws_sns as sns
from aws_cdk import aws_sqs as sqs
from constructs import Construct

from inference import contract
from inference.contract import LIVE_ALIAS
from registry.manifest import ManifestError, Release
from waterml_infra.config import ModelConfig
from waterml_infra.constructs import alarms
from waterml_infra.constructs.drift_job import DriftJob
from waterml_infra.constructs.log_groups import function_log_group
from waterml_infra.constructs.monitoring import ModelMonitoring
from waterml_infra.constructs.rollout import LiveRollout
from waterml_infra.nag import acknowledge
from waterml_infra.training_mix import TrainingMix


class ServingStack(Stack):
    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        config: ModelConfig,
        image_digest: str,
        release: Release,
        training: TrainingMix | None = None,
        emergency: bool = False,
        **kwargs: object,
    ):
        super().__init__(scope, construct_id, **kwargs)  # type: ignore[arg-type]
        self.config = config
        _check_release(config, release)
        self.log_group = function_log_group(
            self, "FunctionLogs", config.function_name, config.log_retention_days
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
        repository = ecr.Repository.from_repository_name(self, "Images", config.env.repository_name)
        self.function = self._function(repository, image_digest, release)
        # The first cold start reads the model: the policy must be attached by then.
        self.function.node.add_dependency(self.execution_policy)
        # A new image or a new model VersionId changes the function's configuration, so either
        # publishes a new version, and moving `live` to it goes through the same rollout.
        self.version = self.function.current_version
        self.alias = self._live_alias()
        if config.warmup_minutes:
            self._warmup_rule()
        self.alarms: dict[str, cloudwatch.Alarm] = alarms.rollback_alarms(
            self, config, self.alias, self.version
        )
        self.rollout = LiveRollout(
            self,
            "Rollout",
            config=config,
            alias=self.alias,
            repository=repository,
            image_digest=image_digest,
            architecture=self._architecture(),
            alarms=list(self.alarms.values()),
            ignore_alarms=emergency,
        )
        self._rollback_alarms: list[cloudwatch.IAlarm] = list(self.alarms.values())
        self.alarms["failure_queue"] = alarms.failure_queue_alarm(self, config, self.failure_queue)
        self.monitoring = ModelMonitoring(
            self,
            "Monitoring",
            config=config,
            alias=self.alias,
            release_version=release.mlflow_version,
            training=training,
        )
        # Out of domain measures the traffic, not the model: it notifies, never rolls back.
        self.alarms["out_of_domain"] = self.monitoring.out_of_domain
        if self.monitoring.answer_mix is not None:
            self.alarms["answer_mix"] = self.monitoring.answer_mix
            if config.answer_mix_rollback:
                self.add_rollback_alarm(self.monitoring.answer_mix, notify=False)
        self.drift: DriftJob | None = None
        if config.drift_schedule_hours:  # the prediction log to S3, the scheduled report
            self.drift = DriftJob(
                self,
                "DriftJob",
                config=config,
                log_group=self.log_group,
                repository=repository,
                image_digest=image_digest,
                release=release,
                architecture=self._architecture(),
            )
            self.alarms |= self.drift.alarms
        for alarm in self.alarms.values():
            self._notify(alarm)
        CfnOutput(self, "FunctionName", value=self.function.function_name)
        CfnOutput(self, "FunctionVersion", value=self.version.version)
        CfnOutput(self, "LiveAliasName", value=LIVE_ALIAS)
        CfnOutput(self, "FailureQueueUrl", value=self.failure_queue.queue_url)
        CfnOutput(self, "DeploymentApplication", value=self.rollout.application.application_name)
        CfnOutput(
            self,
            "DeploymentGroupName",
            value=self.rollout.deployment_group.deployment_group_name,
        )
        CfnOutput(self, "PreTrafficFunctionName", value=self.rollout.hook.function_name)
        CfnOutput(self, "DashboardName", value=self.monitoring.dashboard.dashboard_name)

    # The rollback alarms of this model's deployment group ----------------------------------
    @property
    def rollback_alarms(self) -> tuple[cloudwatch.IAlarm, ...]:
        return tuple(self._rollback_alarms)

    def add_rollback_alarm(self, alarm: cloudwatch.IAlarm, *, notify: bool = True) -> None:
        """Roll `live` back when `alarm` fires during a rollout (e.g. out-of-domain inputs or
        drift of this model); it notifies the alarm topic like the others unless told not to."""
        self.rollout.add_rollback_alarm(alarm)
        self._rollback_alarms.append(alarm)
        if notify and isinstance(alarm, cloudwatch.Alarm):
            self._notify(alarm)

    # Resources -------------------------------------------------------------------------------
    def _architecture(self) -> lambda_.Architecture:
        if self.config.env.architecture == "arm64":
            return lambda_.Architecture.ARM_64
        return lambda_.Architecture.X86_64

    def _function(
        self, repository: ecr.IRepository, image_digest: str, release: Release
    ) -> lambda_.DockerImageFunction:
        """The image by digest, pinned to the released model by its environment."""
        cfg = self.config
        return lambda_.DockerImageFunction(
            self,
            "Function",
            function_name=cfg.function_name,
            description=(f"{cfg.name} model v{release.mlflow_version or '?'} ({cfg.env.name})"),
            code=lambda_.DockerImageCode.from_ecr(repository, tag_or_digest=image_digest),
            architecture=self._architecture(),
            memory_size=cfg.memory_mb,
            timeout=Duration.seconds(cfg.timeout_seconds),
            reserved_concurrent_executions=cfg.reserved_concurrency,
            role=self.role,
            log_group=self.log_group,
            environment={
                **release.environment(),
                contract.SIGNING_PUBLIC_KEY: cfg.public_key,
                contract.LOG_LEVEL: cfg.log_level,
                contract.SERVICE_NAME: cfg.service_name,
                contract.PREDICTION_LOG_RATE: f"{cfg.prediction_log_rate:g}",
            },
            current_version_options=lambda_.VersionOptions(
                # Old versions stay: rollback returns `live` to one.
                removal_policy=RemovalPolicy.RETAIN,
                description=f"image {image_digest} model {release.version_id}",
            ),
        )

    def _live_alias(self) -> lambda_.Alias:
        """`live` names the new version; CodeDeploy moves it there (constructs/rollout.py).
        On the very first deploy it is created at the new version directly."""
        cfg = self.config
        return lambda_.Alias(
            self,
            "LiveAlias",
            alias_name=LIVE_ALIAS,
            version=self.version,
            provisioned_concurrent_executions=cfg.provisioned_concurrency or None,
            # Readings arrive by asynchronous invocation: bounded retries, bounded age, and
            # whatever still fails lands in the queue instead of being dropped.
            retry_attempts=cfg.async_retry_attempts,
            max_event_age=Duration.seconds(cfg.async_max_event_age_seconds),
            on_failure=destinations.SqsDestination(self.failure_queue),
        )

    def _notify(self, alarm: cloudwatch.Alarm) -> None:
        arn = self.config.env.alarm_topic_arn
        if not arn:
            return
        topic = self.node.try_find_child("AlarmTopic") or sns.Topic.from_topic_arn(
            self, "AlarmTopic", arn
        )
        action = cloudwatch_actions.SnsAction(topic)  # type: ignore[arg-type]
        alarm.add_alarm_action(action)
        alarm.add_ok_action(action)

    def _execution_role(self) -> iam.Role:
        cfg = self.config
        role = iam.Role(
            self,
            "ExecutionRole",
            assumed_by=iam.ServicePrincipal("lambda.amazonaws.com"),
            description=f"{cfg.function_name}: write its logs, read its released model",
        )
        bucket = cfg.env.bucket_name
        policy = iam.Policy(
            self,
            "ExecutionPolicy",
            statements=[
                # Both are read by their pinned VersionIds only (inference/loader.py; the
                # configuration refuses an empty one): S3 authorizes a GET with a versionId as
                # s3:GetObjectVersion, and s3:GetObject would be used by nothing.
                iam.PolicyStatement(
                    sid="ReadReleasedModel",
                    actions=["s3:GetObjectVersion"],
                    resources=[
                        f"arn:aws:s3:::{bucket}/{cfg.model_key}",
                        f"arn:aws:s3:::{bucket}/{cfg.signature_key}",  # verified before use
                    ],
                ),
                iam.PolicyStatement(
                    sid="WriteOwnLogs",
                    actions=["logs:CreateLogStream", "logs:PutLogEvents"],
                    resources=[self.log_group.log_group_arn],
                ),
            ],
        )
        policy.attach_to_role(role)
        self.execution_policy = policy
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


def _check_release(config: ModelConfig, release: Release) -> None:
    """Refuse a release of another model, bucket or key, or one the function would refuse:
    unsigned, or its signature elsewhere than the model's."""
    ours = (config.name, config.env.bucket_name, config.model_key)
    if (release.name, release.bucket, release.key) != ours:
        raise ManifestError(
            f"release {release.name} s3://{release.bucket}/{release.key} does not belong to "
            f"{config.stack_name} (s3://{config.env.bucket_name}/{config.model_key})"
        )
    if not release.signed:
        raise ManifestError(
            f"release {release.name} v{release.mlflow_version} is not signed: the function "
            f"would refuse it; promote it (promotion signs) and deploy that release"
        )
    if release.extra["signature_key"] != config.signature_key:
        raise ManifestError(f"release {release.name}'s signature is not at {config.signature_key}")
