"""Stops the team's MLflow server process when what it serves for is gone: the `mlflow server`
process that started it, or PostgreSQL. Killed, the first left this one serving the URI's port
with nothing recording it (the next `make tracking-up` moved to another port), and without the
second every API request failed with a 503 while /health said 200. Now nothing serves the
port: the next `up` starts clean on it, and a client fails at once (connection refused).

Runs in the uvicorn process that `mlflow server` starts, which imports it with
tools/team_auth.py at its first request (tools/tracking_server.py makes one as it starts)."""

from __future__ import annotations

import os
import signal
import sys
import threading
import time
from pathlib import Path

from tools import processes

ENABLED_ENV = "WATERML_TEAM_SERVER"  # set in the server's environment only
POSTGRES_PID_ENV = "WATERML_POSTGRES_PID"
EVERY_SECONDS = 0.5
GRACE_SECONDS = 10.0  # for uvicorn's graceful shutdown, then the process exits regardless


def start() -> None:
    """Watch the parent and PostgreSQL from a daemon thread, in the server's uvicorn process
    only (never in a test or client that imports tools/team_auth.py)."""
    if os.environ.get(ENABLED_ENV) != "1" or "uvicorn" not in sys.orig_argv:
        return
    postgres = int(os.environ.get(POSTGRES_PID_ENV) or 0)
    threading.Thread(
        target=_watch, args=(os.getppid(), postgres), name="waterml-watchdog", daemon=True
    ).start()


def _watch(parent: int, postgres: int) -> None:
    # A parent that is not `mlflow server` died before this started (we were re-parented).
    while (
        _is_mlflow(parent)
        and os.getppid() == parent
        and (not postgres or processes.alive(postgres))
    ):
        time.sleep(EVERY_SECONDS)
    os.kill(os.getpid(), signal.SIGTERM)  # uvicorn closes the port and finishes its requests
    time.sleep(GRACE_SECONDS)
    os._exit(1)


def _is_mlflow(pid: int) -> bool:
    try:
        return b"mlflow" in Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return sys.platform != "linux"  # no /proc: the ppid check alone
