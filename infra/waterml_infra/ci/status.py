"""Released vs deployed: per model, what release.json releases and what `live` serves.

    python -m waterml_infra.ci.status --env dev [--model wqi] [--json] [--account A] [--region R]

Released: `models/<model>/release.json` in the environment's bucket (digest-checked, as every
reader reads it). Deployed: the `live` alias of the model's function, its function version
and that version's `MODEL_*` pins; during a canary, every version the alias routes to, with its
weight. They differ after CodeDeploy rolled a deployment back (release.json still names the new
model) or when a promotion has not been deployed yet. Exit codes (EXIT_CODES; with several
models the worst decides, in the order 4, 3, 5):

    0  every model's live serves exactly its release
    1  AWS could not be asked (no credentials, no network, access denied)
    2  bad arguments: unknown environment or model
    3  a model's live serves something else than release.json releases
    4  a model has no readable release.json, or no function or live alias
    5  a model's live splits traffic between versions (a canary in progress)
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
from typing import Any

from inference.release import PINS, pin_differences
from registry.manifest import ManifestDigestError, ManifestError, Release, read_stored
from waterml_infra.config import (
    DUMMY_ACCOUNT,
    LIVE_ALIAS,
    ConfigError,
    EnvConfig,
    load_settings,
    resolve,
)

IN_SYNC, UNREACHABLE, USAGE, DIFFERENT, MISSING, SHIFTING = 0, 1, 2, 3, 4, 5
EXIT_CODES = {
    IN_SYNC: "every model's live serves exactly its release",
    UNREACHABLE: "AWS could not be asked (no credentials, no network, access denied)",
    USAGE: "bad arguments: unknown environment or model",
    DIFFERENT: "a model's live serves something else than release.json releases",
    MISSING: "a model has no readable release.json, or no function or live alias",
    SHIFTING: "a model's live splits traffic between versions (a canary in progress)",
}
# Worst first: the exit code of a run that finds several states.
SEVERITY = (MISSING, DIFFERENT, SHIFTING, IN_SYNC)
STATES = {IN_SYNC: "in sync", DIFFERENT: "DIFFERS", MISSING: "MISSING", SHIFTING: "SHIFTING"}
PIN_NAMES = tuple(variable for _, variable in PINS)
_NOT_FOUND = {"NoSuchKey", "NoSuchBucket", "404", "ResourceNotFoundException"}


class AwsUnreachable(Exception):
    """AWS did not answer, or refused to; the message says which call and why."""


@dataclasses.dataclass(frozen=True)
class Served:
    """One function version `live` routes to, its share of traffic and its pins."""

    version: str
    weight: float
    pins: dict[str, str]


@dataclasses.dataclass(frozen=True)
class ModelStatus:
    model: str
    function_name: str
    release: Release | None
    served: list[Served]  # the alias' primary version first, then canary versions
    problems: list[str]  # why the release or the function could not be read

    def differences(self, served: Served) -> list[str]:
        return pin_differences(self.release.to_dict(), served.pins) if self.release else []

    @property
    def code(self) -> int:
        if self.release is None or not self.served:
            return MISSING
        if len(self.served) > 1:
            return SHIFTING
        return DIFFERENT if self.differences(self.served[0]) else IN_SYNC

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


def model_status(s3: Any, lambda_client: Any, env: EnvConfig, model: str) -> ModelStatus:
    """`model`'s release against what its `live` alias serves (AwsUnreachable if AWS cannot
    be asked; a missing release, function or alias is a state, not an error)."""
    config = env.model(model)
    problems: list[str] = []
    release = _release(s3, env.bucket_name, config.release_key, problems)
    served = _served(lambda_client, config.function_name, problems)
    return ModelStatus(model, config.function_name, release, served, problems)


def _release(s3: Any, bucket: str, key: str, problems: list[str]) -> Release | None:
    where = f"s3://{bucket}/{key}"
    response = _call(f"reading {where}", s3.get_object, Bucket=bucket, Key=key)
    if response is None:
        problems.append(f"no release: {where} does not exist")
        return None
    try:
        return read_stored(response["Body"].read(), response.get("Metadata"), where)
    except (ManifestError, ManifestDigestError) as exc:
        problems.append(f"release unreadable: {exc}")
        return None


def _served(client: Any, function: str, problems: list[str]) -> list[Served]:
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
        served.append(Served(version, round(float(weight), 4), pins))
    return served


def _call(what: str, method: Any, **kwargs: Any) -> Any:
    """The call's answer; None when what it names does not exist; AwsUnreachable otherwise."""
    from botocore.exceptions import BotoCoreError, ClientError

    try:
        return method(**kwargs)
    except ClientError as exc:
        error = exc.response.get("Error", {})
        if str(error.get("Code")) in _NOT_FOUND:
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
        statuses = [model_status(s3, lam, env, model) for model in models]
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
