"""Build the CDK app: per environment a Foundation stack and one Serving stack per model.

Context (all optional, so `cdk synth` works offline):
  env          one environment (dev, prod...) or a comma-separated list; default: all in cdk.json
  model        one served model (its Serving stack only, besides Foundation); default: every
               model of each selected environment
  imageDigest  sha256:... of the image in the environment's repository; default: a placeholder
  release      the release manifest as JSON (from waterml_infra.ci.deploy_context); needs exactly
               one env and one model; default: a placeholder that cannot load (synth only)
  trainingProfile  the release's training answer mix and features as JSON (from
               waterml_infra.ci.deploy_context); needs a release; without it: no answer-mix alarm
  nag          "false" to skip the cdk-nag checks (they run by default)
  waterml.<env>.<setting>=<value>  override one setting of EnvConfig for this run
"""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Mapping
from typing import Any

from aws_cdk import App, DefaultStackSynthesizer, Environment, Stack, Tags

from registry.manifest import ManifestError, Release, parse_release
from waterml_infra import nag
from waterml_infra.config import (
    CDK_JSON,
    CONTEXT_KEY,
    EMERGENCY_KEY,
    ConfigError,
    EnvConfig,
    ModelConfig,
    check_isolation,
    environment_names,
    load_settings,
    resolve,
)
from waterml_infra.stacks.foundation import FoundationStack
from waterml_infra.stacks.serving import ServingStack
from waterml_infra.stacks.tracking import add_tracking
from waterml_infra.training_mix import CONTEXT_KEY as TRAINING_KEY
from waterml_infra.training_mix import TrainingMix

PLACEHOLDER_DIGEST = "sha256:" + "0" * 64
PLACEHOLDER_VERSION_ID = "synth-placeholder"


@dataclasses.dataclass
class EnvStacks:
    config: EnvConfig
    foundation: FoundationStack
    serving: dict[str, ServingStack]  # by model name


def placeholder_release(cfg: ModelConfig) -> Release:
    return Release(
        name=cfg.name,
        mlflow_version="0",
        bucket=cfg.env.bucket_name,
        key=cfg.model_key,
        version_id=PLACEHOLDER_VERSION_ID,
        sha256="0" * 64,
        git_sha="",
        released_at="",
    )


def _overrides(context: Mapping[str, Any], env_name: str) -> dict[str, Any]:
    prefix = f"{CONTEXT_KEY}.{env_name}."
    return {k[len(prefix) :]: v for k, v in context.items() if k.startswith(prefix)}


def _release(value: Any) -> Release:
    data = json.loads(value) if isinstance(value, str) else value
    # The context form (Release.to_context): no git_sha or released_at.
    return parse_release(data, complete=False)


def cdk_json_context() -> dict[str, Any]:
    """The context block of cdk.json (settings and feature flags)."""
    return dict(json.loads(CDK_JSON.read_text())["context"])


def make_app(context: Mapping[str, Any] | None = None, **kwargs: Any) -> App:
    """An App with cdk.json's context as defaults: the CLI's context (`-c`) still wins, and
    tests or a plain `python app.py` get the same feature flags as `cdk synth`."""
    return App(context={**cdk_json_context(), **(context or {})}, **kwargs)


def build(app: App, *, settings: Mapping[str, Any] | None = None) -> dict[str, EnvStacks]:
    """Add every selected environment's stacks to `app` (context is read from the app)."""
    context: dict[str, Any] = dict(app.node.get_all_context())
    if settings is None:
        # The CDK CLI passes cdk.json's context; a plain `python app.py` does not.
        settings = context.get(CONTEXT_KEY) or load_settings()
    known = environment_names(settings)
    selected = [e for e in str(context.get("env") or ",".join(known)).split(",") if e]
    model = str(context.get("model") or "") or None
    release_ctx = context.get("release")
    if release_ctx and (len(selected) != 1 or model is None):
        raise ManifestError(
            "a release is deployed to one model of one environment: "
            "-c env=<env> -c model=<model> -c release=<json>"
        )
    # The emergency path (infra/README.md, "Shipping a fix while live is in alarm"): this one
    # rollout ignores the rollback alarms; the pre-traffic hook still decides.
    emergency = str(context.get(EMERGENCY_KEY, "false")).lower() == "true"
    if emergency and not release_ctx:
        raise ManifestError(f"{EMERGENCY_KEY} is one deploy's: give -c release=<json> too")
    training_ctx = context.get(TRAINING_KEY)
    if training_ctx and not release_ctx:
        raise ManifestError(f"{TRAINING_KEY} describes a release: give -c release=<json> too")
    training = TrainingMix.from_context(training_ctx) if training_ctx else None
    digest = str(context.get("imageDigest") or PLACEHOLDER_DIGEST)

    configs = {
        env_name: resolve(
            settings,
            env_name,
            overrides=_overrides(context, env_name),
            account=os.environ.get("CDK_DEFAULT_ACCOUNT"),
            region=os.environ.get("CDK_DEFAULT_REGION"),
        )
        for env_name in known
    }
    check_isolation(list(configs.values()))
    result: dict[str, EnvStacks] = {}
    for env_name in selected:
        if env_name not in configs:
            raise ConfigError(f"unknown environment {env_name!r}; known: {known}")
        cfg = configs[env_name]
        if model is not None and model not in cfg.models:
            raise ConfigError(
                f"environment {env_name!r} serves no model {model!r}; models: {list(cfg.models)}"
            )
        env = Environment(account=cfg.account, region=cfg.region)
        # Each environment deploys through its own CDK bootstrap (roles, execution policy).
        synth = {"synthesizer": DefaultStackSynthesizer(qualifier=cfg.cdk_qualifier)}
        foundation = FoundationStack(
            app,
            cfg.stack_name("Foundation"),
            config=cfg,
            env=env,
            **synth,
            description=f"waterml {cfg.name}: model bucket, image repository, GitHub OIDC roles",
            termination_protection=cfg.termination_protection,
        )
        _tag(foundation, cfg)
        if cfg.tracking_server:
            tracking = add_tracking(
                app,
                cfg,
                promote_role=foundation.promote_role,
                env=env,
                **synth,
                description=f"waterml {cfg.name}: the team's MLflow (SageMaker managed)",
                termination_protection=cfg.termination_protection,
            )
            tracking.add_stack_dependency(foundation)
            _tag(tracking, cfg)
        serving: dict[str, ServingStack] = {}
        for name in [model] if model is not None else cfg.models:
            model_cfg = cfg.model(name)
            stack = ServingStack(
                app,
                model_cfg.stack_name,
                config=model_cfg,
                image_digest=digest,
                release=_release(release_ctx) if release_ctx else placeholder_release(model_cfg),
                training=training,
                emergency=emergency,
                env=env,
                **synth,
                description=(
                    f"waterml {cfg.name}: {name} inference function, its live alias rolled out "
                    f"by CodeDeploy ({cfg.traffic}), alarms"
                ),
                termination_protection=cfg.termination_protection,
            )
            stack.add_stack_dependency(foundation)
            _tag(stack, cfg)
            Tags.of(stack).add("model", name)
            serving[name] = stack
        result[env_name] = EnvStacks(cfg, foundation, serving)

    if str(context.get("nag", "true")).lower() != "false":
        nag.add_checks(app)
    return result


def _tag(stack: Stack, cfg: EnvConfig) -> None:
    Tags.of(stack).add("project", cfg.project)
    Tags.of(stack).add("environment", cfg.name)
