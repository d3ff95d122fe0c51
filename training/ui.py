"""`make ui`: the MLflow UI for the configured store, on loopback only."""

from __future__ import annotations

import os
import sys
from pathlib import Path

from settings import local_store_dir, tracking_uri

HOST, PORT = "127.0.0.1", os.environ.get("MLFLOW_UI_PORT", "5000")


def main() -> int:
    uri = tracking_uri()
    if uri.startswith(("http://", "https://")):  # a team's server is its own UI
        print(f"MLflow UI: open {uri} (the tracking server serves it; log in with your MLflow"
              " user). `make ui` serves a local store only.")  # fmt: skip
        return 0
    store = local_store_dir()
    if store is not None:
        store.mkdir(parents=True, exist_ok=True)
    mlflow = Path(sys.executable).with_name("mlflow")
    print(f"MLflow UI for {uri} on http://{HOST}:{PORT} (Ctrl-C stops it)", flush=True)
    # One worker and no job runner: 2 processes and ~0.5 GiB instead of 15 and ~3.6 GiB.
    env = os.environ | {"MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}
    args = [str(mlflow), "server", "--backend-store-uri", uri, "--host", HOST, "--port", PORT,
            "--workers", "1"]  # fmt: skip
    os.execve(args[0], args, env)
    return 0  # not reached


if __name__ == "__main__":
    sys.exit(main())
