"""Prod isolated from dev, proven on the synthesized templates with the IAM gate's evaluator:
which GitHub token may assume which role, what each environment's deploy path may touch, and
the CDK bootstrap's execution policy that CloudFormation runs a deploy with."""

from __future__ import annotations

from typing import Any

import pytest

from tools.iam_gate import Names, allowed, role_statements, trusts

ACCOUNT, REGION = "111111111111", "eu-west-1"
PROVIDER = f"arn:aws:iam::{ACCOUNT}:oidc-provider/token.actions.githubusercontent.com"


@pytest.fixture(scope="module")
def envs(default_app) -> dict[str, Any]:
    """dev and prod in one account (the harder case: one OIDC provider, one CDK account)."""
    from aws_cdk.assertions import Template

    _, stacks = default_app
    found = {}
    for env, built in stacks.items():
        names = Names(ACCOUNT, REGION, [Template.from_stack(built.foundation).to_json()])
        cfg = built.config
        found[env] = {"cfg": cfg, "names": names,
                      "deploy": _role(names, cfg.deploy_role_name),
                      "promote": _role(names, cfg.promote_role_name)}  # fmt: skip
    return found


def _role(names: Names, role_name: str) -> dict[str, Any]:
    for template in names.templates:
        for resource in template["Resources"].values():
            props = resource.get("Properties", {})
            if props.get("RoleName") == role_name:
                trust = names.value(props["AssumeRolePolicyDocument"]["Statement"])
                return {"trust": trust, "policy": role_statements(names, role_name)}
    raise KeyError(role_name)


def token(env: str, ref: str | None = None) -> dict[str, str]:
    """The claims of a GitHub Actions OIDC token: a job in environment `env`, or (ref) a job
    without an environment on that ref."""
    subject = f"repo:example-org/waterml:{f'ref:{ref}' if ref else f'environment:{env}'}"
    return {"token.actions.githubusercontent.com:aud": "sts.amazonaws.com",
            "token.actions.githubusercontent.com:sub": subject}  # fmt: skip


@pytest.mark.parametrize("role", ["deploy", "promote"])
def test_each_environments_roles_trust_only_its_own_github_environment(envs, role) -> None:
    dev, prod = envs["dev"][role]["trust"], envs["prod"][role]["trust"]
    assert trusts(dev, PROVIDER, token("dev"))
    assert trusts(prod, PROVIDER, token("prod"))
    assert not trusts(prod, PROVIDER, token("dev")), "dev's credentials can assume prod's role"
    assert not trusts(dev, PROVIDER, token("prod"))
    # A job without an environment (the old trust: main's ref) assumes neither.
    assert not trusts(prod, PROVIDER, token("", ref="refs/heads/main"))
    assert not trusts(dev, PROVIDER, token("", ref="refs/heads/main"))


