"""Per-environment settings: one stack class per part, parameterised by an `EnvConfig`, and one
serving stack per model, parameterised by a `ModelConfig`.

The settings live in `infra/cdk.json` under the context key `waterml`: `defaults` applies to
every environment and `environments.<name>` overrides it. `models` lists the served models
(adding one to an environment is one line); `model_settings.<model>` overrides any per-function
setting (`FunctionSettings`) for one model, in `defaults` or in an environment. Any key can also
be overridden for one synth/deploy with `-c waterml.<env>.<key>=<value>`.

    python -m waterml_infra.config <env> [--account A] [--github-output]
    python -m waterml_infra.config <env> --model <name> [--account A] [--github-output]

print the derived resource names (bucket, repository, roles, models; with `--model` that model's
function, stack, keys...) so the workflows and this app agree on them.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import re
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from inference import signature
from inference.bundle import is_model_name, model_name_problem
from inference.contract import LIVE_ALIAS, log_group
from registry.manifest import bundle_key, manifest_key, signature_key

CDK_JSON = Path(__file__).resolve().parent.parent / "cdk.json"
CONTEXT_KEY = "waterml"
# `-c emergency=true`: one deploy's rollout ignores the rollback alarms (app, deploy_context).
EMERGENCY_KEY = "emergency"
# What one rollout has to fit in: deploy.yml's deploy job (timeout-minutes) and the GitHub
# OIDC role session it runs with (the roles' MaxSessionDuration).
DEPLOY_JOB_MINUTES = 60
SESSION_MINUTES = 60
# Besides the traffic shift and the hook: CloudFormation's update, the version's publication
# and its provisioned concurrency (an estimate, kept generous).
ROLLOUT_OVERHEAD_MINUTES = 15
# An environment without signing_public_key synthesizes, and its function refuses every release
# with this message (inference/signature.py cannot read it as a key); no release deploys there.
UNPINNED_KEY = "unset: signing_public_key in infra/cdk.json (python -m registry public-key)"
# Offline synth needs an account and region; nothing is looked up with them.
DUMMY_ACCOUNT = "111111111111"
DUMMY_REGION = "eu-west-1"
ARCHITECTURES = ("x86_64", "arm64")
# Firehose's own delivery logs (the drift job's stream, `<prefix><function>-drift`): AWS's
# convention, and the prefix the bootstrap execution policy lets CloudFormation create.
DELIVERY_LOGS = "/aws/kinesisfirehose/"
HOOK_SUFFIX = "-pretraffic"
_NAME = re.compile(r"^[a-z][a-z0-9-]{0,20}$")
_REPO = re.compile(r"^[A-Za-z0-9_.-]+/[A-Za-z0-9_.-]+$")
_QUALIFIER = re.compile(r"^[a-z0-9]{1,10}$")
LAMBDA_NAME_MAX = 64
# The retention periods CloudWatch Logs offers (the ones constructs/log_groups.py maps).
RETENTION_DAYS = (1, 3, 5, 7, 14, 30, 60, 90, 180, 365, 731)

SNAPSTART_REFUSED = (
    "snapstart: Lambda SnapStart supports managed runtimes only (Python 3.12 and later) and "
    "not container images (PackageType Image), which is how every function here is deployed; "
    "set snapstart to false"
)

# CodeDeploy's predefined Lambda deployment configurations, by the name cdk.json uses.
TRAFFIC_PATTERNS: dict[str, str] = {
    "all_at_once": "CodeDeployDefault.LambdaAllAtOnce",
    "canary_10_percent_5_minutes": "CodeDeployDefault.LambdaCanary10Percent5Minutes",
    "canary_10_percent_10_minutes": "CodeDeployDefault.LambdaCanary10Percent10Minutes",
    "canary_10_percent_15_minutes": "CodeDeployDefault.LambdaCanary10Percent15Minutes",
    "canary_10_percent_30_minutes": "CodeDeployDefault.LambdaCanary10Percent30Minutes",
    "linear_10_percent_every_1_minute": "CodeDeployDefault.LambdaLinear10PercentEvery1Minute",
    "linear_10_percent_every_2_minutes": "CodeDeployDefault.LambdaLinear10PercentEvery2Minutes",
    "linear_10_percent_every_3_minutes": "CodeDeployDefault.LambdaLinear10PercentEvery3Minutes",
    "linear_10_percent_every_10_minutes": "CodeDeployDefault.LambdaLinear10PercentEvery10Minutes",
}


class ConfigError(ValueError):
    """The environment configuration is unusable."""


def traffic_minutes(traffic: str) -> int:
    """How long CodeDeploy's pattern shifts traffic: a canary's bake, or ten linear steps."""
    minutes = re.search(r"(\d+)_minutes?$", traffic)
    if minutes is None:  # all_at_once
        return 0
    return int(minutes.group(1)) * (10 if traffic.startswith("linear_") else 1)


def rollout_problems(traffic: str, function_timeout_seconds: int) -> list[str]:
    """A rollout must finish inside the deploy job and the OIDC session: a pattern that
    cannot would be cut off half-way (the job killed, or its credentials expired)."""
    budget = min(DEPLOY_JOB_MINUTES, SESSION_MINUTES)
    hook = hook_timeout_seconds(function_timeout_seconds) / 60
    needed = traffic_minutes(traffic) + hook + ROLLOUT_OVERHEAD_MINUTES
    if needed <= budget:
        return []
    return [
        f"traffic {traffic!r} cannot finish: {traffic_minutes(traffic)} min of shifting + "
        f"{hook:g} min of pre-traffic hook + {ROLLOUT_OVERHEAD_MINUTES} min of CloudFormation "
        f"> {budget} min (the deploy job and the OIDC session); choose a shorter pattern"
    ]


def hook_timeout_seconds(function_timeout_seconds: int) -> int:
    """The pre-traffic hook's timeout: a cold start of the new version plus one invocation per
    event shape (inference.pretraffic), at most Lambda's 900 s."""
    return min(900, 60 + 4 * function_timeout_seconds)


