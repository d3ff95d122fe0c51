"""Rollouts that are safe at the edges: they fit their credentials, and a fix can ship while
`live` is in alarm (the emergency path)."""

from __future__ import annotations

from typing import Any

import pytest
import yaml
from synth_helpers import released_bundle, serving_template
from waterml_infra.config import (
    DEPLOY_JOB_MINUTES,
    SESSION_MINUTES,
    ConfigError,
    load_settings,
    resolve,
)

from inference.bundle import sha256_hex
from registry.manifest import Release

from .conftest import REPO


def test_a_rollout_that_cannot_finish_in_its_job_and_session_is_refused() -> None:
    """A linear 10 %/10 min rollout takes 100 min against a 60 min job and a 1 h session."""
    with pytest.raises(ConfigError, match="cannot finish: 100 min of shifting"):
        resolve(
            load_settings(), "prod", overrides={"traffic": "linear_10_percent_every_10_minutes"}
        )
    assert resolve(load_settings(), "prod", overrides={"traffic": "canary_10_percent_30_minutes"})


def test_the_budget_is_the_deploy_jobs_and_the_sessions(templates) -> None:
    deploy = yaml.safe_load((REPO / ".github/workflows/deploy.yml").read_text())["jobs"]["deploy"]
    assert deploy["timeout-minutes"] == DEPLOY_JOB_MINUTES
    roles = templates["dev-foundation"].find_resources("AWS::IAM::Role")
    sessions = {r["Properties"].get("MaxSessionDuration") for r in roles.values()}
    assert sessions == {SESSION_MINUTES * 60}


def _group(template: dict[str, Any]) -> dict[str, Any]:
    (group,) = [r["Properties"] for r in template["Resources"].values()
                if r["Type"] == "AWS::CodeDeploy::DeploymentGroup"]  # fmt: skip
    return group


def test_the_emergency_path_ignores_the_alarms_for_one_rollout_and_keeps_the_hook() -> None:
    """Shipping a fix while `live` is in alarm: CodeDeploy would stop the fix at its start on
    the old version's alarm. With `-c emergency=true` (deploy.yml's `emergency` input) this one
    rollout does not consult the alarms; the pre-traffic hook still checks the new version."""
    bundle = released_bundle()
    release = Release("wqi", "3", "waterml-dev-models-111111111111-eu-west-1",
                      "models/wqi/model.joblib", "v-3", sha256_hex(b"x"), "", "")  # fmt: skip
    normal = _group(serving_template("dev", release, bundle))
    from synth_helpers import DIGEST
    from waterml_infra.app import build, make_app
    from waterml_infra.ci.deploy_context import context_args

    args = context_args("dev", DIGEST, release, emergency=True)
    assert "emergency=true" in args
    app = make_app({**dict(a.split("=", 1) for a in args[1::2]), "nag": "false"})
    from aws_cdk.assertions import Template

    stack = build(app)["dev"].serving["wqi"]
    emergency = _group(Template.from_stack(stack).to_json())
    assert normal["AlarmConfiguration"]["Enabled"] is True
    assert emergency["AlarmConfiguration"]["Enabled"] is False
    assert emergency["AlarmConfiguration"]["Alarms"] == normal["AlarmConfiguration"]["Alarms"]
    alias = Template.from_stack(stack).find_resources("AWS::Lambda::Alias")
    (policy,) = [a["UpdatePolicy"] for a in alias.values()]
    assert policy["CodeDeployLambdaAliasUpdate"]["BeforeAllowTrafficHook"]
    with pytest.raises(Exception, match="one deploy's"):
        build(make_app({"nag": "false", "emergency": "true"}))
