"""Turn a model's current release manifest into `cdk deploy` context arguments.

    python -m waterml_infra.ci.deploy_context --env dev --model wqi --image-digest sha256:... \
        (--manifest release.json [--bundle model.joblib] | --bucket B) [--release-out pinned.json]

Prints one argument per line (for `mapfile -t`), e.g.:

    --context
    env=dev
    --context
    model=wqi
    --context
    imageDigest=sha256:...
    --context
    release={"name": "wqi", ...}
    --context
    trainingProfile={"labels": [...], "shares": [...], "features": [...]}

The `live` alias is not pinned here: `cdk deploy` publishes a new version and CodeDeploy
shifts `live` to it (the pre-traffic hook and the alarms decide), or leaves it where it was.
Without `--manifest`, the manifest is read from `s3://<bucket>/models/<model>/release.json`
and the bundle it releases by its VersionId, checked against the release's SHA-256 before it
is read: its training profile (the answers' mix on the training rows, the profiled features)
gives the stack its answer-mix alarm (waterml_infra.constructs.monitoring). With `--manifest`,
`--bundle` names a local copy of the bundle. A bundle without a profile deploys without that alarm.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path
from typing import Any

from botocore.exceptions import ClientError

from inference.bundle import BundleError, verify_digest
from inference.bundle import loads as load_bundle
from registry.errors import DigestMismatch, StorageError
from registry.manifest import (
    ManifestDigestError,
    ManifestError,
    Release,
    loads,
    manifest_key,
    read_stored,
)
from waterml_infra.config import EMERGENCY_KEY
from waterml_infra.training_mix import CONTEXT_KEY as TRAINING_KEY
from waterml_infra.training_mix import TrainingMix, TrainingMixError

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


def fetch_training_mix(s3: Any, release: Release) -> TrainingMix | None:
    """The released bundle's training mix: the object version the release names, its bytes
    checked against the release's SHA-256 before they are read (ReleaseStore.read_verified)."""
    from registry.store import ReleaseStore

    data = ReleaseStore(release.bucket, s3).read_verified(
        release.key, release.version_id, release.sha256
    )
    return TrainingMix.from_bundle(load_bundle(data))


def read_training_mix(path: Path, release: Release) -> TrainingMix | None:
    """The same from a local copy of the released bundle."""
    data = path.read_bytes()
    verify_digest(data, release.sha256, str(path))
    return TrainingMix.from_bundle(load_bundle(data))


def context_args(
    env: str,
    image_digest: str,
    release: Release,
    training: TrainingMix | None = None,
    *,
    emergency: bool = False,
) -> list[str]:
    """`--context` pairs for one model's stack: the model is the one the release names."""
    if not DIGEST.match(image_digest):
        raise ManifestError(f"image digest {image_digest!r} is not sha256:<64 hex>")
    pairs = [
        f"env={env}",
        f"model={release.name}",
        f"imageDigest={image_digest}",
        "release=" + json.dumps(release.to_context(), sort_keys=True, separators=(",", ":")),
    ]
    if training is not None:
        pairs.append(f"{TRAINING_KEY}=" + json.dumps(training.to_context(), separators=(",", ":")))
    if emergency:
        pairs.append(f"{EMERGENCY_KEY}=true")
    args: list[str] = []
    for pair in pairs:
        args += ["--context", pair]
    return args


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--env", required=True)
    parser.add_argument("--image-digest", required=True)
    parser.add_argument("--model", required=True)
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--manifest", type=Path, help="a release.json file")
    source.add_argument("--bucket", help="read models/<model>/release.json from this bucket")
    parser.add_argument(
        "--bundle", type=Path, help="with --manifest: a local copy of the released bundle"
    )
    parser.add_argument(
        "--emergency",
        choices=["true", "false"],
        default="false",
        help="true: this rollout ignores the rollback alarms (a fix while live is in alarm)",
    )
    parser.add_argument(
        "--release-out", type=Path, help="also write the pinned release here (for the summary)"
    )
    args = parser.parse_args(argv)
    if args.bundle and not args.manifest:
        parser.error("--bundle goes with --manifest (with --bucket the bundle is read from S3)")
    training: TrainingMix | None = None
    try:
        if args.manifest:
            release = loads(args.manifest.read_bytes(), complete=False)
            if release.name != args.model:
                raise ManifestError(f"{args.manifest} is a release of {release.name!r}")
            if args.bundle:
                training = read_training_mix(args.bundle, release)
        else:
            import boto3

            s3 = boto3.client("s3")
            release = fetch_release(s3, args.bucket, args.model)
            training = fetch_training_mix(s3, release)
        if training is None:
            print(
                f"warning: no training profile for {release.name} v{release.mlflow_version}: "
                "the stack gets no answer-mix alarm",
                file=sys.stderr,
            )
        lines = context_args(
            args.env, args.image_digest, release, training, emergency=args.emergency == "true"
        )
        if args.release_out:
            args.release_out.write_text(json.dumps(release.to_context(), indent=2) + "\n")
    except (
        ManifestError, ManifestDigestError, DigestMismatch, StorageError, BundleError,
        TrainingMixError, OSError,
    ) as exc:  # fmt: skip
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
