"""Find an image already pushed for this commit, so a re-run reuses its digest.

    python -m waterml_infra.ci.image --repository waterml-dev-inference --tag git-<sha>

Prints the digest (`sha256:...`) if the immutable tag exists, or nothing. Tags are immutable
in the repository, so the same tag can never name two different images.
"""

from __future__ import annotations

import argparse
import re
import sys
from typing import Any

_TAG = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$")


def existing_digest(ecr: Any, repository: str, tag: str) -> str | None:
    if not _TAG.match(tag):
        raise ValueError(f"invalid image tag {tag!r}")
    try:
        images = ecr.describe_images(repositoryName=repository, imageIds=[{"imageTag": tag}])
    except ecr.exceptions.ImageNotFoundException:
        return None
    details = images.get("imageDetails", [])
    return str(details[0]["imageDigest"]) if details else None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repository", required=True)
    parser.add_argument("--tag", required=True)
    args = parser.parse_args(argv)
    import boto3

    try:
        digest = existing_digest(boto3.client("ecr"), args.repository, args.tag)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    if digest:
        print(digest)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
