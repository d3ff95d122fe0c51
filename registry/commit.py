"""The last step shared by promote and rollback: swap the manifest, then mirror it in MLflow.

The manifest is the source of truth; the `champion` alias follows it. A process that moves the
alias re-reads the manifest afterwards and follows it again if someone else released meanwhile,
so when concurrent runs finish the alias names what the manifest names."""

from __future__ import annotations

from collections.abc import Callable

from registry.errors import ConcurrentUpdate
from registry.manifest import Release
from registry.store import ManifestState, ReleaseStore
from registry.tracking import Tracking, VersionInfo

Log = Callable[[str], None]


def sync_champion(store: ReleaseStore, tracking: Tracking, name: str, version: str) -> None:
    for _ in range(10):
        tracking.set_champion(name, version)
        current = store.current(name).release
        if current is None or current.mlflow_version == version:
            return
        version = current.mlflow_version


def commit(
    store: ReleaseStore,
    tracking: Tracking,
    release: Release,
    base: ManifestState,
    log: Log,
    tag: VersionInfo | None = None,
) -> Release:
    try:
        manifest_version = store.write_manifest(release, base)
    except ConcurrentUpdate:
        current = store.current(release.name).release
        if current is not None:
            sync_champion(store, tracking, release.name, current.mlflow_version)
        raise
    log(f"manifest written: {release.key} -> versionId {release.version_id}"
        f" (release.json versionId {manifest_version})")  # fmt: skip
    if tag is not None:
        tracking.record_release(tag, release_tags(release))
    sync_champion(store, tracking, release.name, release.mlflow_version)
    log(f"{release.name}@champion -> version {release.mlflow_version}")
    return release


def release_tags(release: Release) -> dict[str, str]:
    return {
        "s3_uri": f"s3://{release.bucket}/{release.key}",
        "s3_version_id": release.version_id,
        "promoted_at": release.released_at,
    }
