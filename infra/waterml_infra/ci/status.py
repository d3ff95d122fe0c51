"""Released vs deployed: per model, what release.json releases and what `live` serves.

    python -m waterml_infra.ci.status --env dev [--model wqi] [--json] [--account A] [--region R]

Released: `models/<model>/release.json` in the environment's bucket (digest-checked, as every
reader reads it). Deployed: the `live` alias of the model's function, its function version
and that version's `MODEL_*` pins; during a canary, every version the alias routes to, with its
weight. They differ after CodeDeploy rolled a deployment back (release.json still names the new
model) or when a promotion has not been deployed yet. Exit codes (EXIT_CODES; with several
models the worst decides, in the order 4, 3, 5, 6):

    0  every model's live serves exactly its release
    1  AWS could not be asked (no credentials, no network, access denied)
    2  bad arguments: unknown environment or model
    3  a model's live serves something else than release.json releases
    4  a model has no readable release.json, or no function or live alias
    5  a model's live splits traffic between versions (a canary in progress)
    6  a model's live version served too few invocations to count as observed
       (fewer than the environment's rollout_evidence_invocations; waterml_infra.ci.evidence)
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
from typing import Any

from inference.contract import LIVE_ALIAS
from inference.release import PINS, pin_differences
from registry.manifest import ManifestDigestError, ManifestError, Release, read_stored
from waterml_infra.ci import evidence
from waterml_infra.config import (
    DUMMY_ACCOUNT,
    ConfigError,
    EnvConfig,
    load_settings,
    resolve,
)

IN_SYNC, UNREACHABLE, USAGE, DIFFERENT, MISSING, SHIFTING, UNOBSERVED = 0, 1, 2, 3, 4, 5, 6
EXIT_CODES = {
    IN_SYNC: "every model's live serves exactly its release",
    UNREACHABLE: "AWS could not be asked (no credentials, no network, access denied)",
    USAGE: "bad arguments: unknown environment or model",
    DIFFERENT: "a model's live serves something else than release.json releases",
    MISSING: "a model has no readable release.json, or no function or live alias",
    SHIFTING: "a model's live splits traffic between versions (a canary in progress)",
    UNOBSERVED: "a model's live version served too few invocations to count as observed",
}
# Worst first: the exit code of a run that finds several states.
SEVERITY = (MISSING, DIFFERENT, SHIFTING, UNOBSERVED, IN_SYNC)
STATES = {IN_SYNC: "in sync", DIFFERENT: "DIFFERS", MISSING: "MISSING", SHIFTING: "SHIFTING",
          UNOBSERVED: "UNOBSERVED"}  # fmt: skip
PIN_NAMES = tuple(variable for _, variable in PINS)
_NOT_FOUND = {"NoSuchKey", "NoSuchBucket", "404", "ResourceNotFoundException"}
# S3 answers a GET of a missing key with 403 AccessDenied to a caller without s3:ListBucket on
# the bucket (its documented behaviour). The deploy role has no ListBucket (least privilege:
# it reads release.json only), so for the release that answer means "no readable release".
_RELEASE_NOT_FOUND = _NOT_FOUND | {"AccessDenied", "403"}


class AwsUnreachable(Exception):
    """AWS did not answer, or refused to; the message says which call and why."""


@dataclasses.dataclass(frozen=True)
class Served:
    """One function version `live` routes to, its share of traffic and its pins."""

    version: str
    weight: float
    pins: dict[str, str]
    # Its invocations through `live` since it was published (None: not asked, evidence off).
    invocations: int | None = None


@dataclasses.dataclass(frozen=True)
class ModelStatus:
    model: str
    function_name: str
    release: Release | None
    served: list[Served]  # the alias' primary version first, then canary versions
    problems: list[str]  # why the release or the function could not be read
    evidence: int = 0  # invocations the environment asks of a rollout's version (0: none)

    def differences(self, served: Served) -> list[str]:
        return pin_differences(self.release.to_dict(), served.pins) if self.release else []

    @property
    def code(self) -> int:
        if self.release is None or not self.served:
            return MISSING
        if len(self.served) > 1:
            return SHIFTING
        if self.differences(self.served[0]):
            return DIFFERENT
        observed = self.served[0].invocations
        if self.evidence and observed is not None and observed < self.evidence:
            return UNOBSERVED
        return IN_SYNC

    @property
    def in_sync(self) -> bool:
        return self.code == IN_SYNC

    def to_dict(self) -> dict[str, Any]:
        release = self.release
        return {
            "model": self.model,
            "function": self.function_name,
            "state": STATES[self.code].lower(),
            "in_sync": self.in_sync,
            "released": None
            if release is None
            else {
                "mlflow_version": release.mlflow_version,
                "version_id": release.version_id,
                "sha256": release.sha256,
                "released_at": release.released_at,
                "action": release.action,
            },
            "live": [
                dataclasses.asdict(s) | {"differences": self.differences(s)} for s in self.served
            ],
            "problems": self.problems,
        }


def model_status(s3: Any, lambda_client: Any, env: EnvConfig, model: str,
                 cloudwatch: Any = None) -> ModelStatus:  # fmt: skip
    """`model`'s release against what its `live` alias serves (AwsUnreachable if AWS cannot
    be asked; a missing release, function or alias is a state, not an error). With the
    environment asking for rollout evidence, each served version's invocations are counted
    (``cloudwatch`` is then required)."""
    config = env.model(model)
    problems: list[str] = []
    release = _release(s3, env.bucket_name, config.release_key, problems)
    count = cloudwatch if config.rollout_evidence_invocations else None
    served = _served(lambda_client, config.function_name, problems, count)
    status = ModelStatus(model, config.function_name, release, served, problems,
                         config.rollout_evidence_invocations)  # fmt: skip
    if status.code == UNOBSERVED:
        problems.append(
            f"unobserved: version {served[0].version} served {served[0].invocations} "
            f"invocation(s) through {LIVE_ALIAS} since it was published; {env.name} asks "
            f"{config.rollout_evidence_invocations} as evidence of a rollout"
        )
    return status


def _release(s3: Any, bucket: str, key: str, problems: list[str]) -> Release | None:
    where = f"s3://{bucket}/{key}"
    response = _call(f"reading {where}", s3.get_object, Bucket=bucket, Key=key,
                     missing=_RELEASE_NOT_FOUND)  # fmt: skip
    if response is None:
        problems.append(
            f"no release: {where} does not exist or may not be read (S3 says AccessDenied for a"
            " missing key to a role without s3:ListBucket): promote the model first"
        )
        return None
    try:
        return read_stored(response["Body"].read(), response.get("Metadata"), where)
    except (ManifestError, ManifestDigestError) as exc:
        problems.append(f"release unreadable: {exc}")
        return None


def _served(client: Any, function: str, problems: list[str], cloudwatch: Any = None
            ) -> list[Served]:  # fmt: skip
    alias = _call(f"reading {function}:{LIVE_ALIAS}", client.get_alias,
                  FunctionName=function, Name=LIVE_ALIAS)  # fmt: skip
    if alias is None:
        problems.append(f"no function {function} or no {LIVE_ALIAS} alias")
        return []
    weights = dict((alias.get("RoutingConfig") or {}).get("AdditionalVersionWeights") or {})
    primary = 1.0 - sum(float(w) for w in weights.values())
    served = []
    for version, weight in [(str(alias["FunctionVersion"]), primary), *weights.items()]:
        config = _call(f"reading {function}:{version}", client.get_function_configuration,
                       FunctionName=function, Qualifier=version)  # fmt: skip
        if config is None:
            problems.append(f"{function}:{version}, which {LIVE_ALIAS} routes to, does not exist")
            continue
        env = (config.get("Environment") or {}).get("Variables") or {}
        pins = {name: env[name] for name in PIN_NAMES if name in env}
        count = None
        if cloudwatch is not None:
            since = evidence.published_at(config)
            count = _call(f"counting {function}:{version}'s invocations", evidence.invocations,
                          cloudwatch=cloudwatch, function=function, version=version,
                          since=since)  # fmt: skip
        served.append(Served(version, round(float(weight), 4), pins, count))
    return served


def _call(what: str, method: Any, missing: set[str] = _NOT_FOUND, **kwargs: Any) -> Any:
    """The call's answer; None when what it names does not exist (an error code in
    ``missing``).

    Raises:
        AwsUnreachable: any other AWS error, or no answer at all.
    """
    from botocore.exceptions import BotoCoreError, ClientError

    try:
        return method(**kwargs)
    except ClientError as exc:
        error = exc.response.get("Error", {})
        if str(error.get("Code")) in missing:
            return None
        raise AwsUnreachable(f"{what}: {error.get('Code')}: {error.get('Message')}") from exc
    except BotoCoreError as exc:
        raise AwsUnreachable(f"{what}: {exc}") from exc


# ---- the command ------------------------------------------------------------------------------
def exit_code(statuses: list[ModelStatus]) -> int:
    codes = {s.code for s in statuses}
    return next((code for code in SEVERITY if code in codes), IN_SYNC)


def _short(pins: dict[str, str]) -> str:
    return "  ".join(
        f"{label} {(pins.get(name) or '-')[:width]}"
        for label, name, width in (
            ("mlflow", "MODEL_VERSION", 8),
            ("s3", "MODEL_VERSION_ID", 64),
            ("sha256", "MODEL_SHA256", 12),
        )
    )


def render(statuses: list[ModelStatus]) -> str:
    lines = []
    for status in statuses:
        lines.append(f"{status.model}  {status.function_name}  {STATES[status.code]}")
        if status.release is not None:
            release = status.release
            lines.append(f"  released  {_short(release.environment())}  ({release.action}"
                         f" {release.released_at})")  # fmt: skip
        for served in status.served:
            share = f"{served.weight:.0%}"
            lines.append(f"  {LIVE_ALIAS:8}  {_short(served.pins)}  (version {served.version},"
                         f" {share})")  # fmt: skip
            lines += [f"  differs   {d}" for d in status.differences(served)]
        lines += [f"  {problem}" for problem in status.problems]
    return "\n".join(lines)


def _environment(args: argparse.Namespace) -> EnvConfig:
    """The environment's names, in the account and region of cdk.json, the flags, or the
    caller's credentials (asked of STS only when none is configured)."""
    region = args.region or os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION")
    env = resolve(load_settings(), args.env, account=args.account, region=region)
    if env.account == DUMMY_ACCOUNT and not args.account:
        import boto3

        identity = _call("asking STS for the account", boto3.client("sts").get_caller_identity)
        env = resolve(load_settings(), args.env, account=identity["Account"], region=region)
    return env


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__.splitlines()[0],
        epilog="exit codes: "
        + "; ".join(f"{code} {meaning}" for code, meaning in EXIT_CODES.items()),
    )
    parser.add_argument("--env", required=True, help="an environment of infra/cdk.json")
    parser.add_argument("--model", help="one model (default: every model of the environment)")
    parser.add_argument("--json", action="store_true", help="a JSON array, one object per model")
    parser.add_argument("--account", help="default: cdk.json, else the caller's (STS)")
    parser.add_argument("--region", help="default: cdk.json, else AWS_REGION")
    args = parser.parse_args(argv)
    try:
        env = _environment(args)
        models = [args.model] if args.model else list(env.models)
        for model in models:
            env.model(model)  # an unknown model is a usage error, before any call
        import boto3

        s3 = boto3.client("s3", region_name=env.region)
        lam = boto3.client("lambda", region_name=env.region)
        cloudwatch = boto3.client("cloudwatch", region_name=env.region)
        statuses = [model_status(s3, lam, env, model, cloudwatch) for model in models]
    except ConfigError as exc:
        print(f"status: error: {exc}", file=sys.stderr)
        return USAGE
    except AwsUnreachable as exc:
        print(f"status: error: AWS unreachable: {exc}", file=sys.stderr)
        return UNREACHABLE
    print(json.dumps([s.to_dict() for s in statuses]) if args.json else render(statuses))
    code = exit_code(statuses)
    if code != IN_SYNC:
        print(f"status: {EXIT_CODES[code]} (exit {code})", file=sys.stderr)
    return code


if __name__ == "__main__":
    raise SystemExit(main())
