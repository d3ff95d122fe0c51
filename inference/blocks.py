"""Large batches split into contiguous row blocks that run side by side, one per vCPU.

onnxruntime releases the GIL while it predicts, so the model work of one block overlaps the
Python work (validation, answers) of another. Each block is prepared on the calling thread
(needs the GIL) and finished on its own thread (mostly onnxruntime); the calling thread hands
the GIL over at each start, so a block starts predicting at once rather than when the caller
next yields. Single rows and small batches stay on the calling thread.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from itertools import pairwise
from threading import Event
from typing import TYPE_CHECKING, TypeVar

if TYPE_CHECKING:  # concurrent.futures is imported only where a pool is made
    from concurrent.futures import Future, ThreadPoolExecutor

P = TypeVar("P")
T = TypeVar("T")
# Lambda gives a function one full vCPU per 1,769 MB; below that a second thread only contends.
FULL_VCPU_MB = 1769
MIN_ROWS = 256  # from here on a batch is split (a single row never is)
# The caller prepares every block and finishes its own last, so its block is a little smaller
# (2 vCPUs, 10,000 rows: 48/52; anything from 0.88 to 0.96 measured the same within noise).
CALLER_SHARE = 0.96


def threads_available() -> int:
    """``INFERENCE_BATCH_THREADS``, else the vCPUs the function has."""
    configured = os.environ.get("INFERENCE_BATCH_THREADS")
    if configured:
        return max(1, int(configured))
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    memory = os.environ.get("AWS_LAMBDA_FUNCTION_MEMORY_SIZE")
    if memory is not None:
        cpus = min(cpus or 1, max(1, int(memory) // FULL_VCPU_MB))
    return max(1, cpus or 1)


def joined(parts: list[list[T]]) -> list[T]:
    """The blocks' lists as one list in row order (the first extended in place, at C speed)."""
    whole = parts[0]
    for part in parts[1:]:
        whole += part
    return whole


class Blocks:
    """A batch's row blocks side by side: each prepared on the calling thread, then finished
    on a thread of its own (the caller finishes the first block itself)."""

    def __init__(self, threads: int | None = None) -> None:
        self.threads = threads or threads_available()
        self._pool: ThreadPoolExecutor | None = None
        if self.threads > 1:  # imported only here: most Lambda sizes have a single vCPU
            from concurrent.futures import ThreadPoolExecutor

            self._pool = ThreadPoolExecutor(self.threads - 1, thread_name_prefix="block")

    def map(self, rows: int, prepare: Callable[[int, int], P], finish: Callable[[P], T]) -> list[T]:
        """``finish(prepare(lo, hi))`` for each row block, results in row order. Every prepare
        runs on the calling thread; the first block is finished there too, after the others
        have started on the pool. An exception in any block propagates."""
        if not self.splits(rows):
            return [finish(prepare(0, rows))]
        first = round(rows / self.threads * CALLER_SHARE)
        size, extra = divmod(rows - first, self.threads - 1)
        edges = [0, *(first + i * size + min(i, extra) for i in range(self.threads))]
        spans = list(pairwise(edges))
        pending = [self._start(finish, prepare(lo, hi)) for lo, hi in spans[1:]]
        return [finish(prepare(*spans[0])), *(f.result() for f in pending)]

    def splits(self, rows: int) -> bool:
        """Whether a batch of ``rows`` is split into blocks."""
        return self._pool is not None and rows >= MIN_ROWS

    def _start(self, finish: Callable[[P], T], prepared: P) -> Future[T]:
        assert self._pool is not None
        started = Event()

        def run() -> T:
            started.set()
            return finish(prepared)

        future = self._pool.submit(run)
        started.wait()  # hand the GIL over until the block is running
        return future
