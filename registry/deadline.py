"""One overall deadline per registry command (``REGISTRY_DEADLINE_S``, default 300 s).

Socket timeouts bound each wait, not a whole request: an endpoint that trickles one byte every
few seconds, or that botocore retries, can hold a command for many minutes. So the CLI runs
each command under a wall-clock alarm (SIGALRM, so it cuts through a blocking read) that
raises ``DeadlineExceeded`` wherever the command is.

A command that writes the manifest keeps a reserve at the end (``reserve_s``): when its work
runs out of time after the write was sent, ``settling()`` lends it the reserve to ask S3
whether the write applied, so that even then it reports what is true. The whole never runs
past the deadline. Off the main thread (the library called from a test's threads) there is
no alarm and every helper here is a no-op.
"""

from __future__ import annotations

import math
import os
import signal
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType

ENV = "REGISTRY_DEADLINE_S"
DEFAULT_S = 300.0


class DeadlineExceeded(BaseException):
    """The command's time (or one bounded attempt's) is up.

    A BaseException, like KeyboardInterrupt: no ``except Exception`` on the way (MLflow's,
    botocore's, ours) may swallow it or retype it as some other failure."""

    def __init__(self, limit: _Limit) -> None:
        super().__init__(f"{limit.seconds:g} s")
        self.limit = limit
        self.doing = ""  # what the command was waiting for, filled in on the way up

    @property
    def seconds(self) -> float:
        return self.limit.seconds


class _Limit:
    def __init__(self, end: float, seconds: float) -> None:
        self.end, self.seconds = end, seconds
        self.fired = False  # each limit interrupts once; handlers then run undisturbed


_stack: list[_Limit] = []  # the active limits; the topmost that has not fired is in force


def seconds_from_env() -> float:
    """``REGISTRY_DEADLINE_S``, or the default.

    Raises:
        ValueError: not a positive, finite number of seconds.
    """
    raw = os.environ.get(ENV, "").strip()
    if not raw:
        return DEFAULT_S
    try:
        value = float(raw)
    except ValueError:
        value = math.nan
    if not (math.isfinite(value) and value > 0):
        raise ValueError(f"{ENV}={raw!r} is not a positive number of seconds")
    return value


def _armable() -> bool:
    return threading.current_thread() is threading.main_thread()


def _in_force() -> _Limit | None:
    return next((limit for limit in reversed(_stack) if not limit.fired), None)


def _arm() -> None:
    limit = _in_force()
    # A limit already passed fires at once (an itimer of 0 would disarm instead).
    left = 0.0 if limit is None else max(limit.end - time.monotonic(), 1e-6)
    signal.setitimer(signal.ITIMER_REAL, left)


def _fire(signum: int, frame: FrameType | None) -> None:
    limit = _in_force()
    if limit is None:
        return
    if time.monotonic() < limit.end:  # a signal of a limit left meanwhile: not this one's
        _arm()
        return
    limit.fired = True
    now = time.monotonic()
    for passed in _stack:  # every limit that has passed fires now, once: none fires again
        passed.fired = passed.fired or passed.end <= now  # while this exception unwinds
    raise DeadlineExceeded(limit)


@contextmanager
def _push(limit: _Limit) -> Iterator[_Limit]:
    _stack.append(limit)
    _arm()
    try:
        yield limit
    finally:
        del _stack[len(_stack) - 1 - _stack[::-1].index(limit)]  # this entry (settling lends
        _arm()  # the command's own limit a second time)


@contextmanager
def command(seconds: float, reserve_s: float = 0.0) -> Iterator[None]:
    """Run one command within ``seconds``; its work may use all but ``reserve_s`` of them.

    Raises:
        DeadlineExceeded: from wherever the command is when its time is up.
    """
    if not _armable():
        yield
        return
    previous = signal.signal(signal.SIGALRM, _fire)
    end = time.monotonic() + seconds
    try:
        with _push(_Limit(end, seconds)), _push(_Limit(end - reserve_s, seconds)):
            yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


@contextmanager
def settling() -> Iterator[None]:
    """Lend the reserve: run until the command's very end (a write in doubt is settled).

    Raises:
        DeadlineExceeded: at that end (at once when it has passed).
    """
    if not (_armable() and _stack):
        yield
        return
    total = _stack[0]
    # Past the very end there is nothing to lend: an expired limit stops the settling at once.
    with _push(total if not total.fired else _Limit(time.monotonic(), total.seconds)):
        yield


@contextmanager
def bounded(seconds: float) -> Iterator[_Limit | None]:
    """One attempt of at most ``seconds`` (and never past the limit in force).

    Raises:
        DeadlineExceeded: its ``limit`` is the one yielded here when this attempt's time is
            up, the outer one's when that came first.
    """
    outer = _in_force() if _armable() else None
    if outer is None:
        yield None
        return
    end = min(outer.end, time.monotonic() + seconds)
    with _push(_Limit(end, seconds)) as limit:
        yield limit


def active() -> bool:
    """Whether a command deadline is in force here."""
    return _armable() and bool(_stack)
