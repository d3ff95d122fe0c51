"""The live manifest ``models/<name>/release.json``: read it, replace it with a
compare-and-swap, and settle a write whose outcome is in doubt by reading it again.

Whether a write's request left matters: one that never reached S3 (every attempt failed to
connect) cannot have changed anything (``NotSent``); one that left may have been applied, so
only a re-read says what is live."""

from __future__ import annotations

import time
from dataclasses import dataclass
from types import TracebackType
from typing import Any

from registry import deadline, failpoints, manifest
from registry.deadline import DeadlineExceeded
from registry.errors import (
    ConcurrentUpdate,
    DigestMismatch,
    NoRelease,
    NotSent,
    OutcomeUnknown,
    StorageError,
)
from registry.manifest import ManifestError, Release
from registry.store import ObjectGone, ReleaseStore, fatal


class Unconfirmed(StorageError):
    """S3 acknowledged the manifest write (a conditional PutObject answered 200), and the
    checks after it could not run: with S3's atomic conditions, that write is applied."""

    def __init__(self, message: str, version_id: str) -> None:
        super().__init__(message)
        self.version_id = version_id


@dataclass(frozen=True)
class ManifestState:
    """The current manifest and what a conditional write must name to replace it. A live
    manifest that cannot be read as a release (a body edited without its digest, a damaged
    one) has ``release`` None and says why in ``problem``: it is broken, and replaceable."""

    release: Release | None
    etag: str | None
    version_id: str | None
    problem: str | None = None


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
    where = store.where(key, version_id or stored.version_id)
    release = manifest.read_stored(stored.body, stored.metadata, where)
    return release, stored.etag, stored.version_id


def current(store: ReleaseStore, name: str) -> ManifestState:
    """The live manifest: empty when there is none, with ``problem`` set when it is there but
    cannot be read as a release.

    Raises:
        RegistryError: S3 failed (see ``store.translated``).
    """
    key = manifest.manifest_key(name)
    try:
        stored = store.get(key)
    except ObjectGone:
        return ManifestState(None, None, None)
    where = store.where(key, stored.version_id)
    try:
        release = manifest.read_stored(stored.body, stored.metadata, where)
    except (DigestMismatch, ManifestError) as exc:  # ManifestDigestError is a DigestMismatch
        return ManifestState(None, stored.etag, stored.version_id, f"{where}: {exc}")
    return ManifestState(release, stored.etag, stored.version_id)


class _Sending:
    """Whether a PutObject's request left: botocore emits ``before-send`` for each attempt and
    ``response-received`` after it, with the exception when it failed. An attempt that failed
    to connect (botocore's ConnectionError: refused, no route, connect timeout, TLS) never
    left; any other end, or none (cut off by the deadline), may have."""

    def __init__(self, store: ReleaseStore) -> None:
        self.events = store.s3.meta.events
        self.started = self.stayed = 0

    def _started(self, **_: Any) -> None:
        self.started += 1

    def _ended(self, exception: BaseException | None = None, **_: Any) -> None:
        from botocore.exceptions import ConnectionError as NotConnected

        if isinstance(exception, NotConnected):
            self.stayed += 1

    @property
    def left(self) -> bool:
        return self.started > self.stayed

    def __enter__(self) -> _Sending:
        self.events.register("before-send.s3.PutObject", self._started)
        self.events.register("response-received.s3.PutObject", self._ended)
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.events.unregister("before-send.s3.PutObject", self._started)
        self.events.unregister("response-received.s3.PutObject", self._ended)


def write(store: ReleaseStore, release: Release, base: ManifestState) -> str:
    """Replace the manifest only if it is still ``base``; return the new manifest VersionId.

    S3's If-Match/If-None-Match make this a compare-and-swap. Servers that check the
    condition non-atomically (moto) are covered by a second check: the version just before
    ours must be ``base``; if not, our write is removed again and the caller is told.

    A failure here may come after S3 applied the write (a lost reply): callers settle the
    outcome by re-reading the manifest (``settle``), never by trusting the exception.

    Raises:
        NotSent: the request never left (nothing can have changed).
        ConcurrentUpdate: the condition failed, or another write landed next to ours (ours
            was removed again).
        Unconfirmed: S3 acknowledged the write and the checks after it could not run.
        DigestMismatch: the manifest reads back differently.
        DeadlineExceeded: the command's time ran out while the request may have been out.
        RegistryError: the write failed (see ``store.translated``).
    """
    key = manifest.manifest_key(release.name)
    body = manifest.dumps(release)
    cond = {"IfMatch": base.etag} if base.etag else {"IfNoneMatch": "*"}
    sending = _Sending(store)
    try:
        with sending:
            version_id = store.put(
                key,
                body,
                ChecksumAlgorithm="SHA256",
                ContentType="application/json",
                Metadata=manifest.stored_metadata(body),
                **cond,
            )
    except (StorageError, DeadlineExceeded) as exc:
        if sending.left or fatal(exc):
            raise
        cause = f"the deadline passed ({exc})" if isinstance(exc, DeadlineExceeded) else str(exc)
        raise NotSent(
            f"the write of {store.where(key)} never left ({cause}): nothing was released;"
            " re-run once S3 answers"
        ) from exc
    failpoints.hit("manifest-written")
    try:
        return _confirm(store, release, base, version_id)
    except (StorageError, DeadlineExceeded) as exc:
        if isinstance(exc, StorageError) and fatal(exc):
            raise
        raise Unconfirmed(str(exc) or "the deadline passed", version_id) from exc


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


SETTLE_ATTEMPTS = 4  # without a command deadline; with one, attempts go on until it ends
SETTLE_PAUSE_S = 0.5  # doubled after each failed attempt, up to 4 s
SETTLE_ATTEMPT_S = 8.0  # one re-read, at most (under a command deadline)


def settle(store: ReleaseStore, name: str) -> ManifestState:
    """Re-read the live manifest after a write whose outcome is in doubt: attempts backing
    off, since the failure that put it in doubt may be passing. Under a command deadline
    (``deadline.settling``) they go on until its very end, each one bounded.

    Raises:
        OutcomeUnknown: S3 could not be read at all.
        NoCredentials, BucketMissing: nothing else would read better.
    """
    last: object = None
    attempt = 0
    try:
        while True:
            try:
                with deadline.bounded(SETTLE_ATTEMPT_S) as mine:
                    return current(store, name)
            except DeadlineExceeded as exc:
                if exc.limit is not mine:
                    raise
                last = f"no answer within {SETTLE_ATTEMPT_S:g} s"
            except StorageError as exc:
                if fatal(exc):
                    raise
                last = exc
            attempt += 1
            if attempt >= SETTLE_ATTEMPTS and not deadline.active():
                break
            time.sleep(SETTLE_PAUSE_S * 2 ** min(attempt - 1, 3))
    except DeadlineExceeded as exc:
        last = f"{last}; then the {exc.seconds:g} s deadline ({deadline.ENV}) passed"
    raise OutcomeUnknown(
        f"the write of {store.where(manifest.manifest_key(name))} left, and S3 could not be"
        f" read back after it ({attempt} attempt(s): {last}): whether it was released is"
        f" unknown; `python -m registry current {name}` settles it, and re-running the same"
        " command finishes or confirms it"
    )
