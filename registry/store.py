"""S3 access for the registry: the bucket, its one client, and the one translation of S3's
errors into the registry's exit-code errors.

``AWS_ENDPOINT_URL_S3`` (honoured by botocore itself) points at the loopback server; unset, the
same code talks to AWS with whatever credentials the environment provides. What the registry
keeps in the bucket is read and written by the modules named for each job: ``bundles`` (the
model bytes), ``publish`` (the live manifest), ``history`` (its versions), ``intents``."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import Any, TypeVar

from inference.bundle import DigestMismatch as BundleDigestMismatch
from inference.bundle import verify_digest
from registry.deadline import DeadlineExceeded
from registry.errors import (
    BucketMissing,
    ConcurrentUpdate,
    DigestMismatch,
    NoCredentials,
    StorageError,
    UnversionedBucket,
)

T = TypeVar("T")
_CREDENTIAL_CODES = {
    "AccessDenied",
    "InvalidAccessKeyId",
    "SignatureDoesNotMatch",
    "ExpiredToken",
    "InvalidToken",
    "UnrecognizedClientException",
}
_CONFLICT_CODES = {"PreconditionFailed", "ConditionalRequestConflict"}
# What S3 answers for an object (version) that is not there: HEAD has no body, so only "404";
# a malformed VersionId is a 400 InvalidArgument.
_GONE_CODES = {"404", "NoSuchKey", "NoSuchVersion", "400", "InvalidArgument"}


class ObjectGone(StorageError):
    """The object, or the object version asked for, is not in the bucket."""


def fatal(exc: BaseException) -> bool:
    """Errors no retry or other object version would read better (credentials, a missing
    bucket): never skipped, never settled by re-reading."""
    return isinstance(exc, NoCredentials | BucketMissing)


def transport_errors() -> tuple[type[BaseException], ...]:
    """What a dropped connection, a timeout or a dead endpoint can raise below botocore (and
    below an MLflow server's HTTP client): none of it may leave the CLI untranslated."""
    from botocore.exceptions import BotoCoreError
    from requests import RequestException
    from urllib3.exceptions import HTTPError as Urllib3Error

    return (BotoCoreError, Urllib3Error, RequestException, ConnectionError, TimeoutError)


@contextmanager
def translated(what: str) -> Iterator[None]:
    """Turn botocore's exceptions into the registry's typed errors (one line, no traceback).

    Raises:
        NoCredentials: no credentials, or S3 refused them.
        BucketMissing: the bucket does not exist.
        ConcurrentUpdate: a conditional write was refused.
        ObjectGone: the object (version) is not there.
        StorageError: any other S3 error, or S3 could not be reached.
        DeadlineExceeded: the command's time ran out (it learns what it was waiting for).
    """
    from botocore.exceptions import ClientError, NoCredentialsError

    try:
        yield
    except NoCredentialsError as exc:
        raise NoCredentials(f"no AWS credentials found while trying to {what}") from exc
    except ClientError as exc:
        code = str(exc.response.get("Error", {}).get("Code", ""))
        if code == "NoSuchBucket":
            raise BucketMissing(f"bucket does not exist ({what})") from exc
        if code in _CREDENTIAL_CODES:
            raise NoCredentials(
                f"S3 refused the credentials ({code}) while trying to {what}"
            ) from exc
        if code in _CONFLICT_CODES:
            raise ConcurrentUpdate(
                f"conditional write refused ({code}) while trying to {what}"
            ) from exc
        if code in _GONE_CODES:
            raise ObjectGone(f"S3 error {code} while trying to {what}: not there") from exc
        raise StorageError(f"S3 error {code or exc} while trying to {what}") from exc
    except transport_errors() as exc:
        raise StorageError(f"S3 unreachable while trying to {what}: {exc}") from exc
    except DeadlineExceeded as exc:
        exc.doing = exc.doing or what  # the innermost wait names itself
        raise


def new_client() -> Any:
    """An S3 client with bounded socket waits and retries."""
    import boto3
    from botocore.config import Config

    cfg = Config(
        retries={"mode": "standard", "max_attempts": 3}, connect_timeout=5, read_timeout=30
    )
    return boto3.client("s3", config=cfg)


def bucket_from_env() -> str:
    """``MODEL_BUCKET``, the bucket releases live in.

    Raises:
        BucketMissing: the variable is unset or empty.
    """
    bucket = os.environ.get("MODEL_BUCKET", "").strip()
    if not bucket:
        raise BucketMissing("MODEL_BUCKET is not set: name the versioned S3 bucket for releases")
    return bucket


@dataclass(frozen=True)
class Stored:
    """One object version as a GET returned it."""

    body: bytes
    metadata: dict[str, str]
    etag: str
    version_id: str
    last_modified: datetime | None


class ReleaseStore:
    """The bucket and its client. Every request goes through ``call`` (or the helpers built on
    it), so S3's errors are translated in one place."""

    def __init__(self, bucket: str, client: Any = None) -> None:
        self.bucket = bucket
        self.s3 = client if client is not None else new_client()

    @classmethod
    def from_env(cls) -> ReleaseStore:
        """The store ``MODEL_BUCKET`` names.

        Raises:
            BucketMissing: ``MODEL_BUCKET`` is unset.
        """
        return cls(bucket_from_env())

    def where(self, key: str, version_id: str | None = None) -> str:
        return f"s3://{self.bucket}/{key}" + (f"?versionId={version_id}" if version_id else "")

    def call(self, what: str, fn: Callable[..., T], **kwargs: Any) -> T:
        """``fn(Bucket=<this bucket>, **kwargs)``.

        Raises:
            RegistryError: any failure, translated (see ``translated``).
        """
        with translated(what):
            return fn(Bucket=self.bucket, **kwargs)

    def get(self, key: str, version_id: str | None = None) -> Stored:
        """GET an object (its latest version, or ``version_id``) with its whole body.

        Raises:
            ObjectGone: it is not there.
            RegistryError: any other failure, as ``translated`` names it.
        """
        extra = {"VersionId": version_id} if version_id else {}
        what = f"read {self.where(key, version_id)}"
        resp = self.call(what, self.s3.get_object, Key=key, **extra)
        with translated(what):
            body: bytes = resp["Body"].read()
        return Stored(
            body=body,
            metadata=dict(resp.get("Metadata") or {}),
            etag=str(resp.get("ETag")),
            version_id=str(resp.get("VersionId")),
            last_modified=resp.get("LastModified"),
        )

    def head(self, key: str, version_id: str) -> dict[str, Any]:
        """HEAD one object version: its metadata, no body.

        Raises:
            ObjectGone: that version is not there.
            RegistryError: any other failure, as ``translated`` names it.
        """
        what = f"read the metadata of {self.where(key, version_id)}"
        return dict(self.call(what, self.s3.head_object, Key=key, VersionId=version_id))

    def put(self, key: str, body: bytes, **kwargs: Any) -> str:
        """PUT a new object version; returns its VersionId.

        Raises:
            UnversionedBucket: S3 returned no VersionId.
            RegistryError: the write failed, as ``translated`` names it.
        """
        resp = self.call(f"write {self.where(key)}", self.s3.put_object, Key=key, Body=body,
                         **kwargs)  # fmt: skip
        version_id = resp.get("VersionId")
        if not version_id or version_id == "null":
            raise UnversionedBucket(f"S3 returned no VersionId for {self.where(key)}")
        return str(version_id)

    def delete_version(self, key: str, version_id: str) -> None:
        """Remove one object version (only ever a manifest write of our own).

        Raises:
            RegistryError: the delete failed, as ``translated`` names it.
        """
        self.call(
            f"remove {self.where(key, version_id)}",
            self.s3.delete_object,
            Key=key,
            VersionId=version_id,
        )

    def versions(self, key: str, markers: bool = False) -> list[dict[str, Any]]:
        """Object versions of ``key``, newest first; with ``markers``, delete markers too
        (flagged ``IsDeleteMarker``), merged into the same newest-first order.

        Raises:
            RegistryError: the listing failed, as ``translated`` names it.
        """
        out: list[dict[str, Any]] = []
        kwargs: dict[str, Any] = {"Prefix": key}
        while True:
            page = self.call(f"list versions of {key}", self.s3.list_object_versions, **kwargs)
            out += [v for v in page.get("Versions", []) if v["Key"] == key]
            if markers:
                out += [
                    v | {"IsDeleteMarker": True}
                    for v in page.get("DeleteMarkers", [])
                    if v["Key"] == key
                ]
            if not page.get("IsTruncated"):
                break
            kwargs.update(
                KeyMarker=page["NextKeyMarker"], VersionIdMarker=page["NextVersionIdMarker"]
            )
        if markers:
            # S3 lists each kind newest first; merge by time, the latest entry first. On a
            # timestamp tie a delete marker counts as the newer (a delete follows the write).
            out.sort(
                key=lambda v: (
                    not v.get("IsLatest"),
                    -v["LastModified"].timestamp(),
                    not v.get("IsDeleteMarker"),
                )
            )
        return out

    def check_bucket(self) -> None:
        """Refuse a bucket without versioning: a release is pinned by VersionId.

        Raises:
            BucketMissing: the bucket does not exist.
            UnversionedBucket: its versioning is not Enabled.
            RegistryError: S3 could not be asked, as ``translated`` names it.
        """
        try:
            status = self.call(
                f"read the versioning of s3://{self.bucket}", self.s3.get_bucket_versioning
            ).get("Status")
        except BucketMissing as exc:
            raise BucketMissing(f"bucket s3://{self.bucket} does not exist") from exc
        if status != "Enabled":
            raise UnversionedBucket(
                f"bucket s3://{self.bucket} has versioning {status or 'never enabled'}; releases"
                " need it Enabled (aws s3api put-bucket-versioning ... Status=Enabled)"
            )

    def find_version(self, key: str, field: str, value: str) -> str | None:
        """The newest VersionId of ``key`` whose user metadata ``field`` is ``value`` (case
        aside): one listing, then a HEAD per version until a match; None when none is.

        Raises:
            RegistryError: S3 failed, as ``translated`` names it.
        """
        for v in self.versions(key):
            head = self.head(key, v["VersionId"])
            if str(head.get("Metadata", {}).get(field, "")).lower() == value.lower():
                return str(v["VersionId"])
        return None

    def read_verified(self, key: str, version_id: str, sha256: str) -> bytes:
        """GET one exact object version and check it against the expected digest (and the
        ``sha256`` metadata it was written with).

        Raises:
            DigestMismatch: the bytes or their metadata name another digest.
            ObjectGone: that version is not there.
            RegistryError: S3 failed otherwise, as ``translated`` names it.
        """
        stored = self.get(key, version_id)
        where = self.where(key, version_id)
        verify(stored.body, sha256, where)
        recorded = stored.metadata.get("sha256")
        if recorded and recorded != sha256:
            raise DigestMismatch(f"{where} carries sha256 metadata {recorded}, expected {sha256}")
        return stored.body


def verify(data: bytes, expected: str, where: str) -> None:
    """inference.bundle's check (the one serving runs), as the registry's exit-code error.

    Raises:
        DigestMismatch: ``data`` does not hash to ``expected``.
    """
    try:
        verify_digest(data, expected, where)
    except BundleDigestMismatch as exc:
        raise DigestMismatch(str(exc)) from exc
