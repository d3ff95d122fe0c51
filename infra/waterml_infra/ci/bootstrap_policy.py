"""The CloudFormation execution policy of one environment's CDK bootstrap: what a deploy may
create, and nothing of the Foundation stack.

    python -m waterml_infra.ci.bootstrap_policy <env> [--write]

Each environment is bootstrapped with a qualifier of its own (``EnvConfig.cdk_qualifier``), so
its deploy role can assume only its own bootstrap roles, and CloudFormation runs its stacks with
this policy instead of AdministratorAccess (infra/README.md, "Bootstrapping an AWS account").
It grants what the serving stacks of that environment are made of (functions, versions and
aliases named ``<project>-<env>-*``, the roles, queues and alarms CloudFormation names after
``WaterMl-<env>-Serving-*``, log groups, dashboards, the CodeDeploy application and its
deployments, the warm-up rules) and nothing on the model bucket, the image repository or the
GitHub roles: a deploy cannot change the stack that defines its own permissions (a Foundation
update through the workflow fails; an administrator deploys it).

Account and region are ``*``: an IAM policy acts in its own account only, so the file is the same
for every account and is committed as ``infra/bootstrap/<env>-execution-policy.json``;
tests/infra/test_isolation.py checks the files equal this output.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from inference.contract import log_group
from waterml_infra.config import ConfigError, EnvConfig, load_settings, resolve

FOLDER = Path(__file__).resolve().parents[2] / "bootstrap"
CODEDEPLOY_LAMBDA_LIMITED = "arn:aws:iam::aws:policy/service-role/AWSCodeDeployRoleForLambdaLimited"


def path(env: str) -> Path:
    return FOLDER / f"{env}-execution-policy.json"


def policy(cfg: EnvConfig) -> dict[str, Any]:
    """The execution policy document of ``cfg``'s environment."""
    fn = f"arn:aws:lambda:*:*:function:{cfg.prefix}-*"
    serving = cfg.stack_name("Serving-")  # the prefix of every name CloudFormation generates
    statements = [
        ("Functions", ["lambda:*"], [fn, f"{fn}:*"]),
        # Lambda pulls the image for the caller that creates or updates the function.
        ("PullTheImage", ["ecr:BatchGetImage", "ecr:GetDownloadUrlForLayer"],
         [f"arn:aws:ecr:*:*:repository/{cfg.repository_name}"]),
        ("ServingRoles", ["iam:CreateRole", "iam:DeleteRole", "iam:GetRole", "iam:PassRole",
                          "iam:PutRolePolicy", "iam:DeleteRolePolicy", "iam:GetRolePolicy",
                          "iam:UpdateAssumeRolePolicy", "iam:TagRole", "iam:UntagRole",
                          "iam:ListRolePolicies", "iam:ListAttachedRolePolicies"],
         [f"arn:aws:iam::*:role/{serving}*"]),
        ("FailureQueues", ["sqs:*"], [f"arn:aws:sqs:*:*:{serving}*"]),
        ("LogGroups", ["logs:CreateLogGroup", "logs:DeleteLogGroup", "logs:PutRetentionPolicy",
                       "logs:DeleteRetentionPolicy", "logs:TagResource", "logs:UntagResource",
                       "logs:ListTagsForResource"],
         [f"arn:aws:logs:*:*:log-group:{log_group(cfg.prefix)}-*",
          f"arn:aws:logs:*:*:log-group:{log_group(cfg.prefix)}-*:*"]),
        ("Alarms", ["cloudwatch:PutMetricAlarm", "cloudwatch:DeleteAlarms",
                    "cloudwatch:TagResource", "cloudwatch:UntagResource"],
         [f"arn:aws:cloudwatch:*:*:alarm:{serving}*"]),
        ("Dashboards", ["cloudwatch:PutDashboard", "cloudwatch:DeleteDashboards",
                        "cloudwatch:GetDashboard"],
         [f"arn:aws:cloudwatch::*:dashboard/{cfg.prefix}-*"]),
        ("Rollouts", ["codedeploy:*"],
         [f"arn:aws:codedeploy:*:*:application:{cfg.prefix}-*",
          f"arn:aws:codedeploy:*:*:deploymentgroup:{cfg.prefix}-*/*",
          "arn:aws:codedeploy:*:*:deploymentconfig:CodeDeployDefault.Lambda*"]),
        ("WarmUpRules", ["events:PutRule", "events:DeleteRule", "events:DescribeRule",
                         "events:PutTargets", "events:RemoveTargets", "events:TagResource"],
         [f"arn:aws:events:*:*:rule/{serving}*"]),
        ("BootstrapVersion", ["ssm:GetParameters"],
         [f"arn:aws:ssm:*:*:parameter/cdk-bootstrap/{cfg.cdk_qualifier}/version"]),
        # Describe and list calls have no resource-level permissions.
        ("Describe", ["cloudwatch:DescribeAlarms", "logs:DescribeLogGroups",
                      "codedeploy:GetDeploymentConfig", "lambda:GetAccountSettings"], ["*"]),
    ]  # fmt: skip
    document: list[dict[str, Any]] = [
        {"Sid": sid, "Effect": "Allow", "Action": actions, "Resource": resources}
        for sid, actions, resources in statements
    ]
    # The CodeDeploy service role of each deployment group carries this one AWS policy.
    document.append({
        "Sid": "CodeDeployServicePolicy", "Effect": "Allow",
        "Action": ["iam:AttachRolePolicy", "iam:DetachRolePolicy"],
        "Resource": f"arn:aws:iam::*:role/{serving}*",
        "Condition": {"ArnEquals": {"iam:PolicyARN": CODEDEPLOY_LAMBDA_LIMITED}},
    })  # fmt: skip
    return {"Version": "2012-10-17", "Statement": document}


def render(cfg: EnvConfig) -> str:
    return json.dumps(policy(cfg), indent=2) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("environment")
    parser.add_argument("--write", action="store_true", help=f"write {FOLDER}/<env>-...json")
    args = parser.parse_args(argv)
    try:
        cfg = resolve(load_settings(), args.environment)
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if args.write:
        path(cfg.name).parent.mkdir(parents=True, exist_ok=True)
        path(cfg.name).write_text(render(cfg))
    else:
        print(render(cfg), end="")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
