"""The contract with training: promote the bundles the real pipeline registered (the shared
session fixture `trained`), on a copy of its MLflow store so other tests see it untouched."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import boto3
import pytest

from registry import cli
from tests.registry.registry_helpers import approve

pytestmark = pytest.mark.integration


def test_real_bundles_promote_and_rerun_is_a_noop(
    trained_store: dict[str, Any],
    s3_env: dict[str, str],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    trained = trained_store
    results = trained["results"]
    approvals = approve(tmp_path / "approved.toml", **{n: r.version for n, r in results.items()})
    s3 = boto3.client("s3")

    for name, result in results.items():
        if not result.candidate:  # a model added below its gates: promotion refuses it
            assert cli.main(["promote", name, "--approvals", str(approvals)]) == 8
            capsys.readouterr()
            continue
        assert cli.main(["promote", name, "--approvals", str(approvals)]) == 0
        release = json.loads(capsys.readouterr().out)
        assert release["sha256"] == result.artifact_sha256
        obj = s3.get_object(Bucket=s3_env["bucket"], Key=release["key"],
                            VersionId=release["version_id"])  # fmt: skip
        body = obj["Body"].read()
        assert hashlib.sha256(body).hexdigest() == result.artifact_sha256
        assert body == trained["bundles"][name].read_bytes()

        assert cli.main(["promote", name, "--approvals", str(approvals)]) == 0
        assert json.loads(capsys.readouterr().out) == release
