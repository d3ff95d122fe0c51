"""The bundle's object versions (``models/<name>/model.joblib``): upload, find by digest, and
whether the bytes a release names can still serve."""

from __future__ import annotations

import base64

from registry import manifest
from registry.errors import DigestMismatch, StorageError
from registry.manifest import Release
from registry.store import ObjectGone, ReleaseStore, fatal


def upload(
    store: ReleaseStore, name: str, data: bytes, sha256: str, mlflow_version: str, git_sha: str
) -> str:
    """Upload a new object version and return its VersionId (S3 checks the SHA-256 too).

    Raises:
        UnversionedBucket: S3 returned no VersionId.
        RegistryError: the upload failed (see ``store.translated``).
    """
    return store.put(
        manifest.bundle_key(name),
        data,
        ChecksumAlgorithm="SHA256",
        ChecksumSHA256=base64.b64encode(bytes.fromhex(sha256)).decode(),
        ContentType="application/octet-stream",
        Metadata={"sha256": sha256, "mlflow-version": mlflow_version, "git-sha": git_sha},
    )


def find(store: ReleaseStore, name: str, sha256: str) -> str | None:
    """The VersionId of an uploaded bundle with these bytes, by its ``sha256`` metadata:
    one listing plus a HEAD per bundle version until a match, never a manifest GET.

    Raises:
        RegistryError: S3 failed (see ``store.translated``).
    """
    key = manifest.bundle_key(name)
    for v in store.versions(key):
        head = store.head(key, v["VersionId"])
        if head.get("Metadata", {}).get("sha256", "").lower() == sha256.lower():
            return str(v["VersionId"])
    return None


def problem(store: ReleaseStore, release: Release) -> str | None:
    """Why the object version a release names cannot serve, or None when it exists and
    carries the release's digest in its metadata. One HEAD request, no download.

    Raises:
        RegistryError: S3 could not be asked (anything but "not there").
    """
    where = f"s3://{release.bucket}/{release.key}?versionId={release.version_id}"
    other = store if release.bucket == store.bucket else ReleaseStore(release.bucket, store.s3)
    try:
        head = other.head(release.key, release.version_id)
    except ObjectGone as exc:
        return f"{where} does not exist ({_code(exc)})"
    stored = str(head.get("Metadata", {}).get("sha256", "")).lower()
    if stored and stored != release.sha256:
        return f"{where} holds bytes with sha256 {stored}, not the release's {release.sha256}"
    return None


def unreadable(store: ReleaseStore, key: str, version_id: str, sha256: str) -> str | None:
    """Why these bytes cannot be used (gone, unreadable, another digest), or None when they
    read back verified.

    Raises:
        NoCredentials, BucketMissing: nothing else would read better.
    """
    try:
        store.read_verified(key, version_id, sha256)
    except (DigestMismatch, StorageError) as exc:
        if fatal(exc):
            raise
        return str(exc)
    return None


def _code(exc: ObjectGone) -> str:
    """The S3 error code behind ``exc`` ("404", "NoSuchVersion", ...)."""
    cause = getattr(exc.__cause__, "response", None) or {}
    return str(cause.get("Error", {}).get("Code", "gone"))
