"""The live manifest ``models/<name>/release.json``: read it, replace it with a
compare-and-swap, and settle a write whose outcome is in doubt by reading it again."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from registry import failpoints, manifest
from registry.errors import (
    ConcurrentUpdate,
    DigestMismatch,
    NoRelease,
    OutcomeUnknown,
    StorageError,
)
from registry.manifest import Release
from registry.store import ObjectGone, ReleaseStore, fatal


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


def read(store: ReleaseStore, name: str, version_id: str | None) -> tuple[Release, str, str]:
    """One manifest version (the live one when ``version_id`` is None), digest-checked and
    parsed: (release, ETag, VersionId).

    Raises:
        NoRelease: there is no live manifest.
        ManifestDigestError: its bytes do not match the digest stored beside them.
        ManifestError: it does not parse as a release.
        ObjectGone: the version asked for is not there.
        RegistryError: S3 failed otherwise (see ``store.translated``).
    """
    key = manifest.manifest_key(name)
    try:
        stored = store.get(key, version_id)
    except ObjectGone as exc:
        if version_id is None:
            raise NoRelease(f"{name!r} has no release in s3://{store.bucket}") from exc
        raise
    release = manifest.read_stored(stored.body, stored.metadata, store.where(key, version_id))
    return release, stored.etag, stored.version_id


def current(store: ReleaseStore, name: str) -> ManifestState:
    """The live manifest, or an empty state when there is none.

    Raises:
        ManifestDigestError, ManifestError: it cannot be read as a release.
        RegistryError: S3 failed (see ``store.translated``).
    """
    try:
        release, etag, version_id = read(store, name, None)
    except NoRelease:
        return ManifestState(None, None, None)
    return ManifestState(release, etag, version_id)


def write(store: ReleaseStore, release: Release, base: ManifestState) -> str:
    """Replace the manifest only if it is still ``base``; return the new manifest VersionId.

    S3's If-Match/If-None-Match make this a compare-and-swap. Servers that check the
    condition non-atomically (moto) are covered by a second check: the version just before
    ours must be ``base``; if not, our write is removed again and the caller is told.

    A failure here may come after S3 applied the write (a lost reply): callers settle the
    outcome by re-reading the manifest (``settle``), never by trusting the exception.

    Raises:
        ConcurrentUpdate: the condition failed, or another write landed next to ours (ours
            was removed again).
        Unconfirmed: S3 acknowledged the write and the checks after it could not run.
        DigestMismatch: the manifest reads back differently.
        RegistryError: the write failed (see ``store.translated``).
    """
    key = manifest.manifest_key(release.name)
    body = manifest.dumps(release)
    cond = {"IfMatch": base.etag} if base.etag else {"IfNoneMatch": "*"}
    version_id = store.put(
        key,
        body,
        ChecksumAlgorithm="SHA256",
        ContentType="application/json",
        Metadata=manifest.stored_metadata(body),
        **cond,
    )
    failpoints.hit("manifest-written")
    try:
        return _confirm(store, release, base, version_id)
    except StorageError as exc:
        if fatal(exc):
            raise
        raise Unconfirmed(str(exc), version_id) from exc


def _confirm(store: ReleaseStore, release: Release, base: ManifestState, version_id: str) -> str:
    key = manifest.manifest_key(release.name)
    older = _version_before(store, key, version_id)
    # With no release read (never written, or deleted), the entry before ours must be
    # nothing or a delete marker; otherwise it must be the version we read.
    expected_before = (
        (older is None or older.get("IsDeleteMarker"))
        if base.version_id is None
        else (older is not None and older["VersionId"] == base.version_id)
    )
    if not expected_before:
        store.delete_version(key, version_id)
        raise ConcurrentUpdate(
            f"another promotion or rollback of {release.name!r} wrote {key} at the same time"
        )
    # Read back what consumers will read and check it against what we meant to write.
    stored, _, _ = read(store, release.name, version_id)
    if stored != release:
        raise DigestMismatch(f"{store.where(key, version_id)} reads back differently")
    return version_id


def _version_before(store: ReleaseStore, key: str, version_id: str) -> dict[str, Any] | None:
    """The entry (object version or delete marker) just older than ``version_id``."""
    entries = store.versions(key, markers=True)
    ids = [v["VersionId"] for v in entries]
    if version_id not in ids:
        raise ConcurrentUpdate(f"the manifest version just written ({version_id}) is gone")
    i = ids.index(version_id)
    return entries[i + 1] if i + 1 < len(entries) else None


SETTLE_ATTEMPTS = 4
SETTLE_PAUSE_S = 0.5  # doubled after each failed attempt: 0.5 + 1 + 2 + 4 s at most


def settle(store: ReleaseStore, name: str) -> ManifestState:
    """Re-read the live manifest after a write whose outcome is in doubt: a few attempts,
    backing off, since the failure that put it in doubt may be passing.

    Raises:
        OutcomeUnknown: S3 could not be read at all.
        NoCredentials, BucketMissing: nothing else would read better.
    """
    last: Exception | None = None
    for attempt in range(SETTLE_ATTEMPTS):
        try:
            return current(store, name)
        except (StorageError, DigestMismatch) as exc:
            if fatal(exc):
                raise
            last = exc
            if attempt + 1 < SETTLE_ATTEMPTS:
                time.sleep(SETTLE_PAUSE_S * 2**attempt)
    raise OutcomeUnknown(
        f"the write of {store.where(manifest.manifest_key(name))} was sent, and S3 could not be"
        f" read back after it ({SETTLE_ATTEMPTS} attempts: {last}); whether it was released is"
        f" unknown: `python -m registry current {name}` settles it, and re-running the same"
        " command finishes or confirms it"
    )
