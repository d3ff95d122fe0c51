"""``rollback MODEL``: re-point the manifest (and `champion`) at an earlier release.

No bytes are uploaded: the earlier S3 object version is read back, checked against its SHA-256,
and the new manifest names that same VersionId."""

from __future__ import annotations

import uuid

from registry import manifest
from registry.commit import Log, commit, sync_champion
from registry.errors import DigestMismatch, NoRelease, UsageError
from registry.manifest import Release
from registry.promote import spec_for, stderr
from registry.store import ManifestVersion, ReleaseStore
from registry.tracking import Tracking


def pick_target(
    current: Release,
    history: list[ManifestVersion],
    to: str | None,
    steps: int,
    to_version: str | None = None,
) -> Release:
    """``--to``: the release with that bundle VersionId (refused when releases of several MLflow
    versions share it: identical bytes are reused). ``--to-version``: the newest release of that
    MLflow version. ``--steps N``: walk back N promotions from the one now live, so repeated
    rollbacks keep going back instead of bouncing."""
    if to is not None and to_version is not None:
        raise UsageError("--to and --to-version are mutually exclusive")
    if to_version is not None:
        for entry in history:
            if entry.release.mlflow_version == to_version:
                return entry.release
        raise NoRelease(
            f"no release of {current.name} is MLflow version {to_version}; see `releases`"
        )
    if to is not None:
        matches = [e.release for e in history if e.release.version_id == to]
        if not matches:
            raise NoRelease(f"no release of {current.name} has versionId {to}; see `releases`")
        mlflow_versions = sorted({r.mlflow_version for r in matches}, key=_numeric)
        if len(mlflow_versions) > 1:
            raise UsageError(
                f"versionId {to} holds the bytes of {current.name} MLflow versions"
                f" {', '.join(mlflow_versions)}; say which with --to-version"
                f" {' or --to-version '.join(mlflow_versions)}"
            )
        return matches[0]
    promotions = [e.release for e in history if e.release.action == "promote"]
    live = next((i for i, r in enumerate(promotions) if r.same_target(current)), None)
    if live is None:
        raise NoRelease(f"the live release of {current.name} is not in its promotion history")
    if live + steps >= len(promotions):
        earlier = len(promotions) - live - 1
        raise NoRelease(
            f"{current.name} has {earlier} earlier promotion(s); cannot go back {steps} step(s)"
        )
    return promotions[live + steps]


def _numeric(version: str) -> tuple[int, str]:
    return (int(version), "") if version.isdigit() else (0, version)


def rollback(
    model: str,
    to: str | None = None,
    steps: int = 1,
    reason: str | None = None,
    store: ReleaseStore | None = None,
    tracking: Tracking | None = None,
    log: Log = stderr,
    to_version: str | None = None,
) -> Release:
    spec_for(model)
    if steps < 1:
        raise UsageError("--steps must be 1 or more")
    store = store or ReleaseStore.from_env()
    store.check_bucket()
    base = store.current(model)
    current = base.release
    if current is None:
        raise NoRelease(f"{model} has no release in s3://{store.bucket}; nothing to roll back")
    target = pick_target(current, store.history(model), to, steps, to_version)

    tracking = tracking or Tracking()
    if target.same_target(current):
        log(f"{model}: versionId {target.version_id} is already live; nothing to do")
        store.read_verified(current.key, current.version_id, current.sha256)
        sync_champion(store, tracking, model, current.mlflow_version)
        return current

    # Check the bytes and the registry before writing anything.
    store.read_verified(target.key, target.version_id, target.sha256)
    info = tracking.version(model, target.mlflow_version)
    if info.tags.get("artifact_sha256") != target.sha256:
        raise DigestMismatch(
            f"{model} version {target.mlflow_version}: artifact_sha256 tag"
            f" {info.tags.get('artifact_sha256')} differs from the release's {target.sha256}"
        )
    log(f"{model}: rolling back from version {current.mlflow_version} to {target.mlflow_version}"
        f" (versionId {target.version_id}, digest verified)")  # fmt: skip
    extra = {"release_id": uuid.uuid4().hex}
    extra |= {k: v for k, v in target.extra.items() if k in ("approved_by",)}
    release = Release(
        name=model,
        mlflow_version=target.mlflow_version,
        bucket=target.bucket,
        key=target.key,
        version_id=target.version_id,
        sha256=target.sha256,
        git_sha=target.git_sha,
        released_at=manifest.utc_now(),
        action="rollback",
        extra=extra
        | {
            "rolled_back_from": current.mlflow_version,
            "reason": reason or f"rollback from version {current.mlflow_version}",
        },
        previous=current.as_previous(),
    )
    return commit(store, tracking, release, base, log)
