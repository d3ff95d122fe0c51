"""What the registry prints: results on stdout, progress and warnings on stderr."""

from __future__ import annotations

import sys


def stderr(msg: str) -> None:
    """One progress or warning line, ``registry: <msg>``."""
    print(f"registry: {msg}", file=sys.stderr, flush=True)
