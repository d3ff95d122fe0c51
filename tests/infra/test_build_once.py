"""Build once: dev's deploy records the image it deployed and checked for a commit, and prod
finds exactly that digest (waterml_infra.ci.image), against ECR in the loopback moto server."""

from __future__ import annotations

import json
import uuid

import boto3
import pytest
from waterml_infra.ci.image import ImageError, record_verified, verified_digest

from tools import local_s3

SHA = "c" * 40
pytestmark = pytest.mark.integration


def manifest(layer: str) -> str:
    return json.dumps({
        "schemaVersion": 2,
        "mediaType": "application/vnd.docker.distribution.manifest.v2+json",
        "config": {"mediaType": "application/vnd.docker.container.image.v1+json", "size": 2,
                   "digest": "sha256:" + layer * 64},
        "layers": [{"mediaType": "application/vnd.docker.image.rootfs.diff.tar.gzip",
                    "size": 1, "digest": "sha256:" + layer * 64}],
    })  # fmt: skip


def test_prod_ships_the_digest_dev_verified_and_nothing_else(s3_endpoint: str) -> None:
    ecr = boto3.client("ecr", endpoint_url=s3_endpoint, **local_s3._client_credentials())
    repo = f"waterml-dev-inference-{uuid.uuid4().hex[:8]}"
    ecr.create_repository(repositoryName=repo, imageTagMutability="IMMUTABLE")
    pushed = ecr.put_image(repositoryName=repo, imageManifest=manifest("a"), imageTag=f"git-{SHA}")
    digest = pushed["image"]["imageId"]["imageDigest"]
    with pytest.raises(ImageError, match="deploy it to dev first"):
        verified_digest(ecr, repo, SHA)  # built, not yet deployed and checked
    assert record_verified(ecr, repo, digest, SHA) == f"verified-git-{SHA}"
    assert verified_digest(ecr, repo, SHA) == digest
    assert record_verified(ecr, repo, digest, SHA) == f"verified-git-{SHA}"  # again: a no-op
    other = ecr.put_image(repositoryName=repo, imageManifest=manifest("b"), imageTag="git-other")
    with pytest.raises(ImageError, match="already names"):
        record_verified(ecr, repo, other["image"]["imageId"]["imageDigest"], SHA)
    with pytest.raises(ImageError, match="full commit SHA"):
        verified_digest(ecr, repo, "main")
