"""``promote MODEL``: the approved MLflow version becomes the production release.

Order matters for safety: every check runs before the first write; the bundle upload creates a
new, unreferenced object version; only the conditional manifest write makes it current. An
interruption anywhere before that leaves the previous release current, and re-running finishes
the job (the MLflow tags and alias are repaired by the no-op path)."""

from __future__ import annotations

import sys
import uuid
from pathlib import Path

from inference.bundle import sha256_hex
from registry import approvals, gates, manifest
from registry.commit import Log, commit, release_tags, sync_champion
from registry.errors import (
    ConcurrentUpdate,
    DigestMismatch,
    RolledBack,
    UnknownModel,
    VersionNotFound,
)
from registry.manifest import Release
from registry.store import ReleaseStore
from registry.tracking import Tracking, VersionInfo
from training.spec import ModelSpec, SpecError, load_spec


def stderr(msg: str) -> None:
    print(f"registry: {msg}", file=sys.stderr, flush=True)


def spec_for(model: str) -> ModelSpec:
    try:
        return load_spec(model)
    except SpecError as exc:
        raise UnknownModel(str(exc)) from exc


def promote(
    model: str,
    approvals_path: Path = approvals.DEFAULT_PATH,
    force: bool = False,
    reason: str | None = None,
    store: ReleaseStore | None = None,
    tracking: Tracking | None = None,
    log: Log = stderr,
) -> Release:
    spec = spec_for(model)
    approval = approvals.approved(model, approvals_path)
    gates.require_reason(force, reason)
    store = store or ReleaseStore.from_env()
    store.check_bucket()
    tracking = tracking or Tracking()
    info = tracking.version(model, approval.version)
    sha = info.artifact_sha256
    if approval.sha256 != sha.lower():
        raise DigestMismatch(
            f"{model} version {info.version}: approved sha256 {approval.sha256} differs from its"
            f" artifact_sha256 tag {sha}; the version changed after approval, or the approval"
            " names other bytes"
        )
    base = store.current(model)
    current = base.release

    if current is not None and current.mlflow_version == info.version and current.sha256 == sha:
        return _already_released(store, tracking, info, current, log)
    if (
        current is not None
        and current.action == "rollback"
        and str(current.extra.get("rolled_back_from")) == info.version
        and not force
    ):
        raise RolledBack(
            f"{model} version {info.version} was rolled back on {current.released_at}; approve a"
            ' new version, or re-promote it with --force --reason "..."'
        )

    data = tracking.bundle_bytes(info)
    actual = sha256_hex(data)
    if actual != sha:
        raise DigestMismatch(
            f"{model} version {info.version}: bundle SHA-256 {actual} differs from its"
            f" artifact_sha256 tag {sha}"
        )
    gates.check_thresholds(spec.gates, info)
    champion = _champion(tracking, current)
    note = gates.check_against_champion(spec.gates, info, champion, force, reason)
    log(f"{model} version {info.version} (approved by {approval.approved_by}): gates passed")
    if note:
        log(note)

    version_id = _reuse_or_upload(store, model, data, info, current, log)
    release = Release(
        name=model,
        mlflow_version=info.version,
        bucket=store.bucket,
        key=manifest.bundle_key(model),
        version_id=version_id,
        sha256=sha,
        git_sha=info.git_sha,
        released_at=manifest.utc_now(),
        action="promote",
        extra={
            "release_id": uuid.uuid4().hex,
            "approved_by": approval.approved_by,
            "reason": approval.reason,
        }
        | ({"forced": True, "force_reason": reason} if note else {}),
        previous=current.as_previous() if current else None,
    )
    try:
        return commit(store, tracking, release, base, log, tag=info)
    except ConcurrentUpdate:
        # Someone else released the very same version meanwhile: that is our result too.
        now = store.current(model).release
        if now is not None and now.mlflow_version == info.version and now.sha256 == sha:
            return _already_released(store, tracking, info, now, log)
        raise


def _champion(tracking: Tracking, current: Release | None) -> VersionInfo | None:
    if current is None:
        return None
    try:
        return tracking.version(current.name, current.mlflow_version)
    except VersionNotFound as exc:
        raise VersionNotFound(f"the live release's version cannot be compared: {exc}") from exc


def _already_released(
    store: ReleaseStore, tracking: Tracking, info: VersionInfo, current: Release, log: Log
) -> Release:
    """Nothing to upload: check the live bytes, and finish MLflow's side if a run was cut short."""
    store.read_verified(current.key, current.version_id, current.sha256)
    log(f"{info.name} version {info.version} is already the release (versionId"
        f" {current.version_id}); nothing uploaded")  # fmt: skip
    wanted = release_tags(current)
    if any(info.tags.get(k) != v for k, v in wanted.items()):
        tracking.record_release(info, wanted)
    sync_champion(store, tracking, info.name, current.mlflow_version)
    return current


def _reuse_or_upload(
    store: ReleaseStore,
    model: str,
    data: bytes,
    info: VersionInfo,
    current: Release | None,
    log: Log,
) -> str:
    """Bytes already in S3 are re-pointed to, never uploaded twice. The live release and its
    predecessor are checked first (no request); then the bundle's object versions by their
    ``sha256`` metadata (HEAD requests; no manifest version is read). Whatever is reused is
    read back and verified before it is released."""
    sha = sha256_hex(data)
    key = manifest.bundle_key(model)
    known = [r for r in (current, current.previous if current else None) if r is not None]
    reuse = next((r.version_id for r in known if r.sha256 == sha and r.key == key), None)
    reuse = reuse or store.find_bundle(model, sha)
    if reuse is not None:
        store.read_verified(key, reuse, sha)
        log(f"bytes already in S3 (versionId {reuse}); not uploading again")
        return reuse
    version_id = store.upload_bundle(model, data, sha, info.version, info.git_sha)
    store.read_verified(manifest.bundle_key(model), version_id, sha)
    log(f"uploaded s3://{store.bucket}/{manifest.bundle_key(model)} versionId {version_id}")
    return version_id
