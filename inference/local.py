"""`make invoke EVENT=path.json`: the handler in-process against the local S3 release.

Reads ``models/<model>/release.json`` (written by the registry's promotion: name,
mlflow_version, bucket, key, version_id, sha256, ...) from ``MODEL_BUCKET``, pins exactly that
object as a deploy would, then answers the event and prints the answer. Every failure (an event
file that is missing or not JSON, no release, S3 unreachable, a model that does not load, a
handler fault) is one ``error: ...`` line on stderr and exit status 1, never a traceback.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import types
import uuid
from typing import Any


class LocalError(Exception):
    """Why `make invoke` cannot answer: printed as one line."""


def read_event(path: str) -> Any:
    try:
        with open(path, encoding="utf-8") as handle:
            return json.load(handle)
    except OSError as exc:
        raise LocalError(f"cannot read event file {path}: {exc.strerror or exc}") from None
    except ValueError as exc:  # JSONDecodeError, UnicodeDecodeError
        raise LocalError(f"event file {path} is not valid JSON: {exc}") from None


def release(bucket: str, model: str) -> dict[str, Any]:
    import boto3
    from botocore.exceptions import BotoCoreError, ClientError

    key = f"models/{model}/release.json"
    endpoint = os.environ.get("AWS_ENDPOINT_URL_S3") or None
    try:
        s3 = boto3.client("s3", endpoint_url=endpoint)
        body = s3.get_object(Bucket=bucket, Key=key)["Body"].read()
    except ClientError as exc:
        raise LocalError(
            f"no release at s3://{bucket}/{key} ({exc.response['Error']['Code']}); "
            "train, approve and promote first (see README)"
        ) from None
    except BotoCoreError as exc:  # connection refused, timeouts, no credentials
        raise LocalError(
            f"cannot reach S3 for s3://{bucket}/{key} (endpoint {endpoint or 'AWS'}): {exc}"
        ) from None
    try:
        manifest = json.loads(body)
    except ValueError as exc:
        raise LocalError(f"s3://{bucket}/{key} is not valid JSON: {exc}") from None
    if not isinstance(manifest, dict):
        raise LocalError(f"s3://{bucket}/{key} is not a JSON object")
    missing = [k for k in ("key", "version_id", "sha256") if not manifest.get(k)]
    if missing:
        raise LocalError(f"s3://{bucket}/{key} lacks {', '.join(missing)}")
    return dict(manifest)


def invoke(event_path: str, model: str) -> Any:
    bucket = os.environ.get("MODEL_BUCKET")
    if not bucket:
        raise LocalError("MODEL_BUCKET is not set (run through `make invoke`)")
    event = read_event(event_path)  # before any S3 call: a mistyped path fails at once
    manifest = release(bucket, model)
    os.environ.update(
        MODEL_BUCKET=manifest.get("bucket") or bucket,
        MODEL_KEY=manifest["key"],
        MODEL_VERSION_ID=manifest["version_id"],
        MODEL_SHA256=manifest["sha256"],
        MODEL_VERSION=str(manifest.get("mlflow_version", "")),
    )
    os.environ.setdefault("MODEL_CACHE_DIR", os.path.join(os.getcwd(), ".local", "tmp"))
    try:
        from inference import handler  # loads, verifies and checks the pinned bundle now

        if handler._service is None:  # already imported (in-process callers): load now
            handler.init()
    except Exception as exc:  # InitError names the cause
        raise LocalError(f"model failed to load: {exc}") from None
    context = types.SimpleNamespace(
        aws_request_id=f"local-{uuid.uuid4()}", function_name="waterml-inference-local"
    )
    try:
        return handler.lambda_handler(event, context)
    except Exception as exc:  # InferenceError: the cause is in the log line above
        raise LocalError(f"the handler failed: {exc}") from None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m inference.local", description=__doc__)
    parser.add_argument("event", help="a JSON event file, e.g. inference/events/direct.json")
    parser.add_argument("--model", default="wqi")
    args = parser.parse_args(argv)
    try:
        answer = invoke(args.event, args.model)
    except LocalError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(json.dumps(answer, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