def stack_safe(model: str) -> str:
    """A model name as a CloudFormation stack name may spell it. The registry's names allow
    '_', stack names do not, so '_' becomes '-'; every other name (Lambda function, CodeDeploy
    application, log group, S3 key, metric dimension) keeps the model's own spelling, and two
    models whose stack names would be equal are refused."""
    return model.replace("_", "-")


@dataclasses.dataclass(frozen=True, kw_only=True)
class FunctionSettings:
    """Settings of one model's function: set per environment, overridable per model
    (`model_settings.<model>`). Defaults are the safe choice."""

    memory_mb: int = 1024
    timeout_seconds: int = 30
    reserved_concurrency: int | None = None
    provisioned_concurrency: int = 0
    # Lambda SnapStart. Refused: AWS supports it on managed runtimes only (Python 3.12+), not on
    # container images, and this app deploys the image (infra/README.md, "SnapStart").
    snapstart: bool = False
    warmup_minutes: int = 0  # 0: no warm-up schedule
    log_retention_days: int = 30
    log_level: str = "INFO"
    # Asynchronous invocation
    async_retry_attempts: int = 2
    async_max_event_age_seconds: int = 3600
    failure_queue_retention_days: int = 14
    # Alarms (the rollback alarms of the deployment group and the failure-queue alarm)
    errors_threshold: int = 1
    throttles_threshold: int = 1
    p99_duration_threshold_ms: int = 3000
    # Evidence of a rollout: the invocations its version must have served through `live`
    # since its publication, or `status` says UNOBSERVED (exit 6) and the deploy job fails.
    # 0: none asked (an all-at-once rollout with no canary).
    rollout_evidence_invocations: int = 0
    # Inference faults (the handler's InferenceError metric) per 100 invocations of `live`.
    inference_error_rate_percent: float = 5.0
    # Monitoring (constructs/monitoring.py): the dashboard and the model alarms. Each period
    # with fewer readings than monitoring_min_readings of the deployed version reads as no breach.
    monitoring_period_minutes: int = 5
    monitoring_min_readings: int = 100
    # Out-of-domain readings per 100 readings, for out_of_domain_periods periods in a row.
    out_of_domain_rate_percent: float = 20.0
    out_of_domain_periods: int = 3
    # Total variation distance between the answers' mix of one period and the training mix.
    answer_mix_distance: float = 0.25
    # True: the answer-mix alarm is a rollback alarm of the deployment group.
    answer_mix_rollback: bool = False
    # The share of readings the handler writes to the prediction log (PREDICTION_LOG_RATE).
    prediction_log_rate: float = 0.01
    # The scheduled drift report (waterml_infra/constructs/drift_job.py): every this many hours,
    # over the last drift_window_days of the prediction log; 0 hours: no job (no log to S3).
    # It reads the prediction log, so prediction_log_rate 0 needs drift_schedule_hours 0 too
    # (refused otherwise: turning the log off never silently turns the drift report off).
    drift_schedule_hours: int = 24
    drift_window_days: int = 7

    def function_problems(self) -> list[str]:
        problems: list[str] = []
        if not 128 <= self.memory_mb <= 10240:
            problems.append("memory_mb must be within 128..10240")
        if not 1 <= self.timeout_seconds <= 900:
            problems.append("timeout_seconds must be within 1..900")
        if self.log_retention_days not in RETENTION_DAYS:
            problems.append(f"log_retention_days must be one of {list(RETENTION_DAYS)}")
        if not 0 <= self.async_retry_attempts <= 2:
            problems.append("async_retry_attempts must be within 0..2")
        if not 60 <= self.async_max_event_age_seconds <= 21600:
            problems.append("async_max_event_age_seconds must be within 60..21600")
        if self.reserved_concurrency is not None and self.reserved_concurrency < 1:
            problems.append("reserved_concurrency must be positive (or null for unreserved)")
        if self.provisioned_concurrency < 0 or self.warmup_minutes < 0:
            problems.append("provisioned_concurrency and warmup_minutes must not be negative")
        if (
            self.reserved_concurrency is not None
            and self.provisioned_concurrency > self.reserved_concurrency
        ):
            problems.append("provisioned_concurrency cannot exceed reserved_concurrency")
        if self.snapstart:
            problems.append(SNAPSTART_REFUSED)
        if self.rollout_evidence_invocations < 0:
            problems.append("rollout_evidence_invocations must not be negative")
        if min(self.errors_threshold, self.throttles_threshold, self.p99_duration_threshold_ms) < 1:
            problems.append("alarm thresholds must be at least 1")
        if not 0 < self.inference_error_rate_percent <= 100:
            problems.append("inference_error_rate_percent must be within (0, 100]")
        problems += self._monitoring_problems()
        return problems

    def _monitoring_problems(self) -> list[str]:
        problems: list[str] = []
        if not 1 <= self.monitoring_period_minutes <= 60:
            problems.append("monitoring_period_minutes must be within 1..60")
        elif not 1 <= self.out_of_domain_periods <= 24 * 60 // self.monitoring_period_minutes:
            problems.append("out_of_domain_periods must be at least 1 and span at most a day")
        if self.monitoring_min_readings < 1:
            problems.append("monitoring_min_readings must be at least 1")
        if not 0 < self.out_of_domain_rate_percent <= 100:
            problems.append("out_of_domain_rate_percent must be within (0, 100]")
        if not 0 < self.answer_mix_distance <= 1:
            problems.append("answer_mix_distance must be within (0, 1]")
        if not 0 <= self.prediction_log_rate <= 1:  # also refuses nan
            problems.append("prediction_log_rate must be within 0..1 (0: off)")
        if not 0 <= self.drift_schedule_hours <= 24 * 7:
            problems.append("drift_schedule_hours must be within 0..168 (0: no drift job)")
        if not 1 <= self.drift_window_days <= 90:
            problems.append("drift_window_days must be within 1..90")
        elif self.drift_schedule_hours and self.drift_window_days > self.log_retention_days:
            problems.append(
                f"drift_window_days ({self.drift_window_days}) must not exceed "
                f"log_retention_days ({self.log_retention_days}): the prediction log in S3 "
                "expires after log_retention_days"
            )
        if self.drift_schedule_hours and not self.prediction_log_rate:
            problems.append(
                "a drift job needs a prediction log: prediction_log_rate is 0 while "
                f"drift_schedule_hours is {self.drift_schedule_hours}; set drift_schedule_hours "
                "to 0 too (no drift job), or prediction_log_rate above 0"
            )
        return problems


