"""What a command has done to production so far: the record the CLI reports from.

The exit code follows this record, not whichever exception happens to reach the CLI: once a
release is live, a later failure (MLflow, closing an intent, the deadline, an interrupt) is a
warning and the command still succeeds with that release; while a manifest write may be on its
way, an interruption is reported as "unknown". Off the CLI (a library caller, a test thread)
each call gets a throwaway record."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass

from registry.manifest import Release


@dataclass
class Outcome:
    model: str = ""
    writing: bool = False  # a manifest write is on its way or in doubt
    shipped: Release | None = None  # the release this command wrote, once S3 shows it live
    printed: bool = False  # the result went to stdout (or stdout was closed)


_current: ContextVar[Outcome | None] = ContextVar("registry_outcome", default=None)


@contextmanager
def recording(model: str) -> Iterator[Outcome]:
    """A fresh record for one command."""
    token = _current.set(Outcome(model))
    try:
        yield _current.get() or Outcome(model)
    finally:
        _current.reset(token)


def current() -> Outcome:
    return _current.get() or Outcome()
