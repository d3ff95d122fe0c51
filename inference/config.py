"""Serving configuration, read once from the environment at init.

The deploy pins the exact object: bucket, key, S3 VersionId and the bundle's SHA-256. Nothing
falls back to "whatever sits at the key" (the seed's behaviour): a missing variable is an error.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from inference.bundle import normalize_sha256

REQUIRED = ("MODEL_BUCKET", "MODEL_KEY", "MODEL_VERSION_ID", "MODEL_SHA256")
DEFAULT_CACHE_DIR = "/tmp"  # Lambda's only writable path; survives warm restarts of the process
DEFAULT_MAX_BATCH = 10_000  # 10k readings are ~0.8 MB of JSON, well under the 6 MB payload cap
# The whole S3 fetch, every attempt and pause included. Lambda's init phase is 10 s in all and
# also imports the runtime, unpickles and checks the bundle: 6 s leaves that room, and a
# healthy GetObject of a bundle takes well under a second.
DEFAULT_LOAD_DEADLINE_S = 6.0
# The share of readings the prediction log records (inference/prediction_log.py): 1 % keeps a
# drift report's sample in the thousands per day at modest traffic, at a log line each.
DEFAULT_PREDICTION_LOG_RATE = 0.01


class ConfigError(Exception):
    """A serving variable is missing or malformed."""


@dataclass(frozen=True)
class Config:
    bucket: str
    key: str
    version_id: str
    sha256: str
    endpoint_url: str | None = None
    cache_dir: Path = Path(DEFAULT_CACHE_DIR)
    max_batch: int = DEFAULT_MAX_BATCH
    model_version: str | None = None  # the MLflow version, set by the deploy from release.json
    load_deadline_s: float = DEFAULT_LOAD_DEADLINE_S
    prediction_log_rate: float = 0.0  # the environment's default is DEFAULT_PREDICTION_LOG_RATE
    prediction_log_seed: int | None = None  # repeatable sampling (tests)

    @property
    def uri(self) -> str:
        return f"s3://{self.bucket}/{self.key}?versionId={self.version_id}"

    @property
    def cache_path(self) -> Path:
        # Keyed by content, so a /tmp file can only ever stand for the bytes it is named after.
        return self.cache_dir / f"{self.sha256}.joblib"


def from_env(env: Mapping[str, str] | None = None) -> Config:
    """The function's configuration from its environment (``os.environ`` by default).

    Raises:
        ConfigError: a required variable is missing, or one is malformed; the message names it.
    """
    env = os.environ if env is None else env
    missing = [name for name in REQUIRED if not env.get(name, "").strip()]
    if missing:
        raise ConfigError(f"missing environment variable(s): {', '.join(missing)}")
    sha = normalize_sha256(env["MODEL_SHA256"])
    if sha is None:
        raise ConfigError("MODEL_SHA256 must be 64 hexadecimal characters")
    raw_batch = env.get("MAX_BATCH", "").strip() or str(DEFAULT_MAX_BATCH)
    try:
        max_batch = int(raw_batch)
    except ValueError:
        raise ConfigError(f"MAX_BATCH must be an integer, not {raw_batch!r}") from None
    if max_batch < 1:
        raise ConfigError("MAX_BATCH must be at least 1")
    raw_deadline = env.get("MODEL_LOAD_DEADLINE_S", "").strip() or str(DEFAULT_LOAD_DEADLINE_S)
    try:
        deadline = float(raw_deadline)
    except ValueError:
        deadline = math.nan
    if not (0 < deadline < math.inf):  # also refuses nan
        raise ConfigError(f"MODEL_LOAD_DEADLINE_S must be a positive number, not {raw_deadline!r}")
    rate, seed = _prediction_log(env)
    return Config(
        bucket=env["MODEL_BUCKET"].strip(),
        key=env["MODEL_KEY"].strip(),
        version_id=env["MODEL_VERSION_ID"].strip(),
        sha256=sha,
        endpoint_url=env.get("AWS_ENDPOINT_URL_S3") or None,
        cache_dir=Path(env.get("MODEL_CACHE_DIR") or DEFAULT_CACHE_DIR),
        max_batch=max_batch,
        model_version=env.get("MODEL_VERSION") or None,
        load_deadline_s=deadline,
        prediction_log_rate=rate,
        prediction_log_seed=seed,
    )


def _prediction_log(env: Mapping[str, str]) -> tuple[float, int | None]:
    raw_rate = env.get("PREDICTION_LOG_RATE", "").strip() or str(DEFAULT_PREDICTION_LOG_RATE)
    try:
        rate = float(raw_rate)
    except ValueError:
        rate = math.nan
    if not 0.0 <= rate <= 1.0:  # also refuses nan
        raise ConfigError(
            f"PREDICTION_LOG_RATE must be a number from 0 (off) to 1 (every reading), not"
            f" {raw_rate!r}"
        )
    raw_seed = env.get("PREDICTION_LOG_SEED", "").strip()
    try:
        seed = int(raw_seed) if raw_seed else None
    except ValueError:
        raise ConfigError(f"PREDICTION_LOG_SEED must be an integer, not {raw_seed!r}") from None
    return rate, seed
