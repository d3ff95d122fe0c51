"""Long-lived resources of one environment: the model bucket (and its access-log bucket),
the image repository, and the GitHub OIDC roles the workflows assume.

Deployed once by an administrator before the first workflow run (see infra/README.md); the
serving stack and the workflows find these resources by the names `EnvConfig` derives.
"""

from __future__ import annotations

from aws_cdk import Duration, RemovalPolicy, Stack
from aws_cdk import aws_ecr as ecr
from aws_cdk import aws_iam as iam
from aws_cdk import aws_s3 as s3
from constructs import Construct

from registry.manifest import MODELS_PREFIX, bundle_key, manifest_key
from waterml_infra.config import LIVE_ALIAS, EnvConfig
from waterml_infra.nag import acknowledge

GITHUB_OIDC_HOST = "token.actions.githubusercontent.com"
CDK_BOOTSTRAP_QUALIFIER = "hnb659fds"
CDK_BOOTSTRAP_ROLES = (
    "deploy-role",
    "file-publishing-role",
    "image-publishing-role",
    "lookup-role",
)
ECR_PUSH_ACTIONS = [
    "ecr:BatchCheckLayerAvailability",
    "ecr:BatchGetImage",
    "ecr:CompleteLayerUpload",
    "ecr:DescribeImages",
    "ecr:GetDownloadUrlForLayer",
    "ecr:InitiateLayerUpload",
    "ecr:PutImage",
    "ecr:UploadLayerPart",
]


