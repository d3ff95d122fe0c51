"""An older commit never deploys after a newer one (waterml_infra.ci.order): a real git
history and the serving stack's `commit` tag in the loopback moto's CloudFormation."""

from __future__ import annotations

import json
import subprocess
import uuid
from pathlib import Path

import boto3
import pytest
from waterml_infra.ci.order import OrderError, decide, deployed_commit

from tools import local_s3

pytestmark = pytest.mark.integration


def _git(repo: Path, *args: str) -> str:
    return subprocess.run(["git", *args], cwd=repo, check=True, capture_output=True,
                          text=True).stdout.strip()  # fmt: skip


@pytest.fixture
def history(tmp_path: Path) -> tuple[Path, list[str]]:
    """main: A -> B -> C, and a commit D on a branch from A (a rewritten history)."""
    _git(tmp_path, "init", "-q", "-b", "main")
    shas = []
    for name in "ABC":
        _git(tmp_path, "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-q",
             "--allow-empty", "-m", name)  # fmt: skip
        shas.append(_git(tmp_path, "rev-parse", "HEAD"))
    _git(tmp_path, "checkout", "-q", "-b", "other", shas[0])
    _git(tmp_path, "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-q",
         "--allow-empty", "-m", "D")  # fmt: skip
    shas.append(_git(tmp_path, "rev-parse", "HEAD"))
    return tmp_path, shas


def test_an_older_commit_never_deploys_over_a_newer_one(history, s3_endpoint: str) -> None:
    repo, (a, b, c, d) = history
    cloudformation = boto3.client("cloudformation", endpoint_url=s3_endpoint,
                                  **local_s3._client_credentials())  # fmt: skip
    stack = f"WaterMl-dev-Serving-wqi-{uuid.uuid4().hex[:6]}"
    assert deployed_commit(cloudformation, stack) is None  # never deployed
    template = json.dumps({"Resources": {"Q": {"Type": "AWS::SQS::Queue"}}})
    cloudformation.create_stack(StackName=stack, TemplateBody=template,
                                Tags=[{"Key": "commit", "Value": b}])  # fmt: skip
    deployed = deployed_commit(cloudformation, stack)
    assert deployed == b
    assert decide(None, a, repo)[0] is True
    assert decide(deployed, b, repo)[0] is True  # a re-run
    assert decide(deployed, c, repo)[0] is True  # newer: deploys
    deploy, why = decide(deployed, a, repo)  # older (a promotion that queued): skipped
    assert deploy is False and "newer commit" in why
    with pytest.raises(OrderError, match="diverged"):
        decide(deployed, d, repo)
    with pytest.raises(OrderError, match="unknown to this clone"):
        decide("e" * 40, c, repo)
