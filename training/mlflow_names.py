"""How this repository talks to MLflow: the alias and tag names every part shares (training
writes them, the registry reads and moves them, the notebook and `make models` show them), and
a quiet import of MLflow. One home, so a renamed tag cannot leave a reader behind."""

from __future__ import annotations

import logging
import os
import warnings
from typing import Any

# Aliases: `candidate` follows the newest version that met its training gates; `champion`
# follows the live release.json (registry/).
CANDIDATE = "candidate"
CHAMPION = "champion"

# Lineage tags, set when a version is registered.
ARTIFACT_SHA256 = "artifact_sha256"  # the bundle's bytes
DATA_SHA256 = "data_sha256"  # the dataset's bytes
GIT_SHA = "git_sha"  # the commit, `-dirty` when the tree was not clean
LINEAGE_TAGS = (ARTIFACT_SHA256, DATA_SHA256, GIT_SHA)

# Release tags, set by promotion: where the bytes live in S3 and since when.
S3_URI = "s3_uri"
S3_VERSION_ID = "s3_version_id"
PROMOTED_AT = "promoted_at"


CLIENT_RETRIES = {"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "3", "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "2"}


def quiet_mlflow() -> Any:
    """``import mlflow`` with stderr kept for our own progress lines: no telemetry, no
    progress bars, no INFO about database set-up, no deprecation chatter."""
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    # With a tracking server, MLflow prints "View run ... at: URL" on stdout, which carries
    # only results here (`python -m training --json`: JSON lines).
    os.environ.setdefault("MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT", "true")
    # A server that is gone fails a trainer in about 15 s (three retries, 2-4-8 s apart),
    # not MLflow's 4.5 minutes (seven); a variable already set wins.
    for name, value in CLIENT_RETRIES.items():
        os.environ.setdefault(name, value)
    warnings.filterwarnings("ignore", module="mlflow")
    import mlflow

    # After the import: mlflow configures its own logger.
    logging.getLogger("mlflow").setLevel(logging.WARNING)
    sagemaker_headers_for_arns_only()
    return mlflow


def sagemaker_headers_for_arns_only() -> None:
    """The `sagemaker-mlflow` plugin (the registry group: a SageMaker tracking server's ARN
    as the tracking URI) registers a request-header provider through an entry point, so
    MLflow loads it at import whatever the URI; it says it is in context for every URI, so
    on every request to any other server it fails (IndexError: no ARN to parse) and MLflow
    logs a WARNING (154 lines in one training against an http:// server). It is in context
    for an ARN alone."""
    try:
        from sagemaker_mlflow.mlflow_sagemaker_request_header_provider import (
            MlflowSageMakerRequestHeaderProvider as Provider,
        )
    except ImportError:  # the plugin is not installed: nothing to gate
        return

    def in_context(self: Any) -> bool:
        import mlflow

        return mlflow.get_tracking_uri().startswith("arn:")

    Provider.in_context = in_context  # type: ignore[method-assign]
