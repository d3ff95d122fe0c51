"""The team's MLflow on AWS: a SageMaker managed MLflow tracking server (`WaterMl-<env>-Tracking`).

Chosen over MLflow in a container on a managed database (ECS Fargate + RDS PostgreSQL + ALB)
for auth and operations: callers sign requests with their IAM role (SigV4, through the
`sagemaker-mlflow` client plugin), so CI's GitHub OIDC role needs no password secret, and AWS
runs, patches and backs up the server and its database. infra/README.md ("The team's MLflow")
has the comparison, costs included.

What it creates: the artifact bucket (SSE-S3, private, TLS only, access-logged, retained) and
its access-log bucket, the
role SageMaker assumes to use that bucket, the tracking server, and (``grant_promote``) what
the promotion role needs on both: read versions and runs, set tags and aliases, read
artifacts. Clients read and write artifacts in the bucket directly with their own role:
SageMaker's server hands out ``s3://`` artifact URIs, not a proxy.
"""

from __future__ import annotations

from aws_cdk import Acknowledgment, CfnOutput, Duration, RemovalPolicy, Stack, Validations
from aws_cdk import aws_iam as iam
from aws_cdk import aws_s3 as s3
from aws_cdk import aws_sagemaker as sagemaker
from constructs import Construct

from waterml_infra.config import EnvConfig

# SageMaker's managed versions trail MLflow's releases. The client is the lock's (uv.lock:
# MLflow 3.17): the server runs the same major, which MLflow keeps its REST API compatible
# within (tests/infra/test_infra_tracking.py compares the two majors).
MLFLOW_VERSION = "3.0"
SIZE = "Small"  # up to 25 users (SageMaker's sizing); Medium/Large for more
MAINTENANCE_WINDOW = "Sun:03:00"  # UTC, weekly: SageMaker patches the server then
ARTIFACT_PREFIX = "mlflow"

# What `python -m registry` (promote, rollback, reconcile, models) calls on the server: read
# versions, runs and their artifact listings; write version tags and the `champion` alias.
# Nothing that creates, deletes or renames.
PROMOTE_ACTIONS = [
    f"sagemaker-mlflow:{action}"
    for action in (
        "GetRegisteredModel",
        "SearchRegisteredModels",
        "GetModelVersion",
        "GetModelVersionByAlias",
        "SearchModelVersions",
        "GetDownloadURIForModelVersionArtifacts",
        "GetRun",
        "GetExperiment",
        "ListArtifacts",
        "SetModelVersionTag",
        "SetRegisteredModelAlias",
    )
]

# What training (`python -m training`: experiments, runs, datasets, logged models, versions,
# the `candidate` alias, the model card) calls on the server, for the configured trainer roles.
# Nothing that deletes or renames; IAM cannot tell one alias or tag from another, so unlike
# `make tracking-up`'s roles (tools/team_auth.py) a trainer could also move `champion`:
# promotion checks the approved sha256 against the bytes whatever the registry says.
TRAIN_ACTIONS = [
    f"sagemaker-mlflow:{action}"
    for action in (
        "AccessUI",
        "CreateExperiment",
        "GetExperiment",
        "GetExperimentByName",
        "SearchExperiments",
        "CreateRun",
        "GetRun",
        "UpdateRun",
        "SearchRuns",
        "LogBatch",
        "LogMetric",
        "LogParam",
        "LogInputs",
        "LogModel",
        "SetTag",
        "GetMetricHistory",
        "ListArtifacts",
        "CreateRegisteredModel",
        "GetRegisteredModel",
        "SearchRegisteredModels",
        "CreateModelVersion",
        "GetModelVersion",
        "UpdateModelVersion",
        "SearchModelVersions",
        "GetModelVersionByAlias",
        "SetRegisteredModelAlias",
        "GetDownloadURIForModelVersionArtifacts",
    )
]
# The UI: a presigned URL (`aws sagemaker create-presigned-mlflow-tracking-server-url`).
UI_ACTION = "sagemaker:CreatePresignedMlflowTrackingServerUrl"