FUNCTION_SETTINGS = tuple(f.name for f in dataclasses.fields(FunctionSettings))


@dataclasses.dataclass(frozen=True, kw_only=True)
class EnvConfig(FunctionSettings):
    """Everything that differs between dev and prod. Defaults are the safe choice."""

    name: str
    account: str = DUMMY_ACCOUNT
    region: str = DUMMY_REGION
    project: str = "waterml"
    # The served models: one function, alias, deployment group and stack each.
    models: tuple[str, ...] = ("wqi", "potability")
    # model name -> {FunctionSettings field: value}, applied over this environment's settings.
    model_settings: Mapping[str, Mapping[str, Any]] = dataclasses.field(
        default_factory=dict, hash=False
    )
    # CodeDeploy's traffic shifting of every `live` alias (a key of TRAFFIC_PATTERNS).
    traffic: str = "all_at_once"
    github_repo: str = "example-org/waterml"
    # The workflows' jobs for this environment run in the GitHub Environment of its name, and
    # its roles trust only that environment's OIDC subject (repo:<repo>:environment:<name>).
    # The CDK bootstrap of this environment (its own roles and execution policy, one per
    # environment even in a shared account); default "wml" + the environment's name.
    bootstrap_qualifier: str | None = None
    # Build once: the environment whose verified image this one ships (prod: dev), never
    # building one of its own. None: this environment builds the image.
    image_source: str | None = None
    # True: this stack creates the account-wide GitHub OIDC provider. Only one stack per
    # account may do so; the others import it by its well-known ARN.
    create_oidc_provider: bool = True
    architecture: str = "x86_64"
    # Model bucket
    noncurrent_versions_to_retain: int = 10
    noncurrent_version_expiration_days: int = 30
    access_log_retention_days: int = 365
    # ECR
    ecr_max_images: int = 50
    # An existing SNS topic (e.g. your paging integration) notified when an alarm fires.
    alarm_topic_arn: str | None = None
    termination_protection: bool = False
    # The PEM public key of the environment's release-signing KMS key (Foundation stack,
    # signing_key_alias): the function and the pre-traffic hook verify every release with it,
    # with no KMS call. `python -m registry public-key` (WATERML_SIGNING_KEY=kms:<alias>) prints it.
    # Required to deploy a release; unset, an offline synth pins a key nothing verifies with.
    signing_public_key: str | None = None
    # The team's MLflow on AWS (waterml_infra/stacks/tracking.py, WaterMl-<env>-Tracking): opt-in,
    # because a SageMaker managed tracking server is billed per hour whether used or not.
    tracking_server: bool = False
    # The IAM roles that train against it (data scientists' SSO roles, a training job's role):
    # each gets waterml_infra/stacks/tracking.py's TRAIN_ACTIONS, the UI and artifact writes.
    tracking_trainer_roles: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        problems: list[str] = []
        if not _NAME.match(self.name):
            problems.append(f"environment name {self.name!r} must match {_NAME.pattern}")
        if not _NAME.match(self.project):
            problems.append(f"project {self.project!r} must match {_NAME.pattern}")
        if not re.fullmatch(r"\d{12}", self.account):
            problems.append(f"account {self.account!r} must be 12 digits")
        if self.architecture not in ARCHITECTURES:
            problems.append(f"architecture must be one of {ARCHITECTURES}")
        if not _REPO.match(self.github_repo):
            problems.append(f"github_repo {self.github_repo!r} must be owner/name")
        if not _QUALIFIER.match(self.cdk_qualifier):
            problems.append(
                f"bootstrap_qualifier {self.cdk_qualifier!r} must match {_QUALIFIER.pattern} (CDK)"
            )
        if self.image_source is not None and (
            self.image_source == self.name or not _NAME.match(self.image_source)
        ):
            problems.append(f"image_source {self.image_source!r} must name another environment")
        if self.noncurrent_versions_to_retain < 1 or self.noncurrent_versions_to_retain > 100:
            problems.append("noncurrent_versions_to_retain must be within 1..100")
        if self.alarm_topic_arn and not self.alarm_topic_arn.startswith("arn:aws:sns:"):
            problems.append("alarm_topic_arn must be an SNS topic ARN")
        if self.signing_public_key is not None:
            try:
                signature.public_key_der(self.signing_public_key)
            except signature.SignatureError as exc:
                problems.append(f"signing_public_key: {exc}")
        for arn in self.tracking_trainer_roles:
            if not re.fullmatch(r"arn:aws[a-z-]*:iam::\d{12}:role/[\w+=,.@/-]+", arn):
                problems.append(f"tracking_trainer_roles: {arn!r} is not an IAM role ARN")
        if self.traffic not in TRAFFIC_PATTERNS:
            problems.append(
                f"traffic {self.traffic!r} is not a CodeDeploy pattern; known: "
                + ", ".join(TRAFFIC_PATTERNS)
            )
        else:
            # A model's own timeout_seconds moves its hook by at most 15 min (900 s): every
            # pattern that fits with the environment's fits with it (30 + 15 + 15 <= 60).
            problems += rollout_problems(self.traffic, self.timeout_seconds)
        problems += self.function_problems()
        problems += self._model_problems()
        if problems:
            raise ConfigError(f"environment {self.name!r}: " + "; ".join(problems))
        for model in self.models:  # each model's merged settings must hold on their own
            self.model(model)

    def _model_problems(self) -> list[str]:
        problems: list[str] = []
        if not self.models:
            problems.append("models must list at least one model")
        seen: dict[str, str] = {}  # stack-safe name -> model
        functions = {self._function_name(m): m for m in self.models}
        for model in self.models:
            if not is_model_name(model):
                problems.append(model_name_problem(model))
                continue
            if model in seen.values():
                problems.append(f"models lists {model!r} twice")
                continue
            hook = self._function_name(model) + HOOK_SUFFIX
            if len(hook) > LAMBDA_NAME_MAX:
                problems.append(
                    f"model name {model!r} is too long: Lambda names have at most "
                    f"{LAMBDA_NAME_MAX} characters ({hook})"
                )
            if hook in functions:
                problems.append(
                    f"model {functions[hook]!r} would be named {hook}, the name of {model!r}'s "
                    "pre-traffic hook: rename one of them"
                )
            other = seen.get(stack_safe(model))
            if other is not None:
                problems.append(
                    f"models {other!r} and {model!r} would share the stack "
                    f"{self.stack_name('Serving-' + stack_safe(model))} ('_' becomes '-' in "
                    "stack names): rename one of them"
                )
            seen[stack_safe(model)] = model
        for model, overrides in self.model_settings.items():
            if model not in self.models:
                problems.append(
                    f"model_settings names {model!r}, which is not in models {list(self.models)}"
                )
            unknown = sorted(set(overrides) - set(FUNCTION_SETTINGS))
            if unknown:
                problems.append(
                    f"model_settings.{model}: unknown setting(s) {unknown}; known: "
                    + ", ".join(FUNCTION_SETTINGS)
                )
        return problems

    # Per-model configuration -----------------------------------------------------------
    def model(self, name: str) -> ModelConfig:
        """`name`'s settings: this environment's, overridden by `model_settings.<name>`."""
        if name not in self.models:
            raise ConfigError(
                f"environment {self.name!r} serves no model {name!r}; models: {list(self.models)}"
            )
        settings = {field: getattr(self, field) for field in FUNCTION_SETTINGS}
        overrides = self.model_settings.get(name, {})
        settings.update({k: _coerce(k, v) for k, v in overrides.items()})
        return ModelConfig(env=self, name=name, **settings)

    def _function_name(self, model: str) -> str:
        return f"{self.prefix}-{model}"

    # Names shared by the stack and the workflows --------------------------------------
    @property
    def prefix(self) -> str:
        return f"{self.project}-{self.name}"

    @property
    def bucket_name(self) -> str:
        return f"{self.prefix}-models-{self.account}-{self.region}"

    @property
    def access_log_bucket_name(self) -> str:
        return f"{self.prefix}-access-logs-{self.account}-{self.region}"

    @property
    def repository_name(self) -> str:
        return self._repository(self.name)

    def _repository(self, env: str) -> str:
        return f"{self.project}-{env}-inference"

    @property
    def source_repository_name(self) -> str | None:
        """The repository of the environment whose verified images this one ships."""
        return self._repository(self.image_source) if self.image_source else None

    @property
    def cdk_qualifier(self) -> str:
        """This environment's CDK bootstrap qualifier: its bootstrap roles are its own."""
        return self.bootstrap_qualifier or ("wml" + re.sub(r"[^a-z0-9]", "", self.name))[:10]

    @property
    def github_environment(self) -> str:
        """The GitHub Environment the workflows' jobs for this environment run in."""
        return self.name

    @property
    def github_subject(self) -> str:
        """The OIDC `sub` of a job in that GitHub Environment (what the roles trust)."""
        return f"repo:{self.github_repo}:environment:{self.github_environment}"

    @property
    def deploy_role_name(self) -> str:
        return f"{self.prefix}-github-deploy"

    @property
    def promote_role_name(self) -> str:
        return f"{self.prefix}-github-promote"

    @property
    def signing_key_alias(self) -> str:
        """The KMS key promotion signs releases with (WATERML_SIGNING_KEY=kms:alias/...)."""
        return f"alias/{self.prefix}-release-signing"

    @property
    def platform(self) -> str:
        return "linux/arm64" if self.architecture == "arm64" else "linux/amd64"

    @property
    def deployment_config_name(self) -> str:
        return TRAFFIC_PATTERNS[self.traffic]

    def stack_name(self, part: str) -> str:
        return f"WaterMl-{self.name}-{part}"

    def function_arn(self, function_name: str, *, qualified: bool = False) -> str:
        arn = f"arn:aws:lambda:{self.region}:{self.account}:function:{function_name}"
        return arn + ":*" if qualified else arn

    def names(self) -> dict[str, str]:
        return {
            "environment": self.name,
            "account": self.account,
            "region": self.region,
            "models": json.dumps(list(self.models), separators=(",", ":")),
            "bucket": self.bucket_name,
            "repository": self.repository_name,
            "architecture": self.architecture,
            "platform": self.platform,
            "traffic": self.traffic,
            "github_environment": self.github_environment,
            "cdk_qualifier": self.cdk_qualifier,
            "image_source": self.image_source or "",
            "source_repository": self.source_repository_name or "",
            "deploy_role_arn": f"arn:aws:iam::{self.account}:role/{self.deploy_role_name}",
            "promote_role_arn": f"arn:aws:iam::{self.account}:role/{self.promote_role_name}",
            "signing_key": f"kms:{self.signing_key_alias}",
            "foundation_stack": self.stack_name("Foundation"),
        }


