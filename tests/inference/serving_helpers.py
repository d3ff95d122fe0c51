"""Helpers shared by the serving tests (a module name no other test folder uses)."""

from __future__ import annotations

import json
import shutil
import types
from pathlib import Path
from typing import Any

from inference.bundle import sha256_hex
from inference.config import Config

KEY = "models/wqi/model.joblib"
REPO = Path(__file__).resolve().parents[2]


def uv() -> str:
    """The uv binary: `.tools/bin/uv` (bootstrapped by `make venv`), else uv on PATH.

    Never a skip: a test that quietly skips hides the check it stands for."""
    import pytest

    local = REPO / ".tools" / "bin" / "uv"
    found = str(local) if local.exists() else shutil.which("uv")
    if not found:
        pytest.fail(
            f"uv not found at {local} nor on PATH: run `make venv` (it bootstraps uv) or "
            "install uv; the image's dependency checks cannot run without it"
        )
    return found


def local_config(data: bytes, cache_dir: Path, **overrides: Any) -> Config:
    """A config whose bundle sits in the /tmp cache already, as a GET by its pin left it (no S3
    needed)."""
    from inference import loader

    fields: dict[str, Any] = {
        "bucket": "unused", "key": KEY, "version_id": "v-local", "sha256": sha256_hex(data),
        "endpoint_url": "http://127.0.0.1:9", "cache_dir": cache_dir,
    }  # fmt: skip
    fields.update(overrides)
    config = Config(**fields)
    loader.cache_verified(config, data)
    return config


def upload(s3_env: dict[str, str], data: bytes, key: str = KEY) -> str:
    """Put ``data`` into the test's versioned bucket; returns the new VersionId."""
    import boto3

    s3 = boto3.client("s3", endpoint_url=s3_env["endpoint"])
    return str(s3.put_object(Bucket=s3_env["bucket"], Key=key, Body=data)["VersionId"])


def s3_config(s3_env: dict[str, str], version_id: str, sha: str, cache_dir: Path) -> Config:
    return Config(
        bucket=s3_env["bucket"], key=KEY, version_id=version_id, sha256=sha,
        endpoint_url=s3_env["endpoint"], cache_dir=cache_dir,
    )  # fmt: skip


def context(request_id: str = "req-123") -> Any:
    return types.SimpleNamespace(
        aws_request_id=request_id,
        function_name="waterml-inference",
        invoked_function_arn="arn:aws:lambda:us-east-1:123456789012:function:waterml-inference",
    )


def body(response: dict[str, Any]) -> Any:
    return json.loads(response["body"])