class FoundationStack(Stack):
    def __init__(self, scope: Construct, construct_id: str, *, config: EnvConfig, **kwargs: object):
        super().__init__(scope, construct_id, **kwargs)  # type: ignore[arg-type]
        self.config = config
        self.access_logs = self._access_log_bucket()
        self.model_bucket = self._model_bucket()
        self.repository = self._repository()
        provider = self._oidc_provider()
        self.promote_role = self._promote_role(provider)
        self.deploy_role = self._deploy_role(provider)

    # Storage -----------------------------------------------------------------------------
    def _access_log_bucket(self) -> s3.Bucket:
        cfg = self.config
        bucket = s3.Bucket(
            self,
            "AccessLogs",
            bucket_name=cfg.access_log_bucket_name,
            # S3 server access logging only delivers to SSE-S3 buckets.
            encryption=s3.BucketEncryption.S3_MANAGED,
            block_public_access=s3.BlockPublicAccess.BLOCK_ALL,
            enforce_ssl=True,
            object_ownership=s3.ObjectOwnership.BUCKET_OWNER_ENFORCED,
            removal_policy=RemovalPolicy.RETAIN,
            lifecycle_rules=[
                s3.LifecycleRule(
                    id="expire-access-logs",
                    expiration=Duration.days(cfg.access_log_retention_days),
                )
            ],
        )
        return bucket

    def _model_bucket(self) -> s3.Bucket:
        cfg = self.config
        return s3.Bucket(
            self,
            "ModelBucket",
            bucket_name=cfg.bucket_name,
            versioned=True,
            encryption=s3.BucketEncryption.S3_MANAGED,
            block_public_access=s3.BlockPublicAccess.BLOCK_ALL,
            enforce_ssl=True,
            minimum_tls_version=1.2,
            object_ownership=s3.ObjectOwnership.BUCKET_OWNER_ENFORCED,
            removal_policy=RemovalPolicy.RETAIN,
            server_access_logs_bucket=self.access_logs,
            server_access_logs_prefix="model-bucket/",
            lifecycle_rules=[
                # A rollback re-points the release at an older VersionId of model.joblib, so
                # the newest N noncurrent versions are never expired, however old they are.
                s3.LifecycleRule(
                    id="keep-rollback-targets",
                    noncurrent_version_expiration=Duration.days(
                        cfg.noncurrent_version_expiration_days
                    ),
                    noncurrent_versions_to_retain=cfg.noncurrent_versions_to_retain,
                ),
                s3.LifecycleRule(
                    id="abort-incomplete-uploads",
                    abort_incomplete_multipart_upload_after=Duration.days(7),
                ),
            ],
        )

    def _repository(self) -> ecr.Repository:
        cfg = self.config
        repo = ecr.Repository(
            self,
            "ImageRepository",
            repository_name=cfg.repository_name,
            image_scan_on_push=True,
            image_tag_mutability=ecr.TagMutability.IMMUTABLE,
            removal_policy=RemovalPolicy.RETAIN,
            lifecycle_rules=[
                # Deploys reference images by digest; the newest N stay available to roll
                # the function back to.
                ecr.LifecycleRule(
                    description=f"keep the newest {cfg.ecr_max_images} images",
                    tag_status=ecr.TagStatus.ANY,
                    max_image_count=cfg.ecr_max_images,
                )
            ],
        )
        # Lambda pulls the image with its service principal; only for this environment's
        # functions (every model's and its pre-traffic hook), in this account. By name prefix,
        # so that a model added to `models` needs no change here.
        repo.add_to_resource_policy(
            iam.PolicyStatement(
                sid="LambdaImagePull",
                principals=[iam.ServicePrincipal("lambda.amazonaws.com")],
                actions=["ecr:BatchGetImage", "ecr:GetDownloadUrlForLayer"],
                conditions={
                    "StringEquals": {"aws:SourceAccount": cfg.account},
                    "ArnLike": {"aws:SourceArn": self.functions_arn()},
                },
            )
        )
        return repo

    def _bucket_ref(self) -> str:
        """The model bucket's ARN as cdk-nag reports it in a finding."""
        bucket = self.model_bucket.node.default_child
        return f"<{self.get_logical_id(bucket)}.Arn>"  # type: ignore[arg-type]

    # Identity ----------------------------------------------------------------------------
    def functions_arn(self) -> str:
        """Every function of this environment, and their versions and aliases (an IAM `*`
        also matches the `:qualifier`)."""
        return self.config.function_arn(f"{self.config.prefix}-*")

    def _oidc_provider(self) -> str:
        """The ARN of the account's GitHub OIDC provider (created here or imported).

        The native AWS::IAM::OIDCProvider resource: no custom-resource Lambda. IAM no longer
        needs thumbprints for GitHub's provider.
        """
        if self.config.create_oidc_provider:
            provider = iam.OidcProviderNative(
                self,
                "GitHubOidc",
                url=f"https://{GITHUB_OIDC_HOST}",
                client_ids=["sts.amazonaws.com"],
                removal_policy=RemovalPolicy.RETAIN,
            )
            return provider.oidc_provider_arn
        return f"arn:aws:iam::{self.config.account}:oidc-provider/{GITHUB_OIDC_HOST}"

    def _github_principal(self, provider_arn: str) -> iam.IPrincipal:
        cfg = self.config
        return iam.WebIdentityPrincipal(
            provider_arn,
            conditions={
                "StringEquals": {
                    f"{GITHUB_OIDC_HOST}:aud": "sts.amazonaws.com",
                    f"{GITHUB_OIDC_HOST}:sub": (
                        f"repo:{cfg.github_repo}:ref:refs/heads/{cfg.github_branch}"
                    ),
                }
            },
        )

    def _promote_role(self, provider: str) -> iam.Role:
        cfg = self.config
        bucket = self.model_bucket
        role = iam.Role(
            self,
            "GitHubPromoteRole",
            role_name=cfg.promote_role_name,
            description="promote.yml: upload approved models and write release manifests",
            assumed_by=self._github_principal(provider),
            max_session_duration=Duration.hours(1),
        )
        models_prefix = bucket.arn_for_objects(f"{MODELS_PREFIX}*")
        release_manifests = bucket.arn_for_objects(manifest_key("*"))
        bucket_ref = self._bucket_ref()
        policy = iam.Policy(
            self,
            "GitHubPromotePolicy",
            statements=[
                iam.PolicyStatement(
                    sid="ModelObjects",
                    actions=["s3:GetObject", "s3:GetObjectVersion", "s3:PutObject"],
                    resources=[models_prefix],
                ),
                # The registry's compare-and-swap on release.json removes its own write again
                # if another promotion won the race; bundles can never be deleted.
                iam.PolicyStatement(
                    sid="UndoConflictingReleaseWrite",
                    actions=["s3:DeleteObjectVersion"],
                    resources=[release_manifests],
                ),
                iam.PolicyStatement(
                    sid="ListModelVersions",
                    actions=["s3:ListBucket", "s3:ListBucketVersions"],
                    resources=[bucket.bucket_arn],
                    conditions={"StringLike": {"s3:prefix": [f"{MODELS_PREFIX}*"]}},
                ),
                iam.PolicyStatement(
                    sid="CheckVersioning",
                    actions=["s3:GetBucketVersioning"],
                    resources=[bucket.bucket_arn],
                ),
            ],
        )
        policy.attach_to_role(role)
        acknowledge(
            policy,
            "AwsSolutions-IAM5[Resource::<MODELS_PREFIX>]",
            resource=f"{bucket_ref}/{MODELS_PREFIX}*",
        )
        acknowledge(
            policy,
            "AwsSolutions-IAM5[Resource::<RELEASE_MANIFESTS>]",
            resource=f"{bucket_ref}/{manifest_key('*')}",
        )
        return role

    def _deploy_role(self, provider: str) -> iam.Role:
        cfg = self.config
        role = iam.Role(
            self,
            "GitHubDeployRole",
            role_name=cfg.deploy_role_name,
            description="deploy.yml: push the image, cdk deploy, check released vs deployed",
            assumed_by=self._github_principal(provider),
            max_session_duration=Duration.hours(1),
        )
        bootstrap_roles = [
            f"arn:aws:iam::{cfg.account}:role/cdk-{CDK_BOOTSTRAP_QUALIFIER}-{name}-"
            f"{cfg.account}-{cfg.region}"
            for name in CDK_BOOTSTRAP_ROLES
        ]
        policy = iam.Policy(
            self,
            "GitHubDeployPolicy",
            statements=[
                iam.PolicyStatement(
                    sid="EcrLogin",
                    actions=["ecr:GetAuthorizationToken"],
                    resources=["*"],
                ),
                iam.PolicyStatement(
                    sid="EcrPushThisRepository",
                    actions=ECR_PUSH_ACTIONS,
                    resources=[self.repository.repository_arn],
                ),
                iam.PolicyStatement(
                    sid="CdkDeploy",
                    actions=["sts:AssumeRole"],
                    resources=bootstrap_roles,
                ),
                # The released-vs-deployed check (waterml_infra.status) of every model: what
                # each manifest releases and what each `live` alias serves.
                iam.PolicyStatement(
                    sid="ReadReleases",
                    actions=["s3:GetObject"],
                    resources=[self.model_bucket.arn_for_objects(manifest_key("*"))],
                ),
                # waterml_infra.deploy_context reads the released bundle (by its VersionId,
                # digest-checked) for its training mix: the answer-mix alarm's constants.
                iam.PolicyStatement(
                    sid="ReadReleasedBundles",
                    actions=["s3:GetObjectVersion"],
                    resources=[self.model_bucket.arn_for_objects(bundle_key("*"))],
                ),
                # `live` is moved by CodeDeploy (started by CloudFormation with the CDK
                # bootstrap roles), never by this role: reading and a smoke invocation only.
                iam.PolicyStatement(
                    sid="ReadAndSmokeTestFunctions",
                    actions=[
                        "lambda:GetAlias",
                        "lambda:GetFunctionConfiguration",
                        "lambda:InvokeFunction",
                    ],
                    resources=[self.functions_arn()],
                ),
                iam.PolicyStatement(
                    sid="WatchRollouts",
                    actions=["codedeploy:GetDeployment", "codedeploy:ListDeployments"],
                    resources=[self.deployment_groups_arn()],
                ),
            ],
        )
        policy.attach_to_role(role)
        acknowledge(policy, "AwsSolutions-IAM5[Resource::*]")
        bucket_ref = self._bucket_ref()
        acknowledge(
            policy,
            "AwsSolutions-IAM5[Resource::<RELEASE_MANIFESTS_READ>]",
            resource=f"{bucket_ref}/{manifest_key('*')}",
        )
        acknowledge(
            policy,
            "AwsSolutions-IAM5[Resource::<RELEASED_BUNDLES_READ>]",
            resource=f"{bucket_ref}/{bundle_key('*')}",
        )
        acknowledge(
            policy,
            "AwsSolutions-IAM5[Resource::<ENV_FUNCTIONS>]",
            resource=self.functions_arn(),
        )
        acknowledge(
            policy,
            "AwsSolutions-IAM5[Resource::<ENV_DEPLOYMENT_GROUPS>]",
            resource=self.deployment_groups_arn(),
        )
        return role

    def deployment_groups_arn(self) -> str:
        """The `live` deployment group of every model's CodeDeploy application."""
        cfg = self.config
        return (
            f"arn:aws:codedeploy:{cfg.region}:{cfg.account}:deploymentgroup:"
            f"{cfg.prefix}-*/{LIVE_ALIAS}"
        )