@dataclasses.dataclass(frozen=True, kw_only=True)
class ModelConfig(FunctionSettings):
    """One served model in one environment: the environment's settings merged with the
    model's overrides (build with `EnvConfig.model`)."""

    env: EnvConfig
    name: str

    def __post_init__(self) -> None:
        problems = self.function_problems()
        if problems:
            raise ConfigError(
                f"environment {self.env.name!r}, model {self.name!r}: " + "; ".join(problems)
            )

    @property
    def function_name(self) -> str:
        return self.env._function_name(self.name)

    @property
    def hook_function_name(self) -> str:
        return self.function_name + HOOK_SUFFIX

    @property
    def stack_name(self) -> str:
        return self.env.stack_name(f"Serving-{stack_safe(self.name)}")

    @property
    def model_key(self) -> str:
        return bundle_key(self.name)

    @property
    def release_key(self) -> str:
        return manifest_key(self.name)

    @property
    def signature_key(self) -> str:
        return signature_key(self.name)

    @property
    def public_key(self) -> str:
        """What the function and the hook verify releases with (MODEL_SIGNING_PUBLIC_KEY)."""
        return self.env.signing_public_key or UNPINNED_KEY

    @property
    def log_group_name(self) -> str:
        return log_group(self.function_name)

    @property
    def service_name(self) -> str:
        """POWERTOOLS_SERVICE_NAME: the `service` dimension of the handler's EMF metrics."""
        return self.function_name

    @property
    def codedeploy_application(self) -> str:
        return self.function_name

    @property
    def deployment_group(self) -> str:
        return LIVE_ALIAS

    def function_arn(self, *, qualified: bool = False) -> str:
        return self.env.function_arn(self.function_name, qualified=qualified)

    def names(self) -> dict[str, str]:
        return {
            "model_name": self.name,
            "function_name": self.function_name,
            "serving_stack": self.stack_name,
            "model_key": self.model_key,
            "release_key": self.release_key,
            "log_group": self.log_group_name,
            "alias": LIVE_ALIAS,
            "codedeploy_application": self.codedeploy_application,
            "deployment_group": self.deployment_group,
            "pretraffic_function": self.hook_function_name,
        }


