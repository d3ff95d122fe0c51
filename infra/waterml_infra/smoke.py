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
from typing import Any

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


def check_answer(payload: Any, *, model: str, expect_version: str | None) -> dict[str, Any]:
    """Validate the decoded answer of a direct invocation."""
    if isinstance(payload, dict) and isinstance(payload.get("body"), str):
        # A proxy-shaped answer: judge the body, but the status code first.
        status = int(payload.get("statusCode", 200))
        if status >= 300:
            raise SmokeTestFailed(f"status {status}: {payload['body'][:500]}")
        payload = json.loads(payload["body"])
    if not isinstance(payload, dict):
        raise SmokeTestFailed(f"answer is not a JSON object: {payload!r}"[:500])
    if "error" in payload or "code" in payload:
        raise SmokeTestFailed(
            f"answer is an error: code={payload.get('code')!r} error={payload.get('error')!r}"
        )
    missing = [k for k in ("model", "version") if k not in payload]
    if missing:
        raise SmokeTestFailed(f"answer lacks {missing}: {json.dumps(payload)[:500]}")
    if str(payload["model"]) != model:
        raise SmokeTestFailed(f"answer is from model {payload['model']!r}, expected {model!r}")
    if expect_version is not None and str(payload["version"]) != str(expect_version):
        raise SmokeTestFailed(
            f"answer is from model version {payload['version']!r}, expected {expect_version!r}"
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
    event: dict[str, Any] | None = None,
    sleep: Callable[[float], None] = time.sleep,
) -> dict[str, Any]:
    if not version.isdigit():
        raise SmokeTestFailed(f"refusing to smoke-test {version!r}: give a published version")
    wait_active(client, function_name, version, sleep=sleep)
    payload = invoke(client, function_name, version, event or SAMPLE_EVENT)
    return check_answer(payload, model=model, expect_version=expect_version)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--function-name", required=True)
    parser.add_argument("--version", required=True, help="the published version number")
    parser.add_argument("--model", default="wqi")
    parser.add_argument("--expect-version", help="the MLflow version the release pins")
    args = parser.parse_args(argv)
    import boto3

    try:
        answer = run(
            boto3.client("lambda"),
            args.function_name,
            args.version,
            model=args.model,
            expect_version=args.expect_version,
        )
    except SmokeTestFailed as exc:
        print(f"smoke test FAILED for {args.function_name}:{args.version}: {exc}", file=sys.stderr)
        return 1
    print(f"smoke test passed for {args.function_name}:{args.version}: {json.dumps(answer)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
