"""Progress inside a long train stage: trees done, time elapsed, an estimate of what is left.

One ``Progress`` is shared by every XGBoost fit of a stage (the model, and for banded
regression the out-of-fold and error models), so the estimate covers the whole stage. It is
an xgboost ``TrainingCallback`` that only reads the clock and counts rounds: it never touches
the booster, so the model bytes are the same with or without it.

The stage line (``[wqi] train    `` from ``training.engines.base.stage``) is still open while the
fits run; each progress line completes it and re-opens it, so the stage's own timing still
ends a well-formed line:

    [wqi] train     ... 4,120 / 12,660 trees, 10 s elapsed, about 21 s left
    [wqi] train      31.02 s  16,658 train / 4,165 held out (...)
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from typing import IO, Any

import xgboost as xgb

EVERY_SECONDS = 10.0  # a quiet 3 s stage prints nothing; a slow one says it is alive


def stage_prefix(model_name: str, stage: str = "train") -> str:
    """The open stage line, exactly as ``training.engines.base.stage`` starts it."""
    return f"[{model_name}] {stage:<9}"


class Progress(xgb.callback.TrainingCallback):
    """Counts boosting rounds (one tree each for these objectives) across a stage's fits."""

    def __init__(
        self,
        model_name: str,
        total_trees: int,
        every: float = EVERY_SECONDS,
        stream: IO[str] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        super().__init__()
        self.prefix = stage_prefix(model_name)
        self.total = max(total_trees, 1)
        self.every = every
        self.stream = stream
        self.clock = clock
        self.done = 0
        self.start = clock()
        self.next_report = self.start + every

    def after_iteration(self, model: Any, epoch: int, evals_log: Any) -> bool:
        self.done += 1
        now = self.clock()
        if now >= self.next_report:
            self.report(now)
            self.next_report = now + self.every
        return False  # never stop training early: that would change the model

    def report(self, now: float) -> None:
        elapsed = now - self.start
        left = elapsed * max(self.total - self.done, 0) / self.done
        stream = self.stream or sys.stderr  # looked up late: pytest's capsys swaps it
        line = (f" ... {self.done:,} / {self.total:,} trees, {elapsed:.0f} s elapsed, "
                f"about {left:.0f} s left")  # fmt: skip
        print(f"{line}\n{self.prefix}", end="", file=stream, flush=True)
