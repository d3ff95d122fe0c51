"""Per-environment settings: one stack class, parameterised by an `EnvConfig`.

The settings live in `infra/cdk.json` under the context key `waterml`:
`defaults` applies to every environment and `environments.<name>` overrides it. Any key can
also be overridden for one synth/deploy with `-c waterml.<env>.<key>=<value>`.

`python -m waterml_infra.config <env> [--account A] [--github-output]` prints the derived
resource names (bucket, repository, function...) so the workflows and this app agree on them.
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

from registry.manifest import bundle_key, manifest_key

CDK_JSON = Path(__file__).resolve().parent.parent / "cdk.json"
CONTEXT_KEY = "waterml"
# Offline synth needs an account and region; nothing is looked up with them.
DUMMY_ACCOUNT = "111111111111"
DUMMY_REGION = "eu-west-1"
ARCHITECTURES = ("x86_64", "arm64")
_NAME = re.compile(r"^[a-z][a-z0-9-]{0,20}$")
_REPO = re.compile(r"^[A-Za-z0-9_.-]+/[A-Za-z0-9_.-]+$")


class ConfigError(ValueError):
    """The environment configuration is unusable."""


@dataclasses.dataclass(frozen=True)
class EnvConfig:
    """Everything that differs between dev and prod. Defaults are the safe choice."""

    name: str
    account: str = DUMMY_ACCOUNT
    region: str = DUMMY_REGION
    project: str = "waterml"
    model_name: str = "wqi"
    github_repo: str = "example-org/waterml"
    github_branch: str = "main"
    # True: this stack creates the account-wide GitHub OIDC provider. Only one stack per
    # account may do so; the others import it by its well-known ARN.
    create_oidc_provider: bool = True
    # Lambda
    memory_mb: int = 1024
    timeout_seconds: int = 30
    architecture: str = "x86_64"
    reserved_concurrency: int | None = None
    provisioned_concurrency: int = 0
    warmup_minutes: int = 0  # 0: no warm-up schedule
    log_retention_days: int = 30
    log_level: str = "INFO"
    # Asynchronous invocation
    async_retry_attempts: int = 2
    async_max_event_age_seconds: int = 3600
    failure_queue_retention_days: int = 14
    # Model bucket
    noncurrent_versions_to_retain: int = 10
    noncurrent_version_expiration_days: int = 30
    access_log_retention_days: int = 365
    # ECR
    ecr_max_images: int = 50
    # Alarms
    errors_threshold: int = 1
    throttles_threshold: int = 1
    p99_duration_threshold_ms: int = 3000
    # An existing SNS topic (e.g. your paging integration) notified when an alarm fires.
    alarm_topic_arn: str | None = None
    termination_protection: bool = False

    def __post_init__(self) -> None:
        problems: list[str] = []
        if not _NAME.match(self.name):
            problems.append(f"environment name {self.name!r} must match {_NAME.pattern}")
        if not _NAME.match(self.model_name):
            problems.append(f"model_name {self.model_name!r} must match {_NAME.pattern}")
        if not re.fullmatch(r"\d{12}", self.account):
            problems.append(f"account {self.account!r} must be 12 digits")
        if self.architecture not in ARCHITECTURES:
            problems.append(f"architecture must be one of {ARCHITECTURES}")
        if not _REPO.match(self.github_repo):
            problems.append(f"github_repo {self.github_repo!r} must be owner/name")
        if not 128 <= self.memory_mb <= 10240:
            problems.append("memory_mb must be within 128..10240")
        if not 1 <= self.timeout_seconds <= 900:
            problems.append("timeout_seconds must be within 1..900")
        if not 0 <= self.async_retry_attempts <= 2:
            problems.append("async_retry_attempts must be within 0..2")
        if not 60 <= self.async_max_event_age_seconds <= 21600:
            problems.append("async_max_event_age_seconds must be within 60..21600")
        if self.noncurrent_versions_to_retain < 1 or self.noncurrent_versions_to_retain > 100:
            problems.append("noncurrent_versions_to_retain must be within 1..100")
        if self.reserved_concurrency is not None and self.reserved_concurrency < 1:
            problems.append("reserved_concurrency must be positive (or null for unreserved)")
        if self.provisioned_concurrency < 0 or self.warmup_minutes < 0:
            problems.append("provisioned_concurrency and warmup_minutes must not be negative")
        if (
            self.reserved_concurrency is not None
            and self.provisioned_concurrency > self.reserved_concurrency
        ):
            problems.append("provisioned_concurrency cannot exceed reserved_concurrency")
        if self.alarm_topic_arn and not self.alarm_topic_arn.startswith("arn:aws:sns:"):
            problems.append("alarm_topic_arn must be an SNS topic ARN")
        if problems:
            raise ConfigError(f"environment {self.name!r}: " + "; ".join(problems))

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
        return f"{self.prefix}-inference"

    @property
    def function_name(self) -> str:
        return f"{self.prefix}-{self.model_name}"

    @property
    def model_key(self) -> str:
        return bundle_key(self.model_name)

    @property
    def release_key(self) -> str:
        return manifest_key(self.model_name)

    @property
    def deploy_role_name(self) -> str:
        return f"{self.prefix}-github-deploy"

    @property
    def promote_role_name(self) -> str:
        return f"{self.prefix}-github-promote"

    @property
    def platform(self) -> str:
        return "linux/arm64" if self.architecture == "arm64" else "linux/amd64"

    def stack_name(self, part: str) -> str:
        return f"WaterMl-{self.name}-{part}"

    def names(self) -> dict[str, str]:
        return {
            "environment": self.name,
            "account": self.account,
            "region": self.region,
            "model_name": self.model_name,
            "bucket": self.bucket_name,
            "model_key": self.model_key,
            "release_key": self.release_key,
            "repository": self.repository_name,
            "function_name": self.function_name,
            "architecture": self.architecture,
            "platform": self.platform,
            "deploy_role_arn": f"arn:aws:iam::{self.account}:role/{self.deploy_role_name}",
            "promote_role_arn": f"arn:aws:iam::{self.account}:role/{self.promote_role_name}",
            "foundation_stack": self.stack_name("Foundation"),
            "serving_stack": self.stack_name("Serving"),
        }


_FIELDS = {f.name: f for f in dataclasses.fields(EnvConfig)}


def _coerce(key: str, value: Any) -> Any:
    """Context given on the command line arrives as strings: convert to the field's type."""
    if key not in _FIELDS:
        raise ConfigError(f"unknown setting {key!r}")
    if not isinstance(value, str):
        return value
    kind = str(_FIELDS[key].type)
    if kind == "bool":
        if value.lower() not in {"true", "false"}:
            raise ConfigError(f"{key} must be true or false, got {value!r}")
        return value.lower() == "true"
    if kind.startswith("int"):
        if value.lower() in {"", "none", "null"} and "None" in kind:
            return None
        try:
            return int(value)
        except ValueError as exc:
            raise ConfigError(f"{key} must be an integer, got {value!r}") from exc
    return value


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
    """Merge defaults, the environment's block and overrides into an `EnvConfig`."""
    environments = settings.get("environments", {})
    if env_name not in environments:
        raise ConfigError(f"unknown environment {env_name!r}; known: {sorted(environments)}")
    merged: dict[str, Any] = {}
    for layer in (settings.get("defaults", {}), environments[env_name], overrides or {}):
        merged.update({k: _coerce(k, v) for k, v in layer.items()})
    # Precedence for the target account: explicit config, then the CLI's credentials,
    # then a dummy so that synth works offline.
    merged["account"] = str(merged.get("account") or account or DUMMY_ACCOUNT)
    merged["region"] = str(merged.get("region") or region or DUMMY_REGION)
    merged["name"] = env_name
    return EnvConfig(**merged)


def environment_names(settings: Mapping[str, Any]) -> list[str]:
    return list(settings.get("environments", {}))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("environment")
    parser.add_argument("--account", help="the target account (e.g. from sts get-caller-identity)")
    parser.add_argument("--region")
    parser.add_argument(
        "--github-output",
        action="store_true",
        help="append key=value lines to $GITHUB_OUTPUT instead of printing JSON",
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
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    names = cfg.names()
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
    if args.github_output:
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
