"""The sampled prediction log: one structured record per sampled reading, through the
Powertools logger (the record is the log line's ``message``), so CloudWatch Logs holds it and a
subscription filter or an export task takes it to S3 (inference/README.md, "Prediction log").

A record::

    {"kind": "prediction", "time": "2026-11-30T06:30:00.123Z", "request_id": "...",
     "model": {"name", "version", "s3VersionId"}, "device": "buoy-01" | null,
     "inputs": {feature: value, ...}, "timestamp": "2026-11-30T06:30:00+10:00" | null,
     "output": {the answer without deviceId}}

``inputs`` holds every feature the model read: the readings as sent (a nullable one's null
too) and the calendar features derived from the timestamp (null without one).

Sampling: each reading independently with probability ``PREDICTION_LOG_RATE`` (0 turns the log
off and costs one comparison). A batch draws the gaps between sampled rows (geometric), so
its cost grows with the rows sampled, not the rows answered. ``PREDICTION_LOG_SEED`` makes
the draws repeatable (tests).
"""

from __future__ import annotations

import math
import random
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from inference.calendar_features import Calendar
from inference.observability import logger

KIND = "prediction"
DEVICE_ID = "deviceId"


class PredictionLog:
    def __init__(self, rate: float, seed: int | None = None) -> None:
        if not 0.0 <= rate <= 1.0:
            raise ValueError(f"the prediction log's rate must be between 0 and 1, not {rate}")
        self.rate = rate
        # Unseeded: the process-wide generator, seeded from the OS when the process starts.
        self._uniform = random.random if seed is None else random.Random(seed).random
        # log(1 - rate): the geometric draw's scale (rate 1 samples every row without it).
        self._log_keep = math.log1p(-rate) if 0.0 < rate < 1.0 else 0.0

    def sample(self, n: int) -> list[int]:
        """The rows of an invocation of ``n`` readings to log, in order."""
        rate = self.rate
        if rate <= 0.0 or n <= 0:
            return []
        if rate >= 1.0:
            return list(range(n))
        uniform = self._uniform
        if n == 1:
            return [0] if uniform() < rate else []
        chosen: list[int] = []
        i = -1
        while True:  # the gap to the next sampled row is geometric with success ``rate``
            i += 1 + int(math.log1p(-uniform()) / self._log_keep)
            if i >= n:
                return chosen
            chosen.append(i)

    def write(
        self,
        rows: Sequence[int],
        records: Sequence[Any],
        answers: Sequence[dict[str, Any]],
        model: dict[str, Any],
        request_id: str,
        calendar: Calendar | None,
    ) -> None:
        """One log line per sampled row. ``records`` are the validated request records, in
        the answers' order."""
        time = datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
        identity = {k: model.get(k) for k in ("name", "version", "s3VersionId")}
        for i in rows:
            record, answer = records[i], answers[i]
            stamp = record.get("timestamp")
            inputs = dict(record["readings"])
            if calendar is not None:
                derived = calendar.missing if stamp is None else calendar.row(stamp)
                for name, value in zip(calendar.names, derived, strict=True):
                    inputs[name] = None if math.isnan(value) else value
            logger.info(
                {
                    "kind": KIND,
                    "time": time,
                    "request_id": request_id,
                    "model": identity,
                    "device": record.get(DEVICE_ID),
                    "inputs": inputs,
                    "timestamp": stamp,
                    "output": {k: v for k, v in answer.items() if k != DEVICE_ID},
                }
            )
