"""Named points where a test can kill the process, to prove that re-running a command after a
crash at any step lands where one uninterrupted run would.

``REGISTRY_FAILPOINT=<name>`` makes the process SIGKILL itself on reaching that point: no
handler, ``finally`` or buffered write runs, exactly as when a CI runner dies. Unset (always, in
production) it costs one environment lookup per step."""

from __future__ import annotations

import os
import signal

ENV = "REGISTRY_FAILPOINT"

# In the order a promotion or rollback reaches them.
POINTS = (
    "checked",  # every check passed, nothing written
    "uploaded",  # promote: the bundle is in S3, unreferenced
    "signed",  # promote: its attachments and signature are in S3, unreferenced
    "intent-written",  # rollback: the resolved target is recorded
    "manifest-written",  # release.json replaced, nothing confirmed
    "tags-written",  # promote: the MLflow version carries the release's S3 tags
    "champion-moved",  # the alias follows the manifest
    "done",  # everything written, nothing printed yet
)


def hit(name: str) -> None:
    if os.environ.get(ENV) == name:
        os.kill(os.getpid(), signal.SIGKILL)
