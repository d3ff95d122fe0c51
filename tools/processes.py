"""The processes the local servers run as (S3, PostgreSQL, MLflow): whether one still runs,
and waiting for one to end."""

from __future__ import annotations

import contextlib
import os
import time


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except OSError:
        return False
    return True


def wait_gone(pid: int, timeout: float) -> bool:
    """Whether ``pid`` ended within ``timeout`` seconds (reaped when it is our child)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(ChildProcessError):
            os.waitpid(pid, os.WNOHANG)
        if not alive(pid):
            return True
        time.sleep(0.05)
    return False
