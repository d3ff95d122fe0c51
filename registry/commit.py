"""The last step shared by promote and rollback: swap the manifest, then mirror it in MLflow.

The manifest is the source of truth; the `champion` alias and the release tags follow it. A
process that moves the alias re-reads the manifest afterwards and follows it again if someone
else released meanwhile, so when concurrent runs finish the alias names what the manifest names.
Whatever a crash left behind on the MLflow side, ``reconcile`` (run first by every command that
opens MLflow) brings it back in line and says what it changed."""

from __future__ import annotations

from collections.abc import Callable

from registry import deadline, failpoints, outcome, publish
from registry.deadline import DeadlineExceeded
from registry.errors import (
    ConcurrentUpdate,
    DigestMismatch,
    NotSent,
    OutcomeUnknown,
    RegistryError,
    StorageError,
    VersionNotFound,
)
from registry.manifest import Release
from registry.publish import ManifestState, Unconfirmed
from registry.store import ReleaseStore
from registry.tracking import Tracking
from training.mlflow_names import PROMOTED_AT, S3_URI, S3_VERSION_ID

Log = Callable[[str], None]


def release_tags(release: Release) -> dict[str, str]:
    """The tags an MLflow version carries once it is the release: where its bytes are, and
    (for a promotion) when. A rollback re-points at bytes that already carry them."""
    tags = {S3_URI: f"s3://{release.bucket}/{release.key}", S3_VERSION_ID: release.version_id}
    if release.action == "promote":
        tags[PROMOTED_AT] = release.released_at
    return tags


def sync_champion(store: ReleaseStore, tracking: Tracking, name: str, version: str) -> None:
    """Move `champion` to ``version``, then follow the manifest again if someone else released
    meanwhile, until the alias names what the manifest names.

    Raises:
        RegistryError: MLflow or S3 failed (the caller decides whether that is a warning).
    """
    for _ in range(10):
        tracking.set_champion(name, version)
        current = publish.current(store, name).release
        if current is None or current.mlflow_version == version:
            return
        version = current.mlflow_version


def reconcile(
    tracking: Tracking, live: Release | None, log: Log, strict: bool = False
) -> list[str]:
    """Make MLflow agree with the live manifest: the live version's release tags and the
    `champion` alias. Returns (and logs) what it changed; nothing when they already agree.

    Before a promotion or rollback it is best-effort (``strict=False``): a failure is a warning,
    since the command's own MLflow step follows the manifest again at its end.

    Raises:
        RegistryError: with ``strict``, MLflow could not be read or updated.
    """
    try:
        return _reconcile(tracking, live, log)
    except RegistryError as exc:
        if strict:
            raise
        log(f"warning: could not reconcile MLflow with release.json first: {exc}")
        return []


def _reconcile(tracking: Tracking, live: Release | None, log: Log) -> list[str]:
    if live is None:
        return []
    name, version = live.name, live.mlflow_version
    try:
        info = tracking.version(name, version)
    except VersionNotFound:
        log(f"warning: the live release of {name} is MLflow version {version}, which is not in"
            f" the registry at {tracking.uri}: is this the team's MLflow?")  # fmt: skip
        return []
    changed = []
    wanted = {k: v for k, v in release_tags(live).items() if info.tags.get(k) != v}
    if wanted:
        tracking.record_release(info, wanted)
        changed.append(f"version {version} tags {', '.join(sorted(wanted))}")
    champion = tracking.champion(name)
    if champion != version:
        tracking.set_champion(name, version)
        changed.append(f"{name}@champion {champion or '(unset)'} -> {version}")
    if changed:
        log(f"reconciled MLflow with release.json (an earlier run stopped part-way):"
            f" {'; '.join(changed)}")  # fmt: skip
    return changed


def orphaned_champion(tracking: Tracking, name: str, bucket: str) -> str | None:
    """With no release in the bucket, MLflow may still name a champion released to it: the
    bucket was wiped, or this is another bucket or server. Say so, with the way out."""
    try:
        version = tracking.champion(name)
        if version is None:
            return None
        where = tracking.version(name, version).tags.get(S3_VERSION_ID, "?")
    except RegistryError:
        return None
    return (
        f"MLflow's {name}@champion is version {version}, released as versionId {where}, but"
        f" s3://{bucket} has no release of {name}: the bucket was wiped, or MODEL_BUCKET /"
        f" AWS_ENDPOINT_URL_S3 name another one. Point them at the bucket that holds it, or"
        f" promote again (`make promote MODEL={name}`)"
    )