_FIELDS = {f.name: f for f in dataclasses.fields(EnvConfig)}


def _coerce(key: str, value: Any) -> Any:
    """Context given on the command line arrives as strings: convert to the field's type."""
    if key not in _FIELDS:
        raise ConfigError(f"unknown setting {key!r}")
    kind = str(_FIELDS[key].type)
    if key == "models":
        return _models(value)
    if key == "model_settings":
        return _model_settings(value)
    if key == "tracking_trainer_roles":  # a JSON list of role ARNs
        return tuple(_json(value, key) if isinstance(value, str) else value)
    if not isinstance(value, str):
        return value
    if kind == "bool":
        if value.lower() not in {"true", "false"}:
            raise ConfigError(f"{key} must be true or false, got {value!r}")
        return value.lower() == "true"
    if kind.startswith(("int", "float")):
        if value.lower() in {"", "none", "null"} and "None" in kind:
            return None
        try:
            return float(value) if kind.startswith("float") else int(value)
        except ValueError as exc:
            raise ConfigError(f"{key} must be a number, got {value!r}") from exc
    return value


def _models(value: Any) -> tuple[str, ...]:
    """A JSON list, or (on the command line) a JSON list or comma-separated names."""
    if isinstance(value, str):
        text = value.strip()
        value = _json(text, "models") if text.startswith("[") else text.split(",")
    if not isinstance(value, list | tuple) or not all(isinstance(m, str) for m in value):
        raise ConfigError(f"models must be a list of model names, got {value!r}")
    return tuple(m.strip() for m in value)


