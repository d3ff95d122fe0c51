"""An older commit never deploys over a newer one: the `order` step of deploy.yml.

    python -m waterml_infra.ci.order --stack WaterMl-dev-Serving-wqi --commit <sha> \
        [--github-output]

Each deploy tags its serving stack with the commit it came from (`cdk deploy --tags
commit=<sha>`). Runs of one model are serialized (the deploy job's concurrency group), but
not ordered: a promotion that started before a push can deploy after it. So before deploying,
this reads the stack's `commit` tag and decides:

- no stack or no tag yet (a first deploy), the same commit (a re-run), or a deployed commit that
  is an ancestor of this one: deploy (exit 0, `deploy=true`);
- this commit is an ancestor of the deployed one (a newer commit already deployed): skip
  (exit 0, `deploy=false`, a notice) - the newer run deployed everything this one would;
- neither is an ancestor of the other (history rewritten), or the deployed commit is unknown
  to this clone: refuse (exit 2) - start the deploy by hand from the commit that should serve.
Needs the clone's history (`fetch-depth: 0`) and `cloudformation:DescribeStacks` on the
environment's serving stacks (the deploy role has it).
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

from waterml_infra.ci.github import write_outputs

COMMIT_TAG = "commit"
REPO = Path(__file__).resolve().parents[3]
_SHA = re.compile(r"^[0-9a-f]{40}$")
DEPLOY, SKIP = True, False


class OrderError(ValueError):
    """The order cannot be told; the message says why (exit 2)."""


def deployed_commit(cloudformation: Any, stack: str) -> str | None:
    """The stack's `commit` tag, or None when there is no such stack or tag yet."""
    from botocore.exceptions import ClientError

    try:
        stacks = cloudformation.describe_stacks(StackName=stack)["Stacks"]
    except ClientError as exc:
        if "does not exist" in str(exc):
            return None
        raise
    tags = {t["Key"]: t["Value"] for t in (stacks[0].get("Tags") or [])} if stacks else {}
    return tags.get(COMMIT_TAG)


def _is_ancestor(older: str, newer: str, repo: Path) -> bool | None:
    """True/False; None when git does not know one of them."""
    result = subprocess.run(["git", "merge-base", "--is-ancestor", older, newer], cwd=repo,
                            capture_output=True, text=True)  # fmt: skip
    if result.returncode in (0, 1):
        return result.returncode == 0
    return None


def decide(deployed: str | None, commit: str, repo: Path = REPO) -> tuple[bool, str]:
    """Whether ``commit`` may deploy over ``deployed``, and why.

    Raises:
        OrderError: the two cannot be ordered (unknown commit, rewritten history, bad SHA).
    """
    for sha in filter(None, (deployed, commit)):
        if not _SHA.match(sha):
            raise OrderError(f"{sha!r} is not a full commit SHA")
    if deployed is None:
        return DEPLOY, "nothing deployed yet"
    if deployed == commit:
        return DEPLOY, "this commit is the one deployed (a re-run)"
    forward = _is_ancestor(deployed, commit, repo)
    if forward:
        return DEPLOY, f"{deployed[:12]} (deployed) is older than {commit[:12]}"
    backward = _is_ancestor(commit, deployed, repo)
    if backward:
        return SKIP, f"a newer commit ({deployed[:12]}) is already deployed: nothing to do"
    if forward is None or backward is None:
        raise OrderError(f"the deployed commit {deployed[:12]} is unknown to this clone")
    raise OrderError(
        f"{commit[:12]} and the deployed {deployed[:12]} are on diverged histories: "
        "start the deploy by hand from the commit that should serve"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--stack", required=True)
    parser.add_argument("--commit", required=True)
    parser.add_argument("--github-output", action="store_true")
    args = parser.parse_args(argv)
    import boto3

    try:
        deploy, why = decide(deployed_commit(boto3.client("cloudformation"), args.stack),
                             args.commit)  # fmt: skip
    except OrderError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"{'deploy' if deploy else '::notice title=skipped::skip'}: {args.stack}: {why}")
    if args.github_output:
        write_outputs({"deploy": "true" if deploy else "false"})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
