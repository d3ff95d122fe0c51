"""Finds the pinned bundle's bytes, proves them, and only then unpickles them.

Lookup: the in-memory cache, then ``/tmp/<sha256>.joblib``, then S3 GetObject with the pinned
VersionId. The SHA-256 of the bytes to unpickle is checked exactly once, on every path, before
``bundle.loads``: a stale or corrupt /tmp file is deleted and re-fetched, never read as a
bundle. The memory cache holds verified content by SHA-256; identity is per load, and names only
a pin (bucket, key, VersionId) whose bytes a GET proved: the /tmp copy keeps that pin beside it
(``<sha256>.joblib.pin.json``), and a copy or memory entry verified for another pin is
re-fetched by the new one, never vouched for. The S3 fetch has one total deadline
(``MODEL_LOAD_DEADLINE_S``) that fits inside Lambda's init phase.
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from inference import s3_get, sanity
from inference.bundle import BundleError, DigestMismatch, loads, verify_digest
from inference.config import Config
from inference.predictor import Predictor

log = logging.getLogger(__name__)

S3_ATTEMPTS = s3_get.ATTEMPTS  # total attempts, with backoff, within the load deadline
S3_CONNECT_TIMEOUT = s3_get.CONNECT_TIMEOUT
S3_READ_TIMEOUT = s3_get.READ_TIMEOUT
_NOT_FOUND = {"NoSuchKey", "NoSuchVersion", "NoSuchBucket", "404", "InvalidArgument"}


class LoadError(Exception):
    """The pinned bundle could not be fetched; nothing was unpickled."""


class ModelNotFound(LoadError):
    """The bucket, key or pinned VersionId does not exist."""


class S3Unreachable(LoadError):
    """S3 did not answer within the load deadline (after at most S3_ATTEMPTS attempts)."""

    def __init__(
        self, config: Config, endpoint: str, attempts: int, elapsed: float, cause: object
    ) -> None:
        super().__init__(
            f"S3 unreachable at {endpoint} for {config.uri} after {attempts} attempt"
            f"{'' if attempts == 1 else 's'} in {elapsed:.2f} s (deadline"
            f" {config.load_deadline_s:g} s, MODEL_LOAD_DEADLINE_S): {cause}"
        )
        self.endpoint, self.attempts, self.elapsed = endpoint, attempts, elapsed


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
        version = self.configured_version  # MODEL_VERSION: a bundle cannot know its own
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
_PINS: set[tuple[str, str, str, str]] = set()  # (bucket, key, VersionId, sha256) a GET proved


def clear_memory() -> None:
    _MEMORY.clear()
    _PINS.clear()


def _pin(config: Config) -> tuple[str, str, str, str]:
    return (config.bucket, config.key, config.version_id, config.sha256)


def s3_client(config: Config) -> Any:
    """A boto3 S3 client with the loader's socket waits and no retries of its own
    (``fetch_s3`` paces the attempts of a client passed to it)."""
    import boto3  # deferred: a /tmp hit needs no AWS SDK (~0.2 s of imports)
    from botocore.config import Config as BotoConfig

    boto_config = BotoConfig(
        retries={"total_max_attempts": 1},
        connect_timeout=S3_CONNECT_TIMEOUT,
        read_timeout=S3_READ_TIMEOUT,
    )
    return boto3.client("s3", endpoint_url=config.endpoint_url, config=boto_config)


def fetch_s3(config: Config, client: Any = None) -> bytes:
    """GetObject with the pinned VersionId, within ``config.load_deadline_s``, every byte
    included: signed stdlib HTTP with the environment's credentials (as in Lambda) or, without
    them, with what boto3's credential chain finds (profile, SSO, container or instance role).
    A ``client`` passed in is used as it is, with its own credentials and timeouts.

    Raises:
        ModelNotFound: the bucket, key or VersionId does not exist.
        S3Unreachable: no answer within the deadline.
        LoadError: S3 refused otherwise, or no credentials were found.
    """
    if client is not None:
        return _fetch_boto3(config, client, s3_get.Deadline(config.load_deadline_s))
    creds = s3_get.Credentials.from_env()
    region = None
    if creds is None:  # boto3's lookup is bounded by its own provider timeouts
        creds, region = _chain_credentials(config)
    deadline = s3_get.Deadline(config.load_deadline_s)
    try:
        return s3_get.get_object(
            config.bucket,
            config.key,
            config.version_id,
            creds,
            config.endpoint_url,
            region_name=region,
            deadline=deadline,
        )
    except s3_get.S3Error as exc:
        if exc.code in _NOT_FOUND or exc.status == 404:
            raise ModelNotFound(f"{config.uri} does not exist ({exc.code})") from exc
        raise LoadError(f"S3 refused {config.uri}: {exc}") from exc
    except s3_get.S3ConnectionError as exc:
        raise S3Unreachable(config, exc.endpoint, exc.attempts, exc.elapsed, exc) from exc


def _chain_credentials(config: Config) -> tuple[s3_get.Credentials, str | None]:
    """Credentials (and region) from boto3's chain. Only the lookup is boto3's: the GET is the
    stdlib one, so a trickling endpoint is cut off by the same deadline."""
    import boto3  # deferred: Lambda's environment credentials need no AWS SDK (~0.2 s)

    session = boto3.session.Session()
    found = session.get_credentials()
    if found is None:
        raise LoadError(
            f"no AWS credentials to read {config.uri}: none in the environment, and boto3's"
            " chain (profile, SSO, container or instance role) found none"
        )
    frozen = found.get_frozen_credentials()
    creds = s3_get.Credentials(frozen.access_key, frozen.secret_key, frozen.token or None)
    return creds, session.region_name


def _fetch_boto3(config: Config, client: Any, deadline: s3_get.Deadline) -> bytes:
    # A caller's client: botocore's own retries cannot see a total deadline, so one attempt
    # per call, paced by the stdlib path's policy; its socket waits are the client's own.
    from botocore.exceptions import BotoCoreError, ClientError

    made, endpoint = 0, config.endpoint_url or "AWS S3"
    last: Exception = TimeoutError(f"no attempt fitted in the {deadline.seconds:g} s deadline")
    for _ in s3_get.attempts(deadline):
        made += 1
        try:
            s3 = client
            endpoint = str(s3.meta.endpoint_url)
            response = s3.get_object(
                Bucket=config.bucket, Key=config.key, VersionId=config.version_id
            )
            return bytes(response["Body"].read())
        except ClientError as exc:
            code = str(exc.response.get("Error", {}).get("Code", ""))
            status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
            if code in _NOT_FOUND or status == 404:
                raise ModelNotFound(f"{config.uri} does not exist ({code})") from exc
            if status not in s3_get.RETRY_STATUS:
                raise LoadError(f"S3 refused {config.uri}: {code or exc}") from exc
            last = exc
        except BotoCoreError as exc:  # connection refused, timeouts, no credentials
            last = exc
    if isinstance(last, ClientError):
        raise LoadError(f"S3 refused {config.uri}: {last}") from last
    raise S3Unreachable(config, endpoint, made, deadline.elapsed(), last) from last


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


def pin_path(config: Config) -> Path:
    """Beside the cached copy: the pin (bucket, key, VersionId, SHA-256) its bytes were fetched
    and verified by. The copy answers for that pin only."""
    return config.cache_path.with_name(config.cache_path.name + ".pin.json")


def _pin_record(config: Config) -> dict[str, str]:
    return dict(zip(("bucket", "key", "version_id", "sha256"), _pin(config), strict=True))


def _cached_for_this_pin(config: Config) -> bool:
    try:
        recorded = json.loads(pin_path(config).read_bytes())
    except FileNotFoundError:
        return False
    except (OSError, ValueError) as exc:
        log.warning("cannot read %s: %s", pin_path(config), exc)
        return False
    return bool(recorded == _pin_record(config))


def cache_verified(config: Config, data: bytes) -> None:
    """Keep bytes that a GET by ``config``'s pin returned and its digest proved: the copy first,
    then its pin, so a pin on disk never names a copy that is not complete."""
    _write_atomically(config.cache_path, data)
    _write_atomically(pin_path(config), json.dumps(_pin_record(config)).encode())


def fetch_verified(config: Config, client: Any = None) -> tuple[bytes, str]:
    """The pinned bundle's bytes, digest-checked, and where they came from ("tmp" or "s3")."""
    path = config.cache_path
    data = None
    if _cached_for_this_pin(config):  # else S3 must show that this VersionId holds the bytes
        try:
            data = path.read_bytes()
        except OSError as exc:
            log.warning("cannot read cached bundle %s: %s", path, exc)
    if data is not None:
        try:
            verify_digest(data, config.sha256, str(path))
            return data, "tmp"
        except DigestMismatch:
            log.warning("cached bundle %s fails its digest; fetching it again", path)
            path.unlink(missing_ok=True)
            pin_path(config).unlink(missing_ok=True)
    data = fetch_s3(config, client)
    verify_digest(data, config.sha256, config.uri)  # raises DigestMismatch before any unpickle
    try:
        cache_verified(config, data)
    except OSError as exc:  # a full or read-only /tmp costs a re-fetch next time, nothing more
        log.warning("cannot cache bundle at %s: %s", path, exc)
    return data, "s3"


def load(config: Config, client: Any = None) -> Model:
    """The served model for ``config``. Verified content is kept in memory by SHA-256; every
    call returns its own Model carrying this config's VersionId and version."""
    cached = _MEMORY.get(config.sha256)
    if cached is not None and _pin(config) in _PINS:
        return _model(config, cached, "memory")
    started = time.perf_counter()
    data, source = fetch_verified(config, client)  # the one digest check of these bytes
    fetched = time.perf_counter()
    _PINS.add(_pin(config))
    if cached is not None:  # the same content under a new pin, proved now: not loaded again
        fetch_ms = round((fetched - started) * 1000, 2)
        return replace(_model(config, cached, source), timings_ms={"fetch": fetch_ms})
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
