"""Turn the current release manifest into `cdk deploy` context arguments.

    python -m waterml_infra.deploy_context --env dev --image-digest sha256:... \
        [--manifest release.json | --bucket B] [--function-name F]

Prints one argument per line (for `mapfile -t`), e.g.:

    --context
    env=dev
    --context
    imageDigest=sha256:...
    --context
    release={"name": "wqi", ...}
    --context
    liveVersion=7

`liveVersion` is the version the `live` alias points at right now: pinning it keeps
`cdk deploy` from moving the alias; only `waterml_infra.alias` moves it, after the smoke test.
Without `--manifest`, the manifest is read from `s3://<bucket>/models/<name>/release.json`.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path
from typing import Any

from botocore.exceptions import ClientError

from registry.manifest import (
    ManifestDigestError,
    ManifestError,
    Release,
    loads,
    manifest_key,
    read_stored,
)

DIGEST = re.compile(r"^sha256:[0-9a-f]{64}$")


def fetch_release(s3: Any, bucket: str, model: str) -> Release:
    """Read and validate `models/<model>/release.json` from the bucket: its bytes must match
    the SHA-256 stored in its metadata (`read_stored`, as every reader checks it)."""
    key = manifest_key(model)
    try:
        response = s3.get_object(Bucket=bucket, Key=key)
        body = response["Body"].read()
    except ClientError as exc:
        code = exc.response.get("Error", {}).get("Code", "")
        # Without s3:ListBucket (the deploy role has none) a missing key reads as AccessDenied.
        hint = (
            " (promote a model before deploying)" if code in {"NoSuchKey", "AccessDenied"} else ""
        )
        raise ManifestError(f"cannot read s3://{bucket}/{key}: {code}{hint}") from exc
    where = f"s3://{bucket}/{key}"
    release = read_stored(body, response.get("Metadata"), where, complete=False)
    if release.name != model:
        raise ManifestError(f"{where} is a release of {release.name!r}")
    if release.bucket != bucket:
        raise ManifestError(f"release points at bucket {release.bucket!r}, not {bucket!r}")
    return release


def current_live_version(lambda_client: Any, function_name: str, alias: str = "live") -> str | None:
    """The version the alias points at, or None before the first deploy."""
    try:
        return str(
            lambda_client.get_alias(FunctionName=function_name, Name=alias)["FunctionVersion"]
        )
    except lambda_client.exceptions.ResourceNotFoundException:
        return None


def context_args(
    env: str, image_digest: str, release: Release, live_version: str | None
) -> list[str]:
    if not DIGEST.match(image_digest):
        raise ManifestError(f"image digest {image_digest!r} is not sha256:<64 hex>")
    if live_version is not None and not re.fullmatch(r"\d+", live_version):
        # $LATEST or anything else unpinned must never be what `live` serves.
        raise ManifestError(f"live alias points at {live_version!r}, not a published version")
    pairs = [
        f"env={env}",
        f"imageDigest={image_digest}",
        "release=" + json.dumps(release.to_context(), sort_keys=True, separators=(",", ":")),
    ]
    if live_version is not None:
        pairs.append(f"liveVersion={live_version}")
    args: list[str] = []
    for pair in pairs:
        args += ["--context", pair]
    return args


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--env", required=True)
    parser.add_argument("--image-digest", required=True)
    parser.add_argument("--model", default="wqi")
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--manifest", type=Path, help="a release.json file")
    source.add_argument("--bucket", help="read models/<model>/release.json from this bucket")
    parser.add_argument("--function-name", help="read the live alias' version from this function")
    parser.add_argument(
        "--release-out", type=Path, help="also write the pinned release here (for the smoke test)"
    )
    args = parser.parse_args(argv)
    try:
        if args.manifest:
            release = loads(args.manifest.read_bytes(), complete=False)
            if release.name != args.model:
                raise ManifestError(f"{args.manifest} is a release of {release.name!r}")
        else:
            import boto3

            release = fetch_release(boto3.client("s3"), args.bucket, args.model)
        live = None
        if args.function_name:
            import boto3

            live = current_live_version(boto3.client("lambda"), args.function_name)
        lines = context_args(args.env, args.image_digest, release, live)
        if args.release_out:
            args.release_out.write_text(json.dumps(release.to_context(), indent=2) + "\n")
    except (ManifestError, ManifestDigestError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
