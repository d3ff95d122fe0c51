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

from waterml_infra.config import EnvConfig
from waterml_infra.constructs import github_roles
from waterml_infra.constructs.github_roles import GitHubRolesProps


class FoundationStack(Stack):
    def __init__(self, scope: Construct, construct_id: str, *, config: EnvConfig, **kwargs: object):
        super().__init__(scope, construct_id, **kwargs)  # type: ignore[arg-type]
        self.config = config
        self.access_logs = self._access_log_bucket()
        self.model_bucket = self._model_bucket()
        self.repository = self._repository()
        provider = github_roles.oidc_provider(self, config)
        props = GitHubRolesProps(config, self.model_bucket, self.repository)
        self.promote_role = github_roles.promote_role(self, props, provider)
        self.deploy_role = github_roles.deploy_role(self, props, provider)

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

    def functions_arn(self) -> str:
        """Every function of this environment (see github_roles.functions_arn)."""
        return github_roles.functions_arn(self.config)
