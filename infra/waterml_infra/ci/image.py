"""The image a deploy ships: reuse what a commit already pushed, record what dev verified, and
find it again for prod (build once: prod never rebuilds).

    python -m waterml_infra.ci.image find --repository waterml-dev-inference --tag git-<sha>
    python -m waterml_infra.ci.image record --repository waterml-dev-inference \
        --digest sha256:... --commit <sha>
    python -m waterml_infra.ci.image verified --repository waterml-dev-inference --commit <sha>

`find` prints the digest if the tag exists, or nothing. `record` tags the digest
`verified-git-<sha>` once every model of a dev deploy of that commit served its release (the
deploy workflow's `verify` job); `verified` prints that digest, or fails (exit 1) when the
commit was never deployed and checked in dev, which is what the prod deploy ships. Tags are
immutable in the repository, so a tag can never name two images; recording the same digest
again is a no-op, recording another one for the same commit is refused.
"""

from __future__ import annotations

import argparse
import re
import sys
from typing import Any

_TAG = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$")
_SHA = re.compile(r"^[0-9a-f]{40}$")
_DIGEST = re.compile(r"^sha256:[0-9a-f]{64}$")
VERIFIED_PREFIX = "verified-git-"


class ImageError(ValueError):
    """The image cannot be found or recorded; the message says why (exit 1)."""


def verified_tag(commit: str) -> str:
    """The tag of the image dev deployed and checked for ``commit``.

    Raises:
        ImageError: ``commit`` is not a full commit SHA.
    """
    if not _SHA.match(commit):
        raise ImageError(f"{commit!r} is not a full commit SHA")
    return VERIFIED_PREFIX + commit


def existing_digest(ecr: Any, repository: str, tag: str) -> str | None:
    """The digest the tag names, or None when there is no such tag.

    Raises:
        ImageError: ``tag`` is not a valid tag.
    """
    if not _TAG.match(tag):
        raise ImageError(f"invalid image tag {tag!r}")
    try:
        images = ecr.describe_images(repositoryName=repository, imageIds=[{"imageTag": tag}])
    except ecr.exceptions.ImageNotFoundException:
        return None
    details = images.get("imageDetails", [])
    return str(details[0]["imageDigest"]) if details else None


def record_verified(ecr: Any, repository: str, digest: str, commit: str) -> str:
    """Tag ``digest`` as verified for ``commit`` (the same manifest, one more tag).

    Raises:
        ImageError: a bad digest, no such image, or another digest already recorded.
    """
    tag = verified_tag(commit)
    if not _DIGEST.match(digest):
        raise ImageError(f"image digest {digest!r} is not sha256:<64 hex>")
    known = existing_digest(ecr, repository, tag)
    if known == digest:
        return tag
    if known is not None:
        raise ImageError(f"{repository}:{tag} already names {known}, not {digest}")
    images = ecr.batch_get_image(repositoryName=repository, imageIds=[{"imageDigest": digest}])
    if not images.get("images"):
        raise ImageError(f"{repository} has no image {digest}")
    image = images["images"][0]
    ecr.put_image(repositoryName=repository, imageManifest=image["imageManifest"],
                  imageManifestMediaType=image.get("imageManifestMediaType", ""),
                  imageTag=tag, imageDigest=digest)  # fmt: skip
    return tag


def verified_digest(ecr: Any, repository: str, commit: str) -> str:
    """The digest dev deployed and checked for ``commit``.

    Raises:
        ImageError: the commit was never verified in that repository.
    """
    digest = existing_digest(ecr, repository, verified_tag(commit))
    if digest is None:
        raise ImageError(
            f"commit {commit[:12]} has no verified image in {repository}: deploy it to dev "
            "first (prod ships the image dev deployed and checked, it never builds one)"
        )
    return digest


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    find = sub.add_parser("find", help="print the digest of a tag (nothing if there is none)")
    find.add_argument("--repository", required=True)
    find.add_argument("--tag", required=True)
    record = sub.add_parser("record", help="tag a digest as verified in dev for a commit")
    record.add_argument("--repository", required=True)
    record.add_argument("--digest", required=True)
    record.add_argument("--commit", required=True)
    verified = sub.add_parser("verified", help="print the digest dev verified for a commit")
    verified.add_argument("--repository", required=True)
    verified.add_argument("--commit", required=True)
    args = parser.parse_args(argv)
    import boto3

    ecr = boto3.client("ecr")
    try:
        if args.command == "find":
            print(existing_digest(ecr, args.repository, args.tag) or "")
        elif args.command == "record":
            print(record_verified(ecr, args.repository, args.digest, args.commit))
        else:
            print(verified_digest(ecr, args.repository, args.commit))
    except ImageError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
