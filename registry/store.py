"""S3 operations for releases: versioned uploads, verified reads, conditional manifest writes.

``AWS_ENDPOINT_URL_S3`` (honoured by botocore itself) points at the loopback server; unset, the
same code talks to AWS with whatever credentials the environment provides."""

from __future__ import annotations

import base64
import json
import os
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, TypeVar

from inference.bundle import DigestMismatch as BundleDigestMismatch
from inference.bundle import verify_digest
from registry import failpoints, manifest
from registry.errors import (
    BucketMissing,
    ConcurrentUpdate,
    DigestMismatch,
    NoCredentials,
    NoRelease,
    OutcomeUnknown,
    StorageError,
    UnversionedBucket,
)
from registry.manifest import Release

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
# What S3 answers for an object version that is not there (HEAD has no body, so only "404";
# a malformed VersionId is a 400 InvalidArgument).
_GONE_CODES = {"404", "NoSuchKey", "NoSuchVersion", "400", "InvalidArgument"}


def _warn(msg: str) -> None:
    print(f"registry: {msg}", file=sys.stderr, flush=True)


def verify(data: bytes, expected: str, where: str) -> None:
    """inference.bundle's check (the one serving runs), as the registry's exit-code error."""
    try:
        verify_digest(data, expected, where)
    except BundleDigestMismatch as exc:
        raise DigestMismatch(str(exc)) from exc


class Unconfirmed(StorageError):
    """S3 acknowledged the manifest write (a conditional PutObject answered 200), and the
    checks after it could not run: with S3's atomic conditions, that write is applied."""

    def __init__(self, message: str, version_id: str) -> None:
        super().__init__(message)
        self.version_id = version_id


@dataclass(frozen=True)
class ManifestState:
    """The current manifest and what a conditional write must name to replace it."""

    release: Release | None
    etag: str | None
    version_id: str | None


@dataclass(frozen=True)
class ManifestVersion:
    version_id: str
    is_latest: bool
    last_modified: str
    release: Release


def transport_errors() -> tuple[type[BaseException], ...]:
    """What a dropped connection, a timeout or a dead endpoint can raise below botocore (and
    below an MLflow server's HTTP client): none of it may leave the CLI untranslated."""
    from botocore.exceptions import BotoCoreError
    from requests import RequestException
    from urllib3.exceptions import HTTPError as Urllib3Error

    return (BotoCoreError, Urllib3Error, RequestException, ConnectionError, TimeoutError)


@contextmanager
def _translated(what: str) -> Iterator[None]:
    """Turn botocore's exceptions into the registry's typed errors (one line, no traceback)."""
    from botocore.exceptions import ClientError, NoCredentialsError

    try:
        yield
    except NoCredentialsError as exc:
        raise NoCredentials(f"no AWS credentials found while trying to {what}") from exc
    except ClientError as exc:
        code = str(exc.response.get("Error", {}).get("Code", ""))
        if code in ("NoSuchBucket",):
            raise BucketMissing(f"bucket does not exist ({what})") from exc
        if code in _CREDENTIAL_CODES:
            raise NoCredentials(
                f"S3 refused the credentials ({code}) while trying to {what}"
            ) from exc
        if code in _CONFLICT_CODES:
            raise ConcurrentUpdate(
                f"conditional write refused ({code}) while trying to {what}"
            ) from exc
        raise StorageError(f"S3 error {code or exc} while trying to {what}") from exc
    except transport_errors() as exc:
        raise StorageError(f"S3 unreachable while trying to {what}: {exc}") from exc


def _client() -> Any:
    import boto3
    from botocore.config import Config

    cfg = Config(
        retries={"mode": "standard", "max_attempts": 3}, connect_timeout=5, read_timeout=30
    )
    return boto3.client("s3", config=cfg)


def bucket_from_env() -> str:
    bucket = os.environ.get("MODEL_BUCKET", "").strip()
    if not bucket:
        raise BucketMissing("MODEL_BUCKET is not set: name the versioned S3 bucket for releases")
    return bucket