# cdk-nag findings of this stack, acknowledged on the narrowest construct with these reasons
# (the wiring may move them into waterml_infra.nag.REASONS).
REASONS: dict[str, str] = {
    "AwsSolutions-IAM5[Resource::<ARTIFACT_OBJECTS>]": (
        "MLflow writes each run's artifacts under keys it chooses (<experiment>/<run>/...): "
        "the tracking server's role and the promotion's read need the artifact prefix of this "
        "one bucket, nothing else."
    ),
}


class TrackingStack(Stack):
    """SageMaker managed MLflow for one environment, with its artifact bucket and role."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        config: EnvConfig,
        **kwargs: object,
    ):
        super().__init__(scope, construct_id, **kwargs)  # type: ignore[arg-type]
        self.config = config
        self.access_logs = self._access_log_bucket()
        self.artifact_bucket = self._artifact_bucket(self.access_logs)
        self.server_role = self._server_role()
        self.server = sagemaker.CfnMlflowTrackingServer(
            self,
            "TrackingServer",
            tracking_server_name=tracking_server_name(config),
            artifact_store_uri=self.artifact_bucket.s3_url_for_object(ARTIFACT_PREFIX),
            role_arn=self.server_role.role_arn,
            mlflow_version=MLFLOW_VERSION,
            tracking_server_size=SIZE,
            automatic_model_registration=False,  # the registry is MLflow's, not SageMaker's
            weekly_maintenance_window_start=MAINTENANCE_WINDOW,
        )
        self.server.node.add_dependency(self.server_role)  # its policy exists first
        # What CI's MLFLOW_TRACKING_URI secret holds (the sagemaker-mlflow plugin takes an ARN).
        CfnOutput(self, "TrackingServerArn", value=self.server.attr_tracking_server_arn)
        CfnOutput(self, "ArtifactBucketName", value=self.artifact_bucket.bucket_name)

    @property
    def artifact_objects(self) -> str:
        return self.artifact_bucket.arn_for_objects(f"{ARTIFACT_PREFIX}/*")

    def _access_log_bucket(self) -> s3.Bucket:
        """Its own, like the foundation's: S3 cannot deliver logs across stacks to a bucket
        whose policy (in the other stack) would have to name this one."""
        return s3.Bucket(
            self,
            "AccessLogs",
            bucket_name=f"{self.config.prefix}-mlflow-access-logs-{self.config.account}"
            f"-{self.config.region}",
            encryption=s3.BucketEncryption.S3_MANAGED,  # log delivery needs SSE-S3
            block_public_access=s3.BlockPublicAccess.BLOCK_ALL,
            enforce_ssl=True,
            object_ownership=s3.ObjectOwnership.BUCKET_OWNER_ENFORCED,
            removal_policy=RemovalPolicy.RETAIN,
            lifecycle_rules=[
                s3.LifecycleRule(
                    id="expire-access-logs",
                    expiration=Duration.days(self.config.access_log_retention_days),
                )
            ],
        )

    def _artifact_bucket(self, access_logs: s3.IBucket) -> s3.Bucket:
        cfg = self.config
        return s3.Bucket(
            self,
            "ArtifactBucket",
            bucket_name=f"{cfg.prefix}-mlflow-artifacts-{cfg.account}-{cfg.region}",
            encryption=s3.BucketEncryption.S3_MANAGED,
            block_public_access=s3.BlockPublicAccess.BLOCK_ALL,
            enforce_ssl=True,
            minimum_tls_version=1.2,
            object_ownership=s3.ObjectOwnership.BUCKET_OWNER_ENFORCED,
            # Runs, plots and bundles of every version ever registered: the registry's history.
            removal_policy=RemovalPolicy.RETAIN,
            server_access_logs_bucket=access_logs,
            server_access_logs_prefix="mlflow-artifacts/",
        )

    def _server_role(self) -> iam.Role:
        """The role SageMaker assumes to run the server: the artifact prefix, nothing else."""
        role = iam.Role(
            self,
            "TrackingServerRole",
            role_name=f"{self.config.prefix}-mlflow-server",
            description="SageMaker managed MLflow: read and write its artifact prefix",
            assumed_by=iam.ServicePrincipal(
                "sagemaker.amazonaws.com",
                conditions={"StringEquals": {"aws:SourceAccount": self.account}},
            ),
        )
        policy = iam.Policy(
            self,
            "TrackingServerPolicy",
            statements=[
                iam.PolicyStatement(
                    sid="ArtifactObjects",
                    actions=["s3:GetObject", "s3:PutObject", "s3:DeleteObject"],
                    resources=[self.artifact_objects],
                ),
                iam.PolicyStatement(
                    sid="ListArtifacts",
                    actions=["s3:ListBucket", "s3:GetBucketLocation"],
                    resources=[self.artifact_bucket.bucket_arn],
                ),
            ],
        )
        policy.attach_to_role(role)
        self._acknowledge_artifact_objects(policy)
        return role

    def grant_promote(self, role: iam.IRole) -> iam.Policy:
        """What `promote.yml`'s role needs: PROMOTE_ACTIONS on this server, and to read the
        bundles MLflow stored (registry/tracking.py downloads them with the role's own
        credentials)."""
        registry = iam.PolicyStatement(
            sid="MlflowRegistry",
            actions=PROMOTE_ACTIONS,
            resources=[self.server.attr_tracking_server_arn],
        )
        return self._grant("PromoteTrackingPolicy", role, [registry], ["s3:GetObject"], "Read")

    def grant_train(self, role: iam.IRole, name: str) -> iam.Policy:
        """What a trainer's role needs: TRAIN_ACTIONS on this server, the UI by presigned URL,
        and its artifact prefix read and written (SageMaker does not proxy artifacts: the
        client uploads runs, plots and bundles with its own role)."""
        server = [self.server.attr_tracking_server_arn]
        mlflow = [
            iam.PolicyStatement(sid="MlflowTraining", actions=TRAIN_ACTIONS, resources=server),
            iam.PolicyStatement(sid="MlflowUi", actions=[UI_ACTION], resources=server),
        ]
        objects = ["s3:GetObject", "s3:PutObject"]
        return self._grant(f"TrainTrackingPolicy{name}", role, mlflow, objects, "Write")

    def _grant(
        self, policy_id: str, role: iam.IRole, mlflow: list[iam.PolicyStatement],
        object_actions: list[str], verb: str,
    ) -> iam.Policy:  # fmt: skip
        """A policy of ``mlflow`` statements plus ``object_actions`` on the artifact prefix
        and its listing, attached to ``role``, its artifact-prefix finding acknowledged."""
        policy = iam.Policy(
            self,
            policy_id,
            statements=[
                *mlflow,
                iam.PolicyStatement(
                    sid=f"{verb}Artifacts",
                    actions=object_actions,
                    resources=[self.artifact_objects],
                ),
                iam.PolicyStatement(
                    sid="ListArtifacts",
                    actions=["s3:ListBucket"],
                    resources=[self.artifact_bucket.bucket_arn],
                    conditions={"StringLike": {"s3:prefix": [f"{ARTIFACT_PREFIX}/*"]}},
                ),
            ],
        )
        policy.attach_to_role(role)
        self._acknowledge_artifact_objects(policy)
        return policy

    def _acknowledge_artifact_objects(self, policy: iam.Policy) -> None:
        """The artifact prefix's ``/*``, as cdk-nag reports it, with its reason."""
        finding = "AwsSolutions-IAM5[Resource::<ARTIFACT_OBJECTS>]"
        bucket = self.get_logical_id(self.artifact_bucket.node.default_child)  # type: ignore[arg-type]
        rule = f"AwsSolutions-IAM5[Resource::<{bucket}.Arn>/{ARTIFACT_PREFIX}/*]"
        Validations.of(policy).acknowledge(Acknowledgment(id=rule, reason=REASONS[finding]))


def tracking_server_name(config: EnvConfig) -> str:
    return f"{config.prefix}-mlflow"


def add_tracking(
    scope: Construct,
    config: EnvConfig,
    *,
    promote_role: iam.IRole,
    **stack_kwargs: object,
) -> TrackingStack:
    """The tracking stack of one environment, with the promotion role's grants: what
    `app.py` calls beside the foundation stack (infra/README.md, "The team's MLflow")."""
    stack = TrackingStack(
        scope,
        config.stack_name("Tracking"),
        config=config,
        **stack_kwargs,
    )
    stack.grant_promote(promote_role)
    for number, arn in enumerate(config.tracking_trainer_roles):
        trainer = iam.Role.from_role_arn(stack, f"Trainer{number}", arn, mutable=True)
        stack.grant_train(trainer, str(number))
    return stack
