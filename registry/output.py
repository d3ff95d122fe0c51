"""What the registry prints: the result on stdout, progress and warnings on stderr.

Printing never decides an exit code: by the time a result is printed, what the command did is
settled. A closed stdout (``| head``, ``| true``, ``>&-``) or stderr loses the text, and only
that; ``BrokenPipeError`` is a ``ConnectionError``, so letting it escape would make it look
like a storage failure."""

from __future__ import annotations

import os
import sys
from typing import TextIO

# The last line of `releases`: release.json says what is released, and a CodeDeploy rollback
# leaves it naming the new model while `live` serves the previous one.
DEPLOYED_HINT = (
    "what each environment's live alias serves: "
    "PYTHONPATH=infra python -m waterml_infra.ci.status --env ENV"
)


def _write(stream: TextIO | None, text: str) -> bool:
    """Write one line; False when the stream is closed (and from then on, silently gone)."""
    if stream is None:  # started with the descriptor closed
        return False
    try:
        stream.write(text + "\n")
        stream.flush()
    except (BrokenPipeError, ValueError):  # ValueError: the file object was closed
        _silence(stream)
        return False
    except OSError:  # EIO and the like on a terminal that went away
        return False
    return True


def _silence(stream: TextIO) -> None:
    """Point a broken stream at /dev/null, so that the interpreter's flush at exit does not
    fail again (and turn the exit status into 120)."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, stream.fileno())
        os.close(devnull)
    except (OSError, ValueError):
        pass


def stderr(msg: str) -> None:
    """One progress or warning line, ``registry: <msg>``."""
    _write(sys.stderr, f"registry: {msg}")


def stdout(text: str) -> None:
    """The result. If stdout is closed, say so on stderr: the outcome stands."""
    if not _write(sys.stdout, text):
        stderr("warning: stdout is closed; the result above was not printed (the exit code"
               " still says what happened)")  # fmt: skip
