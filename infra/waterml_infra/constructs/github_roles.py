"""The GitHub OIDC provider and the two roles the workflows assume (promote and deploy).

Built straight into the Foundation stack's scope (not under a construct of their own): the
roles have fixed names, and CloudFormation replaces a resource whose logical id moves, which
fails for a named role; these ids must stay where they were deployed.
"""

from __future__ import annotations

import dataclasses

from aws_cdk import Duration, RemovalPolicy, Stack
from aws_cdk import aws_ecr as ecr
from aws_cdk import aws_iam as iam
from aws_cdk import aws_s3 as s3

from registry.manifest import MODELS_PREFIX, bundle_key, manifest_key
from waterml_infra.config import SESSION_MINUTES, EnvConfig
from waterml_infra.nag import acknowledge

GITHUB_OIDC_HOST = "token.actions.githubusercontent.com"
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


@dataclasses.dataclass(frozen=True)
class GitHubRolesProps:
    """What the roles act on: the environment's names, its model bucket and image repository."""

    config: EnvConfig
    model_bucket: s3.IBucket
    repository: ecr.IRepository


def functions_arn(cfg: EnvConfig) -> str:
    """Every function of this environment, and their versions and aliases (an IAM `*` also
    matches the `:qualifier`)."""
    return cfg.function_arn(f"{cfg.prefix}-*")


def oidc_provider(scope: Stack, cfg: EnvConfig) -> str:
    """The ARN of the account's GitHub OIDC provider (created here or imported).

    The native AWS::IAM::OIDCProvider resource: no custom-resource Lambda. IAM no longer needs
    thumbprints for GitHub's provider.
    """
    if cfg.create_oidc_provider:
        provider = iam.OidcProviderNative(
            scope,
            "GitHubOidc",
            url=f"https://{GITHUB_OIDC_HOST}",
            client_ids=["sts.amazonaws.com"],
            removal_policy=RemovalPolicy.RETAIN,
        )
        return provider.oidc_provider_arn
    return f"arn:aws:iam::{cfg.account}:oidc-provider/{GITHUB_OIDC_HOST}"


def github_principal(cfg: EnvConfig, provider_arn: str) -> iam.IPrincipal:
    return iam.WebIdentityPrincipal(
        provider_arn,
        conditions={
            "StringEquals": {
                f"{GITHUB_OIDC_HOST}:aud": "sts.amazonaws.com",
                # Only jobs in this environment's GitHub Environment (prod's is protected by
                # required reviewers): another environment's job, a branch, a pull request or
                # a fork gets a token with another subject.
                f"{GITHUB_OIDC_HOST}:sub": cfg.github_subject,
            }
        },
    )


def _github_role(
    scope: Stack, construct_id: str, name: str, description: str, principal: iam.IPrincipal
) -> iam.Role:
    """A role for one workflow: sessions of at most an hour (the OIDC token's own life)."""
    return iam.Role(scope, construct_id, role_name=name, description=description,
                    assumed_by=principal,
                    max_session_duration=Duration.minutes(SESSION_MINUTES))  # fmt: skip


def _bucket_ref(scope: Stack, bucket: s3.IBucket) -> str:
    """The model bucket's ARN as cdk-nag reports it in a finding."""
    return f"<{scope.get_logical_id(bucket.node.default_child)}.Arn>"  # type: ignore[arg-type]