def _model_settings(value: Any) -> dict[str, dict[str, Any]]:
    if isinstance(value, str):
        value = _json(value, "model_settings")
    if not isinstance(value, Mapping) or not all(isinstance(v, Mapping) for v in value.values()):
        raise ConfigError("model_settings must map model names to objects of settings")
    return {str(k): dict(v) for k, v in value.items()}


def _json(text: str, key: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise ConfigError(f"{key} is not valid JSON: {exc}") from exc


def load_settings(path: Path = CDK_JSON) -> dict[str, Any]:
    """The `waterml` block of cdk.json."""
    return dict(json.loads(path.read_text())["context"][CONTEXT_KEY])


def resolve(
    settings: Mapping[str, Any],
    env_name: str,
    *,
    overrides: Mapping[str, Any] | None = None,
    account: str | None = None,
    region: str | None = None,
) -> EnvConfig:
    """Merge defaults, the environment's block and overrides into an `EnvConfig`.

    `model_settings` merges per model: an environment overrides single keys of a model's
    defaults, not the model's whole block.
    """
    environments = settings.get("environments", {})
    if env_name not in environments:
        raise ConfigError(f"unknown environment {env_name!r}; known: {sorted(environments)}")
    merged: dict[str, Any] = {}
    model_settings: dict[str, dict[str, Any]] = {}
    for layer in (settings.get("defaults", {}), environments[env_name], overrides or {}):
        for key, value in layer.items():
            coerced = _coerce(key, value)
            if key == "model_settings":
                for model, values in coerced.items():
                    model_settings.setdefault(model, {}).update(values)
            else:
                merged[key] = coerced
    merged["model_settings"] = model_settings
    # Precedence for the target account: explicit config, then the CLI's credentials,
    # then a dummy so that synth works offline.
    merged["account"] = str(merged.get("account") or account or DUMMY_ACCOUNT)
    merged["region"] = str(merged.get("region") or region or DUMMY_REGION)
    merged["name"] = env_name
    try:
        return EnvConfig(**merged)
    except TypeError as exc:  # a mistyped value (e.g. a list where a number belongs)
        raise ConfigError(f"environment {env_name!r}: {exc}") from exc


def check_isolation(configs: list[EnvConfig]) -> None:
    """Environments sharing an account must not share a CDK bootstrap (one qualifier each:
    else one environment's deploy role could assume the other's bootstrap roles), nor name
    resources one another's patterns match (`waterml-prod-*` would match a `prod-eu`).

    Raises:
        ConfigError: two environments would reach each other's resources or bootstrap.
    """
    problems = []
    for i, one in enumerate(configs):
        for other in configs[i + 1 :]:
            if one.account != other.account:
                continue
            if one.cdk_qualifier == other.cdk_qualifier:
                problems.append(
                    f"{one.name} and {other.name} share the CDK bootstrap qualifier "
                    f"{one.cdk_qualifier!r} in account {one.account}: set bootstrap_qualifier"
                )
            for a, b in ((one, other), (other, one)):
                if b.prefix.startswith(a.prefix + "-"):
                    problems.append(
                        f"{a.name}'s names ({a.prefix}-*) would match {b.name}'s ({b.prefix}-*)"
                    )
        if one.image_source is not None and one.image_source not in {c.name for c in configs}:
            problems.append(f"{one.name}: image_source {one.image_source!r} is not an environment")
    if problems:
        raise ConfigError("; ".join(problems))


def environment_names(settings: Mapping[str, Any]) -> list[str]:
    return list(settings.get("environments", {}))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("environment")
    parser.add_argument("--model", help="print this served model's names instead")
    parser.add_argument("--account", help="the target account (e.g. from sts get-caller-identity)")
    parser.add_argument("--region")
    parser.add_argument(
        "--github-output",
        action="store_true",
        help="append key=value lines to $GITHUB_OUTPUT as well as printing JSON",
    )
    args = parser.parse_args(argv)
    settings = load_settings()
    try:
        cfg = resolve(
            settings,
            args.environment,
            account=args.account or os.environ.get("CDK_DEFAULT_ACCOUNT"),
            region=args.region or os.environ.get("AWS_REGION"),
        )
        names = cfg.model(args.model).names() if args.model is not None else cfg.names()
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if args.github_output:
        # A workflow must never fall back to the dummy account or a guessed region.
        chosen = {**settings.get("defaults", {}), **settings["environments"][cfg.name]}
        if not (chosen.get("account") or args.account) or not (chosen.get("region") or args.region):
            print(
                f"error: no AWS account/region for environment {cfg.name!r}: set "
                f'"account" and "region" under waterml.environments.{cfg.name} in infra/cdk.json',
                file=sys.stderr,
            )
            return 2
        target = os.environ.get("GITHUB_OUTPUT")
        if not target:
            print("error: GITHUB_OUTPUT is not set", file=sys.stderr)
            return 2
        with open(target, "a", encoding="utf-8") as out:
            out.writelines(f"{k}={v}\n" for k, v in names.items())
    print(json.dumps(names, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
