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


def deployment_groups_arn(cfg: EnvConfig) -> str:
    """The `live` deployment group of every model's CodeDeploy application."""
    return (
        f"arn:aws:codedeploy:{cfg.region}:{cfg.account}:deploymentgroup:{cfg.prefix}-*/{LIVE_ALIAS}"
    )


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
                f"{GITHUB_OIDC_HOST}:sub": (
                    f"repo:{cfg.github_repo}:ref:refs/heads/{cfg.github_branch}"
                ),
            }
        },
    )


def _github_role(
    scope: Stack, construct_id: str, name: str, description: str, principal: iam.IPrincipal
) -> iam.Role:
    """A role for one workflow: sessions of at most an hour (the OIDC token's own life)."""
    return iam.Role(scope, construct_id, role_name=name, description=description,
                    assumed_by=principal, max_session_duration=Duration.hours(1))  # fmt: skip


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
        f"arn:aws:iam::{cfg.account}:role/cdk-{CDK_BOOTSTRAP_QUALIFIER}-{name}-"
        f"{cfg.account}-{cfg.region}"
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
            # roles), never by this role: reading and a smoke invocation only.
            iam.PolicyStatement(
                sid="ReadAndSmokeTestFunctions",
                actions=[
                    "lambda:GetAlias",
                    "lambda:GetFunctionConfiguration",
                    "lambda:InvokeFunction",
                ],
                resources=[functions_arn(cfg)],
            ),
            iam.PolicyStatement(
                sid="WatchRollouts",
                actions=["codedeploy:GetDeployment", "codedeploy:ListDeployments"],
                resources=[deployment_groups_arn(cfg)],
            ),
        ],
    )
    policy.attach_to_role(role)
    acknowledge(policy, "AwsSolutions-IAM5[Resource::*]")
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
    acknowledge(
        policy,
        "AwsSolutions-IAM5[Resource::<ENV_DEPLOYMENT_GROUPS>]",
        resource=deployment_groups_arn(cfg),
    )
    return role