def test_devs_deploy_role_touches_nothing_of_prod(envs) -> None:
    """Same account: dev's deploy role may assume only dev's bootstrap roles (each environment
    is bootstrapped with its own qualifier), and reads, pushes or invokes nothing of prod."""
    dev, prod = envs["dev"]["deploy"]["policy"], envs["prod"]["cfg"]
    devs = envs["dev"]["cfg"]
    assert devs.cdk_qualifier != prod.cdk_qualifier
    for kind in ("deploy", "file-publishing", "image-publishing", "lookup"):
        role = f"arn:aws:iam::{ACCOUNT}:role/cdk-{{}}-{kind}-role-{ACCOUNT}-{REGION}"
        assert allowed(dev, "sts:AssumeRole", role.format(devs.cdk_qualifier))
        assert not allowed(dev, "sts:AssumeRole", role.format(prod.cdk_qualifier))
    checks = [
        ("s3:GetObject", f"arn:aws:s3:::{prod.bucket_name}/models/wqi/release.json"),
        ("s3:GetObjectVersion", f"arn:aws:s3:::{prod.bucket_name}/models/wqi/model.joblib"),
        ("ecr:PutImage", f"arn:aws:ecr:{REGION}:{ACCOUNT}:repository/{prod.repository_name}"),
        ("lambda:GetAlias", f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:waterml-prod-wqi:live"),
        ("lambda:InvokeFunction", f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:waterml-prod-wqi"),
    ]
    for action, resource in checks:
        assert not allowed(dev, action, resource), (action, resource)


def test_prod_ships_devs_verified_image_and_cannot_write_it(envs) -> None:
    prod, dev = envs["prod"]["deploy"]["policy"], envs["dev"]["cfg"]
    repo = f"arn:aws:ecr:{REGION}:{ACCOUNT}:repository/{dev.repository_name}"
    assert envs["prod"]["cfg"].image_source == "dev"
    assert allowed(prod, "ecr:BatchGetImage", repo)
    assert allowed(prod, "ecr:DescribeImages", repo)
    assert not allowed(prod, "ecr:PutImage", repo)
    prods = f"arn:aws:ecr:{REGION}:{ACCOUNT}:repository/waterml-prod-inference"
    assert not allowed(envs["dev"]["deploy"]["policy"], "ecr:BatchGetImage", prods)


@pytest.mark.parametrize("env", ["dev", "prod"])
def test_the_execution_policy_file_is_the_generated_one(envs, env) -> None:
    from waterml_infra.ci.bootstrap_policy import path, render

    assert path(env).read_text() == render(envs[env]["cfg"]), (
        f"run: PYTHONPATH=infra .venv/bin/python -m waterml_infra.ci.bootstrap_policy {env} --write"
    )


@pytest.mark.parametrize("env", ["dev", "prod"])
def test_a_deploy_cannot_change_the_stack_that_defines_its_permissions(envs, env) -> None:
    """CloudFormation runs a deploy with the execution policy: it may create the serving
    stacks' parts and nothing of Foundation (bucket, repository, GitHub roles, OIDC)."""
    cfg = envs[env]["cfg"]
    other = envs["prod" if env == "dev" else "dev"]["cfg"]
    from waterml_infra.ci.bootstrap_policy import policy

    statements = policy(cfg)["Statement"]  # the committed file equals it (test above)
    serving = f"arn:aws:iam::{ACCOUNT}:role/WaterMl-{env}-Serving-wqi-ExecutionRole605A-X1"
    may = [
        ("iam:CreateRole", serving),
        ("iam:PassRole", serving),
        ("lambda:CreateFunction", f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:{cfg.prefix}-wqi"),
        ("lambda:CreateAlias", f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:{cfg.prefix}-wqi:live"),
        ("codedeploy:CreateDeployment",
         f"arn:aws:codedeploy:{REGION}:{ACCOUNT}:deploymentgroup:{cfg.prefix}-wqi/live"),
        ("logs:CreateLogGroup",
         f"arn:aws:logs:{REGION}:{ACCOUNT}:log-group:/aws/lambda/{cfg.prefix}-wqi"),
        ("sqs:CreateQueue", f"arn:aws:sqs:{REGION}:{ACCOUNT}:WaterMl-{env}-Serving-wqi-Async1"),
    ]  # fmt: skip
    for action, resource in may:
        assert allowed(statements, action, resource), (action, resource)
    may_not = [
        ("iam:PutRolePolicy", f"arn:aws:iam::{ACCOUNT}:role/{cfg.deploy_role_name}"),
        ("iam:UpdateAssumeRolePolicy", f"arn:aws:iam::{ACCOUNT}:role/{cfg.promote_role_name}"),
        ("iam:CreateOpenIDConnectProvider", "*"),
        ("s3:PutBucketPolicy", f"arn:aws:s3:::{cfg.bucket_name}"),
        ("ecr:SetRepositoryPolicy",
         f"arn:aws:ecr:{REGION}:{ACCOUNT}:repository/{cfg.repository_name}"),
        ("lambda:UpdateFunctionCode",
         f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:{other.prefix}-wqi"),
        ("iam:CreateRole", f"arn:aws:iam::{ACCOUNT}:role/WaterMl-{other.name}-Serving-wqi-X"),
    ]  # fmt: skip
    for action, resource in may_not:
        assert not allowed(statements, action, resource), (action, resource)
    admin = {"iam:PolicyARN": "arn:aws:iam::aws:policy/AdministratorAccess"}
    assert not allowed(statements, "iam:AttachRolePolicy", serving, admin)
