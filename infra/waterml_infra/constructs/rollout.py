"""Progressive delivery of one model's `live` alias: a CodeDeploy deployment group with the
environment's traffic pattern, a pre-traffic hook Lambda and the alarms that roll back.

Every CloudFormation update that publishes a new function version (a new image digest or a new
model VersionId: both change the function's configuration) updates the alias; its
`CodeDeployLambdaAliasUpdate` policy hands that to CodeDeploy, which first invokes the hook
(inference.pretraffic: the new version answers the bundle's golden samples and every event
shape with the released model's identity), then shifts traffic by the pattern while watching the
alarms. A failing hook or an alarm returns `live` to the previous version and fails the stack
update, which CloudFormation rolls back.
"""

from __future__ import annotations

from aws_cdk import Duration, Stack
from aws_cdk import aws_cloudwatch as cloudwatch
from aws_cdk import aws_codedeploy as codedeploy
from aws_cdk import aws_ecr as ecr
from aws_cdk import aws_iam as iam
from aws_cdk import aws_lambda as lambda_
from constructs import Construct

from inference import contract
from waterml_infra.config import TRAFFIC_PATTERNS, ModelConfig, hook_timeout_seconds
from waterml_infra.constructs.log_groups import function_log_group
from waterml_infra.nag import acknowledge

HOOK_HANDLER = contract.PRETRAFFIC_HANDLER

# cdk.json's traffic names are CDK's constant names in lowercase (config.TRAFFIC_PATTERNS).
DEPLOYMENT_CONFIGS: dict[str, codedeploy.ILambdaDeploymentConfig] = {
    name: getattr(codedeploy.LambdaDeploymentConfig, name.upper()) for name in TRAFFIC_PATTERNS
}