class ReleaseStore:
    def __init__(self, bucket: str, client: Any = None) -> None:
        self.bucket = bucket
        self.s3 = client if client is not None else _client()

    @classmethod
    def from_env(cls) -> ReleaseStore:
        return cls(bucket_from_env())

    def _call(self, what: str, fn: Callable[..., T], **kwargs: Any) -> T:
        with _translated(what):
            return fn(Bucket=self.bucket, **kwargs)

    # -- bucket ------------------------------------------------------------------------------

    def check_bucket(self) -> None:
        """Refuse a bucket without versioning: a release is pinned by VersionId."""
        try:
            status = self._call(
                f"read the versioning of s3://{self.bucket}", self.s3.get_bucket_versioning
            ).get("Status")
        except BucketMissing as exc:
            raise BucketMissing(f"bucket s3://{self.bucket} does not exist") from exc
        if status != "Enabled":
            raise UnversionedBucket(
                f"bucket s3://{self.bucket} has versioning {status or 'never enabled'}; releases"
                " need it Enabled (aws s3api put-bucket-versioning ... Status=Enabled)"
            )

    # -- bundle ------------------------------------------------------------------------------

    def upload_bundle(
        self, name: str, data: bytes, sha256: str, mlflow_version: str, git_sha: str
    ) -> str:
        """Upload a new object version and return its VersionId (S3 checks the SHA-256 too)."""
        key = manifest.bundle_key(name)
        resp = self._call(
            f"upload s3://{self.bucket}/{key}",
            self.s3.put_object,
            Key=key,
            Body=data,
            ChecksumAlgorithm="SHA256",
            ChecksumSHA256=base64.b64encode(bytes.fromhex(sha256)).decode(),
            ContentType="application/octet-stream",
            Metadata={"sha256": sha256, "mlflow-version": mlflow_version, "git-sha": git_sha},
        )
        version_id = resp.get("VersionId")
        if not version_id or version_id == "null":
            raise UnversionedBucket(f"S3 returned no VersionId for s3://{self.bucket}/{key}")
        return str(version_id)

    def read_verified(self, key: str, version_id: str, sha256: str) -> bytes:
        """GET one exact object version and check it against the expected digest."""
        resp = self._call(
            f"read s3://{self.bucket}/{key}?versionId={version_id}",
            self.s3.get_object,
            Key=key,
            VersionId=version_id,
        )
        data: bytes = resp["Body"].read()
        where = f"s3://{self.bucket}/{key}?versionId={version_id}"
        verify(data, sha256, where)
        stored = resp.get("Metadata", {}).get("sha256")
        if stored and stored != sha256:
            raise DigestMismatch(f"{where} carries sha256 metadata {stored}, expected {sha256}")
        return data

    def find_bundle(self, name: str, sha256: str) -> str | None:
        """The VersionId of an uploaded bundle with these bytes, by its ``sha256`` metadata:
        one listing plus a HEAD per bundle version until a match, never a manifest GET."""
        key = manifest.bundle_key(name)
        for v in self._versions(key):
            head = self._call(
                f"read the metadata of s3://{self.bucket}/{key}?versionId={v['VersionId']}",
                self.s3.head_object,
                Key=key,
                VersionId=v["VersionId"],
            )
            if head.get("Metadata", {}).get("sha256", "").lower() == sha256.lower():
                return str(v["VersionId"])
        return None

    # -- manifest ----------------------------------------------------------------------------

    def _read_manifest(self, name: str, version_id: str | None) -> tuple[Release, str, str]:
        from botocore.exceptions import ClientError

        key = manifest.manifest_key(name)
        extra = {"VersionId": version_id} if version_id else {}
        try:
            resp = self.s3.get_object(Bucket=self.bucket, Key=key, **extra)
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in ("NoSuchKey", "404"):
                raise NoRelease(f"{name!r} has no release in s3://{self.bucket}") from exc
            with _translated(f"read s3://{self.bucket}/{key}"):
                raise
        except transport_errors() as exc:
            with _translated(f"read s3://{self.bucket}/{key}"):
                raise exc from None
        with _translated(f"read s3://{self.bucket}/{key}"):
            data: bytes = resp["Body"].read()
        where = f"s3://{self.bucket}/{key}" + (f"?versionId={version_id}" if version_id else "")
        release = manifest.read_stored(data, resp.get("Metadata"), where)
        return release, str(resp["ETag"]), str(resp.get("VersionId"))

    def current(self, name: str) -> ManifestState:
        try:
            release, etag, version_id = self._read_manifest(name, None)
        except NoRelease:
            return ManifestState(None, None, None)
        return ManifestState(release, etag, version_id)

    def write_manifest(self, release: Release, base: ManifestState) -> str:
        """Replace the manifest only if it is still ``base``; return the new manifest VersionId.

        S3's If-Match/If-None-Match make this a compare-and-swap. Servers that check the
        condition non-atomically (moto) are covered by a second check: the version just before
        ours must be ``base``; if not, our write is removed again and the caller is told.

        A failure here may come after S3 applied the write (a lost reply): callers settle the
        outcome by re-reading the manifest (``settle``), never by trusting the exception."""
        key = manifest.manifest_key(release.name)
        body = manifest.dumps(release)
        cond = {"IfMatch": base.etag} if base.etag else {"IfNoneMatch": "*"}
        resp = self._call(
            f"write s3://{self.bucket}/{key}",
            self.s3.put_object,
            Key=key,
            Body=body,
            ChecksumAlgorithm="SHA256",
            ContentType="application/json",
            Metadata=manifest.stored_metadata(body),
            **cond,
        )
        version_id = str(resp.get("VersionId"))
        failpoints.hit("manifest-written")
        try:
            return self._confirm(release, base, version_id)
        except StorageError as exc:
            if isinstance(exc, NoCredentials | BucketMissing):
                raise
            raise Unconfirmed(str(exc), version_id) from exc

    def _confirm(self, release: Release, base: ManifestState, version_id: str) -> str:
        key = manifest.manifest_key(release.name)
        older = self._version_before(key, version_id)
        # With no release read (never written, or deleted), the entry before ours must be
        # nothing or a delete marker; otherwise it must be the version we read.
        expected_before = (
            (older is None or older.get("IsDeleteMarker"))
            if base.version_id is None
            else (older is not None and older["VersionId"] == base.version_id)
        )
        if not expected_before:
            self._call(
                f"remove the conflicting write s3://{self.bucket}/{key}?versionId={version_id}",
                self.s3.delete_object,
                Key=key,
                VersionId=version_id,
            )
            raise ConcurrentUpdate(
                f"another promotion or rollback of {release.name!r} wrote {key} at the same time"
            )
        # Read back what consumers will read and check it against what we meant to write.
        stored, _, _ = self._read_manifest(release.name, version_id)
        if stored != release:
            raise DigestMismatch(
                f"s3://{self.bucket}/{key}?versionId={version_id} reads back differently"
            )
        return version_id

    SETTLE_ATTEMPTS = 4
    SETTLE_PAUSE_S = 0.5  # doubled after each failed attempt: 0.5 + 1 + 2 + 4 s at most

    def settle(self, name: str) -> ManifestState:
        """Re-read the live manifest after a write whose outcome is in doubt: a few attempts,
        backing off, since the failure that put it in doubt may be passing. Raises
        OutcomeUnknown when S3 cannot be read at all."""
        last: Exception | None = None
        attempts = self.SETTLE_ATTEMPTS
        for attempt in range(attempts):
            try:
                return self.current(name)
            except (StorageError, DigestMismatch) as exc:
                if isinstance(exc, NoCredentials | BucketMissing):
                    raise
                last = exc
                if attempt + 1 < attempts:
                    time.sleep(self.SETTLE_PAUSE_S * 2**attempt)
        raise OutcomeUnknown(
            f"the write of s3://{self.bucket}/{manifest.manifest_key(name)} was sent, and S3 could"
            f" not be read back after it ({attempts} attempts: {last}); whether it was released is"
            f" unknown: `python -m registry current {name}` settles it, and re-running the same"
            " command finishes or confirms it"
        )

    # -- the live bundle ---------------------------------------------------------------------

    def bundle_problem(self, release: Release) -> str | None:
        """Why the object version a release names cannot serve, or None when it exists and
        carries the release's digest in its metadata. One HEAD request, no download."""
        from botocore.exceptions import ClientError

        where = f"s3://{release.bucket}/{release.key}?versionId={release.version_id}"
        try:
            head = self.s3.head_object(
                Bucket=release.bucket, Key=release.key, VersionId=release.version_id
            )
        except ClientError as exc:
            code = str(exc.response.get("Error", {}).get("Code", ""))
            if code in _GONE_CODES:
                return f"{where} does not exist ({code})"
            with _translated(f"read the metadata of {where}"):
                raise
        except transport_errors() as exc:
            with _translated(f"read the metadata of {where}"):
                raise exc from None
        stored = str(head.get("Metadata", {}).get("sha256", "")).lower()
        if stored and stored != release.sha256:
            return f"{where} holds bytes with sha256 {stored}, not the release's {release.sha256}"
        return None

    def unreadable(self, key: str, version_id: str, sha256: str) -> str | None:
        """Why these bytes cannot be used (gone, unreadable, another digest), or None when they
        read back verified. Credentials and a missing bucket still raise: nothing else would
        read better."""
        try:
            self.read_verified(key, version_id, sha256)
        except (DigestMismatch, StorageError) as exc:
            if isinstance(exc, NoCredentials | BucketMissing):
                raise
            return str(exc)
        return None

    def bundle_ok(self, release: Release) -> bool:
        """The release's bytes exist and verify (a full read, for choosing a good release)."""
        return self.unreadable(release.key, release.version_id, release.sha256) is None

    # -- intents: what a rollback resolved, so that a retry lands on the same release -----------

    def pending_intent(self, name: str) -> dict[str, Any] | None:
        """The intent an interrupted command left open, or None. An unreadable one is ignored
        with a warning: it only ever makes a retry resume, never decides a release by itself."""
        from botocore.exceptions import ClientError

        key = manifest.intent_key(name)
        try:
            body = self.s3.get_object(Bucket=self.bucket, Key=key)["Body"].read()
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in ("NoSuchKey", "404"):
                return None
            with _translated(f"read s3://{self.bucket}/{key}"):
                raise
        except transport_errors() as exc:
            with _translated(f"read s3://{self.bucket}/{key}"):
                raise exc from None
        try:
            intent = json.loads(body)
            if not isinstance(intent, dict):
                raise ValueError("not an object")
            intent["release"] = manifest.parse_release(intent["release"])
        except (ValueError, KeyError, TypeError) as exc:
            _warn(f"warning: ignoring unreadable s3://{self.bucket}/{key}: {exc}")
            return None
        return intent if intent.get("state") == "pending" else None

    def write_intent(self, name: str, intent: dict[str, Any]) -> None:
        key = manifest.intent_key(name)
        data = dict(intent)
        if isinstance(data.get("release"), Release):
            data["release"] = data["release"].to_dict()
        self._call(
            f"write s3://{self.bucket}/{key}",
            self.s3.put_object,
            Key=key,
            Body=(json.dumps(data, indent=2) + "\n").encode(),
            ContentType="application/json",
        )

    def _version_before(self, key: str, version_id: str) -> dict[str, Any] | None:
        """The entry (object version or delete marker) just older than ``version_id``."""
        entries = self._versions(key, markers=True)
        ids = [v["VersionId"] for v in entries]
        if version_id not in ids:
            raise ConcurrentUpdate(f"the manifest version just written ({version_id}) is gone")
        i = ids.index(version_id)
        return entries[i + 1] if i + 1 < len(entries) else None

    def _versions(self, key: str, markers: bool = False) -> list[dict[str, Any]]:
        """Object versions of ``key``, newest first; with ``markers``, delete markers too
        (flagged ``IsDeleteMarker``), merged into the same newest-first order."""
        out: list[dict[str, Any]] = []
        kwargs: dict[str, Any] = {"Prefix": key}
        while True:
            page = self._call(f"list versions of {key}", self.s3.list_object_versions, **kwargs)
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

    def history(
        self, name: str, warn: Callable[[str], None] | None = None
    ) -> list[ManifestVersion]:
        """Every readable manifest version, newest first, each digest-checked. A version that
        cannot be read (corrupt body, digest mismatch, gone) is skipped with a warning on
        stderr: one bad old version must not block promote, rollback or `releases`."""
        warn = warn or _warn
        out = []
        key = manifest.manifest_key(name)
        for v in self._versions(key):
            try:
                release, _, _ = self._read_manifest(name, v["VersionId"])
            except (DigestMismatch, NoRelease, StorageError) as exc:
                if isinstance(exc, BucketMissing | NoCredentials):
                    raise
                warn(f"warning: skipping unreadable s3://{self.bucket}/{key}"
                     f"?versionId={v['VersionId']}: {exc}")  # fmt: skip
                continue
            out.append(
                ManifestVersion(
                    version_id=v["VersionId"],
                    is_latest=bool(v.get("IsLatest")),
                    last_modified=v["LastModified"].strftime("%Y-%m-%dT%H:%M:%SZ"),
                    release=release,
                )
            )
        return out
