"""Finds the pinned bundle's bytes, proves them, and only then unpickles them.

Lookup: the in-memory cache, then ``/tmp/<sha256>.joblib``, then S3 GetObject with the pinned
VersionId. The SHA-256 of the bytes to unpickle is checked exactly once, on every path, before
``bundle.loads``: a stale or corrupt /tmp file is deleted and re-fetched, never read as a
bundle. The memory cache holds verified content by SHA-256; identity is per load.
"""

from __future__ import annotations

import logging
import os
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from inference import s3_get, sanity
from inference.bundle import BundleError, DigestMismatch, loads, verify_digest
from inference.config import Config
from inference.predictor import Predictor

log = logging.getLogger(__name__)

S3_ATTEMPTS = s3_get.ATTEMPTS  # total attempts, with backoff (botocore: "standard" mode)
S3_CONNECT_TIMEOUT = 2.0
S3_READ_TIMEOUT = 10.0
_NOT_FOUND = {"NoSuchKey", "NoSuchVersion", "NoSuchBucket", "404", "InvalidArgument"}


class LoadError(Exception):
    """The pinned bundle could not be fetched; nothing was unpickled."""


class ModelNotFound(LoadError):
    """The bucket, key or pinned VersionId does not exist."""


class S3Unreachable(LoadError):
    """S3 did not answer after the bounded retry."""


@dataclass
class Model:
    """A verified, sanity-checked bundle ready to serve, and where it came from."""

    bundle: dict[str, Any]
    predictor: Predictor
    sha256: str
    version_id: str
    source: str  # "memory", "tmp" or "s3"
    configured_version: str | None = None
    timings_ms: dict[str, float] = field(default_factory=dict)

    @property
    def name(self) -> str:
        return str(self.bundle["name"])

    @property
    def identity(self) -> dict[str, Any]:
        """What every answer carries: the model that made it."""
        meta = self.bundle.get("metadata", {})
        version = meta.get("mlflow_version") or self.configured_version
        return {
            "name": self.name,
            "version": None if version is None else str(version),
            "s3VersionId": self.version_id,
            "sha256": self.sha256[:12],
        }


@dataclass(frozen=True)
class _Verified:
    """What the memory cache holds: content only. Identity (VersionId, MLflow version) and
    source belong to each load's own Model, so byte-identical releases never share them."""

    bundle: dict[str, Any]
    predictor: Predictor
    timings_ms: dict[str, float]


_MEMORY: dict[str, _Verified] = {}  # sha256 -> the verified, sanity-checked content


def clear_memory() -> None:
    _MEMORY.clear()


def s3_client(config: Config) -> Any:
    import boto3  # deferred: a /tmp hit needs no AWS SDK (~0.2 s of imports)
    from botocore.config import Config as BotoConfig

    boto_config = BotoConfig(
        retries={"total_max_attempts": S3_ATTEMPTS, "mode": "standard"},
        connect_timeout=S3_CONNECT_TIMEOUT,
        read_timeout=S3_READ_TIMEOUT,
    )
    return boto3.client("s3", endpoint_url=config.endpoint_url, config=boto_config)


def fetch_s3(config: Config, client: Any = None) -> bytes:
    """GetObject with the pinned VersionId: signed stdlib HTTP when the credentials are in the
    environment (as in Lambda), else boto3 with its own credential chain."""
    creds = None if client is not None else s3_get.Credentials.from_env()
    if creds is not None:
        try:
            return s3_get.get_object(
                config.bucket, config.key, config.version_id, creds, config.endpoint_url
            )
        except s3_get.S3Error as exc:
            if exc.code in _NOT_FOUND or exc.status == 404:
                raise ModelNotFound(f"{config.uri} does not exist ({exc.code})") from exc
            raise LoadError(f"S3 refused {config.uri}: {exc}") from exc
        except s3_get.S3ConnectionError as exc:
            raise S3Unreachable(
                f"S3 unreachable for {config.uri} after {S3_ATTEMPTS} attempts: {exc}"
            ) from exc
    return _fetch_boto3(config, client or s3_client(config))


def _fetch_boto3(config: Config, client: Any) -> bytes:
    from botocore.exceptions import BotoCoreError, ClientError

    try:
        response = client.get_object(
            Bucket=config.bucket, Key=config.key, VersionId=config.version_id
        )
        return bytes(response["Body"].read())
    except ClientError as exc:
        code = str(exc.response.get("Error", {}).get("Code", ""))
        if code in _NOT_FOUND:
            raise ModelNotFound(f"{config.uri} does not exist ({code})") from exc
        raise LoadError(f"S3 refused {config.uri}: {code or exc}") from exc
    except BotoCoreError as exc:  # connection refused, timeouts: after the retries
        raise S3Unreachable(
            f"S3 unreachable for {config.uri} after {S3_ATTEMPTS} attempts: {exc}"
        ) from exc


def _write_atomically(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".part")
    try:
        with os.fdopen(fd, "wb") as out:
            out.write(data)
        os.replace(tmp, path)  # readers see the old file or the whole new one, never a part
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def fetch_verified(config: Config, client: Any = None) -> tuple[bytes, str]:
    """The pinned bundle's bytes, digest-checked, and where they came from ("tmp" or "s3")."""
    path = config.cache_path
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        data = None
    except OSError as exc:
        log.warning("cannot read cached bundle %s: %s", path, exc)
        data = None
    if data is not None:
        try:
            verify_digest(data, config.sha256, str(path))
            return data, "tmp"
        except DigestMismatch:
            log.warning("cached bundle %s fails its digest; fetching it again", path)
            path.unlink(missing_ok=True)
    data = fetch_s3(config, client)
    verify_digest(data, config.sha256, config.uri)  # raises DigestMismatch before any unpickle
    try:
        _write_atomically(path, data)
    except OSError as exc:  # a full or read-only /tmp costs a re-fetch next time, nothing more
        log.warning("cannot cache bundle at %s: %s", path, exc)
    return data, "s3"


def load(config: Config, client: Any = None) -> Model:
    """The served model for ``config``. Verified content is kept in memory by SHA-256; every
    call returns its own Model carrying this config's VersionId and version."""
    cached = _MEMORY.get(config.sha256)
    if cached is not None:
        return _model(config, cached, "memory")
    started = time.perf_counter()
    data, source = fetch_verified(config, client)  # the one digest check of these bytes
    fetched = time.perf_counter()
    # Warnings are errors from here on: a bundle that loads "with a warning" does not serve.
    with sanity.strict_warnings():
        bundle = loads(data)
        predictor = Predictor(bundle)
        sanity.check(bundle, predictor)
    done = time.perf_counter()
    verified = _Verified(
        bundle=bundle,
        predictor=predictor,
        timings_ms={
            "fetch": round((fetched - started) * 1000, 2),
            "verify_load_check": round((done - fetched) * 1000, 2),
            "total": round((done - started) * 1000, 2),
        },
    )
    _MEMORY[config.sha256] = verified
    return _model(config, verified, source)


def _model(config: Config, verified: _Verified, source: str) -> Model:
    return Model(
        bundle=verified.bundle,
        predictor=verified.predictor,
        sha256=config.sha256,
        version_id=config.version_id,
        source=source,
        configured_version=config.model_version,
        timings_ms=dict(verified.timings_ms) if source != "memory" else {},
    )


__all__ = [
    "BundleError",
    "DigestMismatch",
    "LoadError",
    "Model",
    "ModelNotFound",
    "S3Unreachable",
    "load",
]