class LiveRollout(Construct):
    """The deployment group that shifts `alias`, its pre-traffic hook and rollback alarms."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        config: ModelConfig,
        alias: lambda_.Alias,
        repository: ecr.IRepository,
        image_digest: str,
        architecture: lambda_.Architecture,
        alarms: list[cloudwatch.IAlarm],
        ignore_alarms: bool = False,
    ) -> None:
        super().__init__(scope, construct_id)
        self.config = config
        cfg = config
        self.application = codedeploy.LambdaApplication(
            self, "Application", application_name=cfg.codedeploy_application
        )
        self.deployment_group = codedeploy.LambdaDeploymentGroup(
            self,
            "DeploymentGroup",
            application=self.application,
            deployment_group_name=cfg.deployment_group,
            alias=alias,
            deployment_config=DEPLOYMENT_CONFIGS[cfg.env.traffic],
            alarms=list(alarms),
            # The emergency path: a fix shipped while `live` is in alarm would otherwise be
            # stopped at its start by the old version's alarm. The alarms stay (and notify);
            # this one rollout does not consult them. The hook still runs.
            ignore_alarm_configuration=ignore_alarms,
            auto_rollback=codedeploy.AutoRollbackConfig(
                failed_deployment=True,  # the hook reported Failed, or an alarm fired
                stopped_deployment=True,  # `aws deploy stop-deployment` returns traffic too
                deployment_in_alarm=True,
            ),
        )
        self.hook_log_group = function_log_group(
            self, "PreTrafficLogs", cfg.hook_function_name, cfg.log_retention_days
        )
        self.hook = self._hook(repository, image_digest, architecture)
        self.deployment_group.add_pre_hook(self.hook)
        # The alarms, the hook's new image and the deployment group must be in place before
        # CloudFormation updates the alias (which starts the CodeDeploy deployment).
        alias.node.add_dependency(self.deployment_group)
        alias.node.add_dependency(self.hook)
        service_role = self.deployment_group.role
        acknowledge(
            service_role,
            "AwsSolutions-IAM4[Policy::<CODEDEPLOY_LAMBDA_LIMITED>]",
            resource=(
                "arn:<AWS::Partition>:iam::aws:policy/service-role/"
                "AWSCodeDeployRoleForLambdaLimited"
            ),
        )
        hook_id = Stack.of(self).get_logical_id(self.hook.node.default_child)  # type: ignore[arg-type]
        acknowledge(
            service_role.node.find_child("DefaultPolicy"),
            "AwsSolutions-IAM5[Resource::<HOOK_QUALIFIERS>]",
            resource=f"<{hook_id}.Arn>:*",
        )

    def add_rollback_alarm(self, alarm: cloudwatch.IAlarm) -> None:
        self.deployment_group.add_alarm(alarm)

    def _hook(
        self, repository: ecr.IRepository, image_digest: str, architecture: lambda_.Architecture
    ) -> lambda_.DockerImageFunction:
        """The same image and digest as the function, another entry point."""
        cfg = self.config
        role = iam.Role(
            self,
            "PreTrafficRole",
            assumed_by=iam.ServicePrincipal("lambda.amazonaws.com"),
            description=f"{cfg.hook_function_name}: test a new version of {cfg.function_name}",
        )
        bucket = cfg.env.bucket_name
        policy = iam.Policy(
            self,
            "PreTrafficPolicy",
            statements=[
                # The deployment's target version is in its AppSpec: GetDeployment names the
                # revision, GetApplicationRevision returns its content.
                iam.PolicyStatement(
                    sid="ReadDeployment",
                    actions=["codedeploy:GetDeployment"],
                    resources=[self.deployment_group.deployment_group_arn],
                ),
                iam.PolicyStatement(
                    sid="ReadAppSpec",
                    actions=["codedeploy:GetApplicationRevision"],
                    resources=[self.application.application_arn],
                ),
                iam.PolicyStatement(
                    sid="ReadTargetConfiguration",
                    actions=["lambda:GetFunctionConfiguration"],
                    resources=[cfg.function_arn(), cfg.function_arn(qualified=True)],
                ),
                iam.PolicyStatement(
                    sid="InvokeTargetVersions",
                    actions=["lambda:InvokeFunction"],
                    resources=[cfg.function_arn(qualified=True)],
                ),
                # release.json is read at its key (it is what names the release); the bundle
                # and its signature by the VersionIds the version pins, which S3 authorizes
                # as s3:GetObjectVersion (inference/pretraffic.py).
                iam.PolicyStatement(
                    sid="ReadRelease",
                    actions=["s3:GetObject"],
                    resources=[f"arn:aws:s3:::{bucket}/{cfg.release_key}"],
                ),
                iam.PolicyStatement(
                    sid="ReadPinnedBundle",
                    actions=["s3:GetObjectVersion"],
                    resources=[
                        f"arn:aws:s3:::{bucket}/{cfg.model_key}",
                        f"arn:aws:s3:::{bucket}/{cfg.signature_key}",
                    ],
                ),
                iam.PolicyStatement(
                    sid="WriteOwnLogs",
                    actions=["logs:CreateLogStream", "logs:PutLogEvents"],
                    resources=[self.hook_log_group.log_group_arn],
                ),
            ],
        )
        policy.attach_to_role(role)
        acknowledge(
            policy,
            "AwsSolutions-IAM5[Resource::<FUNCTION_VERSIONS>]",
            resource=cfg.function_arn(qualified=True),
        )
        hook = lambda_.DockerImageFunction(
            self,
            "PreTraffic",
            function_name=cfg.hook_function_name,
            description=f"CodeDeploy pre-traffic hook of {cfg.function_name}:live",
            code=lambda_.DockerImageCode.from_ecr(
                repository, tag_or_digest=image_digest, cmd=[HOOK_HANDLER]
            ),
            architecture=architecture,
            memory_size=cfg.memory_mb,
            timeout=Duration.seconds(hook_timeout_seconds(cfg.timeout_seconds)),
            role=role,
            log_group=self.hook_log_group,
            environment={
                contract.TARGET_FUNCTION: cfg.function_name,
                contract.MODEL_NAME: cfg.name,
                contract.RELEASE_BUCKET: bucket,
                contract.RELEASE_KEY: cfg.release_key,
                contract.SIGNING_PUBLIC_KEY: cfg.public_key,
                contract.LOG_LEVEL: cfg.log_level,
                contract.SERVICE_NAME: cfg.hook_function_name,
            },
            # CodeDeploy invokes the hook asynchronously and waits (up to an hour) for its
            # report: one retry covers a crash before reporting; a second report is refused.
            retry_attempts=1,
            max_event_age=Duration.minutes(15),
        )
        hook.node.add_dependency(policy)
        return hook
