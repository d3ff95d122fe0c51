"""Every path and location the repository uses, and where MLflow lives; nothing else hard-codes
one. Training, the registry, monitoring, the tools and the benchmarks share it, so it belongs to
no stage folder. ``inference/`` never imports it: the Lambda image carries ``inference/`` alone."""

from __future__ import annotations

import os
from pathlib import Path

REPO = Path(__file__).resolve().parent
DATA_DIR = REPO / "data"
EXPECTATIONS_DIR = DATA_DIR / "expectations"
SPECS_DIR = REPO / "training" / "specs"
MLRUNS_DIR = REPO / "mlruns"  # git-ignored: the local SQLite store and artifact folder
LOCAL_DIR = REPO / ".local"  # git-ignored: local S3 data, the demo's store, bench work, caches
TOOLS_DIR = REPO / ".tools"  # the pinned uv
APPROVALS_FILE = REPO / "registry" / "approved.toml"
DEFAULT_TRACKING_URI = f"sqlite:///{MLRUNS_DIR / 'mlflow.db'}"
BUNDLE_ARTIFACT_DIR = "bundle"  # the bundle's folder inside a run's artifacts
# The modules at the top of the checkout, outside any stage folder: every stage may import
# them, so whatever ships part of the code ships all of them (the Spark job's archive; the
# image copies document.py for the drift job). A test holds this against the checkout.
TOP_LEVEL_MODULES = ("document.py", "settings.py")


def tracking_uri() -> str:
    """``MLFLOW_TRACKING_URI`` when set (a team's server), else the checkout's SQLite store."""
    return os.environ.get("MLFLOW_TRACKING_URI") or DEFAULT_TRACKING_URI


def local_store_dir() -> Path | None:
    """The folder of a SQLite tracking store, where its artifacts live too; None for a server."""
    uri = tracking_uri()
    return Path(uri.removeprefix("sqlite:///")).parent if uri.startswith("sqlite:///") else None
