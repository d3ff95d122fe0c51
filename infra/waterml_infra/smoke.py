"""Smoke-test one published version of the function before the `live` alias moves to it.

    python -m waterml_infra.smoke --function-name waterml-dev-wqi --version 8 \
        [--model wqi] [--expect-version 3]

Waits until the version is Active, invokes it synchronously with a sample reading and checks
the answer: no function error, a JSON object naming the model and the model version, and no
"error" key. Exit status 0 only if every check passed.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from registry.manifest import loads

SAMPLE_EVENT: dict[str, Any] = {
    "deviceId": "smoke",
    "readings": {"pH": 7.2, "turbidity": 1.5, "tds": 320, "temperature": 22.0},
}


class SmokeTestFailed(RuntimeError):
    """The version answered, but not like a healthy deployment."""


def wait_active(
    client: Any,
    function_name: str,
    version: str,
    *,
    attempts: int = 60,
    delay: float = 5.0,
    sleep: Callable[[float], None] = time.sleep,
) -> None:
    """Poll until the version's State is Active (image functions take a while to optimise)."""
    for _ in range(attempts):
        config = client.get_function_configuration(FunctionName=function_name, Qualifier=version)
        state = config.get("State", "Active")
        if state == "Active":
            return
        if state == "Failed":
            raise SmokeTestFailed(
                f"{function_name}:{version} failed to become active: {config.get('StateReason')}"
            )
        sleep(delay)
    raise SmokeTestFailed(f"{function_name}:{version} is still not active")


def check_answer(
    payload: Any,
    *,
    model: str,
    expect_version: str | None = None,
    expect_s3_version_id: str | None = None,
) -> dict[str, Any]:
    """Validate the decoded answer of a direct invocation.

    The handler answers `{"statusCode": 200, "model": {"name", "version", "s3VersionId",
    ...}, "prediction": {...}}`; an HTTP-proxy shaped answer (`{"statusCode", "body":
    "<json>"}`) is accepted too.
    """
    if not isinstance(payload, dict):
        raise SmokeTestFailed(f"answer is not a JSON object: {payload!r}"[:500])
    status = payload.get("statusCode", 200)
    if not isinstance(status, int) or status >= 300:
        raise SmokeTestFailed(f"status {status}: {json.dumps(payload)[:500]}")
    if isinstance(payload.get("body"), str):
        payload = json.loads(payload["body"])
        if not isinstance(payload, dict):
            raise SmokeTestFailed("answer body is not a JSON object")
    if "error" in payload or "code" in payload:
        raise SmokeTestFailed(f"answer is an error: {json.dumps(payload)[:500]}")
    identity = payload.get("model")
    if not isinstance(identity, dict):
        raise SmokeTestFailed(f"answer has no model identity: {json.dumps(payload)[:500]}")
    name, version = identity.get("name"), identity.get("version")
    s3_version_id = identity.get("s3VersionId")
    if name is None or version is None:
        raise SmokeTestFailed(f"answer lacks the model or its version: {json.dumps(payload)[:500]}")
    if str(name) != model:
        raise SmokeTestFailed(f"answer is from model {name!r}, expected {model!r}")
    if expect_version and str(version) != str(expect_version):
        raise SmokeTestFailed(
            f"answer is from model version {version!r}, expected {expect_version!r}"
        )
    if expect_s3_version_id and s3_version_id != expect_s3_version_id:
        raise SmokeTestFailed(
            f"answer is from S3 version {s3_version_id!r}, expected {expect_s3_version_id!r}"
        )
    return payload


def invoke(client: Any, function_name: str, version: str, event: dict[str, Any]) -> Any:
    response = client.invoke(
        FunctionName=function_name,
        Qualifier=version,
        InvocationType="RequestResponse",
        Payload=json.dumps(event).encode(),
    )
    raw = response["Payload"].read()
    if response.get("FunctionError"):
        raise SmokeTestFailed(f"function error ({response['FunctionError']}): {raw[:500]!r}")
    if response.get("StatusCode") != 200:
        raise SmokeTestFailed(f"invoke returned HTTP {response.get('StatusCode')}")
    try:
        return json.loads(raw)
    except json.JSONDecodeError as exc:
        raise SmokeTestFailed(f"answer is not JSON: {raw[:500]!r}") from exc


def run(
    client: Any,
    function_name: str,
    version: str,
    *,
    model: str = "wqi",
    expect_version: str | None = None,
    expect_s3_version_id: str | None = None,
    event: dict[str, Any] | None = None,
    sleep: Callable[[float], None] = time.sleep,
) -> dict[str, Any]:
    if not version.isdigit():
        raise SmokeTestFailed(f"refusing to smoke-test {version!r}: give a published version")
    wait_active(client, function_name, version, sleep=sleep)
    payload = invoke(client, function_name, version, event or SAMPLE_EVENT)
    return check_answer(
        payload,
        model=model,
        expect_version=expect_version,
        expect_s3_version_id=expect_s3_version_id,
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--function-name", required=True)
    parser.add_argument("--version", required=True, help="the published version number")
    parser.add_argument("--model", default="wqi")
    parser.add_argument("--expect-version", help="the MLflow version the release pins")
    parser.add_argument(
        "--release",
        type=Path,
        help="release.json this deploy pinned: the answer must come from its model version "
        "and S3 VersionId",
    )
    args = parser.parse_args(argv)
    import boto3

    expect_version, expect_s3 = args.expect_version, None
    if args.release:
        # deploy_context --release-out: the context form, without git_sha or released_at.
        release = loads(args.release.read_bytes(), complete=False)
        expect_version = expect_version or release.mlflow_version or None
        expect_s3 = release.version_id

    try:
        answer = run(
            boto3.client("lambda"),
            args.function_name,
            args.version,
            model=args.model,
            expect_version=expect_version,
            expect_s3_version_id=expect_s3,
        )
    except SmokeTestFailed as exc:
        print(f"smoke test FAILED for {args.function_name}:{args.version}: {exc}", file=sys.stderr)
        return 1
    print(f"smoke test passed for {args.function_name}:{args.version}: {json.dumps(answer)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
