"""`make invoke EVENT=path.json`: the handler in-process against the local S3 release.

Reads ``models/<model>/release.json`` (written by the registry's promotion: name,
mlflow_version, bucket, key, version_id, sha256, ...) from ``MODEL_BUCKET``, pins exactly that
object as a deploy would, then answers the event and prints the answer.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import types
import uuid
from typing import Any


def release(bucket: str, model: str) -> dict[str, Any]:
    import boto3
    from botocore.exceptions import ClientError

    key = f"models/{model}/release.json"
    s3 = boto3.client("s3", endpoint_url=os.environ.get("AWS_ENDPOINT_URL_S3") or None)
    try:
        body = s3.get_object(Bucket=bucket, Key=key)["Body"].read()
    except ClientError as exc:
        raise SystemExit(
            f"error: no release at s3://{bucket}/{key} ({exc.response['Error']['Code']}); "
            "train, approve and promote first (see README)"
        ) from None
    return dict(json.loads(body))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m inference.local", description=__doc__)
    parser.add_argument("event", help="a JSON event file, e.g. inference/events/direct.json")
    parser.add_argument("--model", default="wqi")
    args = parser.parse_args(argv)
    bucket = os.environ.get("MODEL_BUCKET")
    if not bucket:
        print("error: MODEL_BUCKET is not set (run through `make invoke`)", file=sys.stderr)
        return 2
    manifest = release(bucket, args.model)
    os.environ.update(
        MODEL_BUCKET=manifest.get("bucket") or bucket,
        MODEL_KEY=manifest["key"],
        MODEL_VERSION_ID=manifest["version_id"],
        MODEL_SHA256=manifest["sha256"],
        MODEL_VERSION=str(manifest.get("mlflow_version", "")),
    )
    os.environ.setdefault("MODEL_CACHE_DIR", os.path.join(os.getcwd(), ".local", "tmp"))
    from inference import handler  # loads, verifies and checks the pinned bundle now

    with open(args.event, encoding="utf-8") as handle:
        event = json.load(handle)
    context = types.SimpleNamespace(
        aws_request_id=f"local-{uuid.uuid4()}", function_name="waterml-inference-local"
    )
    print(json.dumps(handler.lambda_handler(event, context), indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
