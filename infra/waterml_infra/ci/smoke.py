"""Smoke-test one published version of a model function by hand: one request, one answer.

    python -m waterml_infra.ci.smoke --function-name waterml-dev-wqi --version 8 \
        [--model wqi] [--expect-version 3] [--release release.json] [--event request.json]

Deploys do not need it: CodeDeploy runs the pre-traffic hook (inference/pretraffic.py) on every
new version, with the bundle's golden samples and one event of every shape. This is the quick
check by hand, with the hook's own answer checks: waits until the version is Active, invokes it
synchronously with a sample reading (wqi's, or ``--event``) and requires no function error, a
2xx answer naming the model and its version (and the release's S3 VersionId with
``--release``), and no error. Exit status 0 only if every check passed.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from inference.pretraffic import CheckFailed, Expected, check_answer, invoke, wait_active
from registry.manifest import loads

SAMPLE_EVENT: dict[str, Any] = {
    "deviceId": "smoke",
    "readings": {"pH": 7.2, "turbidity": 1.5, "tds": 320, "temperature": 22.0},
}

# The answer checks are the pre-traffic hook's (inference/pretraffic.py): one copy.
SmokeTestFailed = CheckFailed


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
    wait_active(client, function_name, version, sleep=sleep)
    payload = invoke(client, function_name, version, event or SAMPLE_EVENT)
    return check_answer(payload, Expected(model, expect_version, expect_s3_version_id))


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
    parser.add_argument(
        "--event", type=Path, help="a JSON request to send instead of the wqi sample reading"
    )
    args = parser.parse_args(argv)
    import boto3

    try:
        event = json.loads(args.event.read_text()) if args.event else None
    except (OSError, ValueError) as exc:
        print(f"error: cannot read --event {args.event}: {exc}", file=sys.stderr)
        return 2
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
            event=event,
        )
    except SmokeTestFailed as exc:
        print(f"smoke test FAILED for {args.function_name}:{args.version}: {exc}", file=sys.stderr)
        return 1
    print(f"smoke test passed for {args.function_name}:{args.version}: {json.dumps(answer)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