def promote_role(scope: Stack, props: GitHubRolesProps, provider: str) -> iam.Role:
    """promote.yml's role: upload approved models and write release manifests."""
    cfg, bucket = props.config, props.model_bucket
    role = _github_role(scope, "GitHubPromoteRole", cfg.promote_role_name,
                        "promote.yml: upload approved models and write release manifests",
                        github_principal(cfg, provider))  # fmt: skip
    models_prefix = bucket.arn_for_objects(f"{MODELS_PREFIX}*")
    release_manifests = bucket.arn_for_objects(manifest_key("*"))
    policy = iam.Policy(
        scope,
        "GitHubPromotePolicy",
        statements=[
            iam.PolicyStatement(
                sid="ModelObjects",
                actions=["s3:GetObject", "s3:GetObjectVersion", "s3:PutObject"],
                resources=[models_prefix],
            ),
            # The registry's compare-and-swap on release.json removes its own write again if
            # another promotion won the race; bundles can never be deleted.
            iam.PolicyStatement(
                sid="UndoConflictingReleaseWrite",
                actions=["s3:DeleteObjectVersion"],
                resources=[release_manifests],
            ),
            # Unconditioned: S3 decides between 404 and 403 for a missing key (the first
            # release.json of a model) by whether the caller may ListBucket, and that check
            # carries no s3:prefix, so a prefix-conditioned grant reads as "may not" and the
            # registry's first promotion of a model would stop on AccessDenied (found by
            # tests/infra/test_run_under_policy_promotion.py). The bucket holds models/ only.
            iam.PolicyStatement(
                sid="ListModels", actions=["s3:ListBucket"], resources=[bucket.bucket_arn]
            ),
            iam.PolicyStatement(
                sid="ListModelVersions",
                actions=["s3:ListBucketVersions"],
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
    bucket_ref = _bucket_ref(scope, bucket)
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


def deploy_role(scope: Stack, props: GitHubRolesProps, provider: str) -> iam.Role:
    """deploy.yml's role: push the image, cdk deploy, check released vs deployed."""
    cfg, bucket = props.config, props.model_bucket
    role = _github_role(scope, "GitHubDeployRole", cfg.deploy_role_name,
                        "deploy.yml: push the image, cdk deploy, check released vs deployed",
                        github_principal(cfg, provider))  # fmt: skip
    bootstrap_roles = [
        f"arn:aws:iam::{cfg.account}:role/cdk-{cfg.cdk_qualifier}-{name}-{cfg.account}-{cfg.region}"
        for name in CDK_BOOTSTRAP_ROLES
    ]
    policy = iam.Policy(
        scope,
        "GitHubDeployPolicy",
        statements=[
            iam.PolicyStatement(
                sid="EcrLogin", actions=["ecr:GetAuthorizationToken"], resources=["*"]
            ),
            iam.PolicyStatement(
                sid="EcrPushThisRepository",
                actions=ECR_PUSH_ACTIONS,
                resources=[props.repository.repository_arn],
            ),
            iam.PolicyStatement(
                sid="CdkDeploy", actions=["sts:AssumeRole"], resources=bootstrap_roles
            ),
            # The released-vs-deployed check (waterml_infra.ci.status) of every model: what
            # each manifest releases and what each `live` alias serves.
            iam.PolicyStatement(
                sid="ReadReleases",
                actions=["s3:GetObject"],
                resources=[bucket.arn_for_objects(manifest_key("*"))],
            ),
            # waterml_infra.ci.deploy_context reads the released bundle (by its VersionId,
            # digest-checked) for its training mix: the answer-mix alarm's constants.
            iam.PolicyStatement(
                sid="ReadReleasedBundles",
                actions=["s3:GetObjectVersion"],
                resources=[bucket.arn_for_objects(bundle_key("*"))],
            ),
            # `live` is moved by CodeDeploy (started by CloudFormation with the CDK bootstrap
            # roles), never by this role: status reads each alias and its versions' pins.
            iam.PolicyStatement(
                sid="ReadFunctions",
                actions=["lambda:GetAlias", "lambda:GetFunctionConfiguration"],
                resources=[functions_arn(cfg)],
            ),
        ],
    )
    if cfg.source_repository_name:
        # Build once: this environment ships the image its source environment deployed and
        # verified (tagged there by deploy.yml): read it, never write it.
        source = f"arn:aws:ecr:{cfg.region}:{cfg.account}:repository/{cfg.source_repository_name}"
        policy.add_statements(
            iam.PolicyStatement(
                sid="PullVerifiedImages",
                actions=["ecr:BatchGetImage", "ecr:DescribeImages", "ecr:GetDownloadUrlForLayer"],
                resources=[source],
            )
        )
    # status counts a rollout's invocations (its evidence): GetMetricStatistics has no
    # resource-level permission (Resource "*", acknowledged with ecr:GetAuthorizationToken's).
    policy.add_statements(
        iam.PolicyStatement(
            sid="CountRolloutInvocations",
            actions=["cloudwatch:GetMetricStatistics"],
            resources=["*"],
        )
    )
    # The deploy's ordering check reads which commit each serving stack was deployed from
    # (its `commit` tag): an older commit never deploys over a newer one.
    serving_stacks = (
        f"arn:aws:cloudformation:{cfg.region}:{cfg.account}:stack/{cfg.stack_name('Serving-')}*/*"
    )
    policy.add_statements(
        iam.PolicyStatement(
            sid="ReadServingStacks",
            actions=["cloudformation:DescribeStacks"],
            resources=[serving_stacks],
        )
    )
    policy.attach_to_role(role)
    acknowledge(policy, "AwsSolutions-IAM5[Resource::*]")
    acknowledge(policy, "AwsSolutions-IAM5[Resource::<SERVING_STACKS>]", resource=serving_stacks)
    bucket_ref = _bucket_ref(scope, bucket)
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
    acknowledge(policy, "AwsSolutions-IAM5[Resource::<ENV_FUNCTIONS>]", resource=functions_arn(cfg))
    return role