def _written(state: ManifestState, release: Release) -> bool:
    return state.release == release  # release_id makes every write unique


def commit(
    store: ReleaseStore,
    tracking: Tracking,
    release: Release,
    base: ManifestState,
    log: Log,
) -> Release:
    """Write the manifest, then MLflow. A write that never left is NotSent; any other failure
    is settled by re-reading the manifest (within the command deadline's reserve): released,
    not released, or OutcomeUnknown. Once released, nothing after it makes the command fail:
    an MLflow failure (or the deadline) is a warning, and the next command (or `reconcile`)
    catches MLflow up. The outcome is recorded as it becomes known (``registry.outcome``).

    Raises:
        NotSent: the write never reached S3; nothing released.
        ConcurrentUpdate: another write won; S3 shows ours is not live (nothing released).
        OutcomeUnknown: the write left and S3 could not be read back.
        StorageError: the write failed (or ran out of time) and S3 shows it was not applied.
        RegistryError: another refusal of the write, S3 showing it was not applied.
    """
    record = outcome.current()
    record.writing = True
    try:
        manifest_version = publish.write(store, release, base)
    except NotSent:
        record.writing = False
        raise
    except (StorageError, ConcurrentUpdate, DigestMismatch, DeadlineExceeded) as exc:
        # The write may have been applied with its reply lost (a retried PUT then even reads
        # as a conflict with itself): ask S3 what is live now.
        try:
            manifest_version = _settled(store, tracking, release, exc, log)
        except RegistryError:
            record.writing = False  # settled: the error says what happened (not applied, or
            raise  # unknown after the write left)
    record.writing = False
    record.shipped = release
    log(f"manifest written: {release.key} -> versionId {release.version_id}"
        f" (release.json versionId {manifest_version})")  # fmt: skip
    try:
        info = tracking.version(release.name, release.mlflow_version)
        wanted = {k: v for k, v in release_tags(release).items() if info.tags.get(k) != v}
        if wanted:
            tracking.record_release(info, wanted)
        failpoints.hit("tags-written")
        sync_champion(store, tracking, release.name, release.mlflow_version)
        failpoints.hit("champion-moved")
    except (RegistryError, DeadlineExceeded) as exc:
        cause = f"the {exc} deadline passed" if isinstance(exc, DeadlineExceeded) else str(exc)
        log(f"warning: released, but MLflow was not updated ({cause}); the next registry"
            f" command, or `python -m registry reconcile {release.name}`, catches it"
            " up")  # fmt: skip
        return release
    log(f"{release.name}@champion -> version {release.mlflow_version}")
    return release


def _settled(
    store: ReleaseStore, tracking: Tracking, release: Release, exc: BaseException, log: Log
) -> str:
    """The manifest VersionId of ``release`` when S3 shows it live; else the write's failure
    stands (a deadline as a StorageError), or the outcome is unknown."""
    with deadline.settling():
        try:
            now = publish.settle(store, release.name)
        except OutcomeUnknown:
            if not isinstance(exc, Unconfirmed):
                raise
            log(f"warning: S3 acknowledged the manifest write (release.json versionId"
                f" {exc.version_id}) and then could not be read back: released, unconfirmed"
                f" ({exc})")  # fmt: skip
            now = ManifestState(release, None, exc.version_id)
    if _written(now, release):
        log(f"the manifest write reported {_named(exc)} but S3 shows it applied"
            f" (release {release.extra.get('release_id')}): released")  # fmt: skip
        return str(now.version_id)
    if isinstance(exc, ConcurrentUpdate) and now.release is not None:
        _follow(store, tracking, now.release, log)
    if isinstance(exc, DeadlineExceeded):
        raise StorageError(
            f"the write of release.json did not finish within the {exc} deadline"
            f" ({deadline.ENV}); S3 shows it was not applied: nothing released"
        ) from None
    raise exc


def _named(exc: BaseException) -> str:
    return (
        f"no answer within the {exc} deadline"
        if isinstance(exc, DeadlineExceeded)
        else (type(exc).__name__)
    )


def _follow(store: ReleaseStore, tracking: Tracking, live: Release, log: Log) -> None:
    """Someone else released meanwhile: leave MLflow naming their release, not ours."""
    try:
        sync_champion(store, tracking, live.name, live.mlflow_version)
    except (RegistryError, DeadlineExceeded) as exc:
        log(f"warning: could not align MLflow with the other release: {exc}")
