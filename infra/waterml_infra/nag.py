"""cdk-nag (AwsSolutions pack) wiring and every acknowledgement, each with its reason.

cdk-nag 3.x runs as a CDK policy-validation plugin (`Validations.of(app).add_plugins`); findings
are acknowledged with `Validations.of(construct).acknowledge(...)` on the narrowest construct,
one finding at a time. The reasons live here so infra/README.md and the tests can list them.
"""

from __future__ import annotations

from aws_cdk import Acknowledgment, App, Validations
from cdk_nag import AwsSolutionsChecks
from constructs import IConstruct

REASONS: dict[str, str] = {
    "AwsSolutions-SQS3": (
        "The queue is the Lambda on-failure destination (the dead-letter store of failed "
        "asynchronous invocations); a DLQ behind a DLQ only moves the problem. Its depth alarm "
        "is the signal."
    ),
    "AwsSolutions-IAM5[Resource::*]": (
        "ecr:GetAuthorizationToken has no resource-level permissions; AWS requires Resource '*'."
    ),
    "AwsSolutions-IAM5[Resource::<MODELS_PREFIX>]": (
        "The promotion uploads each approved model to models/<name>/model.joblib and its "
        "release.json, for every model in registry/approved.toml: scoped to the models/ prefix "
        "of this one bucket, nothing else."
    ),
    "AwsSolutions-IAM5[Resource::<RELEASE_MANIFESTS>]": (
        "The registry writes release.json with a compare-and-swap and deletes its own new "
        "version again if a concurrent promotion won; s3:DeleteObjectVersion is limited to the "
        "release manifests under models/, never the model bundles."
    ),
    "AwsSolutions-IAM5[Resource::<RELEASE_MANIFESTS_READ>]": (
        "The deploy workflow's released-vs-deployed check reads every served model's "
        "models/<name>/release.json (s3:GetObject only, never a write); the models "
        "come from cdk.json, so the pattern spares the foundation stack a change per model."
    ),
    "AwsSolutions-IAM5[Resource::<RELEASED_BUNDLES_READ>]": (
        "The deploy reads the released bundle of the model it deploys (s3:GetObjectVersion of "
        "models/<name>/model.joblib by the release's VersionId, its SHA-256 checked before it is "
        "read) for the training answer mix the answer-mix alarm compares with; read-only, "
        "bundles only, any served model without a foundation change."
    ),
    "AwsSolutions-IAM5[Resource::<ENV_FUNCTIONS>]": (
        "The deploy role reads each model's `live` alias and version configuration (status) "
        "for every function of this one environment: named "
        "<project>-<env>-<model>, so a model added to `models` needs no foundation change. "
        "It cannot update code, aliases or configuration."
    ),
    "AwsSolutions-IAM5[Resource::<SERVING_STACKS>]": (
        "The deploy's ordering check reads the commit tag of every serving stack of this "
        "environment (cloudformation:DescribeStacks only): one per model, so a pattern spares "
        "the foundation stack a change per model."
    ),
    "AwsSolutions-IAM5[Resource::<FUNCTION_VERSIONS>]": (
        "The pre-traffic hook invokes and reads the configuration of the numbered version "
        "CodeDeploy is about to shift traffic to; the version is only known per deployment, so "
        "the resource is this one function's qualified ARN (':*')."
    ),
    "AwsSolutions-IAM5[Resource::<HOOK_QUALIFIERS>]": (
        "CDK's LambdaDeploymentGroup grants its CodeDeploy service role lambda:InvokeFunction "
        "on its own pre-traffic hook and the hook's qualifiers; one function, nothing else."
    ),
    "AwsSolutions-IAM4[Policy::<CODEDEPLOY_LAMBDA_LIMITED>]": (
        "AWSCodeDeployRoleForLambdaLimited is the AWS-maintained policy CodeDeploy needs to shift "
        "a Lambda alias and read the rollback alarms (it is the narrow variant: no S3, no SNS, "
        "hooks named CodeDeployHook_* only); CDK attaches it to every Lambda deployment group."
    ),
}


def acknowledge(construct: IConstruct, finding: str, *, resource: str | None = None) -> None:
    """Acknowledge one finding with its recorded reason.

    For findings with a placeholder (`<MODELS_PREFIX>`...), `resource` is the literal text
    cdk-nag reports for that resource.
    """
    reason = REASONS[finding]
    rule_id = finding
    if resource is not None:
        rule_id = finding[: finding.index("::") + 2] + resource + "]"
    Validations.of(construct).acknowledge(Acknowledgment(id=rule_id, reason=reason))


def add_checks(app: App) -> AwsSolutionsChecks:
    """Run the AwsSolutions pack over the whole app at synth time."""
    checks = AwsSolutionsChecks(app, verbose=True)
    Validations.of(app).add_plugins(checks)
    return checks
